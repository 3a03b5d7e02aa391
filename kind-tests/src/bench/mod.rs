//! `kv-bench`: kubevigil's cluster benchmark. It prints figures; it passes or fails nothing.
//!
//! Everything runs on the local real control plane with kubevigil installed by its Helm chart
//! ([`Release`]); the node's containerd runs the controller and the scan Jobs in containers,
//! and the controller's memory and CPU are read from `/proc/<pid>` of its containerd task (a
//! container's process is a host process seen from the host's PID namespace). Workloads are
//! Deployments with zero replicas labelled `kubevigil-bench=workload`, 100 per namespace in
//! namespaces `kvb-00`, `kvb-01`...: they exist in etcd and are watched and scanned like any
//! other, without running pods.
//!
//! Phases (`kv-bench all`, or `--phases` to pick):
//! - `scan-job`: one `scan-job run` of 50 targets on the host, outside the cluster
//!   (`/usr/bin/time`), cold (no results yet) and warm (results unchanged).
//! - `1k`, `2k`, `10k`: initial scan of N workloads that exist before the controller starts:
//!   time from `helm install` to every summary current (its fingerprint annotation equals the
//!   live Deployment's), scan Jobs, API server requests (delta of `apiserver_request_total`),
//!   controller peak RSS (`VmHWM`) and steady RSS (`VmRSS` once the queue is empty); at 10k also
//!   CPU seconds over an idle window.
//! - `latency` (with the 2k release): change-to-updated-summary of single-object label edits,
//!   issued at a fixed rate, p50/p95/p99.
//! - `churn` (with the 2k release): a rollout of a 50-replica Deployment; scan Jobs of that
//!   Deployment and other Jobs created after the rollout started.
//! - `write-limit` (after each initial scan): the results that scan wrote, copied into mirror
//!   namespaces by one client at the scan Jobs' total write concurrency with `POST`s; its wall
//!   time is the API server's write limit for that work ([`write_limit`]). At the 2k phase it
//!   also times the same objects server-side applied as new objects, and applied again
//!   unchanged.

pub mod stats;
pub mod timeline;
pub mod write_limit;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{
    DeleteParams, ListParams, ObjectMeta, PartialObjectMeta, Patch, PatchParams, PostParams,
};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use kubevigil_crds::identity::{annotations, object_fingerprint_with_spec, spec_hash};
use kubevigil_crds::{WorkloadConfigurationScan, WorkloadConfigurationScanSummary};
use serde_json::json;
use tokio::time::Instant;

use crate::release::{Release, SCAN_JOB_SELECTOR};
use crate::scenario::{self, TestCluster, probe_image};
use stats::{ProcMem, RequestCounts, Table, USER_HZ, mib, percentile, secs};

/// Label of every benchmark workload.
pub const WORKLOAD_LABEL: &str = "kubevigil-bench";
/// Workloads per benchmark namespace.
pub const PER_NAMESPACE: usize = 100;
/// Namespace of the churn Deployment.
pub const CHURN_NS: &str = "kvb-churn";
/// Replicas of the churn Deployment.
pub const CHURN_REPLICAS: i32 = 50;
/// The Jobs' targets annotation (controller/src/jobs.rs).
const TARGETS_ANNOTATION: &str = "kubevigil.io/targets";

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The scenario scaffold (cluster, kubectl, helm, bounded waits) failed.
    #[error(transparent)]
    Scenario(#[from] scenario::Error),
    /// An API call failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The API error.
        source: kube::Error,
    },
    /// A local file or process failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Something the benchmark needs did not happen.
    #[error("{0}")]
    Bench(String),
}

fn kube_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Kube { action, source }
}

/// The benchmark namespace number `i`.
pub fn bench_ns(i: usize) -> String {
    format!("kvb-{i:02}")
}

/// The result name of Deployment `name` (identity::Target::result_name for a Deployment).
fn summary_name(deployment: &str) -> String {
    format!("deployment-{deployment}")
}

/// Options of a benchmark run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Phases to run.
    pub phases: Vec<String>,
    /// Edits of the latency phase.
    pub edits: usize,
    /// Pause between two edits (open loop: edits do not wait for each other).
    pub edit_interval: Duration,
    /// Idle window of the CPU measurement (at the largest scale).
    pub idle: Duration,
    /// The `scan-job` binary of the scan-job phase.
    pub scan_job_bin: PathBuf,
    /// Largest scale, in workloads (a multiple of 100).
    pub max_workloads: usize,
    /// Writes in flight of the write-limit phase.
    pub write_concurrency: usize,
    /// Chart values (`key=value`) set on every release, beside the benchmark's own.
    pub sets: Vec<String>,
}

/// Figures of one initial-scan run.
#[derive(Clone, Debug, Default)]
pub struct ScaleFigures {
    /// Watched benchmark workloads.
    pub workloads: usize,
    /// `helm install` start to every summary current.
    pub initial_scan: Duration,
    /// Scan Jobs created.
    pub jobs: usize,
    /// Target scans started (controller metric; includes Namespaces, ServiceAccounts, RBAC).
    pub targets_scanned: f64,
    /// API server requests during the scan.
    pub requests: RequestCounts,
    /// Controller memory once the queue was empty.
    pub mem: ProcMem,
    /// Controller memory after the idle window, when measured.
    pub mem_after_idle: Option<ProcMem>,
    /// CPU seconds over the idle window, when measured.
    pub idle_cpu: Option<(Duration, f64)>,
    /// The controller's executable (shows whether the release build ran).
    pub controller_exe: String,
    /// The write-limit phase on the results of this scan, when run.
    pub write_limit: Option<write_limit::WriteLimitFigures>,
    /// Where the scan's time went between its Jobs.
    pub job_timeline: timeline::JobTimeline,
}

/// Figures of the latency phase.
#[derive(Clone, Debug, Default)]
pub struct LatencyFigures {
    /// Change-to-updated-summary of each edit that completed.
    pub samples: Vec<Duration>,
    /// Edits whose summary was not updated in time.
    pub timed_out: usize,
    /// Scan Jobs created during the phase.
    pub jobs: usize,
    /// From each scan Job's creation to its pod Running (both as the watches saw them).
    pub pod_start: Vec<Duration>,
}

