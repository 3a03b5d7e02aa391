//! The watched kinds: each one's discovery and watch state, what `/readyz` shows of them, and
//! the watch events that drive the index.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use kube::runtime::watcher;
use kubevigil_crds::target::{KindInfo, TargetKey};

use super::messages::{Effect, WatchEvent};
use super::{Startup, State};
use crate::discovery::{Failure, KindSpec};
use crate::error::watch_status;
use crate::index::SourceKind;
use crate::ops::{KindLabels, KindReport, Metrics};

/// Where a kind's discovery and watch stand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KindStatus {
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

impl From<Failure> for KindStatus {
    fn from(f: Failure) -> Self {
        match f {
            Failure::NotFound(m) => KindStatus::NotFound(m),
            Failure::Forbidden(m) => KindStatus::Forbidden(m),
            Failure::Error(m) => KindStatus::Failed(m),
        }
    }
}

#[derive(Debug)]
pub(super) struct KindState {
    status: KindStatus,
    info: Option<Arc<KindInfo>>,
    synced_once: bool,
    /// The keys a running (re-)list has returned so far.
    relist: Option<HashSet<TargetKey>>,
}

impl KindState {
    fn is_role(&self) -> bool {
        self.info.as_ref().is_some_and(|k| k.is_role())
    }
}

/// Binding watches wait for the role watches' first lists, so that binding fingerprints cover
/// their roles from the start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RolesGate {
    /// Some role kind is still listing.
    Waiting,
    /// Every role kind listed (or cannot be): binding watches may start.
    Open,
}

/// The configured kinds, by the resource they were configured as.
#[derive(Debug)]
pub(super) struct Kinds {
    table: BTreeMap<KindSpec, KindState>,
    roles: RolesGate,
    /// The kind states changed since `/readyz` last read them.
    changed: bool,
}

impl Kinds {
    /// The kinds of the startup discovery.
    pub(super) fn new(resolved: Vec<(KindSpec, Result<Arc<KindInfo>, Failure>)>) -> Self {
        let table = resolved
            .into_iter()
            .map(|(spec, r)| {
                let (status, info) = match r {
                    Ok(info) => (KindStatus::Listing, Some(info)),
                    Err(f) => (f.into(), None),
                };
                let state = KindState {
                    status,
                    info,
                    synced_once: false,
                    relist: None,
                };
                (spec, state)
            })
            .collect();
        Kinds {
            table,
            roles: RolesGate::Waiting,
            changed: true,
        }
    }

    /// Sets the metric of every kind (after [`Kinds::new`]).
    pub(super) fn publish(&self, metrics: &Metrics) {
        for (spec, k) in &self.table {
            set_ready_metric(metrics, spec, &k.status);
        }
    }

    /// The first effects: watches of the discovered kinds, background discovery of the others.
    pub(super) fn start_effects(&self) -> Vec<Effect> {
        self.table
            .iter()
            .map(|(spec, k)| match &k.info {
                Some(info) => Effect::StartWatch(info.clone()),
                None => Effect::RetryDiscovery(spec.clone()),
            })
            .collect()
    }

    fn set_status(&mut self, spec: &KindSpec, status: KindStatus, metrics: &Metrics) {
        let Some(k) = self.table.get_mut(spec) else {
            return;
        };
        if k.status != status {
            k.status = status;
            self.changed = true;
        }
        set_ready_metric(metrics, spec, &k.status);
    }

    /// Whether the kind states changed since the last call.
    pub(super) fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Marks the kind states changed (the initial sync is shown beside them).
    pub(super) fn mark_changed(&mut self) {
        self.changed = true;
    }

    /// Whether some kind's first list is still running.
    pub(super) fn any_listing(&self) -> bool {
        self.table.values().any(|k| k.status == KindStatus::Listing)
    }

    /// Whether the kind of `key` has listed everything once.
    pub(super) fn synced_once(&self, kind: &KindInfo) -> bool {
        self.table
            .get(&KindSpec::of(kind))
            .is_some_and(|k| k.synced_once)
    }

    /// Opens the roles gate when every role kind has listed (or cannot list): the one
    /// [`Effect::RolesSynced`].
    fn check_roles(&mut self) -> Option<Effect> {
        if self.roles == RolesGate::Open {
            return None;
        }
        let done = self
            .table
            .values()
            .filter(|k| k.is_role())
            .all(|k| k.synced_once || !matches!(k.status, KindStatus::Listing));
        done.then(|| {
            self.roles = RolesGate::Open;
            Effect::RolesSynced
        })
    }

    /// Each configured kind's state, for `/readyz`.
    pub(super) fn reports(&self) -> Vec<KindReport> {
        self.table
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

    /// Whether the watches that could produce a result of `source` have listed everything, so
    /// that a result unknown to the index really is an orphan.
    pub(super) fn source_synced(&self, source: Option<&SourceKind>) -> bool {
        let Some(source) = source else {
            return self
                .table
                .values()
                .all(|k| k.synced_once || matches!(k.status, KindStatus::NotFound(_)));
        };
        let matching: Vec<&KindState> = self
            .table
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
                .table
                .values()
                .all(|k| k.info.is_some() || matches!(k.status, KindStatus::NotFound(_)));
        }
        let binding =
            source.group == "rbac.authorization.k8s.io" && source.kind.ends_with("Binding");
        matching.iter().all(|k| k.synced_once)
            && (!binding
                || self
                    .table
                    .values()
                    .filter(|k| k.is_role())
                    .all(|k| k.synced_once))
    }
}

