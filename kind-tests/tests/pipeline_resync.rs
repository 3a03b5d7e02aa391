//! Issue 5, acceptance point 4, and two installations side by side.
//!
//! Resync: with the controller stopped (its Deployment scaled to 0), two Deployments are
//! deleted and one created; once it runs again, within one resync period the deleted ones'
//! results are gone (their ownerReferences were stripped first, so that garbage collection
//! cannot be what removed them) and the new one is scanned.
//!
//! Two releases with disjoint `includeNamespaces` run at the same time, both watching the
//! cluster-scoped kinds (Namespaces, ClusterRoles, ClusterRoleBindings). Neither's startup or
//! periodic resync may take the other's results for orphans: after the restart and a further
//! resync period, the other release's results are the same objects (same uids).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kind_tests::pipeline::{
    create_deployment, deployment, kubectl_uid, resyncs_logged, scale_controller, wait_results,
};
use kind_tests::release::{Release, with_release};
use kind_tests::scenario::{
    BoxError, Check, Error, TestCluster, create_namespace, random_namespace, wait_for, with_temp_ns,
};
use kube::api::DeleteParams;
use kube::{Api, Client};
use tokio::time::Instant;

/// The releases' resync period.
const RESYNC: Duration = Duration::from_secs(20);

fn test_err(ns: &str, msg: String) -> Error {
    Error::Test {
        namespace: ns.to_owned(),
        source: msg.into(),
    }
}

/// The uids of every wcss in `ns` (`kubectl get wcss -o jsonpath`).
async fn wcss_uids(cluster: &TestCluster, ns: &str) -> Result<BTreeMap<String, String>, Error> {
    kind_tests::pipeline::wcss_field_by_name(cluster, ns, ".metadata.uid").await
}

async fn strip_owners(cluster: &TestCluster, ns: &str, name: &str) -> Result<(), Error> {
    for kind in ["wcs", "wcss"] {
        cluster
            .kubectl([
                "patch",
                kind,
                name,
                "-n",
                ns,
                "--type=merge",
                "-p",
                r#"{"metadata":{"ownerReferences":null}}"#,
            ])
            .await?;
    }
    Ok(())
}

async fn resync(client: Client, ns: String) -> Result<(), BoxError> {
    let cluster = TestCluster::shared().await?;
    let other_ns = random_namespace();
    create_namespace(&client, &other_ns).await?;
    let outcome = two_releases(cluster, &client, &ns, &other_ns).await;
    let _ = Api::<Namespace>::all(client.clone())
        .delete(&other_ns, &DeleteParams::background())
        .await;
    outcome?;
    Ok(())
}

