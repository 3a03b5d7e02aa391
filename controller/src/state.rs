//! The main loop's state: the event [`Index`], the scan [`Queue`], the active Jobs and the
//! per-kind watch states, driven by messages from the watch tasks and the API tasks. Pure: every
//! API call is returned as an [`Effect`] for the runner (`run.rs`) to carry out, and its outcome
//! comes back as a [`Msg`]. One owner, so no locks.
//!
//! Timing: dispatch waits for the initial sync (every watch listed once and the Job watch
//! synced) or [`StateSettings::dispatch_hold`], so that the startup backlog goes out in full
//! batches; then an idle target is dispatched at once, a building backlog waits for the batch
//! window.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kubevigil_crds::target::{KindInfo, TargetKey};

use crate::config::{Config, Timing};
use crate::discovery::{Failure, KindSpec};
use crate::dispatch::{CreateOutcome, JobRecord, JobTracker, JobView};
use crate::events::{Action, BindingSpec, Index, ResultRef, SourceKind};
use crate::jobs::{BatchItem, build_job, plan_batches};
use crate::ops::{KindLabels, KindReport, Metrics};
use crate::queue::{Completion, Queue, QueueSettings, should_dispatch};
use crate::resync::ResultsSnapshot;
use crate::summaries::Debouncer;

/// Most results deleted by one delete effect (one API task).
const DELETE_CHUNK: usize = 50;
/// A recorded Job that a Job watch re-list does not return is taken as gone only when it was
/// recorded at least this long before.
const VANISH_GRACE: Duration = Duration::from_secs(10);
/// Extra time past a Job's `activeDeadlineSeconds` before it is given up as lost.
const JOB_OVERDUE_MARGIN: Duration = Duration::from_secs(120);
/// Delay before targets of a collided (finished, now deleted) Job are dispatched again.
const COLLISION_REQUEUE: Duration = Duration::from_secs(1);
/// Retry delay of a failed results list.
const RESYNC_RETRY: Duration = Duration::from_secs(30);

/// An add, modify or delete as a watch task reports it.
#[derive(Debug)]
pub enum WatchEvent {
    /// The watch (re)starts listing.
    Init,
    /// An object was listed, added or modified.
    Apply {
        /// The object.
        key: TargetKey,
        /// Its trimmed metadata.
        meta: Box<ObjectMeta>,
        /// A binding's role reference and subjects.
        binding: Option<BindingSpec>,
        /// A scalable kind's spec hash (`kubevigil_crds::identity::spec_hash`), which stands in
        /// for the generation in its fingerprint so that scaling is not a change.
        spec_hash: Option<String>,
        /// Part of a (re-)list.
        init: bool,
    },
    /// An object was deleted.
    Delete {
        /// The object.
        key: TargetKey,
        /// A binding's last role reference and subjects.
        binding: Option<BindingSpec>,
    },
    /// The list is complete.
    InitDone,
    /// The watch failed (it is retried with backoff).
    Error {
        /// The error.
        message: String,
        /// Its HTTP status, if any.
        status: Option<u16>,
    },
}

/// What the Job watch reports.
#[derive(Debug)]
pub enum JobEvent {
    /// The watch (re)starts listing.
    Init,
    /// A Job was listed, added or modified.
    Apply(JobView),
    /// A Job was deleted.
    Delete(JobView),
    /// The list is complete.
    InitDone,
    /// The watch failed (it is retried with backoff).
    Error(String),
}

/// Messages to the main loop.
#[derive(Debug)]
pub enum Msg {
    /// A kind was resolved by discovery (after startup).
    KindFound(KindSpec, KindInfo),
    /// A kind's discovery failed again.
    KindFailed(KindSpec, Failure),
    /// A watch event of a kind.
    Watch {
        /// The kind.
        kind: Arc<KindInfo>,
        /// The event.
        event: WatchEvent,
    },
    /// A scan Job event.
    Jobs(JobEvent),
    /// A Job create finished.
    JobCreated {
        /// Name of the Job.
        name: String,
        /// What happened.
        outcome: CreateOutcome,
    },
    /// A results list finished.
    ResultsListed(Result<ResultsSnapshot, String>),
    /// Results were deleted.
    ResultsDeleted {
        /// Objects deleted.
        deleted: u64,
        /// Namespaces whose results changed.
        namespaces: BTreeSet<String>,
    },
    /// A namespace summary was recomputed.
    Summarized {
        /// The namespace.
        namespace: String,
        /// Whether it worked.
        ok: bool,
    },
}

/// API work for the runner.
#[derive(Debug)]
pub enum Effect {
    /// Start watching a kind.
    StartWatch(Arc<KindInfo>),
    /// Retry the discovery of a kind in the background.
    RetryDiscovery(KindSpec),
    /// The role watches have listed everything: binding watches may start.
    RolesSynced,
    /// Create a scan Job (answer: [`Msg::JobCreated`]).
    CreateJob(Box<Job>),
    /// Delete these results (answer: [`Msg::ResultsDeleted`]).
    DeleteResults(Vec<ResultRef>),
    /// List every result (answer: [`Msg::ResultsListed`]).
    ListResults,
    /// Recompute a namespace's summary (answer: [`Msg::Summarized`]).
    Summarize(String),
    /// Report a target that failed every attempt (Kubernetes Event).
    ReportFailure {
        /// The target.
        key: TargetKey,
        /// Attempts made.
        attempts: u32,
        /// The last Job that scanned it.
        job: String,
    },
}

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
    /// Debounce and resync period.
    pub timing: Timing,
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
    pub fn new(config: Arc<Config>, install_namespace: String, timing: Timing) -> Self {
        StateSettings {
            config,
            install_namespace,
            job_owner: None,
            timing,
            batch_window: Duration::from_millis(200),
            dispatch_hold: Duration::from_secs(30),
            summary_debounce: Duration::from_secs(2),
            relist_resync_delay: Duration::from_secs(5),
        }
    }
}