/// Figures of the churn phase.
#[derive(Clone, Debug, Default)]
pub struct ChurnFigures {
    /// Jobs scanning the rolled-out Deployment, created after the rollout started.
    pub deployment_scans: usize,
    /// Other Jobs created after the rollout started.
    pub other_jobs: usize,
    /// Rollout start to new generation available.
    pub rollout: Duration,
}

/// Figures of the scan-job phase.
#[derive(Clone, Debug, Default)]
pub struct ScanJobFigures {
    /// Targets in the batch.
    pub targets: usize,
    /// Wall time and peak RSS (KiB) with no prior results.
    pub cold: (Duration, u64),
    /// Wall time and peak RSS (KiB) with unchanged results.
    pub warm: (Duration, u64),
}

/// All figures of a run.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// Initial scans, by scale.
    pub scale: Vec<ScaleFigures>,
    /// Latency phase.
    pub latency: Option<LatencyFigures>,
    /// Churn phase.
    pub churn: Option<ChurnFigures>,
    /// scan-job phase.
    pub scan_job: Option<ScanJobFigures>,
}

/// The benchmark: a cluster and a client.
pub struct Bench {
    cluster: &'static TestCluster,
    client: Client,
    opts: Options,
}

impl Bench {
    /// Connects to the cluster of `KUBECONFIG` (or boots the local one).
    pub async fn connect(opts: Options) -> Result<Self, Error> {
        let cluster = TestCluster::shared().await?;
        let client = cluster.client().await?;
        Ok(Bench {
            cluster,
            client,
            opts,
        })
    }

    /// The releases' `scanJob.maxConcurrentJobs` (the chart's default unless `--set`).
    fn max_concurrent_jobs(&self) -> usize {
        self.opts
            .sets
            .iter()
            .rev()
            .find_map(|s| s.strip_prefix("scanJob.maxConcurrentJobs="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(5)
    }

    fn wants(&self, phase: &str) -> bool {
        self.opts.phases.iter().any(|p| p == phase || p == "all")
    }

    /// Runs the selected phases and returns their figures (printing progress to stderr).
    pub async fn run(&self) -> Result<Figures, Error> {
        let mut figures = Figures::default();
        let base: Vec<String> = (0..20).map(bench_ns).collect();
        eprintln!(
            "kv-bench: creating 2,000 workloads in {} namespaces",
            base.len()
        );
        let t = Instant::now();
        self.ensure_workloads(0..20).await?;
        self.ensure_namespace(CHURN_NS).await?;
        self.wait_deployments_observed(Duration::from_secs(1800))
            .await?;
        eprintln!("kv-bench: workloads ready in {}", secs(t.elapsed()));

        if self.wants("scan-job") {
            figures.scan_job = Some(self.scan_job_phase().await?);
            eprintln!("kv-bench: scan-job: {:?}", figures.scan_job);
        }
        if self.wants("1k") {
            let ns: Vec<String> = (0..10).map(bench_ns).collect();
            let release = self.release("kvb-r1k", &ns);
            let f = self
                .with_release(&release, || self.initial_scan(&release, &ns, None))
                .await?;
            eprintln!("kv-bench: 1k: {f:?}");
            figures.scale.push(f);
        }
        if self.wants("2k") || self.wants("latency") || self.wants("churn") {
            let mut include = base.clone();
            include.push(CHURN_NS.to_owned());
            let release = self.release("kvb-r2k", &include);
            let (f, lat, churn) = self
                .with_release(&release, || async {
                    let f = self.initial_scan(&release, &base, None).await?;
                    eprintln!("kv-bench: 2k: {f:?}");
                    let lat = if self.wants("latency") {
                        Some(self.latency_phase(&release, &base).await?)
                    } else {
                        None
                    };
                    let churn = if self.wants("churn") {
                        Some(self.churn_phase(&release).await?)
                    } else {
                        None
                    };
                    Ok((f, lat, churn))
                })
                .await?;
            figures.scale.push(f);
            figures.latency = lat;
            figures.churn = churn;
        }
        if self.wants("10k") {
            let n = self.opts.max_workloads / PER_NAMESPACE;
            eprintln!("kv-bench: creating workloads up to {}", n * PER_NAMESPACE);
            let t = Instant::now();
            self.ensure_workloads(0..n).await?;
            self.wait_deployments_observed(Duration::from_secs(3600))
                .await?;
            eprintln!("kv-bench: workloads ready in {}", secs(t.elapsed()));
            let ns: Vec<String> = (0..n).map(bench_ns).collect();
            let release = self.release("kvb-r10k", &ns);
            let f = self
                .with_release(&release, || {
                    self.initial_scan(&release, &ns, Some(self.opts.idle))
                })
                .await?;
            eprintln!("kv-bench: 10k: {f:?}");
            figures.scale.push(f);
        }
        Ok(figures)
    }

    fn release(&self, name: &str, include: &[String]) -> Release {
        let refs: Vec<&str> = include.iter().map(String::as_str).collect();
        self.opts
            .sets
            .iter()
            .fold(Release::new(name, &refs), |r, set| r.set(set))
    }

    /// Runs `body` with `release` installed; uninstalls it afterwards, whatever happened.
    async fn with_release<F, Fut, T>(&self, release: &Release, body: F) -> Result<T, Error>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let outcome = body().await;
        if outcome.is_err() {
            eprintln!("{}", release.dump(self.cluster).await);
        }
        release.uninstall(self.cluster).await;
        // The next release starts from an idle node: wait for this controller to be gone.
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &release.namespace);
        let _ = scenario::wait_for(
            Duration::from_secs(120),
            &format!("the pods of {} to be gone", release.name),
            || {
                let pods = pods.clone();
                async move {
                    let n = pods
                        .list_metadata(&ListParams::default())
                        .await?
                        .items
                        .len();
                    Ok::<_, scenario::BoxError>(if n == 0 {
                        scenario::Check::Done(())
                    } else {
                        scenario::Check::NotYet(format!("{n} pods"))
                    })
                }
            },
        )
        .await;
        outcome
    }

    async fn ensure_namespace(&self, name: &str) -> Result<(), Error> {
        ensure_namespace(&self.client, name, "namespace").await
    }