async fn two_releases(
    cluster: &'static TestCluster,
    client: &Client,
    ns: &str,
    other_ns: &str,
) -> Result<(), Error> {
    let resync = format!("continuousScanning.resyncPeriod={}s", RESYNC.as_secs());
    let release = Release::new(&format!("{ns}-kv"), &[ns]).set(&resync);
    let other = Release::new(&format!("{other_ns}-kv"), &[other_ns]).set(&resync);
    with_release(cluster, &other, || async {
        with_release(cluster, &release, || async {
            // Both releases scan their own namespace's Deployments.
            for name in ["gone-1", "gone-2", "stays"] {
                create_deployment(client, ns, &deployment(name, false, 0)?).await?;
            }
            create_deployment(client, other_ns, &deployment("other", false, 0)?).await?;
            let all = ["deployment-gone-1", "deployment-gone-2", "deployment-stays"];
            wait_results(cluster, ns, &all, &[], Duration::from_secs(90)).await?;
            wait_results(
                cluster,
                other_ns,
                &["deployment-other"],
                &[],
                Duration::from_secs(90),
            )
            .await?;
            // Each release has results of cluster-scoped targets in its install namespace,
            // e.g. of both test namespaces.
            let ns_results = [format!("namespace-{ns}"), format!("namespace-{other_ns}")];
            let ns_results: Vec<&str> = ns_results.iter().map(String::as_str).collect();
            for r in [&release, &other] {
                wait_results(
                    cluster,
                    &r.namespace,
                    &ns_results,
                    &[],
                    Duration::from_secs(90),
                )
                .await?;
            }
            for name in ["deployment-gone-1", "deployment-gone-2"] {
                strip_owners(cluster, ns, name).await?;
            }
            let other_before = (
                wcss_uids(cluster, other_ns).await?,
                wcss_uids(cluster, &other.namespace).await?,
            );
            let stays_uid = kubectl_uid(cluster, "wcss", ns, "deployment-stays").await?;

            // Stop the controller; delete two Deployments and create one meanwhile.
            scale_controller(cluster, &release, 0).await?;
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
            for name in ["gone-1", "gone-2"] {
                deployments
                    .delete(name, &DeleteParams::background())
                    .await
                    .map_err(|e| Error::Kube {
                        action: format!("deleting deployment {name}"),
                        source: e,
                    })?;
            }
            create_deployment(client, ns, &deployment("new", false, 0)?).await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            // Nothing can have removed the stripped results while the controller was down.
            wait_results(
                cluster,
                ns,
                &["deployment-gone-1", "deployment-gone-2"],
                &["deployment-new"],
                Duration::from_secs(5),
            )
            .await?;

            // Start it: orphans gone and the new one scanned within one resync period.
            let started = Instant::now();
            scale_controller(cluster, &release, 1).await?;
            let ready = started.elapsed();
            wait_results(
                cluster,
                ns,
                &["deployment-stays", "deployment-new"],
                &["deployment-gone-1", "deployment-gone-2"],
                RESYNC * 2,
            )
            .await?;
            let converged = started.elapsed();
            eprintln!(
                "controller restart: ready after {ready:?}, converged after {converged:?} \
                 (resync period {RESYNC:?})"
            );
            if converged > RESYNC + ready {
                return Err(test_err(
                    ns,
                    format!(
                        "converged {converged:?} after the restart (ready after {ready:?}); \
                         bound: one resync period ({RESYNC:?}) after ready"
                    ),
                ));
            }
            assert_eq!(
                kubectl_uid(cluster, "wcss", ns, "deployment-stays").await?,
                stays_uid,
                "the untouched Deployment's result must survive the restart"
            );

            // Let both releases run a periodic resync more (the positive signal: one more
            // "resync" line in each controller's log); the other release's results are the
            // same objects as before (not collected and rewritten).
            let base = (
                resyncs_logged(cluster, &release).await?,
                resyncs_logged(cluster, &other).await?,
            );
            let (release_ref, other_ref) = (&release, &other);
            wait_for(
                RESYNC * 3,
                "one more periodic resync in each release",
                || async move {
                    let now = (
                        resyncs_logged(cluster, release_ref).await?,
                        resyncs_logged(cluster, other_ref).await?,
                    );
                    Ok::<_, BoxError>(if now.0 > base.0 && now.1 > base.1 {
                        Check::Done(())
                    } else {
                        Check::NotYet(format!("resyncs logged {now:?}, before {base:?}"))
                    })
                },
            )
            .await?;
            let other_after = (
                wcss_uids(cluster, other_ns).await?,
                wcss_uids(cluster, &other.namespace).await?,
            );
            let lost: Vec<&String> = other_before
                .0
                .iter()
                .chain(other_before.1.iter())
                .filter(|(n, u)| {
                    other_after.0.get(*n) != Some(*u) && other_after.1.get(*n) != Some(*u)
                })
                // Namespaces of scenarios running alongside come and go; their results may.
                .filter(|(n, _)| {
                    !n.starts_with("namespace-kv-test-") || ns_results.contains(&n.as_str())
                })
                .map(|(n, _)| n)
                .collect();
            eprintln!(
                "other release: {} results in {other_ns}, {} in {}; replaced or lost: {lost:?}",
                other_before.0.len(),
                other_before.1.len(),
                other.namespace
            );
            if !lost.is_empty() {
                return Err(test_err(
                    ns,
                    format!(
                        "the other release's results were deleted (or deleted and rewritten) \
                         while this one restarted and resynced: {lost:?}"
                    ),
                ));
            }
            Ok(())
        })
        .await
    })
    .await
}

#[tokio::test]
async fn resync_collects_orphans_and_scans_missed_creates_without_touching_other_releases()
-> Result<(), Error> {
    with_temp_ns(resync).await
}
