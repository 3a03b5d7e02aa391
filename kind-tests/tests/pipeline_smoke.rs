//! Smoke test of the whole pipeline: the chart installed by Helm as the README says, a privileged
//! Deployment created, and its WorkloadConfigurationScanSummary written with C-0057 (privileged
//! container) failed — watch, queue, scan Job, scan-job run, server-side apply.
//!
//! The local kubelet maps the images `kubevigil.local/controller` and `kubevigil.local/scan-job`
//! to `target/<profile>/controller` and `scan-job` (build them first: `cargo build --bins`, which
//! `scripts/cluster.sh up` does). The release only includes the test's namespace and is
//! uninstalled at the end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kind_tests::release::{Release, wait_control_status, with_release};
use kind_tests::scenario::{BoxError, Error, TestCluster, probe_image, with_temp_ns};
use kube::api::PostParams;
use kube::{Api, Client};
use kubevigil_crds::WorkloadConfigurationScanSummary;
use serde_json::json;

async fn privileged_deployment_is_scanned(client: Client, ns: String) -> Result<(), BoxError> {
    let cluster = TestCluster::shared().await?;
    let release = Release::new(&format!("{ns}-kv"), &[&ns]);
    with_release(cluster, &release, || async {
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
        }))
        .map_err(|e| Error::Test {
            namespace: ns.clone(),
            source: e.into(),
        })?;
        Api::<Deployment>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &deployment)
            .await
            .map_err(|e| Error::Kube {
                action: format!("creating deployment {ns}/priv"),
                source: e,
            })?;
        let summaries: Api<WorkloadConfigurationScanSummary> = Api::namespaced(client, &ns);
        wait_control_status(
            &summaries,
            "deployment-priv",
            "C-0057",
            "failed",
            Duration::from_secs(180),
        )
        .await
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn privileged_deployment_gets_a_failed_c0057_result() -> Result<(), Error> {
    with_temp_ns(privileged_deployment_is_scanned).await
}