fn set_ready_metric(metrics: &Metrics, spec: &KindSpec, status: &KindStatus) {
    metrics
        .kind_ready
        .get_or_create(&KindLabels {
            group: spec.group.clone(),
            version: spec.version.clone(),
            resource: spec.resource.clone(),
        })
        .set(i64::from(*status == KindStatus::Ready));
}

impl State {
    /// Each configured kind's state, for `/readyz`.
    pub fn kind_reports(&self) -> Vec<KindReport> {
        self.kinds.reports()
    }

    /// Whether the kind states changed since the last call (for `/readyz`).
    pub fn take_kinds_changed(&mut self) -> bool {
        self.kinds.take_changed()
    }

    /// The startup and role checks after a kind's state changed.
    pub(super) fn kinds_progressed(&mut self, now: Instant) -> Vec<Effect> {
        let mut effects: Vec<Effect> = self.kinds.check_roles().into_iter().collect();
        effects.extend(self.check_initial_sync(now));
        effects
    }

    pub(super) fn on_kind_failed(&mut self, spec: &KindSpec, failure: Failure) {
        if self.kinds.table.get(spec).is_some_and(|k| k.info.is_none()) {
            tracing::warn!(kind = %spec, error = failure.message(), "watched kind not available; retrying");
            self.kinds.set_status(spec, failure.into(), &self.metrics);
        }
    }

    pub(super) fn on_kind_found(
        &mut self,
        spec: KindSpec,
        info: KindInfo,
        now: Instant,
    ) -> Vec<Effect> {
        let Some(k) = self.kinds.table.get_mut(&spec) else {
            return Vec::new();
        };
        if k.info.is_some() {
            return Vec::new();
        }
        tracing::info!(kind = %spec, "watched kind appeared in API discovery; watching it");
        let info = Arc::new(info);
        k.info = Some(info.clone());
        self.index.watch_kind(&info);
        self.kinds
            .set_status(&spec, KindStatus::Listing, &self.metrics);
        let mut effects = vec![Effect::StartWatch(info)];
        effects.extend(self.check_initial_sync(now));
        effects
    }

    pub(super) fn on_watch(
        &mut self,
        kind: Arc<KindInfo>,
        event: WatchEvent,
        now: Instant,
    ) -> Vec<Effect> {
        let spec = KindSpec::of(&kind);
        let mut effects = Vec::new();
        match event {
            WatchEvent::Init => {
                if let Some(k) = self.kinds.table.get_mut(&spec) {
                    k.relist = Some(HashSet::new());
                }
            }
            WatchEvent::Apply {
                key,
                meta,
                binding,
                spec_hash,
                pod,
                ..
            } => {
                if let Some(seen) = self
                    .kinds
                    .table
                    .get_mut(&spec)
                    .and_then(|k| k.relist.as_mut())
                {
                    seen.insert(key.clone());
                }
                self.exceptions.target_applied(&key, meta.labels.as_ref());
                let actions =
                    self.index
                        .applied_with_spec(key.clone(), &meta, binding, spec_hash.as_deref());
                let is_target = self.index.expected_fingerprint(&key).is_some();
                self.related
                    .workload_applied(&key, pod.filter(|_| is_target));
                effects.extend(self.apply_actions(actions, now));
            }
            WatchEvent::Delete { key, binding } => {
                self.exceptions.target_deleted(&key);
                let actions = self.index.deleted(key, binding);
                effects.extend(self.apply_actions(actions, now));
            }
            WatchEvent::InitDone => {
                let seen = self
                    .kinds
                    .table
                    .get_mut(&spec)
                    .and_then(|k| k.relist.take());
                if let Some(seen) = seen {
                    // Objects deleted while the watch was down are missing from the re-list.
                    for key in self.index.keys_of_kind(&kind) {
                        if !seen.contains(&key) {
                            tracing::info!(target = %key, "deleted while the watch was down");
                            self.exceptions.target_deleted(&key);
                            let actions = self.index.deleted(key, None);
                            effects.extend(self.apply_actions(actions, now));
                        }
                    }
                }
                if let Some(k) = self.kinds.table.get_mut(&spec) {
                    k.synced_once = true;
                }
                self.kinds
                    .set_status(&spec, KindStatus::Ready, &self.metrics);
                tracing::info!(kind = %spec, targets_total = self.index.target_count(), "watch listed");
                if let Startup::Synced(resync) = &mut self.startup {
                    resync.soon(now + self.s.relist_resync_delay);
                }
                effects.extend(self.kinds_progressed(now));
            }
            WatchEvent::Error(e) => {
                self.on_watch_error(&spec, &e);
                effects.extend(self.kinds_progressed(now));
            }
        }
        effects
    }

    fn on_watch_error(&mut self, spec: &KindSpec, e: &watcher::Error) {
        tracing::warn!(kind = %spec, error = %e, "watch failed; retrying with backoff");
        let synced = self.kinds.table.get(spec).is_some_and(|k| k.synced_once);
        let status = match watch_status(e) {
            Some(403) => {
                KindStatus::Forbidden(format!("watching resource {spec} is forbidden: {e}"))
            }
            Some(404) => KindStatus::NotFound(format!("resource {spec} not found: {e}")),
            _ if !synced => KindStatus::Failed(format!("watching resource {spec} failed: {e}")),
            _ => return,
        };
        self.kinds.set_status(spec, status, &self.metrics);
    }
}