    /// Creates namespaces `kvb-<i>` for `range` and their 100 Deployments each, 64 creates in
    /// flight; objects that exist are kept.
    pub async fn ensure_workloads(&self, range: std::ops::Range<usize>) -> Result<(), Error> {
        for i in range.clone() {
            self.ensure_namespace(&bench_ns(i)).await?;
        }
        let items: Vec<(String, usize)> = range
            .flat_map(|i| (0..PER_NAMESPACE).map(move |j| (bench_ns(i), j)))
            .collect();
        let image = probe_image();
        futures::stream::iter(items)
            .map(|(ns, j)| {
                let client = self.client.clone();
                let image = image.clone();
                async move {
                    let name = format!("w-{j:03}");
                    let d: Deployment = serde_json::from_value(json!({
                        "metadata": {"name": name, "labels": {WORKLOAD_LABEL: "workload"}},
                        "spec": {
                            "replicas": 0,
                            "selector": {"matchLabels": {"app": name}},
                            "template": {
                                "metadata": {"labels": {"app": name}},
                                "spec": {"containers": [{
                                    "name": "main", "image": image, "args": ["sleep"],
                                    "securityContext": {"privileged": j % 10 == 0},
                                }]},
                            },
                        },
                    }))
                    .map_err(|e| Error::Bench(format!("building deployment {name}: {e}")))?;
                    let api: Api<Deployment> = Api::namespaced(client, &ns);
                    match api.create(&PostParams::default(), &d).await {
                        Ok(_) => Ok(()),
                        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                        Err(e) => Err(kube_err(format!("creating deployment {ns}/{name}"))(e)),
                    }
                }
            })
            .buffer_unordered(64)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// Waits until kube-controller-manager has caught up with the benchmark Deployments (each
    /// one's `status.observedGeneration` reached its generation, so its ReplicaSet exists):
    /// otherwise the controller's own Deployment queues behind thousands of them and gets no
    /// pod within Helm's timeout. Polls every 10 s from the API server's watch cache, printing
    /// progress.
    pub async fn wait_deployments_observed(&self, timeout: Duration) -> Result<(), Error> {
        let api: Api<Deployment> = Api::all(self.client.clone());
        let lp = ListParams::default()
            .labels(&format!("{WORKLOAD_LABEL}=workload"))
            .match_any();
        let t0 = Instant::now();
        loop {
            let list = api
                .list(&lp)
                .await
                .map_err(kube_err("listing the benchmark Deployments"))?;
            let total = list.items.len();
            let observed = list
                .items
                .iter()
                .filter(|d| {
                    let observed = d.status.as_ref().and_then(|s| s.observed_generation);
                    observed.is_some() && observed >= d.metadata.generation
                })
                .count();
            if observed == total {
                return Ok(());
            }
            if t0.elapsed() >= timeout {
                return Err(Error::Bench(format!(
                    "kube-controller-manager observed {observed} of {total} benchmark Deployments after {}",
                    secs(timeout)
                )));
            }
            eprintln!(
                "kv-bench: kube-controller-manager has observed {observed}/{total} Deployments after {}",
                secs(t0.elapsed())
            );
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    }

    /// Deletes every scan result in `namespaces`, so that the next controller starts cold.
    async fn clear_results(&self, namespaces: &[String]) -> Result<(), Error> {
        for ns in namespaces {
            let dp = DeleteParams::default();
            let lp = ListParams::default();
            let wcs: Api<WorkloadConfigurationScan> = Api::namespaced(self.client.clone(), ns);
            // 404: the CRDs are not installed yet (no release so far), so there is nothing to clear.
            match wcs.delete_collection(&dp, &lp).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
                Err(e) => return Err(kube_err(format!("deleting the scans in {ns}"))(e)),
            }
            let wcss: Api<WorkloadConfigurationScanSummary> =
                Api::namespaced(self.client.clone(), ns);
            wcss.delete_collection(&dp, &lp)
                .await
                .map_err(kube_err(format!("deleting the summaries in {ns}")))?;
        }
        Ok(())
    }

    /// The expected summaries of the workloads in `namespaces`: (namespace, summary name) →
    /// fingerprint of the live Deployment.
    async fn expected_summaries(
        &self,
        namespaces: &[String],
    ) -> Result<HashMap<(String, String), String>, Error> {
        let wanted: HashSet<&str> = namespaces.iter().map(String::as_str).collect();
        let api: Api<Deployment> = Api::all(self.client.clone());
        let mut out = HashMap::new();
        let mut lp = ListParams::default()
            .labels(&format!("{WORKLOAD_LABEL}=workload"))
            .limit(500);
        loop {
            let page = api
                .list(&lp)
                .await
                .map_err(kube_err("listing the benchmark Deployments"))?;
            for d in page.items {
                let ns = d.metadata.namespace.clone().unwrap_or_default();
                if !wanted.contains(ns.as_str()) {
                    continue;
                }
                let name = d.metadata.name.clone().unwrap_or_default();
                out.insert((ns, summary_name(&name)), deployment_fingerprint(&d)?);
            }
            match page.metadata.continue_ {
                Some(t) if !t.is_empty() => lp = lp.continue_token(&t),
                _ => return Ok(out),
            }
        }
    }

    /// The controller container's host PID (containerd's task for its container ID).
    async fn controller_pid(&self, release: &Release) -> Result<u32, Error> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &release.namespace);
        let node = crate::cluster::StateDir::from_env()
            .map_err(|e| Error::Bench(format!("the local cluster's state directory: {e}")))?
            .node();
        let found = scenario::wait_for(
            Duration::from_secs(120),
            &format!("the controller process of {}", release.name),
            || {
                let pods = pods.clone();
                let node = node.clone();
                async move {
                    let list = pods
                        .list(
                            &ListParams::default().labels("app.kubernetes.io/component=controller"),
                        )
                        .await?;
                    let pid = list.items.iter().find_map(|p| {
                        p.status
                            .as_ref()?
                            .container_statuses
                            .as_ref()?
                            .iter()
                            .filter(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
                            .find_map(|c| c.container_id.as_deref())
                            .and_then(|id| crate::node::container_pid(&node, id))
                    });
                    Ok::<_, scenario::BoxError>(match pid {
                        Some(pid) => scenario::Check::Done(pid),
                        None => scenario::Check::NotYet(format!("{} pods", list.items.len())),
                    })
                }
            },
        )
        .await?;
        Ok(found)
    }

