//! The main loop's state: the event [`Index`], the scan [`Queue`], the active Jobs and the
//! per-kind watch states, driven by messages from the watch tasks and the API tasks. Pure: every
//! API call is returned as an [`Effect`] for the runner (`run.rs`) to carry out, and its outcome
//! comes back as a [`Msg`]. One owner, so no locks.
//!
//! Modules: `messages` (what comes in, what goes out), `kinds` (discovery and watch states,
//! `/readyz`), `jobs` (the Job tracker, dispatch, the Job watch, and the one place that decides
//! whether a failed scan is retried or given up) and `resync` (startup phases and the results
//! resync).
//!
//! Timing: dispatch waits for the initial sync (every watch listed once and the Job watch
//! synced) or [`StateSettings::dispatch_hold`], so that the startup backlog goes out in full
//! batches; then an idle target is dispatched at once, a building backlog waits for the batch
//! window.

mod jobs;
mod kinds;
mod messages;
mod related;
mod resync;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kubevigil_crds::target::{KindInfo, TargetKey};

use jobs::{JobList, JobTracker};
use kinds::Kinds;
pub use messages::{Effect, GiveUpReason, JobEvent, Msg, RelatedEvent, WatchEvent};
use resync::Startup;
pub use resync::{Merge, ResultsSnapshot, Scope};

use crate::config::Config;
use crate::discovery::{Failure, KindSpec};
use crate::error::Category;
use crate::exceptions::ExceptionTracker;
use crate::index::{Action, Index};
use crate::ops::Metrics;
use crate::queue::{Debouncer, Queue, QueueSettings};
use crate::refresh::Refresh;
use crate::related::RelatedIndex;

/// Most results deleted by one delete effect (one API task).
const DELETE_CHUNK: usize = 50;
/// A recorded Job that a Job watch re-list does not return is taken as gone only when it was
/// recorded at least this long before.
const VANISH_GRACE: Duration = Duration::from_secs(10);
/// Extra time past a Job's `activeDeadlineSeconds` before it is given up as lost.
const JOB_OVERDUE_MARGIN: Duration = Duration::from_secs(120);
/// Delay before targets of a collided (finished, now deleted) Job are dispatched again.
const COLLISION_REQUEUE: Duration = Duration::from_secs(1);
/// Retry delay of a results list that failed for a transient reason.
const RESYNC_RETRY: Duration = Duration::from_secs(30);

/// Timing and limits of the main loop.
#[derive(Clone, Debug)]
pub struct StateSettings {
    /// The configuration.
    pub config: Arc<Config>,
    /// Install namespace.
    pub install_namespace: String,
    /// Owner of every scan Job (the controller's Deployment), so that uninstalling kubevigil
    /// garbage-collects the Jobs and their pods. `None` when it could not be read.
    pub job_owner: Option<OwnerReference>,
    /// Longest a partial batch waits for more ready targets (200 ms).
    pub batch_window: Duration,
    /// Longest dispatch waits for the initial sync (30 s).
    pub dispatch_hold: Duration,
    /// Quiet period before a namespace summary is recomputed (2 s).
    pub summary_debounce: Duration,
    /// Delay of the resync that follows a watch re-list after the initial sync (5 s).
    pub relist_resync_delay: Duration,
}

impl StateSettings {
    /// The defaults for a configuration.
    pub fn new(config: Arc<Config>, install_namespace: String) -> Self {
        StateSettings {
            config,
            install_namespace,
            job_owner: None,
            batch_window: Duration::from_millis(200),
            dispatch_hold: Duration::from_secs(30),
            summary_debounce: Duration::from_secs(2),
            relist_resync_delay: Duration::from_secs(5),
        }
    }
}

/// The main loop's state.
#[derive(Debug)]
pub struct State {
    s: StateSettings,
    index: Index,
    queue: Queue<TargetKey>,
    jobs: JobTracker,
    kinds: Kinds,
    first_event: HashMap<TargetKey, Instant>,
    /// Targets given up because their scan Job was OOMKilled, with the fingerprint they had:
    /// the resync does not rescan them until the target changes (or the controller restarts,
    /// as it does when the chart's memory limit changes), so an OOM is not retried without end.
    oom_killed: HashMap<TargetKey, Option<String>>,
    summaries: Debouncer,
    /// Posture exception resources and the targets' labels they select by.
    exceptions: ExceptionTracker,
    metrics: Metrics,
    started: Instant,
    startup: Startup,
    job_list: JobList,
    last_prune: Instant,
    /// Related objects and the workloads' pod facts (related-object rescans).
    related: RelatedIndex,
    /// The `rescanAfter` sweep, when configured.
    refresh: Option<Refresh>,
}

impl State {
    /// The state after startup discovery: `kinds` holds each configured kind's resolution.
    pub fn new(
        settings: StateSettings,
        mut index: Index,
        kinds: Vec<(KindSpec, Result<KindInfo, Failure>)>,
        metrics: Metrics,
        now: Instant,
    ) -> Self {
        let debounce = settings.config.continuous_scanning.debounce;
        let queue = Queue::new(QueueSettings::with_debounce(debounce));
        // A busy namespace is summed at least every 15 quiet periods (30 s by default).
        let summaries = Debouncer::new(settings.summary_debounce, settings.summary_debounce * 15);
        let resolved = kinds
            .into_iter()
            .map(|(spec, r)| {
                let r = r.map(|info| {
                    let info = Arc::new(info);
                    index.watch_kind(&info);
                    info
                });
                (spec, r)
            })
            .collect();
        let kinds = Kinds::new(resolved);
        kinds.publish(&metrics);
        let refresh = settings
            .config
            .continuous_scanning
            .rescan_after
            .map(|period| Refresh::new(period, settings.config.scan_job.batch_size, now));
        State {
            s: settings,
            index,
            queue,
            jobs: JobTracker::default(),
            kinds,
            first_event: HashMap::new(),
            oom_killed: HashMap::new(),
            summaries,
            exceptions: ExceptionTracker::default(),
            metrics,
            started: now,
            startup: Startup::ListingJobs,
            job_list: JobList::default(),
            last_prune: now,
            related: RelatedIndex::new(kubevigil_engine::related::watched_kinds()),
            refresh,
        }
    }

