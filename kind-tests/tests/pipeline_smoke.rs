//! Smoke test of the whole pipeline: the chart installed by Helm as the README says, a privileged
//! Deployment created, and its WorkloadConfigurationScanSummary written with C-0057 (privileged
//! container) failed — watch, queue, scan Job, scan-job run, server-side apply.
//!
//! The local kubelet maps the images `kubevigil.local/controller` and `kubevigil.local/scan-job`
//! to `target/<profile>/controller` and `scan-job` (build them first: `cargo build --bins`, which
//! `scripts/cluster.sh up` does). The controller only includes the test's namespace, and the
//! release is uninstalled at the end so that it does not scan other tests' namespaces.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kind_tests::scenario::{
    BoxError, Check, Error, TestCluster, dump_namespace, probe_image, wait_for, with_temp_ns,
};
use kube::api::PostParams;
use kube::{Api, Client};
use kubevigil_crds::WorkloadConfigurationScanSummary;
use serde_json::json;

/// Where the chart is, from this crate.
const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/kubevigil");
/// Namespace of the release.
const INSTALL_NS: &str = "kubevigil";

async fn install(cluster: &TestCluster, ns: &str) -> Result<(), Error> {
    let include = format!("includeNamespaces={{{ns}}}");
    cluster
        .helm([
            "upgrade",
            "--install",
            "kubevigil",
            CHART,
            "-n",
            INSTALL_NS,
            "--create-namespace",
            "--set",
            "clusterName=local",
            "--set",
            "capabilities.continuousScan=enable",
            "--set",
            &include,
            "--set",
            "controller.image.repository=kubevigil.local/controller",
            "--set",
            "controller.image.tag=dev",
            "--set",
            "scanJob.image.repository=kubevigil.local/scan-job",
            "--set",
            "scanJob.image.tag=dev",
            "--wait",
            "--timeout",
            "180s",
        ])
        .await?;
    Ok(())
}

async fn privileged_deployment_is_scanned(client: Client, ns: String) -> Result<(), BoxError> {
    let cluster = TestCluster::shared().await?;
    install(cluster, &ns).await?;
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "priv"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "priv"}},
            "template": {
                "metadata": {"labels": {"app": "priv"}},
                "spec": {
                    "containers": [{
                        "name": "main",
                        "image": probe_image(),
                        "args": ["sleep"],
                        "securityContext": {"privileged": true},
                    }],
                },
            },
        },
    }))?;
    Api::<Deployment>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &deployment)
        .await?;
    let summaries: Api<WorkloadConfigurationScanSummary> = Api::namespaced(client, &ns);
    let status = wait_for(
        Duration::from_secs(180),
        &format!("wcss {ns}/deployment-priv with C-0057 failed"),
        || {
            let summaries = summaries.clone();
            async move {
                let Some(summary) = summaries.get_opt("deployment-priv").await? else {
                    return Ok(Check::NotYet("no result yet".to_owned()));
                };
                let status = summary
                    .spec
                    .controls
                    .get("C-0057")
                    .map(|c| serde_json::to_value(c.status.status))
                    .transpose()?;
                Ok(match status {
                    Some(s) if s == json!("failed") => Check::Done(s),
                    other => Check::NotYet(format!("C-0057 status {other:?}")),
                })
            }
        },
    )
    .await?;
    assert_eq!(status, json!("failed"));
    Ok(())
}

#[tokio::test]
async fn privileged_deployment_gets_a_failed_c0057_result() -> Result<(), Error> {
    let outcome = with_temp_ns(|client, ns| async move {
        let result = privileged_deployment_is_scanned(client.clone(), ns).await;
        if result.is_err() {
            let cluster = TestCluster::shared().await?;
            eprintln!("{}", dump_namespace(cluster, &client, INSTALL_NS).await);
        }
        result
    })
    .await;
    let cluster = TestCluster::shared().await?;
    if let Err(e) = cluster
        .helm(["uninstall", "kubevigil", "-n", INSTALL_NS, "--wait"])
        .await
    {
        eprintln!("warning: uninstalling the release: {e}");
    }
    outcome
}