    async fn apiserver_requests(&self) -> Result<RequestCounts, Error> {
        let req = http::Request::get("/metrics")
            .body(Vec::new())
            .map_err(|e| Error::Bench(format!("building the /metrics request: {e}")))?;
        let text = self
            .client
            .request_text(req)
            .await
            .map_err(kube_err("reading the API server's /metrics"))?;
        Ok(RequestCounts::from_metrics(&text))
    }

    /// Initial scan of the workloads in `namespaces`: clears their results, installs `release`,
    /// waits until every summary is current, and measures. With `idle`, also the CPU seconds of
    /// the controller over that idle window.
    async fn initial_scan(
        &self,
        release: &Release,
        namespaces: &[String],
        idle: Option<Duration>,
    ) -> Result<ScaleFigures, Error> {
        self.clear_results(namespaces).await?;
        let expected = self.expected_summaries(namespaces).await?;
        let workloads = expected.len();
        eprintln!(
            "kv-bench: {}: initial scan of {workloads} workloads in {} namespaces",
            release.name,
            namespaces.len()
        );
        let summaries = SummaryWatch::start(self.client.clone());
        summaries.expect_all(expected.clone());
        let jobs = JobWatch::start(self.client.clone(), &release.namespace);
        let before = self.apiserver_requests().await?;
        let t0 = Instant::now();
        let t0_wall = k8s_openapi::jiff::Timestamp::now();
        release.install(self.cluster).await?;
        let pid = self.controller_pid(release).await?;
        let controller_exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|e| format!("(unreadable: {e})"));
        summaries
            .wait_all(Duration::from_secs(3600), || {
                eprintln!(
                    "kv-bench: {}: {}/{workloads} current after {}, {} Jobs",
                    release.name,
                    summaries.current_count(),
                    secs(t0.elapsed()),
                    jobs.count()
                );
            })
            .await?;
        let initial_scan = t0.elapsed();
        let after = self.apiserver_requests().await?;
        let job_count = jobs.count();
        // Creation times have whole seconds: the Jobs of this scan are those of its first second on.
        let since = t0_wall
            .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(1))
            .unwrap_or(t0_wall);
        let job_timeline = timeline::read(
            &self.client,
            &release.namespace,
            since,
            initial_scan.as_secs_f64(),
            self.max_concurrent_jobs(),
        )
        .await?;
        eprintln!("kv-bench: {}: scan Jobs {job_timeline:?}", release.name);
        eprintln!(
            "kv-bench: {}: every summary current after {}",
            release.name,
            secs(initial_scan)
        );
        // Steady: the controller has nothing queued and no Job running.
        self.wait_controller_idle(release, Duration::from_secs(300))
            .await?;
        let metrics = controller_metrics(&self.client, release)
            .await
            .unwrap_or_default();
        let series = |prefix: &str| {
            metrics
                .lines()
                .filter(|l| l.starts_with(prefix) && !l.starts_with('#'))
                .count()
        };
        eprintln!(
            "kv-bench: {}: /metrics series: {} posture (kubevigil_posture_*), {} in all, at {workloads} workloads",
            release.name,
            series("kubevigil_posture_"),
            series("kubevigil_")
        );
        let mem = proc_mem(pid)?;
        let (idle_cpu, mem_after_idle) = match idle {
            Some(window) => {
                eprintln!("kv-bench: {}: idle for {}", release.name, secs(window));
                let t = proc_ticks(pid)?;
                tokio::time::sleep(window).await;
                let used = (proc_ticks(pid)? - t) as f64 / USER_HZ;
                (Some((window, used)), Some(proc_mem(pid)?))
            }
            None => (None, None),
        };
        let write_limit = if self.wants("write-limit") {
            // What the scan wrote: the scale's namespaces and, for cluster-scoped targets, the
            // install namespace.
            let mut wrote = namespaces.to_vec();
            wrote.push(release.namespace.clone());
            let f = write_limit::run(
                &self.client,
                &wrote,
                self.opts.write_concurrency,
                // The other write choices once, at the 2k phase.
                release.name == "kvb-r2k",
                async || self.apiserver_requests().await,
            )
            .await?;
            eprintln!("kv-bench: {}: write limit {f:?}", release.name);
            Some(f)
        } else {
            None
        };
        Ok(ScaleFigures {
            workloads,
            initial_scan,
            jobs: job_count,
            targets_scanned: stats::metric_value(&metrics, "kubevigil_scans_started")
                .unwrap_or(f64::NAN),
            requests: after.since(&before),
            mem,
            mem_after_idle,
            idle_cpu,
            controller_exe,
            write_limit,
            job_timeline,
        })
    }

    /// Waits until the controller has reported an empty queue and no active Job for 3 s
    /// without interruption (polled every 250 ms).
    async fn wait_controller_idle(
        &self,
        release: &Release,
        timeout: Duration,
    ) -> Result<(), Error> {
        let quiet = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        scenario::wait_for(timeout, "the controller to be idle", || {
            let quiet = quiet.clone();
            async move {
                use std::sync::atomic::Ordering;
                let m = controller_metrics(&self.client, release).await?;
                let q = stats::metric_value(&m, "kubevigil_queue_depth").unwrap_or(-1.0);
                let a = stats::metric_value(&m, "kubevigil_scan_jobs_active").unwrap_or(-1.0);
                let n = if q == 0.0 && a == 0.0 {
                    quiet.fetch_add(1, Ordering::SeqCst) + 1
                } else {
                    quiet.store(0, Ordering::SeqCst);
                    0
                };
                Ok::<_, scenario::BoxError>(if n >= 12 {
                    scenario::Check::Done(())
                } else {
                    scenario::Check::NotYet(format!("queue {q}, active Jobs {a}"))
                })
            }
        })
        .await?;
        Ok(())
    }

    /// Label edits of distinct workloads, one every `edit_interval`; each measured from the
    /// edit to its summary carrying the new fingerprint.
    async fn latency_phase(
        &self,
        release: &Release,
        namespaces: &[String],
    ) -> Result<LatencyFigures, Error> {
        let n = self.opts.edits;
        eprintln!(
            "kv-bench: latency: {n} edits, one every {}",
            secs(self.opts.edit_interval)
        );
        let summaries = SummaryWatch::start(self.client.clone());
        let jobs = JobWatch::start(self.client.clone(), &release.namespace);
        let pod_start = PodStartWatch::start(self.client.clone(), &release.namespace);
        summaries.wait_synced(Duration::from_secs(120)).await?;
        let jobs_before = jobs.count();
        let known_jobs = jobs.names();
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let ns = namespaces[i % namespaces.len()].clone();
            let name = format!("w-{:03}", (i / namespaces.len()) % PER_NAMESPACE);
            let client = self.client.clone();
            let summaries = summaries.clone();
            tasks.push(tokio::spawn(async move {
                let api: Api<Deployment> = Api::namespaced(client, &ns);
                let patch =
                    json!({"metadata": {"labels": {"kubevigil-bench/edit": i.to_string()}}});
                let t0 = Instant::now();
                let d = api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(kube_err(format!("editing {ns}/{name}")))?;
                let fp = deployment_fingerprint(&d)?;
                Ok::<_, Error>(
                    summaries
                        .wait_fingerprint(
                            (ns, summary_name(&name)),
                            fp,
                            t0,
                            Duration::from_secs(120),
                        )
                        .await,
                )
            }));
            tokio::time::sleep(self.opts.edit_interval).await;
        }
        let mut figures = LatencyFigures::default();
        for t in tasks {
            match t.await {
                Ok(Ok(Some(d))) => figures.samples.push(d),
                Ok(Ok(None)) => figures.timed_out += 1,
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(Error::Bench(format!("an edit task failed: {e}"))),
            }
        }
        figures.jobs = jobs.count() - jobs_before;
        figures.pod_start = pod_start.samples(&known_jobs);
        Ok(figures)
    }

    /// A rollout of a 50-replica Deployment (pods run the probe image); counts the Jobs
    /// created after the rollout started.
    async fn churn_phase(&self, release: &Release) -> Result<ChurnFigures, Error> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), CHURN_NS);
        let name = "churn";
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "replicas": CHURN_REPLICAS,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "terminationGracePeriodSeconds": 2,
                        "containers": [{"name": "main", "image": probe_image(), "args": ["sleep"]}],
                    },
                },
            },
        }))
        .map_err(|e| Error::Bench(format!("building the churn deployment: {e}")))?;
        let _ = api.delete(name, &DeleteParams::default()).await;
        let summaries = SummaryWatch::start(self.client.clone());
        let jobs = JobWatch::start(self.client.clone(), &release.namespace);
        summaries.wait_synced(Duration::from_secs(120)).await?;
        let created = scenario::wait_for(
            Duration::from_secs(60),
            "creating the churn deployment",
            || {
                let api = api.clone();
                let d = d.clone();
                async move {
                    Ok::<_, scenario::BoxError>(scenario::Check::Done(
                        api.create(&PostParams::default(), &d).await?,
                    ))
                }
            },
        )
        .await?;
        eprintln!("kv-bench: churn: waiting for {CHURN_REPLICAS} replicas and the first scan");
        wait_rollout(&api, name, Duration::from_secs(600)).await?;
        let fp = deployment_fingerprint(&created)?;
        summaries
            .wait_fingerprint(
                (CHURN_NS.into(), summary_name(name)),
                fp,
                Instant::now(),
                Duration::from_secs(300),
            )
            .await
            .ok_or_else(|| {
                Error::Bench("the churn deployment's first summary never came".into())
            })?;
        self.wait_controller_idle(release, Duration::from_secs(300))
            .await?;
        let before: HashSet<String> = jobs.names();
        eprintln!("kv-bench: churn: rolling out");
        let t0 = Instant::now();
        let patch = json!({"spec": {"template": {"metadata": {"annotations": {"kubevigil-bench/rollout": "1"}}}}});
        let rolled = api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(kube_err("rolling out the churn deployment"))?;
        wait_rollout(&api, name, Duration::from_secs(600)).await?;
        let rollout = t0.elapsed();
        summaries
            .wait_fingerprint(
                (CHURN_NS.into(), summary_name(name)),
                deployment_fingerprint(&rolled)?,
                t0,
                Duration::from_secs(300),
            )
            .await
            .ok_or_else(|| Error::Bench("the rolled-out deployment was never rescanned".into()))?;
        // The positive signal before counting: the controller has processed the rollout's
        // events (queue empty, no Job active, twice in a row over several seconds).
        self.wait_controller_idle(release, Duration::from_secs(300))
            .await?;
        let target = format!("apps/v1/deployments/Deployment/{CHURN_NS}/{name}");
        let (mut mine, mut other) = (0, 0);
        for (job, targets) in jobs.all() {
            if before.contains(&job) {
                continue;
            }
            if targets.contains(&target) {
                mine += 1;
            } else {
                other += 1;
                eprintln!("kv-bench: churn: other Job {job}: {targets:?}");
            }
        }
        let _ = api.delete(name, &DeleteParams::default()).await;
        Ok(ChurnFigures {
            deployment_scans: mine,
            other_jobs: other,
            rollout,
        })
    }

    /// `scan-job run` of 50 workloads on the host (outside the cluster), twice.
    async fn scan_job_phase(&self) -> Result<ScanJobFigures, Error> {
        // No release has installed the result CRDs yet on a fresh cluster.
        let crds = crate::cluster::repo_root().join("charts/kubevigil/crds");
        self.cluster
            .kubectl(["apply", "--server-side", "-f", &crds.display().to_string()])
            .await?;
        self.cluster
            .kubectl([
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "-f",
                &crds.display().to_string(),
            ])
            .await?;
        let ns = bench_ns(0);
        self.clear_results(std::slice::from_ref(&ns)).await?;
        let targets: Vec<String> = (0..50)
            .map(|j| format!("--target=apps/v1/deployments/Deployment/{ns}/w-{j:03}"))
            .collect();
        let cold =
            run_scan_job(&self.opts.scan_job_bin, self.cluster.kubeconfig(), &targets).await?;
        let warm =
            run_scan_job(&self.opts.scan_job_bin, self.cluster.kubeconfig(), &targets).await?;
        Ok(ScanJobFigures {
            targets: targets.len(),
            cold,
            warm,
        })
    }

    /// Deletes every benchmark namespace.
    pub async fn cleanup(&self) -> Result<(), Error> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let list = api
            .list_metadata(&ListParams::default().labels(WORKLOAD_LABEL))
            .await
            .map_err(kube_err("listing the benchmark namespaces"))?;
        for ns in list.items {
            let name = ns.metadata.name.unwrap_or_default();
            let _ = api.delete(&name, &DeleteParams::default()).await;
        }
        Ok(())
    }
}

