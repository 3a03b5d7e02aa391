//! Scan Jobs in the state: the tracker of active Jobs, dispatch of ready targets, the Job watch,
//! and how a Job's end finishes its targets. Whether a failure is retried is decided here, once:
//! a failed Job, a lost one and a transient create error are retried with backoff; a create the
//! API server refuses for good (`Error::category` is not `Retry`) gives its targets up at once.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use kubevigil_crds::target::TargetKey;

use super::messages::{Effect, GiveUpReason, JobEvent};
use super::{COLLISION_REQUEUE, JOB_OVERDUE_MARGIN, Startup, State, VANISH_GRACE};
use crate::dispatch::CreateOutcome;
use crate::error::Category;
use crate::jobs::{BatchItem, JobView, build_job, plan_batches};
use crate::queue::{Completion, should_dispatch};

/// A scan Job the controller created or adopted and has not seen finish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JobRecord {
    /// The targets it scans.
    pub(crate) targets: Vec<TargetKey>,
    /// The attempt number of its targets (0 for first scans).
    pub(crate) attempt: u32,
    /// When it was recorded.
    pub(crate) created: Instant,
    /// The UID of the Job, once the API server has confirmed it (create answered, or found
    /// running). Until then, watch events for that name are of an older Job of the same name.
    pub(crate) uid: Option<String>,
}

/// The active scan Jobs, by name. A Job is recorded before it is created, so that its
/// completion maps back to its targets even when the create response is lost.
#[derive(Debug, Default)]
pub(crate) struct JobTracker {
    jobs: HashMap<String, JobRecord>,
}

impl JobTracker {
    /// Records a Job.
    pub(crate) fn insert(&mut self, name: String, record: JobRecord) {
        self.jobs.insert(name, record);
    }

    /// Forgets a Job, returning its record.
    pub(crate) fn remove(&mut self, name: &str) -> Option<JobRecord> {
        self.jobs.remove(name)
    }

    /// Whether a Job is recorded.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.jobs.contains_key(name)
    }

    /// Records the UID the API server gave a Job.
    pub(crate) fn confirm(&mut self, name: &str, uid: &str) {
        if let Some(r) = self.jobs.get_mut(name) {
            r.uid = Some(uid.to_string());
        }
    }

    /// A recorded Job.
    pub(crate) fn get(&self, name: &str) -> Option<&JobRecord> {
        self.jobs.get(name)
    }

    /// Number of active Jobs.
    pub(crate) fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Confirmed Jobs recorded before `before` that are not in `seen` (a Job watch re-list
    /// did not return them: they were deleted while the watch was down).
    pub(crate) fn vanished(&self, seen: &HashSet<String>, before: Instant) -> Vec<String> {
        let mut out: Vec<String> = self
            .jobs
            .iter()
            .filter(|(name, r)| r.uid.is_some() && r.created < before && !seen.contains(*name))
            .map(|(name, _)| name.clone())
            .collect();
        out.sort();
        out
    }

    /// Jobs recorded longer than `max_age` ago (their deadline passed long ago without a
    /// finished state being seen).
    pub(crate) fn overdue(&self, now: Instant, max_age: Duration) -> Vec<String> {
        let mut out: Vec<String> = self
            .jobs
            .iter()
            .filter(|(_, r)| now.saturating_duration_since(r.created) > max_age)
            .map(|(name, _)| name.clone())
            .collect();
        out.sort();
        out
    }
}

/// How a recorded Job ended, for each of its targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum JobEnd {
    /// The Job completed: its targets are scanned.
    Complete,
    /// The Job failed, vanished, or could not be created for a transient reason: its targets
    /// are retried with backoff (and given up after the last attempt).
    Failed,
    /// The Job was refused for good (a permanent API error): its targets are given up at once.
    Refused,
    /// The Job's container was OOMKilled: running it again with the same memory limit would fail
    /// the same way, so its targets are given up at once and not rescanned until they change.
    OomKilled,
    /// A finished Job of the same name was in the way and is deleted: its targets are
    /// dispatched again shortly, no attempt counted.
    Collided,
}

/// The scan-Job watch's (re-)list: the Jobs it returned so far.
#[derive(Debug, Default)]
pub(super) enum JobList {
    /// No list is running: events are live.
    #[default]
    Live,
    /// A (re-)list is running.
    Listing(HashSet<String>),
}

