//! Issue 5, acceptance point 5: 200 Deployments created at once end with 200 correct summaries,
//! never more than `maxConcurrentJobs` scan Jobs active (a watch on the Jobs checks every
//! change, not samples), and at most 200 / `batchSize` + a few Jobs in total. The release only
//! watches Deployments, so that every Job counted is one of the burst's; `batchSize` 25 and
//! `maxConcurrentJobs` 2 make both limits bite. The counts are printed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt as _;
use kind_tests::pipeline::{JobWatch, create_deployment, deployment};
use kind_tests::release::{Release, with_release};
use kind_tests::scenario::{BoxError, Check, Error, TestCluster, wait_for, with_temp_ns};
use kube::Client;
use tokio::time::Instant;

const COUNT: usize = 200;
const BATCH: usize = 25;
const MAX_JOBS: usize = 2;
/// Jobs allowed beyond COUNT / BATCH: the first small batches before the backlog builds up.
const SLACK: usize = 4;

/// `kubectl get wcss -n NS`: name to the status of C-0057.
async fn c0057_by_name(cluster: &TestCluster, ns: &str) -> Result<BTreeMap<String, String>, Error> {
    kind_tests::pipeline::wcss_field_by_name(cluster, ns, ".spec.controls.C-0057.status.status")
        .await
}

async fn burst(client: Client, ns: String) -> Result<(), BoxError> {
    let cluster = TestCluster::shared().await?;
    let release = Release::new(&format!("{ns}-kv"), &[&ns])
        .set(&format!("scanJob.batchSize={BATCH}"))
        .set(&format!("scanJob.maxConcurrentJobs={MAX_JOBS}"))
        .set_json(
            r#"continuousScanning.matchingRules=[{"apiGroups":["apps"],"apiVersions":["v1"],"resources":["deployments"]}]"#,
        );
    with_release(cluster, &release, || async {
        let jobs = JobWatch::start(client.clone(), &release.namespace).await?;
        let before = jobs.stats().seen.len();
        let started = Instant::now();
        let created: Vec<Result<_, Error>> = futures::stream::iter(0..COUNT)
            .map(|i| {
                let client = client.clone();
                let ns = ns.clone();
                async move {
                    let d = deployment(&format!("burst-{i:03}"), i % 2 == 0, 0)?;
                    create_deployment(&client, &ns, &d).await
                }
            })
            .buffer_unordered(50)
            .collect()
            .await;
        for c in created {
            c?;
        }
        let create_time = started.elapsed();

        let want: BTreeMap<String, String> = (0..COUNT)
            .map(|i| {
                (
                    format!("deployment-burst-{i:03}"),
                    if i % 2 == 0 { "failed" } else { "passed" }.to_owned(),
                )
            })
            .collect();
        let want = &want;
        let ns_ref = ns.as_str();
        wait_for(
            Duration::from_secs(300),
            &format!("{COUNT} wcss with the right C-0057 status"),
            || async move {
                let got = c0057_by_name(cluster, ns_ref).await?;
                let right = want.iter().filter(|(n, s)| got.get(*n) == Some(*s)).count();
                Ok::<_, BoxError>(if right == COUNT && got.len() == COUNT {
                    Check::Done(())
                } else {
                    Check::NotYet(format!("{right} of {COUNT} right, {} listed", got.len()))
                })
            },
        )
        .await?;
        let done = started.elapsed();
        // Let any late Job show up before counting.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let stats = jobs.stats();
        let total = stats.created.len();
        let bound = COUNT.div_ceil(BATCH) + SLACK;
        let sizes: Vec<usize> = stats
            .created
            .iter()
            .map(|j| stats.seen.get(j).map_or(0, Vec::len))
            .collect();
        eprintln!(
            "burst of {COUNT} Deployments (batchSize {BATCH}, maxConcurrentJobs {MAX_JOBS}): \
             created in {create_time:?}, {COUNT} correct summaries after {done:?}; \
             scan Jobs: {total} in total (bound {bound}; {before} before the burst), \
             at most {} active at once; targets per Job: {sizes:?}",
            stats.max_active
        );
        let err = |msg: String| Error::Test {
            namespace: ns.clone(),
            source: msg.into(),
        };
        if stats.max_active > MAX_JOBS {
            return Err(err(format!(
                "{} scan Jobs were active at once (maxConcurrentJobs {MAX_JOBS})",
                stats.max_active
            )));
        }
        if total > bound {
            return Err(err(format!(
                "{total} scan Jobs for {COUNT} targets (bound {bound})"
            )));
        }
        if sizes.iter().any(|&n| n > BATCH) {
            return Err(err(format!("a Job scanned more than {BATCH}: {sizes:?}")));
        }
        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_burst_of_200_deployments_is_scanned_in_bounded_batches() -> Result<(), Error> {
    with_temp_ns(burst).await
}
