//! Issue 5, acceptance point 6: a kind in `continuousScanning.matchingRules` that does not
//! exist (`example.com/v1 widgets`) shows as not ready in the `/readyz` detail and in the
//! `kubevigil_watched_kind_ready` metric, and every other kind is still scanned.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kind_tests::pipeline::{
    controller_get, create_deployment, deployment, kubectl_control_status, kubectl_names,
};
use kind_tests::release::{Release, wait_control_status, with_release};
use kind_tests::scenario::{BoxError, Check, Error, TestCluster, wait_for, with_temp_ns};
use kube::{Api, Client};
use kubevigil_crds::WorkloadConfigurationScanSummary;
use serde_json::Value;

const RULES: &str = r#"continuousScanning.matchingRules=[
  {"apiGroups":["apps"],"apiVersions":["v1"],"resources":["deployments"]},
  {"apiGroups":[""],"apiVersions":["v1"],"resources":["serviceaccounts"]},
  {"apiGroups":["example.com"],"apiVersions":["v1"],"resources":["widgets"]}
]"#;

fn metric_value(metrics: &str, resource: &str) -> Option<String> {
    metrics
        .lines()
        .find(|l| {
            l.starts_with("kubevigil_watched_kind_ready{")
                && l.contains(&format!("resource=\"{resource}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .map(str::to_owned)
}

async fn readiness(client: Client, ns: String) -> Result<(), BoxError> {
    let cluster = TestCluster::shared().await?;
    let release = Release::new(&format!("{ns}-kv"), &[&ns]).set_json(&RULES.replace('\n', ""));
    with_release(cluster, &release, || async {
        let release = &release;
        // The missing kind is reported, by kind, in /readyz and in the metric; the others
        // are ready.
        let (readyz, metrics) = wait_for(
            Duration::from_secs(60),
            "widgets not-found in /readyz and kubevigil_watched_kind_ready",
            || async move {
                let (code, body) = controller_get(release, "/readyz").await?;
                let (_, metrics) = controller_get(release, "/metrics").await?;
                let json: Value = serde_json::from_str(&body)?;
                let state = |resource: &str| {
                    json["kinds"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|k| k["resource"] == resource)
                        .and_then(|k| k["state"].as_str().map(str::to_owned))
                };
                let ok = state("widgets").as_deref() == Some("not-found")
                    && state("deployments").as_deref() == Some("ready")
                    && metric_value(&metrics, "widgets").as_deref() == Some("0")
                    && metric_value(&metrics, "deployments").as_deref() == Some("1");
                Ok::<_, BoxError>(if ok {
                    Check::Done((format!("{code} {body}"), metrics))
                } else {
                    Check::NotYet(format!("/readyz {code}: {body}"))
                })
            },
        )
        .await?;
        eprintln!("/readyz: {readyz}");
        for l in metrics
            .lines()
            .filter(|l| l.starts_with("kubevigil_watched_kind_ready"))
        {
            eprintln!("{l}");
        }
        assert!(
            readyz.contains("widgets") && readyz.contains("not ready"),
            "the /readyz message names the missing kind: {readyz}"
        );

        // Every other kind is still scanned.
        create_deployment(&client, &ns, &deployment("priv", true, 0)?).await?;
        let summaries: Api<WorkloadConfigurationScanSummary> = Api::namespaced(client.clone(), &ns);
        wait_control_status(
            &summaries,
            "deployment-priv",
            "C-0057",
            "failed",
            Duration::from_secs(60),
        )
        .await?;
        assert_eq!(
            kubectl_control_status(cluster, &ns, "deployment-priv", "C-0057").await?,
            "failed"
        );
        let listed = kubectl_names(cluster, "wcss", &ns, &[]).await?;
        assert!(
            listed.contains("serviceaccount-default"),
            "ServiceAccounts are scanned too: {listed:?}"
        );
        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_missing_kind_is_reported_and_the_others_are_scanned() -> Result<(), Error> {
    with_temp_ns(readiness).await
}