impl State {
    /// Number of active scan Jobs.
    #[cfg(test)]
    pub(crate) fn active_jobs(&self) -> usize {
        self.jobs.len()
    }

    /// Removes the record of Job `name` and finishes each of its targets as `end` says.
    pub(super) fn end_job(&mut self, name: &str, end: JobEnd, now: Instant) -> Vec<Effect> {
        let Some(record) = self.jobs.remove(name) else {
            return Vec::new();
        };
        let mut effects = Vec::new();
        for key in record.targets {
            match end {
                JobEnd::Collided => self.queue.release(&key, now + COLLISION_REQUEUE),
                _ => effects.extend(self.finish(key, end, now, name)),
            }
        }
        effects
    }

    /// The end of one target's scan.
    fn finish(&mut self, key: TargetKey, end: JobEnd, now: Instant, job: &str) -> Vec<Effect> {
        let mut effects = Vec::new();
        if let Startup::Synced(resync) = &mut self.startup {
            resync.finished(&key);
        }
        let ok = end == JobEnd::Complete;
        let completion = match end {
            JobEnd::Refused | JobEnd::OomKilled => self.queue.give_up(&key),
            _ => self.queue.complete(&key, ok, now),
        };
        if ok {
            self.oom_killed.remove(&key);
        }
        match completion {
            Completion::Done => {
                if ok {
                    self.metrics.scans_succeeded.inc();
                    if let Some(t) = self.first_event.remove(&key) {
                        self.metrics
                            .scan_latency
                            .observe(now.saturating_duration_since(t).as_secs_f64());
                    }
                    if self.queue.is_queued(&key) {
                        // Changed during the scan: scanned again right away.
                        self.first_event.insert(key.clone(), now);
                    }
                }
            }
            Completion::Retrying { attempt, delay } => {
                self.metrics.scan_retries.inc();
                tracing::info!(target = %key, job, attempt, delay_s = delay.as_secs(), "scan failed; retrying");
            }
            Completion::GaveUp { attempts } => {
                self.metrics.scans_failed.inc();
                self.first_event.remove(&key);
                let reason = match end {
                    JobEnd::Refused => GiveUpReason::Refused,
                    JobEnd::OomKilled => GiveUpReason::OomKilled,
                    _ => GiveUpReason::Attempts,
                };
                if reason == GiveUpReason::OomKilled {
                    let fingerprint = self.index.expected_fingerprint(&key).map(str::to_owned);
                    self.oom_killed.insert(key.clone(), fingerprint);
                    tracing::error!(target = %key, job, "scan Job OOMKilled; given up until the target or the configuration changes");
                } else {
                    tracing::error!(target = %key, job, attempts, "scan given up; retried at the next resync");
                }
                effects.push(Effect::ReportFailure {
                    key: key.clone(),
                    attempts,
                    job: job.to_string(),
                    reason,
                });
            }
        }
        let refs = self.index.result_refs(&key);
        if self.index.expected_fingerprint(&key).is_none() && self.kinds.synced_once(&key.kind) {
            // Deleted while its scan ran: the scan may have written results after the delete.
            self.queue.forget(&key);
            self.first_event.remove(&key);
            effects.push(Effect::DeleteResults(refs));
        } else {
            for r in refs {
                self.summaries.mark(&r.namespace, now);
            }
        }
        effects
    }

    pub(super) fn on_jobs(&mut self, event: JobEvent, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        match event {
            JobEvent::Init => self.job_list = JobList::Listing(HashSet::new()),
            JobEvent::Apply(view) => {
                if let JobList::Listing(seen) = &mut self.job_list {
                    seen.insert(view.name.clone());
                }
                effects.extend(self.on_job(view, now));
            }
            JobEvent::Delete(view) => {
                if self.is_tracked_incarnation(&view) {
                    let end = if view.finished == Some(true) {
                        JobEnd::Complete
                    } else {
                        tracing::warn!(job = %view.name, "scan Job deleted before it finished");
                        JobEnd::Failed
                    };
                    effects.extend(self.end_job(&view.name, end, now));
                }
            }
            JobEvent::InitDone => {
                if let JobList::Listing(seen) = std::mem::take(&mut self.job_list) {
                    let before = now.checked_sub(VANISH_GRACE).unwrap_or(now);
                    for name in self.jobs.vanished(&seen, before) {
                        tracing::warn!(job = %name, "scan Job vanished while the Job watch was down");
                        effects.extend(self.end_job(&name, JobEnd::Failed, now));
                    }
                }
                if matches!(self.startup, Startup::ListingJobs) {
                    tracing::info!(active = self.jobs.len(), "scan Jobs listed");
                    self.startup = Startup::ListingKinds;
                }
                effects.extend(self.check_initial_sync(now));
            }
            JobEvent::Error(e) => {
                tracing::warn!(error = %e, "scan Job watch failed; retrying with backoff");
            }
        }
        effects
    }

