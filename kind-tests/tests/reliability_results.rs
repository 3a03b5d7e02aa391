//! Issue 8, bad input on the real cluster through the chart:
//! - a result CR edited by hand is overwritten by the next scan (values and foreign fields);
//! - a result CR deleted by hand is recreated at the next resync (short resync period);
//! - objects named at the 253-character limit and odd label values are scanned with valid
//!   result names and labels.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kind_tests::release::{Release, wait_control_status, with_release};
use kind_tests::scenario::{
    BoxError, Check, Error, TestCluster, probe_image, wait_for, with_temp_ns,
};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource as _};
use kubevigil_crds::identity::{is_dns1123_subdomain, is_label_value};
use kubevigil_crds::{WorkloadConfigurationScan, WorkloadConfigurationScanSummary};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

fn kube_err(action: String) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Kube { action, source }
}

fn from_json<T: DeserializeOwned>(ns: &str, v: Value) -> Result<T, Error> {
    serde_json::from_value(v).map_err(|e| Error::Test {
        namespace: ns.to_owned(),
        source: e.into(),
    })
}

fn fail(ns: &str, msg: String) -> Error {
    Error::Test {
        namespace: ns.to_owned(),
        source: msg.into(),
    }
}

/// The status of `control` in a WorkloadConfigurationScan, as a string.
fn wcs_status(wcs: &WorkloadConfigurationScan, control: &str) -> Option<String> {
    let v = serde_json::to_value(&wcs.spec).ok()?;
    v["controls"][control]["status"]["status"]
        .as_str()
        .map(str::to_owned)
}