/// Where a kind's discovery and watch stand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KindStatus {
    /// Discovered; its watch is listing.
    Listing,
    /// Listed; the watch is live.
    Ready,
    /// Not in API discovery (retried).
    NotFound(String),
    /// Discovery or listing is forbidden (retried).
    Forbidden(String),
    /// Discovery or the watch failed otherwise (retried).
    Failed(String),
}

#[derive(Debug)]
struct KindState {
    status: KindStatus,
    info: Option<Arc<KindInfo>>,
    synced_once: bool,
    relist: Option<HashSet<TargetKey>>,
}

impl KindState {
    fn is_role(&self) -> bool {
        self.info.as_ref().is_some_and(|k| k.is_role())
    }
}

/// The main loop's state.
#[derive(Debug)]
pub struct State {
    s: StateSettings,
    index: Index,
    queue: Queue<TargetKey>,
    jobs: JobTracker,
    kinds: BTreeMap<KindSpec, KindState>,
    first_event: HashMap<TargetKey, Instant>,
    summaries: Debouncer,
    metrics: Metrics,
    started: Instant,
    jobs_synced: bool,
    jobs_relist: Option<HashSet<String>>,
    initial_sync: bool,
    roles_synced: bool,
    resync_due: Option<Instant>,
    resync_running: bool,
    /// Targets whose scans finished while a results list ran: that list may predate their
    /// results, so the resync does not rescan them.
    done_during_resync: HashSet<TargetKey>,
    kinds_changed: bool,
    last_prune: Instant,
}

impl State {
    /// The state after startup discovery: `kinds` holds each configured kind's resolution.
    pub fn new(
        settings: StateSettings,
        index: Index,
        kinds: Vec<(KindSpec, Result<KindInfo, Failure>)>,
        metrics: Metrics,
        now: Instant,
    ) -> Self {
        let queue = Queue::new(QueueSettings::with_debounce(settings.timing.debounce));
        // A busy namespace is summed at least every 15 quiet periods (30 s by default).
        let summaries = Debouncer::new(settings.summary_debounce, settings.summary_debounce * 15);
        let mut state = State {
            s: settings,
            index,
            queue,
            jobs: JobTracker::default(),
            kinds: BTreeMap::new(),
            first_event: HashMap::new(),
            summaries,
            metrics,
            started: now,
            jobs_synced: false,
            jobs_relist: None,
            initial_sync: false,
            roles_synced: false,
            resync_due: None,
            resync_running: false,
            done_during_resync: HashSet::new(),
            kinds_changed: true,
            last_prune: now,
        };
        for (spec, resolved) in kinds {
            let (status, info) = match resolved {
                Ok(info) => {
                    let info = Arc::new(info);
                    state.index.watch_kind(&info);
                    (KindStatus::Listing, Some(info))
                }
                Err(f) => (failure_status(f), None),
            };
            state.kinds.insert(
                spec.clone(),
                KindState {
                    status: KindStatus::Listing,
                    info,
                    synced_once: false,
                    relist: None,
                },
            );
            state.set_status(&spec, status);
        }
        state
    }

    /// The first effects: watches of the discovered kinds, background discovery of the others.
    pub fn start(&mut self, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        for (spec, k) in &self.kinds {
            match &k.info {
                Some(info) => effects.push(Effect::StartWatch(info.clone())),
                None => effects.push(Effect::RetryDiscovery(spec.clone())),
            }
        }
        effects.extend(self.check_roles_synced());
        effects.extend(self.check_initial_sync(now));
        effects
    }

    /// Whether the initial sync is done.
    pub fn initial_sync_done(&self) -> bool {
        self.initial_sync
    }

    /// Whether the kind states changed since the last call (for `/readyz`).
    pub fn take_kinds_changed(&mut self) -> bool {
        std::mem::take(&mut self.kinds_changed)
    }

    /// Each configured kind's state, for `/readyz`.
    pub fn kind_reports(&self) -> Vec<KindReport> {
        self.kinds
            .iter()
            .map(|(spec, k)| {
                let (state, message) = match &k.status {
                    KindStatus::Listing => ("listing", None),
                    KindStatus::Ready => ("ready", None),
                    KindStatus::NotFound(m) => ("not-found", Some(m.clone())),
                    KindStatus::Forbidden(m) => ("forbidden", Some(m.clone())),
                    KindStatus::Failed(m) => ("error", Some(m.clone())),
                };
                KindReport {
                    group: spec.group.clone(),
                    version: spec.version.clone(),
                    resource: spec.resource.clone(),
                    state: state.into(),
                    message,
                }
            })
            .collect()
    }

    /// The index (for tests and diagnostics).
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The queue (for tests and diagnostics).
    pub fn queue(&self) -> &Queue<TargetKey> {
        &self.queue
    }

    /// Number of active scan Jobs.
    pub fn active_jobs(&self) -> usize {
        self.jobs.len()
    }

    fn set_status(&mut self, spec: &KindSpec, status: KindStatus) {
        let Some(k) = self.kinds.get_mut(spec) else {
            return;
        };
        let ready = i64::from(status == KindStatus::Ready);
        if k.status != status {
            k.status = status;
            self.kinds_changed = true;
        }
        self.metrics
            .kind_ready
            .get_or_create(&KindLabels {
                group: spec.group.clone(),
                version: spec.version.clone(),
                resource: spec.resource.clone(),
            })
            .set(ready);
    }

    /// Handles one message.
    pub fn handle(&mut self, msg: Msg, now: Instant) -> Vec<Effect> {
        match msg {
            Msg::KindFound(spec, info) => self.on_kind_found(spec, info, now),
            Msg::KindFailed(spec, failure) => {
                if self.kinds.get(&spec).is_some_and(|k| k.info.is_none()) {
                    tracing::warn!(kind = %spec, error = failure.message(), "watched kind not available; retrying");
                    self.set_status(&spec, failure_status(failure));
                }
                Vec::new()
            }
            Msg::Watch { kind, event } => self.on_watch(kind, event, now),
            Msg::Jobs(event) => self.on_jobs(event, now),
            Msg::JobCreated { name, outcome } => self.on_job_created(name, outcome, now),
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
            Msg::Summarized { namespace, ok } => {
                self.summaries.done(&namespace, now, ok);
                Vec::new()
            }
        }
    }

