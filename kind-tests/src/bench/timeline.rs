//! Where an initial scan's time goes between the scan Jobs: for each Job, from its creation to
//! its container's start (pod start), the container's run, and from the container's end to the
//! Job's completion (what the controller waits for before it starts the next Job). Read once,
//! right after the scan, from the Jobs and their pods (kept `ttlSecondsAfterFinished`).
//!
//! The API server's timestamps have whole seconds, so each figure is a median or a sum over
//! many Jobs, never one Job's.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client};

use super::stats::percentile;
use super::{Error, kube_err};
use crate::release::SCAN_JOB_SELECTOR;

/// The scan Jobs' timeline of one initial scan.
#[derive(Clone, Debug, Default)]
pub struct JobTimeline {
    /// Jobs with a finished container.
    pub jobs: usize,
    /// Median seconds from a Job's creation to its container's start.
    pub pod_start_p50: f64,
    /// Median seconds of a container's run (reads, evaluation, writes).
    pub run_p50: f64,
    /// Median seconds from a container's end to its Job's completion.
    pub completion_lag_p50: f64,
    /// Seconds from the scan's start (`helm install`) to the first container start.
    pub first_start: f64,
    /// The containers' run seconds, summed.
    pub run_sum: f64,
    /// The Job slots' seconds over the scan (`maxConcurrentJobs` × the scan's time).
    pub slot_secs: f64,
}

impl JobTimeline {
    /// The share of the Job slots' time spent in a running scan-job process.
    pub fn busy(&self) -> f64 {
        if self.slot_secs > 0.0 {
            self.run_sum / self.slot_secs
        } else {
            0.0
        }
    }
}

/// From `from` to `to` (zero when `to` is earlier: whole-second timestamps of one instant).
fn between(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or_default()
}

/// The median (nearest rank, as every other p50 of the bench), in seconds.
fn p50_secs(samples: &[Duration]) -> f64 {
    percentile(samples, 50.0).map_or(f64::NAN, |d| d.as_secs_f64())
}

/// Reads the timeline of the scan Jobs in `namespace` created at or after `since` (the scan's
/// start), for a scan that took `scan_secs` with `slots` Jobs at most at once.
pub async fn read(
    client: &Client,
    namespace: &str,
    since: Timestamp,
    scan_secs: f64,
    slots: usize,
) -> Result<JobTimeline, Error> {
    let lp = ListParams::default().labels(SCAN_JOB_SELECTOR);
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let jobs = jobs
        .list(&lp)
        .await
        .map_err(kube_err(format!("list scan Jobs in {namespace}")))?;
    let pods = pods
        .list(&lp)
        .await
        .map_err(kube_err(format!("list scan pods in {namespace}")))?;
    // A Job's container run: (started, finished) of its first pod that finished.
    let mut runs: HashMap<String, (Timestamp, Timestamp)> = HashMap::new();
    for pod in &pods.items {
        let Some(job) = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("batch.kubernetes.io/job-name"))
        else {
            continue;
        };
        let statuses = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref());
        for cs in statuses.into_iter().flatten() {
            if let Some(t) = cs.state.as_ref().and_then(|s| s.terminated.as_ref())
                && let (Some(started), Some(finished)) = (&t.started_at, &t.finished_at)
            {
                runs.entry(job.clone()).or_insert((started.0, finished.0));
            }
        }
    }
    let mut out = JobTimeline {
        slot_secs: scan_secs * slots as f64,
        first_start: f64::NAN,
        ..JobTimeline::default()
    };
    let (mut pod_start, mut run, mut lag) = (Vec::new(), Vec::new(), Vec::new());
    for job in &jobs.items {
        let (Some(name), Some(created)) = (&job.metadata.name, &job.metadata.creation_timestamp)
        else {
            continue;
        };
        if created.0 < since {
            continue;
        }
        let Some((started, finished)) = runs.get(name) else {
            continue;
        };
        out.jobs += 1;
        pod_start.push(between(created.0, *started));
        let r = between(*started, *finished);
        run.push(r);
        out.run_sum += r.as_secs_f64();
        let first = between(since, *started).as_secs_f64();
        if out.first_start.is_nan() || first < out.first_start {
            out.first_start = first;
        }
        if let Some(done) = job.status.as_ref().and_then(|s| s.completion_time.as_ref()) {
            lag.push(between(*finished, done.0));
        }
    }
    out.pod_start_p50 = p50_secs(&pod_start);
    out.run_p50 = p50_secs(&run);
    out.completion_lag_p50 = p50_secs(&lag);
    Ok(out)
}