async fn edited_and_deleted_results(client: Client, ns: String) -> Result<(), BoxError> {
    let cluster = TestCluster::shared().await?;
    // A short resync period, so that a deleted result comes back within the test.
    let release = Release::new(&format!("{ns}-kv"), &[&ns])
        .set("continuousScanning.resyncPeriod=15s")
        .set("continuousScanning.debounce=500ms");
    with_release(cluster, &release, || async {
        let deployment: Deployment = from_json(
            &ns,
            json!({
                "metadata": {"name": "priv", "labels": {"rev": "1"}},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": {"app": "priv"}},
                    "template": {
                        "metadata": {"labels": {"app": "priv"}},
                        "spec": {"containers": [{
                            "name": "main", "image": probe_image(), "args": ["sleep"],
                            "securityContext": {"privileged": true},
                        }]},
                    },
                },
            }),
        )?;
        let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
        deployments
            .create(&PostParams::default(), &deployment)
            .await
            .map_err(kube_err(format!("creating deployment {ns}/priv")))?;
        let summaries: Api<WorkloadConfigurationScanSummary> =
            Api::namespaced(client.clone(), &ns);
        let scans: Api<WorkloadConfigurationScan> = Api::namespaced(client.clone(), &ns);
        let name = "deployment-priv";
        wait_control_status(&summaries, name, "C-0057", "failed", Duration::from_secs(180))
            .await?;

        // 1. Edit by hand (as `kubectl patch` would, another field manager): flip the failed
        //    control to passed and add a label of our own.
        let tamper = json!({
            "metadata": {"labels": {"tampered": "yes"}},
            "spec": {"controls": {"C-0057": {"status": {"status": "passed"}}}},
        });
        let hand = PatchParams {
            field_manager: Some("hand-edit".into()),
            ..PatchParams::default()
        };
        scans
            .patch(name, &hand, &Patch::Merge(&tamper))
            .await
            .map_err(kube_err(format!("editing wcs {ns}/{name}")))?;
        summaries
            .patch(name, &hand, &Patch::Merge(&tamper))
            .await
            .map_err(kube_err(format!("editing wcss {ns}/{name}")))?;
        let edited = scans
            .get(name)
            .await
            .map_err(kube_err(format!("reading wcs {ns}/{name}")))?;
        if wcs_status(&edited, "C-0057").as_deref() != Some("passed") {
            return Err(fail(&ns, format!("the hand edit did not stick: {edited:?}")));
        }
        let edited_scan_time = edited
            .meta()
            .annotations
            .as_ref()
            .and_then(|a| a.get(kubevigil_crds::identity::annotations::SCAN_TIME))
            .cloned();

        // The next scan: a label change on the Deployment changes its fingerprint.
        deployments
            .patch(
                "priv",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"rev": "2"}}})),
            )
            .await
            .map_err(kube_err(format!("relabelling deployment {ns}/priv")))?;
        wait_for(
            Duration::from_secs(120),
            "the hand-edited wcs overwritten by the next scan",
            || {
                let scans = scans.clone();
                let edited_scan_time = edited_scan_time.clone();
                async move {
                    let wcs = scans.get(name).await?;
                    let meta = wcs.meta();
                    let scan_time = meta
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(kubevigil_crds::identity::annotations::SCAN_TIME))
                        .cloned();
                    let tampered = meta
                        .labels
                        .as_ref()
                        .is_some_and(|l| l.contains_key("tampered"));
                    let status = wcs_status(&wcs, "C-0057");
                    Ok::<_, BoxError>(
                        if scan_time != edited_scan_time
                            && !tampered
                            && status.as_deref() == Some("failed")
                        {
                            Check::Done(())
                        } else {
                            Check::NotYet(format!(
                                "scan time {scan_time:?} (edited at {edited_scan_time:?}), tampered label {tampered}, C-0057 {status:?}"
                            ))
                        },
                    )
                }
            },
        )
        .await?;
        // The summary is applied (and replaced) after the scan by the same Job.
        wait_for(
            Duration::from_secs(60),
            "the hand-edited wcss overwritten by the same scan",
            || {
                let summaries = summaries.clone();
                async move {
                    let wcss = summaries.get(name).await?;
                    let tampered = wcss
                        .meta()
                        .labels
                        .as_ref()
                        .is_some_and(|l| l.contains_key("tampered"));
                    let status = wcss
                        .spec
                        .controls
                        .get("C-0057")
                        .and_then(|c| serde_json::to_value(c.status.status).ok());
                    Ok::<_, BoxError>(
                        if !tampered && status == Some(json!("failed")) {
                            Check::Done(())
                        } else {
                            Check::NotYet(format!("tampered label {tampered}, C-0057 {status:?}"))
                        },
                    )
                }
            },
        )
        .await?;

        // 2. Delete both results by hand: no event on the Deployment, so only the resync
        //    (15 s) brings them back, as new objects.
        let old_uid = scans
            .get(name)
            .await
            .map_err(kube_err(format!("reading wcs {ns}/{name}")))?
            .meta()
            .uid
            .clone();
        scans
            .delete(name, &DeleteParams::default())
            .await
            .map_err(kube_err(format!("deleting wcs {ns}/{name}")))?;
        summaries
            .delete(name, &DeleteParams::default())
            .await
            .map_err(kube_err(format!("deleting wcss {ns}/{name}")))?;
        wait_for(
            Duration::from_secs(120),
            "the deleted wcs and wcss recreated at resync",
            || {
                let scans = scans.clone();
                let summaries = summaries.clone();
                let old_uid = old_uid.clone();
                async move {
                    let wcs = scans.get_opt(name).await?;
                    let wcss = summaries.get_opt(name).await?;
                    Ok::<_, BoxError>(match (wcs, wcss) {
                        (Some(w), Some(_))
                            if w.meta().uid != old_uid
                                && wcs_status(&w, "C-0057").as_deref() == Some("failed") =>
                        {
                            Check::Done(())
                        }
                        (w, s) => Check::NotYet(format!(
                            "wcs present {}, wcss present {}",
                            w.is_some(),
                            s.is_some()
                        )),
                    })
                }
            },
        )
        .await?;
        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn hand_edited_results_are_overwritten_and_deleted_ones_recreated() -> Result<(), Error> {
    with_temp_ns(edited_and_deleted_results).await
}