    fn on_kind_found(&mut self, spec: KindSpec, info: KindInfo, now: Instant) -> Vec<Effect> {
        let Some(k) = self.kinds.get_mut(&spec) else {
            return Vec::new();
        };
        if k.info.is_some() {
            return Vec::new();
        }
        tracing::info!(kind = %spec, "watched kind appeared in API discovery; watching it");
        let info = Arc::new(info);
        k.info = Some(info.clone());
        self.index.watch_kind(&info);
        self.set_status(&spec, KindStatus::Listing);
        let mut effects = vec![Effect::StartWatch(info)];
        effects.extend(self.check_initial_sync(now));
        effects
    }

    fn on_watch(&mut self, kind: Arc<KindInfo>, event: WatchEvent, now: Instant) -> Vec<Effect> {
        let spec = KindSpec::of(&kind);
        let mut effects = Vec::new();
        match event {
            WatchEvent::Init => {
                if let Some(k) = self.kinds.get_mut(&spec) {
                    k.relist = Some(HashSet::new());
                }
            }
            WatchEvent::Apply {
                key,
                meta,
                binding,
                spec_hash,
                ..
            } => {
                if let Some(seen) = self.kinds.get_mut(&spec).and_then(|k| k.relist.as_mut()) {
                    seen.insert(key.clone());
                }
                let actions =
                    self.index
                        .applied_with_spec(key, &meta, binding, spec_hash.as_deref());
                effects.extend(self.apply_actions(actions, now));
            }
            WatchEvent::Delete { key, binding } => {
                let actions = self.index.deleted(key, binding);
                effects.extend(self.apply_actions(actions, now));
            }
            WatchEvent::InitDone => {
                let seen = self.kinds.get_mut(&spec).and_then(|k| k.relist.take());
                if let Some(seen) = seen {
                    // Objects deleted while the watch was down are missing from the re-list.
                    for key in self.index.keys_of_kind(&kind) {
                        if !seen.contains(&key) {
                            tracing::info!(target = %key, "deleted while the watch was down");
                            let actions = self.index.deleted(key, None);
                            effects.extend(self.apply_actions(actions, now));
                        }
                    }
                }
                if let Some(k) = self.kinds.get_mut(&spec) {
                    k.synced_once = true;
                }
                self.set_status(&spec, KindStatus::Ready);
                tracing::info!(kind = %spec, targets_total = self.index.target_count(), "watch listed");
                if self.initial_sync {
                    let soon = now + self.s.relist_resync_delay;
                    self.resync_due = Some(self.resync_due.map_or(soon, |d| d.min(soon)));
                }
                effects.extend(self.check_roles_synced());
                effects.extend(self.check_initial_sync(now));
            }
            WatchEvent::Error { message, status } => {
                tracing::warn!(kind = %spec, error = %message, "watch failed; retrying with backoff");
                let synced = self.kinds.get(&spec).is_some_and(|k| k.synced_once);
                match status {
                    Some(403) => self.set_status(
                        &spec,
                        KindStatus::Forbidden(format!(
                            "watching resource {spec} is forbidden: {message}"
                        )),
                    ),
                    Some(404) => self.set_status(
                        &spec,
                        KindStatus::NotFound(format!("resource {spec} not found: {message}")),
                    ),
                    _ if !synced => self.set_status(
                        &spec,
                        KindStatus::Failed(format!("watching resource {spec} failed: {message}")),
                    ),
                    _ => {}
                }
                effects.extend(self.check_roles_synced());
                effects.extend(self.check_initial_sync(now));
            }
        }
        effects
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

    fn on_jobs(&mut self, event: JobEvent, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        match event {
            JobEvent::Init => self.jobs_relist = Some(HashSet::new()),
            JobEvent::Apply(view) => {
                if let Some(seen) = self.jobs_relist.as_mut() {
                    seen.insert(view.name.clone());
                }
                effects.extend(self.on_job(view, now));
            }
            JobEvent::Delete(view) => {
                if self.is_tracked_incarnation(&view)
                    && let Some(record) = self.jobs.remove(&view.name)
                {
                    let ok = view.finished.unwrap_or(false);
                    if !ok {
                        tracing::warn!(job = %view.name, "scan Job deleted before it finished");
                    }
                    for key in record.targets {
                        effects.extend(self.finish(key, ok, now, &view.name));
                    }
                }
            }
            JobEvent::InitDone => {
                if let Some(seen) = self.jobs_relist.take() {
                    let before = now.checked_sub(VANISH_GRACE).unwrap_or(now);
                    for name in self.jobs.vanished(&seen, before) {
                        tracing::warn!(job = %name, "scan Job vanished while the Job watch was down");
                        if let Some(record) = self.jobs.remove(&name) {
                            for key in record.targets {
                                effects.extend(self.finish(key, false, now, &name));
                            }
                        }
                    }
                }
                if !self.jobs_synced {
                    tracing::info!(active = self.jobs.len(), "scan Jobs listed");
                }
                self.jobs_synced = true;
                effects.extend(self.check_initial_sync(now));
            }
            JobEvent::Error(message) => {
                tracing::warn!(error = %message, "scan Job watch failed; retrying with backoff");
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
        let mut effects = Vec::new();
        if self.jobs.contains(&view.name) && !self.is_tracked_incarnation(&view) {
            return effects;
        }
        match view.finished {
            Some(ok) => {
                if let Some(record) = self.jobs.remove(&view.name) {
                    if ok {
                        tracing::info!(job = %view.name, targets = record.targets.len(), "scan Job complete");
                    } else {
                        tracing::warn!(job = %view.name, targets = record.targets.len(), attempt = record.attempt, "scan Job failed");
                    }
                    for key in record.targets {
                        effects.extend(self.finish(key, ok, now, &view.name));
                    }
                }
            }
            None if self.jobs.contains(&view.name) || view.deleting => {}
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
            }
        }
        effects
    }

    fn on_job_created(
        &mut self,
        name: String,
        outcome: CreateOutcome,
        now: Instant,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        match outcome {
            CreateOutcome::Created { uid } => {
                tracing::info!(job = %name, "scan Job created");
                self.jobs.confirm(&name, &uid);
            }
            CreateOutcome::Running { uid } => {
                tracing::info!(job = %name, "scan Job of the same batch is running; waiting for it");
                self.jobs.confirm(&name, &uid);
            }
            CreateOutcome::FinishedDeleted => {
                tracing::info!(job = %name, "a finished scan Job had the same name; deleted it, requeueing its targets");
                if let Some(record) = self.jobs.remove(&name) {
                    for key in record.targets {
                        self.queue.release(&key, now + COLLISION_REQUEUE);
                    }
                }
            }
            CreateOutcome::Failed(e) => {
                tracing::error!(job = %name, error = %e, category = ?e.category(), "scan Job not created");
                self.metrics.error(&e);
                if let Some(record) = self.jobs.remove(&name) {
                    for key in record.targets {
                        effects.extend(self.finish(key, false, now, &name));
                    }
                }
            }
        }
        effects
    }

    /// The end of one target's scan.
    fn finish(&mut self, key: TargetKey, ok: bool, now: Instant, job: &str) -> Vec<Effect> {
        let mut effects = Vec::new();
        if self.resync_running {
            self.done_during_resync.insert(key.clone());
        }
        match self.queue.complete(&key, ok, now) {
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
                tracing::error!(target = %key, job, attempts, "scan failed every attempt; retried at the next resync");
                effects.push(Effect::ReportFailure {
                    key: key.clone(),
                    attempts,
                    job: job.to_string(),
                });
            }
        }
        let kind_synced = self
            .kinds
            .get(&KindSpec::of(&key.kind))
            .is_some_and(|k| k.synced_once);
        let refs = self.index.result_refs(&key);
        if self.index.expected_fingerprint(&key).is_none() && kind_synced {
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

    fn on_results(&mut self, result: Result<ResultsSnapshot, String>, now: Instant) -> Vec<Effect> {
        self.resync_running = false;
        let done_during_list = std::mem::take(&mut self.done_during_resync);
        let snapshot = match result {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "listing results for the resync failed; retrying");
                self.resync_due = Some(now + RESYNC_RETRY);
                return Vec::new();
            }
        };
        self.resync_due = Some(now + self.s.timing.resync);
        let results = snapshot.results.len();
        self.index.set_results(snapshot.results);
        if let (n, Some(example)) = self.index.version_mismatches() {
            tracing::warn!(
                results = n,
                scanner_version = %example.scanner_version,
                controls_hash = %example.controls_hash,
                "results written by another scanner version or control set are rescanned; if this \
                 repeats at every resync, the controller and scan-job images are from different \
                 releases or read different configurations"
            );
        }
        let (scans, orphans) = self.index.resync();
        let mut queued = 0usize;
        for key in scans {
            if !self.queue.is_queued(&key) && !done_during_list.contains(&key) {
                self.enqueue(key, now);
                queued += 1;
            }
        }
        let (deletable, kept): (Vec<ResultRef>, Vec<ResultRef>) =
            orphans.into_iter().partition(|r| {
                let source = self.index.result_info(r).and_then(|i| i.source.clone());
                self.source_synced(source.as_ref())
            });
        tracing::info!(
            results,
            rescans = queued,
            orphans = deletable.len(),
            orphans_waiting_for_watches = kept.len(),
            "resync"
        );
        let mut effects = Vec::new();
        for chunk in deletable.chunks(DELETE_CHUNK) {
            effects.push(Effect::DeleteResults(chunk.to_vec()));
        }
        for ns in self
            .index
            .result_namespaces()
            .into_iter()
            .chain(snapshot.summaries)
        {
            self.summaries.mark(&ns, now);
        }
        effects
    }

    /// Whether the watches that could produce a result of `source` have listed everything, so
    /// that a result unknown to the index really is an orphan.
    fn source_synced(&self, source: Option<&SourceKind>) -> bool {
        let Some(source) = source else {
            return self
                .kinds
                .values()
                .all(|k| k.synced_once || matches!(k.status, KindStatus::NotFound(_)));
        };
        let matching: Vec<&KindState> = self
            .kinds
            .values()
            .filter(|k| {
                k.info
                    .as_ref()
                    .is_some_and(|i| i.group == source.group && i.kind == source.kind)
            })
            .collect();
        if matching.is_empty() {
            // Not a watched kind (any more), unless an undiscovered kind could be it.
            return self
                .kinds
                .values()
                .all(|k| k.info.is_some() || matches!(k.status, KindStatus::NotFound(_)));
        }
        let binding =
            source.group == "rbac.authorization.k8s.io" && source.kind.ends_with("Binding");
        matching.iter().all(|k| k.synced_once)
            && (!binding
                || self
                    .kinds
                    .values()
                    .filter(|k| k.is_role())
                    .all(|k| k.synced_once))
    }

    fn check_roles_synced(&mut self) -> Vec<Effect> {
        if self.roles_synced {
            return Vec::new();
        }
        let done = self
            .kinds
            .values()
            .filter(|k| k.is_role())
            .all(|k| k.synced_once || !matches!(k.status, KindStatus::Listing));
        if done {
            self.roles_synced = true;
            return vec![Effect::RolesSynced];
        }
        Vec::new()
    }

    fn check_initial_sync(&mut self, now: Instant) -> Vec<Effect> {
        if self.initial_sync || !self.jobs_synced {
            return Vec::new();
        }
        if self.kinds.values().any(|k| k.status == KindStatus::Listing) {
            return Vec::new();
        }
        self.initial_sync = true;
        self.kinds_changed = true;
        tracing::info!(
            targets = self.index.target_count(),
            queued = self.queue.counts(now).0,
            "initial sync done"
        );
        self.resync_due = None;
        self.resync_running = true;
        vec![Effect::ListResults]
    }

    /// Periodic work: dispatch, summaries, resync, lost Jobs, metrics.
    pub fn tick(&mut self, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        let max_age = Duration::from_secs(
            u64::try_from(self.s.config.scan_job.active_deadline_seconds.max(0)).unwrap_or(0),
        ) + JOB_OVERDUE_MARGIN;
        for name in self.jobs.overdue(now, max_age) {
            tracing::warn!(job = %name, "scan Job never reported finishing; giving it up");
            if let Some(record) = self.jobs.remove(&name) {
                for key in record.targets {
                    effects.extend(self.finish(key, false, now, &name));
                }
            }
        }
        effects.extend(self.dispatch(now));
        for ns in self.summaries.take_due(now) {
            effects.push(Effect::Summarize(ns));
        }
        if self.initial_sync && !self.resync_running && self.resync_due.is_some_and(|d| d <= now) {
            self.resync_running = true;
            effects.push(Effect::ListResults);
        }
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

    fn may_dispatch(&self, now: Instant) -> bool {
        self.jobs_synced
            && (self.initial_sync
                || now.saturating_duration_since(self.started) >= self.s.dispatch_hold)
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
        if let Some(t) = self.resync_due {
            consider(t);
        }
        if !self.initial_sync {
            consider(self.started + self.s.dispatch_hold);
        }
        wake.max(now + Duration::from_millis(5))
    }
}

fn failure_status(f: Failure) -> KindStatus {
    match f {
        Failure::NotFound(m) => KindStatus::NotFound(m),
        Failure::Forbidden(m) => KindStatus::Forbidden(m),
        Failure::Error(m) => KindStatus::Failed(m),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;
    use crate::events::ResultInfo;

    const HASH: &str = "h";
    const SCANNER: &str = "v";

    fn config(batch: usize, max_jobs: usize) -> Arc<Config> {
        Arc::new(
            Config::parse(
                "t",
                &format!(
                    r#"
clusterName: test
continuousScanning:
  matchingRules:
  - {{apiGroups: [apps], apiVersions: [v1], resources: [deployments, replicasets]}}
  - {{apiGroups: [example.com], apiVersions: [v1], resources: [widgets]}}
scanJob: {{image: scan:1, serviceAccountName: sa, batchSize: {batch}, maxConcurrentJobs: {max_jobs}, ttlSecondsAfterFinished: 300, activeDeadlineSeconds: 300, backoffLimit: 2}}
"#
                ),
            )
            .unwrap(),
        )
    }

    fn kind(k: &str, plural: &str) -> KindInfo {
        KindInfo {
            group: "apps".into(),
            version: "v1".into(),
            kind: k.into(),
            plural: plural.into(),
            namespaced: true,
        }
    }

    fn spec_of(plural: &str, group: &str) -> KindSpec {
        KindSpec {
            group: group.into(),
            version: "v1".into(),
            resource: plural.into(),
        }
    }

    struct Harness {
        state: State,
        now: Instant,
        deploy: Arc<KindInfo>,
        rs: Arc<KindInfo>,
        metrics: Metrics,
    }

    impl Harness {
        fn new(batch: usize, max_jobs: usize) -> Self {
            let now = Instant::now();
            let deploy = kind("Deployment", "deployments");
            let rs = kind("ReplicaSet", "replicasets");
            let found = vec![Arc::new(deploy.clone()), Arc::new(rs.clone())];
            let index = Index::new("kubevigil", &found, SCANNER, HASH);
            let (metrics, _) = Metrics::new();
            let resolved = vec![
                (spec_of("deployments", "apps"), Ok(deploy)),
                (spec_of("replicasets", "apps"), Ok(rs)),
                (
                    spec_of("widgets", "example.com"),
                    Err(Failure::NotFound(
                        "resource widgets.example.com/v1 not found in API discovery".into(),
                    )),
                ),
            ];
            let timing = Timing {
                debounce: Duration::from_secs(2),
                resync: Duration::from_secs(600),
            };
            let state = State::new(
                StateSettings::new(config(batch, max_jobs), "kubevigil".into(), timing),
                index,
                resolved,
                metrics.clone(),
                now,
            );
            let (deploy, rs) = (found[0].clone(), found[1].clone());
            Harness {
                state,
                now,
                deploy,
                rs,
                metrics,
            }
        }

        fn advance(&mut self, d: Duration) {
            self.now += d;
        }

        fn send(&mut self, msg: Msg) -> Vec<Effect> {
            self.state.handle(msg, self.now)
        }

        fn tick(&mut self) -> Vec<Effect> {
            self.state.tick(self.now)
        }

        /// Ticks; every Job it creates is answered as created (UID `uid-<name>`).
        fn dispatched(&mut self) -> Vec<(String, Vec<String>)> {
            let created = jobs(&self.tick());
            for (name, _) in &created {
                self.send(Msg::JobCreated {
                    name: name.clone(),
                    outcome: CreateOutcome::Created {
                        uid: format!("uid-{name}"),
                    },
                });
            }
            created
        }

        fn watch(&mut self, kind: &Arc<KindInfo>, event: WatchEvent) -> Vec<Effect> {
            self.send(Msg::Watch {
                kind: kind.clone(),
                event,
            })
        }

        fn key(&self, kind: &Arc<KindInfo>, ns: &str, name: &str) -> TargetKey {
            TargetKey {
                kind: kind.clone(),
                namespace: Some(ns.into()),
                name: name.into(),
            }
        }

        fn apply(
            &mut self,
            kind: &Arc<KindInfo>,
            ns: &str,
            name: &str,
            meta: ObjectMeta,
        ) -> Vec<Effect> {
            let key = self.key(kind, ns, name);
            self.watch(
                kind,
                WatchEvent::Apply {
                    key,
                    meta: Box::new(meta),
                    binding: None,
                    spec_hash: None,
                    init: false,
                },
            )
        }

        /// Jobs listed (none running), both kinds listed with the given deployments.
        fn sync(&mut self, deployments: &[&str]) -> Vec<Effect> {
            let mut effects = self.send(Msg::Jobs(JobEvent::Init));
            effects.extend(self.send(Msg::Jobs(JobEvent::InitDone)));
            let (deploy, rs) = (self.deploy.clone(), self.rs.clone());
            effects.extend(self.watch(&deploy, WatchEvent::Init));
            for name in deployments {
                effects.extend(self.apply(&deploy, "shop", name, meta(name, 1, "1")));
            }
            effects.extend(self.watch(&deploy, WatchEvent::InitDone));
            effects.extend(self.watch(&rs, WatchEvent::Init));
            effects.extend(self.watch(&rs, WatchEvent::InitDone));
            effects
        }
    }

    fn meta(name: &str, generation: i64, rv: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some("shop".into()),
            uid: Some(format!("uid-{name}")),
            generation: Some(generation),
            resource_version: Some(rv.into()),
            ..ObjectMeta::default()
        }
    }

    fn jobs(effects: &[Effect]) -> Vec<(String, Vec<String>)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::CreateJob(job) => Some((
                    job.metadata.name.clone().unwrap_or_default(),
                    crate::jobs::job_targets(job)
                        .iter()
                        .map(|k| k.name.clone())
                        .collect(),
                )),
                _ => None,
            })
            .collect()
    }

    fn view(name: &str, targets: Vec<TargetKey>, finished: Option<bool>) -> JobView {
        JobView {
            name: name.into(),
            uid: format!("uid-{name}"),
            targets,
            finished,
            deleting: false,
        }
    }

    #[test]
    fn startup_watches_found_kinds_and_reports_missing_ones() {
        let mut h = Harness::new(50, 5);
        let effects = h.state.start(h.now);
        let starts = effects
            .iter()
            .filter(|e| matches!(e, Effect::StartWatch(_)))
            .count();
        assert_eq!(starts, 2);
        assert!(
            effects
                .iter()
                .any(|e| matches!(e, Effect::RetryDiscovery(s) if s.resource == "widgets"))
        );
        // No role kinds configured: bindings need not wait.
        assert!(effects.iter().any(|e| matches!(e, Effect::RolesSynced)));
        let reports = h.state.kind_reports();
        let widgets = reports.iter().find(|r| r.resource == "widgets").unwrap();
        assert_eq!(widgets.state, "not-found");
        assert_eq!(
            widgets.message.as_deref(),
            Some("resource widgets.example.com/v1 not found in API discovery")
        );
        assert!(!h.state.initial_sync_done());
    }

    #[test]
    fn initial_backlog_goes_out_in_full_batches_after_the_sync() {
        let mut h = Harness::new(50, 5);
        h.state.start(h.now);
        let names: Vec<String> = (0..120).map(|i| format!("d{i:03}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        // Before the sync is done nothing is dispatched.
        let deploy = h.deploy.clone();
        h.watch(&deploy, WatchEvent::Init);
        h.apply(&deploy, "shop", "d000", meta("d000", 1, "1"));
        assert!(h.dispatched().is_empty());
        let effects = h.sync(&refs);
        assert!(h.state.initial_sync_done());
        assert!(effects.iter().any(|e| matches!(e, Effect::ListResults)));
        let created = h.dispatched();
        let sizes: Vec<usize> = created.iter().map(|(_, t)| t.len()).collect();
        assert_eq!(sizes, vec![50, 50, 20]);
        assert_eq!(h.state.active_jobs(), 3);
        assert_eq!(h.metrics.scans_started.get(), 120);
        assert!(h.dispatched().is_empty(), "all targets are in flight");
    }

    #[test]
    fn dispatch_holds_at_most_max_jobs_and_refills_on_completion() {
        let mut h = Harness::new(1, 2);
        h.state.start(h.now);
        h.sync(&["a", "b", "c"]);
        let first = h.dispatched();
        assert_eq!(first.len(), 2);
        assert!(h.dispatched().is_empty());
        let (name, targets) = first[0].clone();
        let key = h.key(&h.deploy.clone(), "shop", &targets[0]);
        h.advance(Duration::from_secs(3));
        h.send(Msg::Jobs(JobEvent::Apply(view(
            &name,
            vec![key],
            Some(true),
        ))));
        let next = h.dispatched();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].1, vec!["c".to_string()]);
        assert_eq!(h.metrics.scans_succeeded.get(), 1);
    }

    #[test]
    fn status_only_updates_and_owned_children_start_no_job() {
        let mut h = Harness::new(50, 5);
        h.state.start(h.now);
        h.sync(&["web"]);
        let created = h.dispatched();
        assert_eq!(created.len(), 1);
        let (name, _) = created[0].clone();
        let web = h.key(&h.deploy.clone(), "shop", "web");
        h.send(Msg::Jobs(JobEvent::Apply(view(
            &name,
            vec![web],
            Some(true),
        ))));
        // Rollout churn: status updates of the Deployment, a new ReplicaSet it owns.
        let deploy = h.deploy.clone();
        let rs = h.rs.clone();
        for rv in 2..10 {
            h.advance(Duration::from_millis(300));
            h.apply(&deploy, "shop", "web", meta("web", 1, &rv.to_string()));
            let mut child = meta("web-7d9f", 1, &rv.to_string());
            child.owner_references = Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: "web".into(),
                uid: "uid-web".into(),
                controller: Some(true),
                ..OwnerReference::default()
            }]);
            h.apply(&rs, "shop", "web-7d9f", child);
            assert!(h.dispatched().is_empty());
        }
        // A spec change (generation 2) is one scan.
        h.apply(&deploy, "shop", "web", meta("web", 2, "20"));
        h.advance(Duration::from_secs(3));
        assert_eq!(h.dispatched().len(), 1);
    }

    #[test]
    fn failed_scans_retry_alone_then_are_reported() {
        let mut h = Harness::new(50, 5);
        h.state.start(h.now);
        h.sync(&["a", "b"]);
        let (name, _) = h.dispatched()[0].clone();
        let a = h.key(&h.deploy.clone(), "shop", "a");
        let b = h.key(&h.deploy.clone(), "shop", "b");
        h.send(Msg::Jobs(JobEvent::Apply(view(
            &name,
            vec![a.clone(), b.clone()],
            Some(false),
        ))));
        assert_eq!(h.metrics.scan_retries.get(), 2);
        // Retries go one target per Job, so that a bad target cannot fail the others again.
        h.advance(Duration::from_secs(300));
        let retries = h.dispatched();
        assert_eq!(retries.len(), 2);
        let mut reported = Vec::new();
        for (name, targets) in retries {
            let (key, ok) = if targets[0] == "a" {
                (a.clone(), false)
            } else {
                (b.clone(), true)
            };
            reported.extend(h.send(Msg::Jobs(JobEvent::Apply(view(&name, vec![key], Some(ok))))));
        }
        // a fails its third and fourth attempts: then it is reported, not retried.
        for _ in 0..2 {
            h.advance(Duration::from_secs(300));
            let created = h.dispatched();
            assert_eq!(created.len(), 1);
            assert_eq!(created[0].1, vec!["a".to_string()]);
            reported.extend(h.send(Msg::Jobs(JobEvent::Apply(view(
                &created[0].0,
                vec![a.clone()],
                Some(false),
            )))));
        }
        let failures: Vec<&TargetKey> = reported
            .iter()
            .filter_map(|e| match e {
                Effect::ReportFailure {
                    key, attempts: 4, ..
                } => Some(key),
                _ => None,
            })
            .collect();
        assert_eq!(failures, vec![&a]);
        assert_eq!(h.metrics.scans_failed.get(), 1);
        assert_eq!(h.metrics.scans_succeeded.get(), 1);
        h.advance(Duration::from_secs(600));
        assert!(h.dispatched().is_empty(), "left to the next resync");
    }

    #[test]
    fn job_name_collisions() {
        let mut h = Harness::new(50, 5);
        h.state.start(h.now);
        h.sync(&["a"]);
        let a = h.key(&h.deploy.clone(), "shop", "a");
        let (name, _) = jobs(&h.tick())[0].clone();
        let old = |finished| JobView {
            name: name.clone(),
            uid: "uid-old".into(),
            targets: vec![a.clone()],
            finished,
            deleting: false,
        };
        // Events of the older, finished Job of that name (being deleted by the conflict
        // handling) are not this create's outcome.
        assert!(
            h.send(Msg::Jobs(JobEvent::Apply(old(Some(false)))))
                .is_empty()
        );
        assert!(
            h.send(Msg::Jobs(JobEvent::Delete(old(Some(false)))))
                .is_empty()
        );
        assert_eq!(h.metrics.scan_retries.get(), 0);
        assert_eq!(h.state.active_jobs(), 1);
        // The conflict handling deleted that finished Job: requeued shortly.
        h.send(Msg::JobCreated {
            name: name.clone(),
            outcome: CreateOutcome::FinishedDeleted,
        });
        assert_eq!(h.state.active_jobs(), 0);
        assert!(jobs(&h.tick()).is_empty());
        h.advance(COLLISION_REQUEUE);
        let again = jobs(&h.tick());
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].0, name, "same batch, same deterministic name");
        // This time one is running: its targets stay in flight until it finishes.
        h.send(Msg::JobCreated {
            name: name.clone(),
            outcome: CreateOutcome::Running {
                uid: "uid-running".into(),
            },
        });
        assert_eq!(h.state.active_jobs(), 1);
        h.advance(Duration::from_secs(60));
        assert!(jobs(&h.tick()).is_empty());
        let mut running = old(Some(true));
        running.uid = "uid-running".into();
        h.send(Msg::Jobs(JobEvent::Apply(running)));
        assert_eq!(h.state.active_jobs(), 0);
        assert_eq!(h.metrics.scans_succeeded.get(), 1);
    }

    #[test]
    fn running_jobs_are_adopted_at_startup() {
        let mut h = Harness::new(50, 1);
        h.state.start(h.now);
        let a = h.key(&h.deploy.clone(), "shop", "a");
        h.send(Msg::Jobs(JobEvent::Init));
        h.send(Msg::Jobs(JobEvent::Apply(view(
            "kubevigil-scan-old",
            vec![a.clone()],
            None,
        ))));
        h.send(Msg::Jobs(JobEvent::Apply(view(
            "kubevigil-scan-done",
            vec![a.clone()],
            Some(true),
        ))));
        let effects = h.sync(&["a", "b"]);
        assert!(effects.iter().any(|e| matches!(e, Effect::ListResults)));
        assert!(h.state.queue().in_flight(&a));
        assert_eq!(h.state.active_jobs(), 1);
        assert!(
            h.dispatched().is_empty(),
            "the adopted Job fills the only slot"
        );
        h.send(Msg::Jobs(JobEvent::Delete(view(
            "kubevigil-scan-old",
            vec![a.clone()],
            Some(true),
        ))));
        // `a` was listed while the adopted Job ran: it is scanned again after it (the old Job
        // may have read an older version), together with `b`.
        assert_eq!(h.dispatched()[0].1, vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn deletes_missed_during_a_watch_outage_are_found_by_the_relist() {
        let mut h = Harness::new(50, 5);
        h.state.start(h.now);
        h.sync(&["keep", "gone"]);
        let deploy = h.deploy.clone();
        h.watch(&deploy, WatchEvent::Init);
        h.apply(&deploy, "shop", "keep", meta("keep", 1, "1"));
        let effects = h.watch(&deploy, WatchEvent::InitDone);
        let deleted: Vec<&ResultRef> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::DeleteResults(r) => Some(r),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(
            deleted,
            vec![&ResultRef {
                namespace: "shop".into(),
                name: "deployment-gone".into()
            }]
        );
        assert_eq!(h.state.index().target_count(), 1);
    }

    #[test]
    fn target_deleted_during_its_scan_loses_late_results() {
        let mut h = Harness::new(50, 5);
        h.state.start(h.now);
        h.sync(&["a"]);
        let (name, _) = h.dispatched()[0].clone();
        let a = h.key(&h.deploy.clone(), "shop", "a");
        let deploy = h.deploy.clone();
        let effects = h.watch(
            &deploy,
            WatchEvent::Delete {
                key: a.clone(),
                binding: None,
            },
        );
        assert!(
            effects
                .iter()
                .any(|e| matches!(e, Effect::DeleteResults(_)))
        );
        let effects = h.send(Msg::Jobs(JobEvent::Apply(view(&name, vec![a], Some(true)))));
        assert!(
            effects
                .iter()
                .any(|e| matches!(e, Effect::DeleteResults(_))),
            "results written by the finishing scan are deleted again"
        );
        assert!(h.dispatched().is_empty());
    }

    #[test]
    fn resync_rescans_missing_and_collects_only_orphans_of_listed_kinds() {
        let mut h = Harness::new(50, 5);
        h.state.start(h.now);
        h.sync(&["a"]);
        h.tick();
        let info = |kind: &str, group: &str| ResultInfo {
            fingerprint: "x".into(),
            scanner_version: SCANNER.into(),
            controls_hash: HASH.into(),
            source: Some(SourceKind {
                group: group.into(),
                kind: kind.into(),
            }),
        };
        let r = |name: &str| ResultRef {
            namespace: "shop".into(),
            name: name.into(),
        };
        let snapshot = ResultsSnapshot {
            results: HashMap::from([
                (r("deployment-orphan"), info("Deployment", "apps")),
                (r("widget-w"), info("Widget", "example.com")),
                (r("statefulset-s"), info("StatefulSet", "apps")),
            ]),
            summaries: BTreeSet::from(["old-ns".to_string()]),
        };
        let effects = h.send(Msg::ResultsListed(Ok(snapshot)));
        let deleted: Vec<String> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::DeleteResults(r) => Some(r),
                _ => None,
            })
            .flatten()
            .map(|r| r.name.clone())
            .collect();
        // Widgets are not discovered (not found): their results are orphans too; a kind that is
        // no longer watched at all likewise.
        assert_eq!(deleted.len(), 3, "{deleted:?}");
        // Summaries of namespaces with results and of existing summaries are recomputed.
        h.advance(Duration::from_secs(3));
        let summarized: BTreeSet<String> = h
            .tick()
            .into_iter()
            .filter_map(|e| match e {
                Effect::Summarize(ns) => Some(ns),
                _ => None,
            })
            .collect();
        assert_eq!(
            summarized,
            BTreeSet::from(["old-ns".to_string(), "shop".to_string()])
        );
        // Next resync after the period.
        h.advance(Duration::from_secs(600));
        assert!(h.tick().iter().any(|e| matches!(e, Effect::ListResults)));
    }

    #[test]
    fn scans_finished_while_results_were_listed_are_not_rescanned() {
        let mut h = Harness::new(50, 5);
        h.state.start(h.now);
        h.sync(&["a", "b"]);
        h.send(Msg::ResultsListed(Ok(ResultsSnapshot::default())));
        // Dispatch just before the next resync is due.
        h.advance(Duration::from_secs(599));
        let (name, _) = h.dispatched()[0].clone();
        let a = h.key(&h.deploy.clone(), "shop", "a");
        let b = h.key(&h.deploy.clone(), "shop", "b");
        h.advance(Duration::from_secs(1));
        assert!(h.tick().iter().any(|e| matches!(e, Effect::ListResults)));
        // The Job finishes while the list runs; the list does not have the new results.
        h.send(Msg::Jobs(JobEvent::Apply(view(
            &name,
            vec![a.clone(), b],
            Some(true),
        ))));
        h.advance(Duration::from_secs(10));
        h.send(Msg::ResultsListed(Ok(ResultsSnapshot::default())));
        assert!(!h.state.queue().is_queued(&a));
        // The next resync (with the results still missing) does rescan.
        h.advance(Duration::from_secs(600));
        h.tick();
        h.send(Msg::ResultsListed(Ok(ResultsSnapshot::default())));
        assert!(h.state.queue().is_queued(&a));
    }

    #[test]
    fn orphans_wait_for_a_kind_that_is_still_listing() {
        let mut h = Harness::new(50, 5);
        h.state.start(h.now);
        h.send(Msg::Jobs(JobEvent::InitDone));
        let deploy = h.deploy.clone();
        h.watch(&deploy, WatchEvent::Init);
        h.watch(&deploy, WatchEvent::InitDone);
        // replicasets fail with a server error before listing: the initial sync proceeds.
        let rs = h.rs.clone();
        let effects = h.watch(
            &rs,
            WatchEvent::Error {
                message: "boom".into(),
                status: Some(500),
            },
        );
        assert!(effects.iter().any(|e| matches!(e, Effect::ListResults)));
        let snapshot = ResultsSnapshot {
            results: HashMap::from([(
                ResultRef {
                    namespace: "shop".into(),
                    name: "replicaset-x".into(),
                },
                ResultInfo {
                    fingerprint: "x".into(),
                    scanner_version: SCANNER.into(),
                    controls_hash: HASH.into(),
                    source: Some(SourceKind {
                        group: "apps".into(),
                        kind: "ReplicaSet".into(),
                    }),
                },
            )]),
            summaries: BTreeSet::new(),
        };
        let effects = h.send(Msg::ResultsListed(Ok(snapshot)));
        assert!(
            !effects
                .iter()
                .any(|e| matches!(e, Effect::DeleteResults(_)))
        );
        let reports = h.state.kind_reports();
        assert_eq!(
            reports
                .iter()
                .find(|r| r.resource == "replicasets")
                .map(|r| r.state.as_str()),
            Some("error")
        );
    }

    #[test]
    fn completed_scans_refresh_their_namespace_summary() {
        let mut h = Harness::new(50, 5);
        h.state.start(h.now);
        h.sync(&["a"]);
        h.send(Msg::ResultsListed(Ok(ResultsSnapshot::default())));
        let (name, _) = h.dispatched().first().cloned().unwrap_or_default();
        h.advance(Duration::from_secs(5));
        h.tick();
        let a = h.key(&h.deploy.clone(), "shop", "a");
        h.send(Msg::Jobs(JobEvent::Apply(view(&name, vec![a], Some(true)))));
        assert!(!h.tick().iter().any(|e| matches!(e, Effect::Summarize(_))));
        h.advance(Duration::from_secs(2));
        let effects = h.tick();
        assert!(
            effects
                .iter()
                .any(|e| matches!(e, Effect::Summarize(ns) if ns == "shop"))
        );
    }
}