    /// The first effects: watches of the discovered kinds, background discovery of the others.
    pub fn start(&mut self, now: Instant) -> Vec<Effect> {
        let mut effects = self.kinds.start_effects();
        effects.extend(self.kinds_progressed(now));
        effects
    }

    /// The index.
    #[cfg(test)]
    pub(crate) fn index(&self) -> &Index {
        &self.index
    }

    /// The queue.
    #[cfg(test)]
    pub(crate) fn queue(&self) -> &Queue<TargetKey> {
        &self.queue
    }

    /// Handles one message.
    pub fn handle(&mut self, msg: Msg, now: Instant) -> Vec<Effect> {
        match msg {
            Msg::KindFound(spec, info) => self.on_kind_found(spec, info, now),
            Msg::KindFailed(spec, failure) => {
                self.on_kind_failed(&spec, failure);
                Vec::new()
            }
            Msg::Watch { kind, event } => self.on_watch(kind, event, now),
            Msg::Related { kind, event } => {
                self.on_related(kind, event, now);
                Vec::new()
            }
            Msg::Jobs(event) => self.on_jobs(event, now),
            Msg::Exception(event) => {
                for key in self.exceptions.handle(event, now) {
                    tracing::debug!(target = %key, "posture exceptions changed; rescanning");
                    self.enqueue(key, now);
                }
                Vec::new()
            }
            Msg::JobCreated { name, outcome } => self.on_job_created(&name, outcome, now),
            Msg::ResultsListed(result) => self.on_results(result, now),
            Msg::ResultsDeleted {
                deleted,
                namespaces,
            } => {
                self.metrics.results_deleted.inc_by(deleted);
                for ns in namespaces {
                    self.summaries.mark(&ns, now);
                }
                Vec::new()
            }
            Msg::Summarized { namespace, outcome } => {
                // A transient failure is retried after a pause; a permanent one waits for the
                // namespace's next change.
                let settled = match outcome {
                    Ok(()) => true,
                    Err(e) => {
                        self.metrics.error(&e);
                        let category = e.category();
                        if category == Category::Retry {
                            tracing::warn!(error = %e, "namespace summary not updated; retrying");
                            false
                        } else {
                            tracing::error!(error = %e, ?category, "namespace summary not updated; trying again at its next change");
                            true
                        }
                    }
                };
                self.summaries.done(&namespace, now, settled);
                Vec::new()
            }
        }
    }

    fn apply_actions(&mut self, actions: Vec<Action>, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        for action in actions {
            match action {
                Action::Scan(key) => self.enqueue(key, now),
                Action::DeleteResults(refs) => {
                    for chunk in refs.chunks(DELETE_CHUNK) {
                        effects.push(Effect::DeleteResults(chunk.to_vec()));
                    }
                }
                Action::Forget(key) => {
                    self.related.workload_deleted(&key);
                    self.queue.forget(&key);
                    if !self.queue.is_queued(&key) {
                        self.first_event.remove(&key);
                    }
                }
            }
        }
        effects
    }

    fn enqueue(&mut self, key: TargetKey, now: Instant) {
        self.queue.enqueue(key.clone(), now);
        self.first_event.entry(key).or_insert(now);
    }

    /// Periodic work: dispatch, summaries, resync, lost Jobs, metrics.
    pub fn tick(&mut self, now: Instant) -> Vec<Effect> {
        for key in self.exceptions.expire_due(now) {
            self.enqueue(key, now);
        }
        let mut effects = self.give_up_overdue(now);
        self.refresh_due(now);
        effects.extend(self.dispatch(now));
        for ns in self.summaries.take_due(now) {
            effects.push(Effect::Summarize(ns));
        }
        effects.extend(self.resync_if_due(now));
        if now.saturating_duration_since(self.last_prune) >= Duration::from_secs(10) {
            self.queue.prune(now);
            self.last_prune = now;
        }
        let (ready, later, _) = self.queue.counts(now);
        self.metrics
            .queue_depth
            .set(i64::try_from(ready + later).unwrap_or(i64::MAX));
        self.metrics
            .jobs_active
            .set(i64::try_from(self.jobs.len()).unwrap_or(i64::MAX));
        effects
    }

    /// When the loop should run [`State::tick`] next (at most one second away).
    pub fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = now + Duration::from_secs(1);
        let mut consider = |t: Instant| {
            if t > now && t < wake {
                wake = t;
            }
        };
        if let Some(t) = self.queue.next_due() {
            consider(t);
        }
        if self.jobs.len() < self.s.config.scan_job.max_concurrent_jobs
            && let Some(t) = self.queue.oldest_ready(now)
        {
            consider(t + self.s.batch_window);
        }
        if let Some(t) = self.summaries.next_due() {
            consider(t);
        }
        if let Some(r) = &self.refresh {
            consider(r.next_due());
        }
        if let Some(t) = self.exceptions.next_expiry() {
            consider(t);
        }
        match &self.startup {
            Startup::Synced(resync) => {
                if let Some(t) = resync.due() {
                    consider(t);
                }
            }
            _ => consider(self.started + self.s.dispatch_hold),
        }
        wake.max(now + Duration::from_millis(5))
    }
}