/// A DNS-1123 subdomain of exactly 253 characters starting with `prefix`.
fn long_name(prefix: &str) -> String {
    let mut s = prefix.to_owned();
    while s.len() < 253 {
        s.push(if s.len() % 60 == 59 { '.' } else { 'a' });
    }
    s.truncate(252);
    s.push('z');
    s
}

async fn long_names_and_odd_labels(client: Client, ns: String) -> Result<(), BoxError> {
    let cluster = TestCluster::shared().await?;
    let release = Release::new(&format!("{ns}-kv"), &[&ns]);
    with_release(cluster, &release, || async {
        let sa_name = long_name("sa");
        let role_name = long_name("role");
        let binding_name = long_name("binding");
        // Odd but valid label values (the API server rejects invalid ones); unicode lives in
        // annotations, which kubevigil copies nowhere it would break.
        let labels = json!({
            "empty": "",
            "dots": "a.b_c-d",
            "max": "x".repeat(63),
            "example.com/prefixed": "v",
        });
        let sa: ServiceAccount = from_json(
            &ns,
            json!({"metadata": {"name": sa_name, "labels": labels,
                                "annotations": {"note": "ünïcødé ✓ 日本語"}}}),
        )?;
        Api::<ServiceAccount>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &sa)
            .await
            .map_err(kube_err(format!("creating serviceaccount {ns}/{sa_name}")))?;
        let role: Role = from_json(
            &ns,
            json!({"metadata": {"name": role_name, "labels": labels},
                   "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
        )?;
        Api::<Role>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &role)
            .await
            .map_err(kube_err(format!("creating role {ns}/{role_name}")))?;
        let binding: RoleBinding = from_json(
            &ns,
            json!({"metadata": {"name": binding_name, "labels": labels},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
                   "subjects": [{"kind": "ServiceAccount", "name": sa_name, "namespace": ns}]}),
        )?;
        Api::<RoleBinding>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &binding)
            .await
            .map_err(kube_err(format!("creating rolebinding {ns}/{binding_name}")))?;

        // Expect two results: the ServiceAccount's and the (SA, Role, RoleBinding) triplet's.
        let scans: Api<WorkloadConfigurationScan> = Api::namespaced(client.clone(), &ns);
        let found = wait_for(
            Duration::from_secs(180),
            "results of the 253-character ServiceAccount and its RoleBinding triplet",
            || {
                let scans = scans.clone();
                async move {
                    let list = scans.list(&ListParams::default()).await?;
                    let kinds: Vec<(String, bool)> = list
                        .items
                        .iter()
                        .map(|w| {
                            let l = w.meta().labels.clone().unwrap_or_default();
                            (
                                l.get("kubevigil.io/workload-kind").cloned().unwrap_or_default(),
                                l.contains_key("kubevigil.io/rbac-resource"),
                            )
                        })
                        .collect();
                    let sa = kinds.iter().any(|(k, rbac)| k == "ServiceAccount" && !rbac);
                    let triplet = kinds.iter().any(|(_, rbac)| *rbac);
                    Ok::<_, BoxError>(if sa && triplet {
                        Check::Done(list.items)
                    } else {
                        Check::NotYet(format!("results: {kinds:?}"))
                    })
                }
            },
        )
        .await?;
        for wcs in &found {
            let meta = wcs.meta();
            let name = meta.name.clone().unwrap_or_default();
            if name.len() > 253 || !is_dns1123_subdomain(&name) {
                return Err(fail(&ns, format!("invalid result name {name}")));
            }
            for (k, v) in meta.labels.clone().unwrap_or_default() {
                if !is_label_value(&v) {
                    return Err(fail(&ns, format!("invalid label {k}={v} on {name}")));
                }
            }
            let rid = meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(kubevigil_crds::identity::annotations::RESOURCE_ID))
                .cloned()
                .unwrap_or_default();
            eprintln!("result {} ({} chars) for {rid:.80}...", name, name.len());
        }
        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn names_at_the_253_limit_and_odd_labels_are_scanned() -> Result<(), Error> {
    with_temp_ns(long_names_and_odd_labels).await
}
