//! Issue 17, acceptance 2: with nothing changed, a controller restart and a re-list of the
//! results (the periodic resync) write no result.
//!
//! The proof is the API server's own request counter, `apiserver_request_total` by verb and
//! resource from its `/metrics` (`kubectl get --raw /metrics`), read before and after each step:
//! no `POST`, `PUT`, `PATCH` or `APPLY` on WorkloadConfigurationScans, their Summaries or the
//! namespace ConfigurationScanSummaries. Each "after" is taken on positive signals only: the
//! controller logged the resync (its `"resync"` line, with `"rescans":0`), its queue is empty
//! and no scan Job is active for 3 s, and it has recomputed the namespace summaries that a
//! resync marks (the API server counted their GETs). The counter is cluster-wide: the test
//! expects no other scanner to run on the cluster meanwhile (scenario test binaries run one at a
//! time).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kind_tests::bench::stats::RequestCounts;
use kind_tests::pipeline::{
    controller_get, create_deployment, deployment, kubectl_names, resyncs_logged, scale_controller,
};
use kind_tests::release::{Release, metric_value, with_release};
use kind_tests::scenario::{BoxError, Check, Error, TestCluster, wait_for, with_temp_ns};
use kube::Client;

/// The release's resync period: the re-list of every result.
const RESYNC: Duration = Duration::from_secs(20);

/// The result resources (plural) kubevigil writes.
const RESULT_RESOURCES: [&str; 3] = [
    "workloadconfigurationscans",
    "workloadconfigurationscansummaries",
    "configurationscansummaries",
];

/// The verbs of `apiserver_request_total` that write.
const WRITE_VERBS: [&str; 4] = ["POST", "PUT", "PATCH", "APPLY"];

fn test_err(ns: &str, msg: String) -> Error {
    Error::Test {
        namespace: ns.to_owned(),
        source: msg.into(),
    }
}

async fn apiserver_counts(cluster: &TestCluster) -> Result<RequestCounts, Error> {
    let text = cluster.kubectl(["get", "--raw", "/metrics"]).await?;
    Ok(RequestCounts::from_metrics(&text))
}

/// The writes on result resources in `delta`, as `VERB resource: n`.
fn result_writes(delta: &RequestCounts) -> Vec<String> {
    let mut out = Vec::new();
    for verb in WRITE_VERBS {
        for resource in RESULT_RESOURCES {
            let n = delta.result_requests(&[verb], resource);
            if n != 0.0 {
                out.push(format!("{verb} {resource}: {n}"));
            }
        }
    }
    out
}

/// Waits until `kubectl get wcs` and `kubectl get wcss` in `ns` both list every name of `names`.
async fn wait_results(cluster: &TestCluster, ns: &str, names: &[&str]) -> Result<(), Error> {
    wait_for(
        Duration::from_secs(120),
        &format!("results {names:?} in {ns}"),
        || async move {
            let wcs = kubectl_names(cluster, "wcs", ns, &[]).await?;
            let wcss = kubectl_names(cluster, "wcss", ns, &[]).await?;
            let ok = names.iter().all(|n| wcs.contains(*n) && wcss.contains(*n));
            Ok::<_, BoxError>(if ok {
                Check::Done(())
            } else {
                Check::NotYet(format!("wcs {wcs:?}, wcss {wcss:?}"))
            })
        },
    )
    .await
}

/// Waits until the controller's queue is empty and no scan Job is active, 12 polls (3 s) in a
/// row.
async fn wait_idle(release: &Release) -> Result<(), Error> {
    let quiet = std::sync::atomic::AtomicUsize::new(0);
    let quiet = &quiet;
    wait_for(
        Duration::from_secs(120),
        "the controller to be idle (queue empty, no active Job, for 3 s)",
        || async move {
            use std::sync::atomic::Ordering;
            let (status, body) = controller_get(release, "/metrics").await?;
            let q = metric_value(&body, "kubevigil_queue_depth").unwrap_or(-1.0);
            let a = metric_value(&body, "kubevigil_scan_jobs_active").unwrap_or(-1.0);
            let n = if status == 200 && q == 0.0 && a == 0.0 {
                quiet.fetch_add(1, Ordering::SeqCst) + 1
            } else {
                quiet.store(0, Ordering::SeqCst);
                0
            };
            Ok::<_, BoxError>(if n >= 12 {
                Check::Done(())
            } else {
                Check::NotYet(format!("/metrics {status}: queue {q}, active Jobs {a}"))
            })
        },
    )
    .await
}