/// The fingerprint the results of `d` carry when current: Deployments are a scalable kind, so
/// it covers the spec without `replicas` (`kubevigil_crds::identity::spec_hash`), not the
/// generation.
fn deployment_fingerprint(d: &Deployment) -> Result<String, Error> {
    let spec = serde_json::to_value(&d.spec).map_err(|e| {
        Error::Bench(format!(
            "serializing the spec of deployment {}: {e}",
            d.metadata.name.as_deref().unwrap_or_default()
        ))
    })?;
    Ok(object_fingerprint_with_spec(
        &d.metadata,
        Some(&spec_hash(&spec)),
    ))
}

async fn wait_rollout(api: &Api<Deployment>, name: &str, timeout: Duration) -> Result<(), Error> {
    scenario::wait_for(timeout, &format!("deployment {name} rolled out"), || {
        let api = api.clone();
        async move {
            let d = api.get(name).await?;
            let generation = d.metadata.generation.unwrap_or(0);
            let s = d.status.unwrap_or_default();
            let done = s.observed_generation.unwrap_or(0) >= generation
                && s.updated_replicas == Some(CHURN_REPLICAS)
                && s.replicas == Some(CHURN_REPLICAS)
                && s.available_replicas == Some(CHURN_REPLICAS);
            Ok::<_, scenario::BoxError>(if done {
                scenario::Check::Done(())
            } else {
                scenario::Check::NotYet(format!(
                    "updated {:?}, replicas {:?}, available {:?}",
                    s.updated_replicas, s.replicas, s.available_replicas
                ))
            })
        }
    })
    .await?;
    Ok(())
}

