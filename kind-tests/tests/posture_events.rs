//! Issue 18, acceptance 1: posture Events on the target.
//!
//! A namespace with an existing privileged Deployment gets the chart: its first result raises no
//! `PostureRegressed`. A clean Deployment is created, then patched to `privileged: true`: exactly
//! one `PostureRegressed` on it, naming C-0057. Reverting raises one `PostureImproved`. Three
//! rescans with no change of outcome (a pod-template annotation: a new generation, the same
//! controls) raise nothing more: a fourth change back to privileged, the sentinel, raises the
//! second and last `PostureRegressed`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kind_tests::pipeline::{create_deployment, deployment};
use kind_tests::release::{Release, wait_control_status, with_release};
use kind_tests::scenario::{BoxError, Check, Error, TestCluster, wait_for, with_temp_ns};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use kubevigil_crds::WorkloadConfigurationScanSummary;
use kubevigil_crds::identity::annotations;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(180);

fn kube_err(action: String) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Kube { action, source }
}

/// The posture Events of `ns` with `reason`, as (regarding name, note).
async fn events(client: &Client, ns: &str, reason: &str) -> Result<Vec<(String, String)>, Error> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let list = api
        .list(&ListParams::default().fields(&format!("reason={reason}")))
        .await
        .map_err(kube_err(format!("listing {reason} events in {ns}")))?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| e.reporting_controller.as_deref() == Some("kubevigil"))
        .map(|e| {
            (
                e.regarding.and_then(|r| r.name).unwrap_or_default(),
                e.note.unwrap_or_default(),
            )
        })
        .collect())
}

/// Waits until `web` has exactly `n` Events with `reason`.
async fn wait_events(
    client: &Client,
    ns: &str,
    reason: &str,
    name: &str,
    n: usize,
) -> Result<Vec<String>, Error> {
    wait_for(WAIT, &format!("{n} {reason} events on {name}"), || async {
        let notes: Vec<String> = events(client, ns, reason)
            .await?
            .into_iter()
            .filter(|(r, _)| r == name)
            .map(|(_, note)| note)
            .collect();
        Ok::<_, BoxError>(if notes.len() == n {
            Check::Done(notes)
        } else {
            Check::NotYet(format!("{notes:?}"))
        })
    })
    .await
}

fn fingerprint(s: &WorkloadConfigurationScanSummary) -> String {
    s.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(annotations::FINGERPRINT))
        .cloned()
        .unwrap_or_default()
}

async fn privileged(api: &Api<Deployment>, name: &str, on: bool) -> Result<(), Error> {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "main", "securityContext": {"privileged": on}}
    ]}}}});
    api.patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .map_err(kube_err(format!("patching {name} privileged={on}")))?;
    Ok(())
}

async fn scenario(client: Client, ns: String) -> Result<(), BoxError> {
    let cluster = TestCluster::shared().await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let summaries: Api<WorkloadConfigurationScanSummary> = Api::namespaced(client.clone(), &ns);
    // An insecure workload that exists before kubevigil is installed.
    create_deployment(&client, &ns, &deployment("legacy", true, 0)?).await?;
    let release = Release::new(&format!("{ns}-kv"), &[&ns]);
    with_release(cluster, &release, || async {
        wait_control_status(&summaries, "deployment-legacy", "C-0057", "failed", WAIT).await?;

        create_deployment(&client, &ns, &deployment("web", false, 0)?).await?;
        wait_control_status(&summaries, "deployment-web", "C-0057", "passed", WAIT).await?;

        privileged(&deployments, "web", true).await?;
        wait_control_status(&summaries, "deployment-web", "C-0057", "failed", WAIT).await?;
        let regressed = wait_events(&client, &ns, "PostureRegressed", "web", 1).await?;
        println!("PostureRegressed on web: {}", regressed[0]);
        assert!(regressed[0].contains("C-0057 Privileged container (High)"), "{regressed:?}");

        privileged(&deployments, "web", false).await?;
        wait_control_status(&summaries, "deployment-web", "C-0057", "passed", WAIT).await?;
        let improved = wait_events(&client, &ns, "PostureImproved", "web", 1).await?;
        println!("PostureImproved on web: {}", improved[0]);
        assert!(improved[0].contains("C-0057"), "{improved:?}");

        // Three rescans with the same outcome.
        for i in 0..3 {
            let before = fingerprint(&summaries.get("deployment-web").await.map_err(kube_err("reading wcss web".into()))?);
            let patch = json!({"spec": {"template": {"metadata": {"annotations": {"rescan": i.to_string()}}}}});
            deployments
                .patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
                .await
                .map_err(kube_err(format!("annotating web ({i})")))?;
            wait_for(WAIT, &format!("rescan {i} of web"), || async {
                let now = fingerprint(&summaries.get("deployment-web").await?);
                Ok::<_, BoxError>(if now != before {
                    Check::Done(())
                } else {
                    Check::NotYet(format!("fingerprint still {now}"))
                })
            })
            .await?;
            println!("rescan {i} of web written");
        }
        // Sentinel: one more regression. Its Event comes from a later scan Job than the three
        // rescans, which would have created theirs before their Jobs completed.
        privileged(&deployments, "web", true).await?;
        wait_events(&client, &ns, "PostureRegressed", "web", 2).await?;
        // The legacy Deployment's first result raised nothing either.
        let all_regressed = events(&client, &ns, "PostureRegressed").await?;
        let all_improved = events(&client, &ns, "PostureImproved").await?;
        println!("PostureRegressed events in {ns}: {all_regressed:?}");
        println!("PostureImproved events in {ns}: {all_improved:?}");
        assert_eq!(all_regressed.len(), 2, "{all_regressed:?}");
        assert_eq!(all_improved.len(), 1, "{all_improved:?}");
        assert!(all_regressed.iter().all(|(name, _)| name == "web"));
        let shown = cluster
            .kubectl([
                "get",
                "events",
                "-n",
                &ns,
                "--field-selector",
                "reason=PostureRegressed",
            ])
            .await?;
        println!("kubectl get events --field-selector reason=PostureRegressed:\n{shown}");
        let described = cluster.kubectl(["describe", "deployment", "web", "-n", &ns]).await?;
        let tail: Vec<&str> = described.lines().skip_while(|l| !l.starts_with("Events:")).collect();
        println!("kubectl describe deployment web (events):\n{}", tail.join("\n"));
        assert!(tail.iter().any(|l| l.contains("PostureRegressed")), "{described}");
        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn posture_events_on_change_only() -> Result<(), Error> {
    with_temp_ns(scenario).await
}