    /// Whether a watched Job is the one recorded under its name: a Job whose create is not
    /// answered yet, or with another UID, is an older Job of the same name (for example a
    /// finished one that the create's conflict handling is deleting).
    fn is_tracked_incarnation(&self, view: &JobView) -> bool {
        self.jobs
            .get(&view.name)
            .and_then(|r| r.uid.as_deref())
            .is_some_and(|uid| uid == view.uid)
    }

    fn on_job(&mut self, view: JobView, now: Instant) -> Vec<Effect> {
        if self.jobs.contains(&view.name) && !self.is_tracked_incarnation(&view) {
            return Vec::new();
        }
        match view.finished {
            Some(ok) => {
                if let Some(record) = self.jobs.get(&view.name) {
                    let targets = record.targets.len();
                    if ok {
                        tracing::info!(job = %view.name, targets, "scan Job complete");
                    } else if view.oom_killed {
                        tracing::error!(job = %view.name, targets, "scan Job OOMKilled: its batch needs more memory than scanJob.resources.limits.memory");
                    } else {
                        tracing::warn!(job = %view.name, targets, attempt = record.attempt, "scan Job failed");
                    }
                }
                let end = match (ok, view.oom_killed) {
                    (true, _) => JobEnd::Complete,
                    (false, true) => {
                        self.metrics.scan_jobs_oom_killed.inc();
                        JobEnd::OomKilled
                    }
                    (false, false) => JobEnd::Failed,
                };
                self.end_job(&view.name, end, now)
            }
            None if self.jobs.contains(&view.name) || view.deleting => Vec::new(),
            None => {
                // A running Job this process did not create (a previous leader's): adopt it.
                tracing::info!(job = %view.name, targets = view.targets.len(), "adopting running scan Job");
                for key in &view.targets {
                    self.queue.mark_in_flight(key.clone());
                }
                self.jobs.insert(
                    view.name,
                    JobRecord {
                        targets: view.targets,
                        attempt: 0,
                        created: now,
                        uid: Some(view.uid),
                    },
                );
                Vec::new()
            }
        }
    }

    pub(super) fn on_job_created(
        &mut self,
        name: &str,
        outcome: CreateOutcome,
        now: Instant,
    ) -> Vec<Effect> {
        match outcome {
            CreateOutcome::Created { uid } => {
                tracing::info!(job = %name, "scan Job created");
                self.jobs.confirm(name, &uid);
                Vec::new()
            }
            CreateOutcome::Running { uid } => {
                tracing::info!(job = %name, "scan Job of the same batch is running; waiting for it");
                self.jobs.confirm(name, &uid);
                Vec::new()
            }
            CreateOutcome::FinishedDeleted => {
                tracing::info!(job = %name, "a finished scan Job had the same name; deleted it, requeueing its targets");
                self.end_job(name, JobEnd::Collided, now)
            }
            CreateOutcome::Failed(e) => {
                let category = e.category();
                self.metrics.error(&e);
                let end = if category == Category::Retry {
                    tracing::warn!(job = %name, error = %e, ?category, "scan Job not created; retrying with backoff");
                    JobEnd::Failed
                } else {
                    tracing::error!(job = %name, error = %e, ?category, "scan Job refused; giving its targets up");
                    JobEnd::Refused
                };
                self.end_job(name, end, now)
            }
        }
    }

    /// Gives up Jobs whose deadline passed long ago without a finished state being seen.
    pub(super) fn give_up_overdue(&mut self, now: Instant) -> Vec<Effect> {
        let deadline =
            u64::try_from(self.s.config.scan_job.active_deadline_seconds.max(0)).unwrap_or(0);
        let max_age = Duration::from_secs(deadline) + JOB_OVERDUE_MARGIN;
        let mut effects = Vec::new();
        for name in self.jobs.overdue(now, max_age) {
            tracing::warn!(job = %name, "scan Job never reported finishing; giving it up");
            effects.extend(self.end_job(&name, JobEnd::Failed, now));
        }
        effects
    }