/// Runs `scan-job run` under `/usr/bin/time`: wall time and peak RSS in KiB.
async fn run_scan_job(
    bin: &Path,
    kubeconfig: &Path,
    targets: &[String],
) -> Result<(Duration, u64), Error> {
    let t0 = Instant::now();
    let out = tokio::process::Command::new("/usr/bin/time")
        .arg("-f")
        .arg("KVBENCH %e %M")
        .arg(bin)
        .args(["run", "--install-namespace=kvb-sj", "--cluster-name=local"])
        .args(targets)
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| Error::Io {
            what: format!("running {}", bin.display()),
            source,
        })?;
    let wall = t0.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(Error::Bench(format!("scan-job run failed: {stderr}")));
    }
    let rss = stderr
        .lines()
        .find_map(|l| l.strip_prefix("KVBENCH "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<u64>().ok())
        .ok_or_else(|| Error::Bench(format!("no peak RSS from /usr/bin/time in: {stderr}")))?;
    Ok((wall, rss))
}

fn proc_mem(pid: u32) -> Result<ProcMem, Error> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        what: format!("reading {path}"),
        source,
    })?;
    stats::parse_proc_status(&text).ok_or_else(|| Error::Bench(format!("no VmRSS/VmHWM in {path}")))
}

fn proc_ticks(pid: u32) -> Result<u64, Error> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        what: format!("reading {path}"),
        source,
    })?;
    stats::parse_proc_stat_ticks(&text)
        .ok_or_else(|| Error::Bench(format!("no CPU times in {path}")))
}

/// The benchmark controller's `/metrics` text, through the API server's service proxy.
async fn controller_metrics(client: &Client, release: &Release) -> Result<String, Error> {
    let response = crate::release::controller_get(
        client,
        &release.namespace,
        &release.metrics_service(),
        "/metrics",
    )
    .await
    .map_err(|e| Error::Bench(format!("reading the controller's metrics: {e}")))?;
    if response.status == 200 {
        Ok(response.body)
    } else {
        Err(Error::Bench(format!(
            "the controller's /metrics answered {}: {}",
            response.status, response.body
        )))
    }
}

/// Every summary's fingerprint, kept current by a metadata watch (one LIST, then a WATCH: the
/// benchmark's own load on the API server stays negligible).
#[derive(Clone)]
struct SummaryWatch {
    state: Arc<Mutex<SummaryState>>,
    changed: Arc<tokio::sync::Notify>,
}

#[derive(Default)]
struct SummaryState {
    synced: bool,
    seen: HashMap<(String, String), String>,
    expected: HashMap<(String, String), String>,
    current: HashSet<(String, String)>,
}

impl SummaryState {
    fn update(&mut self, key: (String, String), fp: Option<String>) {
        let is_current = matches!((&fp, self.expected.get(&key)), (Some(a), Some(b)) if a == b);
        if is_current {
            self.current.insert(key.clone());
        } else {
            self.current.remove(&key);
        }
        match fp {
            Some(fp) => {
                self.seen.insert(key, fp);
            }
            None => {
                self.seen.remove(&key);
            }
        }
    }
}

impl SummaryWatch {
    fn start(client: Client) -> Self {
        let w = SummaryWatch {
            state: Arc::default(),
            changed: Arc::default(),
        };
        let (state, changed) = (w.state.clone(), w.changed.clone());
        let api: Api<PartialObjectMeta<WorkloadConfigurationScanSummary>> = Api::all(client);
        tokio::spawn(async move {
            let mut stream = watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(ev) = stream.next().await {
                let Ok(ev) = ev else { continue };
                let mut s = match state.lock() {
                    Ok(s) => s,
                    Err(p) => p.into_inner(),
                };
                match ev {
                    Event::Apply(m) | Event::InitApply(m) => {
                        let (key, fp) = summary_key(&m);
                        s.update(key, fp);
                    }
                    Event::Delete(m) => {
                        let (key, _) = summary_key(&m);
                        s.update(key, None);
                    }
                    Event::InitDone => s.synced = true,
                    Event::Init => {}
                }
                drop(s);
                changed.notify_waiters();
            }
        });
        w
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SummaryState> {
        match self.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        }
    }