/// The last `"resync"` line of the running controller pods' logs.
async fn last_resync_line(cluster: &TestCluster, release: &Release) -> Result<String, Error> {
    let out = cluster
        .kubectl([
            "logs",
            "-n",
            &release.namespace,
            "-l",
            "app.kubernetes.io/component=controller",
            "--tail=-1",
        ])
        .await?;
    Ok(out
        .lines()
        .rfind(|l| l.contains(r#""message":"resync""#))
        .unwrap_or_default()
        .to_owned())
}

/// Waits for the controller to finish what a resync starts: `resyncs` resync lines logged (the
/// last one with no rescan), idle, and at least `summaries` GETs of namespace summaries counted
/// by the API server since `since` (a resync marks every namespace with results; each is
/// recomputed and read before anything would be written).
async fn wait_resync_done(
    cluster: &'static TestCluster,
    release: &Release,
    ns: &str,
    resyncs: usize,
    since: &RequestCounts,
    summaries: f64,
) -> Result<(), Error> {
    wait_for(
        RESYNC * 3,
        &format!("{resyncs} resync lines in the controller's log"),
        || async move {
            let n = resyncs_logged(cluster, release).await?;
            Ok::<_, BoxError>(if n >= resyncs {
                Check::Done(())
            } else {
                Check::NotYet(format!("{n} resync lines"))
            })
        },
    )
    .await?;
    let line = last_resync_line(cluster, release).await?;
    if !line.contains(r#""rescans":0"#) {
        return Err(test_err(
            ns,
            format!("the resync found results to rescan although nothing changed: {line}"),
        ));
    }
    wait_idle(release).await?;
    wait_for(
        Duration::from_secs(60),
        &format!("{summaries} GETs of namespace summaries after the resync"),
        || async move {
            let d = apiserver_counts(cluster).await?.since(since);
            let gets = d.result_requests(&["GET"], "configurationscansummaries");
            Ok::<_, BoxError>(if gets >= summaries {
                Check::Done(())
            } else {
                Check::NotYet(format!(
                    "{gets} GETs; result requests: {}",
                    d.result_verbs_line()
                ))
            })
        },
    )
    .await?;
    Ok(())
}

async fn scenario(client: Client, ns: String) -> Result<(), BoxError> {
    let cluster = TestCluster::shared().await?;
    let release = Release::new(&format!("{ns}-kv"), &[&ns]).set(&format!(
        "continuousScanning.resyncPeriod={}s",
        RESYNC.as_secs()
    ));
    let (release, ns) = (&release, ns.as_str());
    with_release(cluster, release, || async move {
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            create_deployment(&client, ns, &deployment(name, i == 0, 0)?).await?;
        }
        wait_results(cluster, ns, &["deployment-a", "deployment-b", "deployment-c"]).await?;
        // Settled: the first periodic resync after the scans is done and found nothing to do.
        let start = apiserver_counts(cluster).await?;
        let logged = resyncs_logged(cluster, release).await?;
        wait_resync_done(cluster, release, ns, logged + 1, &start, 1.0).await?;
        // The namespaces whose summary a resync recomputes.
        let summaries = cluster
            .kubectl(["get", "configurationscansummaries", "-o", "name"])
            .await?;
        let summaries = summaries
            .lines()
            .filter(|l| {
                let name = l.rsplit('/').next().unwrap_or_default();
                name == ns || name == release.namespace
            })
            .count();
        if summaries == 0 {
            return Err(test_err(ns, "no namespace summary was written".into()));
        }

        // (a) Controller restart: the pod deleted, a new one ready, its startup resync done.
        let before = apiserver_counts(cluster).await?;
        cluster
            .kubectl([
                "delete",
                "pod",
                "-n",
                &release.namespace,
                "-l",
                "app.kubernetes.io/component=controller",
                "--wait=false",
            ])
            .await?;
        scale_controller(cluster, release, 1).await?;
        wait_resync_done(cluster, release, ns, 1, &before, summaries as f64).await?;
        let after = apiserver_counts(cluster).await?;
        let delta = after.since(&before);
        eprintln!(
            "controller restart: result requests {}",
            delta.result_verbs_line()
        );
        let writes = result_writes(&delta);
        if !writes.is_empty() {
            return Err(test_err(
                ns,
                format!(
                    "a controller restart with nothing changed wrote results: {writes:?} (all result requests: {})",
                    delta.result_verbs_line()
                ),
            ));
        }

        // (b) Re-list: the next periodic resync lists every result again.
        let logged = resyncs_logged(cluster, release).await?;
        wait_resync_done(cluster, release, ns, logged + 1, &after, summaries as f64).await?;
        let delta = apiserver_counts(cluster).await?.since(&after);
        eprintln!("re-list: result requests {}", delta.result_verbs_line());
        let writes = result_writes(&delta);
        if !writes.is_empty() {
            return Err(test_err(
                ns,
                format!(
                    "a re-list with nothing changed wrote results: {writes:?} (all result requests: {})",
                    delta.result_verbs_line()
                ),
            ));
        }
        // The positive control: the same counter sees a result write when something changes.
        let before = apiserver_counts(cluster).await?;
        create_deployment(&client, ns, &deployment("d", false, 0)?).await?;
        wait_results(cluster, ns, &["deployment-d"]).await?;
        let delta = apiserver_counts(cluster).await?.since(&before);
        if result_writes(&delta).is_empty() {
            return Err(test_err(
                ns,
                format!(
                    "a new Deployment's results were written but the counter saw no write: {}",
                    delta.result_verbs_line()
                ),
            ));
        }
        eprintln!("new Deployment: result requests {}", delta.result_verbs_line());
        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_restart_or_relist_with_nothing_changed_writes_no_result() {
    with_temp_ns(scenario).await.unwrap();
}