    /// Starts scan Jobs for ready targets while slots are free.
    pub fn dispatch(&mut self, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        if !self.may_dispatch(now) {
            return effects;
        }
        let config = self.s.config.clone();
        let sj = &config.scan_job;
        loop {
            let free = sj.max_concurrent_jobs.saturating_sub(self.jobs.len());
            if free == 0 {
                break;
            }
            let (ready, later, _) = self.queue.counts(now);
            let age = self
                .queue
                .oldest_ready(now)
                .map(|t| now.saturating_duration_since(t))
                .unwrap_or_default();
            if !should_dispatch(ready, later, age, sj.batch_size, self.s.batch_window) {
                break;
            }
            let taken = self
                .queue
                .take_ready(now, sj.batch_size.saturating_mul(free));
            if taken.is_empty() {
                break;
            }
            let ready: Vec<(TargetKey, u32)> =
                taken.into_iter().map(|r| (r.key, r.attempts)).collect();
            for (i, (keys, attempt)) in plan_batches(&ready, sj.batch_size).into_iter().enumerate()
            {
                if i >= free {
                    for k in &keys {
                        self.queue.release(k, now);
                    }
                    continue;
                }
                let mut items = Vec::with_capacity(keys.len());
                for key in keys {
                    match self.index.expected_fingerprint(&key) {
                        Some(fp) => items.push(BatchItem {
                            fingerprint: fp.to_string(),
                            related_inputs: self.related.inputs_hash(&key),
                            key,
                        }),
                        None => {
                            // Gone since it was queued.
                            self.queue.complete(&key, true, now);
                            self.queue.forget(&key);
                            self.first_event.remove(&key);
                        }
                    }
                }
                if items.is_empty() {
                    continue;
                }
                let mut job = build_job(&items, attempt, &config, &self.s.install_namespace);
                if let Some(owner) = &self.s.job_owner {
                    job.metadata.owner_references = Some(vec![owner.clone()]);
                }
                let name = job.metadata.name.clone().unwrap_or_default();
                if self.jobs.contains(&name) {
                    for it in &items {
                        self.queue.release(&it.key, now + COLLISION_REQUEUE);
                    }
                    continue;
                }
                self.metrics
                    .scans_started
                    .inc_by(u64::try_from(items.len()).unwrap_or(u64::MAX));
                tracing::info!(job = %name, targets = items.len(), attempt, "starting scan Job");
                self.jobs.insert(
                    name,
                    JobRecord {
                        targets: items.into_iter().map(|i| i.key).collect(),
                        attempt,
                        created: now,
                        uid: None,
                    },
                );
                effects.push(Effect::CreateJob(Box::new(job)));
            }
        }
        effects
    }

    fn may_dispatch(&self, now: Instant) -> bool {
        match self.startup {
            Startup::ListingJobs => false,
            Startup::ListingKinds => {
                now.saturating_duration_since(self.started) >= self.s.dispatch_hold
            }
            Startup::Synced(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_finds_vanished_and_overdue_jobs() {
        let t0 = Instant::now();
        let mut t = JobTracker::default();
        let rec = |uid: Option<&str>| JobRecord {
            targets: vec![],
            attempt: 0,
            created: t0,
            uid: uid.map(str::to_string),
        };
        t.insert("a".into(), rec(Some("ua")));
        t.insert("b".into(), rec(None));
        t.insert("c".into(), rec(Some("uc")));
        let seen = HashSet::from(["c".to_string()]);
        let later = t0 + Duration::from_secs(30);
        assert_eq!(t.vanished(&seen, later), vec!["a".to_string()]);
        assert!(t.vanished(&seen, t0).is_empty());
        assert_eq!(
            t.overdue(later, Duration::from_secs(60)),
            Vec::<String>::new()
        );
        assert_eq!(t.overdue(later, Duration::from_secs(10)).len(), 3);
        t.confirm("b", "ub");
        assert_eq!(t.get("b").and_then(|r| r.uid.as_deref()), Some("ub"));
        assert!(t.remove("b").is_some());
        assert_eq!(t.len(), 2);
    }
}