    fn expect_all(&self, expected: HashMap<(String, String), String>) {
        let mut s = self.lock();
        s.expected = expected;
        let seen: Vec<_> = s.seen.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        s.current.clear();
        for (k, v) in seen {
            s.update(k, Some(v));
        }
    }

    fn current_count(&self) -> usize {
        self.lock().current.len()
    }

    async fn wait_synced(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if self.lock().synced {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(Error::Bench("the summary watch never listed".into()));
            }
        }
    }

    /// Waits until every expected summary is current, calling `progress` every 10 s.
    async fn wait_all(&self, timeout: Duration, progress: impl Fn()) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let mut next = Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.changed.notified();
            {
                let s = self.lock();
                if s.synced && s.current.len() == s.expected.len() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Bench(format!(
                    "only {}/{} summaries current after {timeout:?}",
                    self.current_count(),
                    self.lock().expected.len()
                )));
            }
            if Instant::now() >= next {
                progress();
                next += Duration::from_secs(10);
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
        }
    }

    /// Waits until summary `key` has fingerprint `fp`; the time since `start`, `None` on timeout.
    async fn wait_fingerprint(
        &self,
        key: (String, String),
        fp: String,
        start: Instant,
        timeout: Duration,
    ) -> Option<Duration> {
        let deadline = start + timeout;
        loop {
            let notified = self.changed.notified();
            if self.lock().seen.get(&key) == Some(&fp) {
                return Some(start.elapsed());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}

fn summary_key(
    m: &PartialObjectMeta<WorkloadConfigurationScanSummary>,
) -> ((String, String), Option<String>) {
    let key = (
        m.metadata.namespace.clone().unwrap_or_default(),
        m.metadata.name.clone().unwrap_or_default(),
    );
    let fp = m
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(annotations::FINGERPRINT))
        .cloned();
    (key, fp)
}

/// The scan Jobs of one install namespace seen so far (name → targets), from a watch: Jobs
/// deleted by their TTL are still counted.
#[derive(Clone)]
struct JobWatch {
    jobs: Arc<Mutex<BTreeMap<String, Vec<String>>>>,
}

impl JobWatch {
    fn start(client: Client, namespace: &str) -> Self {
        let w = JobWatch {
            jobs: Arc::default(),
        };
        let jobs = w.jobs.clone();
        let api: Api<PartialObjectMeta<Job>> = Api::namespaced(client, namespace);
        tokio::spawn(async move {
            let mut stream =
                watcher::watcher(api, watcher::Config::default().labels(SCAN_JOB_SELECTOR))
                    .default_backoff()
                    .applied_objects()
                    .boxed();
            while let Some(ev) = stream.next().await {
                let Ok(m) = ev else { continue };
                let name = m.metadata.name.clone().unwrap_or_default();
                let targets: Vec<String> = m
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(TARGETS_ANNOTATION))
                    .map(|t| t.lines().map(str::to_owned).collect())
                    .unwrap_or_default();
                let mut j = match jobs.lock() {
                    Ok(j) => j,
                    Err(p) => p.into_inner(),
                };
                j.entry(name).or_insert(targets);
            }
        });
        w
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<String>>> {
        match self.jobs.lock() {
            Ok(j) => j,
            Err(p) => p.into_inner(),
        }
    }

    fn count(&self) -> usize {
        self.lock().len()
    }

    fn names(&self) -> HashSet<String> {
        self.lock().keys().cloned().collect()
    }

    fn all(&self) -> Vec<(String, Vec<String>)> {
        self.lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// When a scan Job was first seen, and when its pod was first seen Running.
type JobAndPodStart = (Option<Instant>, Option<Instant>);

/// When each scan Job and its pod's Running were first seen, by Job name.
#[derive(Clone, Default)]
struct PodStartWatch {
    seen: Arc<Mutex<BTreeMap<String, JobAndPodStart>>>,
}

impl PodStartWatch {
    fn start(client: Client, namespace: &str) -> Self {
        let w = PodStartWatch::default();
        let jobs: Api<PartialObjectMeta<Job>> = Api::namespaced(client.clone(), namespace);
        let pods: Api<Pod> = Api::namespaced(client, namespace);
        let seen = w.seen.clone();
        tokio::spawn(async move {
            let mut stream =
                watcher::watcher(jobs, watcher::Config::default().labels(SCAN_JOB_SELECTOR))
                    .default_backoff()
                    .applied_objects()
                    .boxed();
            while let Some(Ok(m)) = stream.next().await {
                let name = m.metadata.name.unwrap_or_default();
                let mut s = seen
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                s.entry(name)
                    .or_default()
                    .0
                    .get_or_insert_with(Instant::now);
            }
        });
        let seen = w.seen.clone();
        tokio::spawn(async move {
            let mut stream =
                watcher::watcher(pods, watcher::Config::default().labels(SCAN_JOB_SELECTOR))
                    .default_backoff()
                    .applied_objects()
                    .boxed();
            while let Some(Ok(p)) = stream.next().await {
                let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    || p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded");
                let job = p
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("batch.kubernetes.io/job-name").cloned());
                if let (true, Some(job)) = (running, job) {
                    let mut s = seen
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    s.entry(job).or_default().1.get_or_insert_with(Instant::now);
                }
            }
        });
        w
    }

    /// Job creation to pod Running of the Jobs not in `before` whose both moments were seen.
    fn samples(&self, before: &HashSet<String>) -> Vec<Duration> {
        let s = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.iter()
            .filter(|(name, _)| !before.contains(*name))
            .filter_map(|(_, (job, pod))| {
                Some(pod.as_ref()?.saturating_duration_since(*job.as_ref()?))
            })
            .collect()
    }
}

/// The initial scans against the write limit, and the scans' requests per result.
fn render_write_limit(scales: &[ScaleFigures]) -> String {
    let mut out = String::new();
    let mut t = Table::new(&[
        "watched workloads",
        "result objects (scans)",
        "MB",
        "initial scan",
        "write limit (POST)",
        "scan / limit",
        "SSA as new",
        "SSA unchanged",
        "in flight",
    ]);
    let mut per_result = Table::new(&[
        "watched workloads",
        "result write requests per result object (POST / APPLY / PUT)",
        "result requests by verb during the scan",
    ]);
    let opt = |d: Option<Duration>| d.map(secs).unwrap_or_else(|| "-".into());
    for s in scales {
        let Some(w) = &s.write_limit else { continue };
        t.row(vec![
            s.workloads.to_string(),
            format!("{} ({})", w.objects, w.scans),
            format!("{:.1}", w.bytes as f64 / 1e6),
            secs(s.initial_scan),
            secs(w.create),
            format!(
                "{:.2}",
                s.initial_scan.as_secs_f64() / w.create.as_secs_f64()
            ),
            opt(w.apply_new),
            opt(w.apply_unchanged),
            w.concurrency.to_string(),
        ]);
        let kinds = [
            "workloadconfigurationscans",
            "workloadconfigurationscansummaries",
        ];
        let by = |verb: &str| -> f64 {
            kinds
                .iter()
                .map(|k| s.requests.result_requests(&[verb], k))
                .sum()
        };
        let n = w.objects.max(1) as f64;
        per_result.row(vec![
            s.workloads.to_string(),
            format!(
                "{:.3} ({:.3} / {:.3} / {:.3})",
                (by("POST") + by("APPLY") + by("PATCH") + by("PUT")) / n,
                by("POST") / n,
                (by("APPLY") + by("PATCH")) / n,
                by("PUT") / n
            ),
            s.requests.result_verbs_line(),
        ]);
    }
    if !t.rows.is_empty() {
        out.push_str("\nwrite limit (the scan's results written again by one client):\n");
        out.push_str(&t.render());
        out.push_str("\nrequests per result object during the initial scan:\n");
        out.push_str(&per_result.render());
    }
    out
}

/// The scan Jobs' timeline of each initial scan.
fn render_job_timeline(scales: &[ScaleFigures]) -> String {
    let mut t = Table::new(&[
        "workloads",
        "Jobs timed",
        "first container start",
        "pod start p50",
        "container run p50",
        "container end to Job complete p50",
        "Job slots busy running scan-job",
    ]);
    for s in scales {
        let j = &s.job_timeline;
        t.row(vec![
            s.workloads.to_string(),
            j.jobs.to_string(),
            format!("{:.0} s", j.first_start),
            format!("{:.1} s", j.pod_start_p50),
            format!("{:.1} s", j.run_p50),
            format!("{:.1} s", j.completion_lag_p50),
            format!("{:.0}%", 100.0 * j.busy()),
        ]);
    }
    format!(
        "\nWhere the initial scans' time went between the scan Jobs (whole-second timestamps):\n\n{}",
        t.render()
    )
}

/// The figures as Markdown tables.
pub fn render(f: &Figures) -> String {
    let mut out = String::new();
    if !f.scale.is_empty() {
        let mut t = Table::new(&[
            "watched workloads",
            "initial scan",
            "scan Jobs",
            "targets scanned",
            "API requests (total / results / Jobs+Pods / LIST+WATCH)",
            "controller RSS peak",
            "controller RSS steady",
        ]);
        for s in &f.scale {
            t.row(vec![
                s.workloads.to_string(),
                secs(s.initial_scan),
                s.jobs.to_string(),
                format!("{}", s.targets_scanned),
                format!(
                    "{} / {} / {} / {}",
                    s.requests.total,
                    s.requests.results,
                    s.requests.jobs_pods,
                    s.requests.list_watch
                ),
                mib(s.mem.hwm_kib),
                mib(s.mem.rss_kib),
            ]);
        }
        out.push_str(&t.render());
        for s in &f.scale {
            if let (Some((window, cpu)), Some(m)) = (s.idle_cpu, s.mem_after_idle) {
                out.push_str(&format!(
                    "\nidle at {} workloads: {cpu:.2} CPU seconds over {}; RSS after idle {} (peak {})\n",
                    s.workloads,
                    secs(window),
                    mib(m.rss_kib),
                    mib(m.hwm_kib)
                ));
            }
        }
        if let Some(s) = f.scale.first() {
            out.push_str(&format!("controller binary: {}\n", s.controller_exe));
        }
        out.push_str(&render_job_timeline(&f.scale));
        out.push_str(&render_write_limit(&f.scale));
    }
    if let Some(l) = &f.latency {
        let p = |q| {
            percentile(&l.samples, q)
                .map(secs)
                .unwrap_or_else(|| "-".into())
        };
        out.push_str(&format!(
            "\nchange-to-updated-summary over {} edits ({} timed out, {} scan Jobs): p50 {}, p95 {}, p99 {}\n",
            l.samples.len() + l.timed_out,
            l.timed_out,
            l.jobs,
            p(50.0),
            p(95.0),
            p(99.0)
        ));
        let q = |x| {
            percentile(&l.pod_start, x)
                .map(secs)
                .unwrap_or_else(|| "-".into())
        };
        out.push_str(&format!(
            "scan Job pod start (Job created to pod Running) over {} Jobs: p50 {}, p95 {}\n",
            l.pod_start.len(),
            q(50.0),
            q(95.0)
        ));
    }
    if let Some(c) = &f.churn {
        out.push_str(&format!(
            "\nchurn: rollout of a {CHURN_REPLICAS}-replica Deployment ({}): {} scans of it, {} other Jobs\n",
            secs(c.rollout),
            c.deployment_scans,
            c.other_jobs
        ));
    }
    if let Some(s) = &f.scan_job {
        out.push_str(&format!(
            "\nscan-job run, {} targets: cold {} / peak RSS {}; warm (results unchanged) {} / peak RSS {}\n",
            s.targets,
            secs(s.cold.0),
            mib(s.cold.1),
            secs(s.warm.0),
            mib(s.warm.1)
        ));
    }
    out
}

/// Creates the namespace `name`, labelled as the bench's (`role`: what it holds), unless it exists.
pub(crate) async fn ensure_namespace(client: &Client, name: &str, role: &str) -> Result<(), Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some([(WORKLOAD_LABEL.to_owned(), role.to_owned())].into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(kube_err(format!("creating namespace {name}"))(e)),
    }
}
