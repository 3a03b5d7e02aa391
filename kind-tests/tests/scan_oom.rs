//! A scan Job whose memory limit is too small for its batch is OOMKilled by the real runtime
//! (issue 16): the controller reports it on the target (a ScanFailed Event naming the OOM kill),
//! counts it (`kubevigil_scan_jobs_oom_killed_total`), logs it, and does not run it again with the
//! same limit — not by the Job controller (its pod failure policy fails the Job at once), and not
//! by the resync while the target is unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kind_tests::pipeline::{
    TARGETS_ANNOTATION, controller_get, create_deployment, deployment, deployment_target,
    resyncs_logged,
};
use kind_tests::release::{Release, SCAN_JOB_SELECTOR, metric_value, with_release};
use kind_tests::scenario::{BoxError, Check, Error, TestCluster, wait_for, with_temp_ns};
use kube::api::ListParams;
use kube::{Api, Client};

/// Jobs of the release that scanned `target`, with their pod count.
async fn jobs_of(
    client: &Client,
    ns: &str,
    target: &str,
) -> Result<Vec<(String, usize)>, BoxError> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut out = Vec::new();
    for j in jobs
        .list(&ListParams::default().labels(SCAN_JOB_SELECTOR))
        .await?
        .items
    {
        let names_target = j
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(TARGETS_ANNOTATION))
            .is_some_and(|t| t.lines().any(|l| l == target));
        if names_target {
            let name = j.metadata.name.clone().unwrap_or_default();
            let lp = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={name}"));
            out.push((name, pods.list(&lp).await?.items.len()));
        }
    }
    Ok(out)
}

#[tokio::test]
async fn an_oom_killed_scan_is_reported_and_not_retried_while_nothing_changes() -> Result<(), Error>
{
    with_temp_ns(|client, ns| async move {
        let cluster = TestCluster::shared().await?;
        let release = Release::new(&format!("{ns}-kv"), &[&ns])
            // scan-job needs more than 6 MiB for any batch: the kernel kills it.
            .set("scanJob.resources.limits.memory=6Mi")
            .set("scanJob.resources.requests.memory=6Mi")
            .set("scanJob.ttlSecondsAfterFinished=600")
            .set("continuousScanning.resyncPeriod=10s");
        let kv_ns = release.namespace.clone();
        with_release(cluster, &release, || async {
            let body = async {
                create_deployment(&client, &ns, &deployment("hungry", false, 0)?).await?;
                let events: Api<Event> = Api::namespaced(client.clone(), &ns);
                let note = wait_for(
                    Duration::from_secs(120),
                    "a ScanFailed event on Deployment hungry naming the OOM kill",
                    || async {
                        let list = events
                            .list(&ListParams::default().fields("reason=ScanFailed"))
                            .await?;
                        let found = list.items.iter().find_map(|e| {
                            (e.involved_object.name.as_deref() == Some("hungry"))
                                .then(|| e.message.clone().unwrap_or_default())
                        });
                        Ok::<_, BoxError>(match found {
                            Some(m) => Check::Done(m),
                            None => {
                                Check::NotYet(format!("{} ScanFailed events", list.items.len()))
                            }
                        })
                    },
                )
                .await?;
                println!("ScanFailed on Deployment {ns}/hungry: {note}");
                assert!(note.contains("OOMKilled"), "{note}");
                assert!(note.contains("scanJob.resources.limits.memory"), "{note}");

                let (_, metrics) = controller_get(&release, "/metrics").await?;
                let ooms = metric_value(&metrics, "kubevigil_scan_jobs_oom_killed_total");
                println!("kubevigil_scan_jobs_oom_killed_total {ooms:?}");
                assert!(ooms.is_some_and(|n| n >= 1.0), "{ooms:?}");
                let log = cluster
                    .kubectl([
                        "logs",
                        "-n",
                        &kv_ns,
                        "-l",
                        "app.kubernetes.io/component=controller",
                        "--tail=-1",
                    ])
                    .await?;
                assert!(
                    log.contains("OOMKilled"),
                    "the controller's log names no OOM kill"
                );

                // Not retried: two resyncs later there is still one Job for the target, and it
                // ran one pod (the pod failure policy failed it at once).
                let target = deployment_target(&ns, "hungry");
                let first = jobs_of(&client, &kv_ns, &target).await?;
                let resyncs = resyncs_logged(cluster, &release).await?;
                wait_for(Duration::from_secs(90), "two more resyncs", || async {
                    let n = resyncs_logged(cluster, &release).await?;
                    Ok::<_, BoxError>(if n >= resyncs + 2 {
                        Check::Done(())
                    } else {
                        Check::NotYet(format!("{n} resyncs, from {resyncs}"))
                    })
                })
                .await?;
                let after = jobs_of(&client, &kv_ns, &target).await?;
                println!("scan Jobs of {target} (Job, pods): {after:?}");
                assert_eq!(after, first, "the OOM-killed target was scanned again");
                assert_eq!(after.len(), 1, "{after:?}");
                assert_eq!(after[0].1, 1, "the Job ran its pod again: {after:?}");
                Ok::<(), BoxError>(())
            };
            body.await.map_err(|source| Error::Test {
                namespace: ns.clone(),
                source,
            })
        })
        .await?;
        Ok(())
    })
    .await
}
