//! The main loop's side of related-object rescans: related watch events in, rescans of the
//! targets they relate to out (through the debounced queue, like target changes), and the
//! resync's check of each workload result's recorded related inputs; and the `rescanAfter`
//! sweep's rounds.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use kubevigil_crds::target::TargetKey;
use kubevigil_engine::related::RelatedKind;

use super::resync::Startup;
use super::{RelatedEvent, State};

/// How long a workload rescanned for a related change waits after the last related event that
/// touches it: a release applies many related objects at once, and their rescans then start
/// as one round (issue 20: 50 objects, at most 3 Jobs) at the cost of this much latency.
const RELATED_SETTLE: Duration = Duration::from_millis(500);

impl State {
    /// A related-object watch event: the targets it relates to are queued (debounced, so that
    /// a release of many related objects starts one round of scans). The first list of a kind
    /// queues nothing: the resync compares each result's recorded related inputs instead.
    pub(super) fn on_related(
        &mut self,
        kind: &'static RelatedKind,
        event: RelatedEvent,
        now: Instant,
    ) {
        let first_list = self.related.first_listing(kind);
        let targets = match event {
            RelatedEvent::Init => {
                self.related.relist_started(kind);
                return;
            }
            RelatedEvent::Apply(facts) => self.related.applied(facts),
            RelatedEvent::Delete(facts) => self.related.deleted(&facts),
            RelatedEvent::InitDone => {
                let was_synced = self.related.synced();
                let gone = self.related.relist_done(kind);
                tracing::info!(kind = kind.kind, "related watch listed");
                if let Startup::Synced(resync) = &mut self.startup
                    && (!was_synced || !first_list)
                {
                    // Related inputs are now known (or were re-listed): compare them soon.
                    resync.soon(now + self.s.relist_resync_delay);
                }
                gone
            }
            RelatedEvent::Missing => {
                let was_synced = self.related.synced();
                self.related.kind_missing(kind);
                if !was_synced
                    && self.related.synced()
                    && let Startup::Synced(resync) = &mut self.startup
                {
                    resync.soon(now + self.s.relist_resync_delay);
                }
                return;
            }
        };
        if first_list {
            return;
        }
        for key in targets {
            if self.index.expected_fingerprint(&key).is_some() {
                tracing::debug!(target = %key, kind = kind.kind, "related object changed");
                self.metrics.related_rescans.inc();
                self.queue.enqueue_settled(key.clone(), now, RELATED_SETTLE);
                self.first_event.entry(key).or_insert(now);
            }
        }
    }

    /// `rescanAfter`: queues the sweep's chunk when it is due (after the initial sync; targets
    /// already queued keep their place).
    pub(super) fn refresh_due(&mut self, now: Instant) {
        if !matches!(self.startup, Startup::Synced(_)) {
            return;
        }
        let Some(refresh) = &mut self.refresh else {
            return;
        };
        if now < refresh.next_due() {
            return;
        }
        let keys = self.index.target_keys_sorted();
        let chunk = refresh.due(now, &keys);
        for key in chunk {
            if !self.queue.is_queued(&key) {
                self.metrics.age_rescans.inc();
                self.enqueue(key, now);
            }
        }
    }

    /// Workload targets whose results record other related inputs than the watch caches show
    /// (a related event the controller missed), except those in `skip`. Empty until every
    /// related watch has listed once.
    pub(super) fn related_stale(&self, skip: &HashSet<&TargetKey>) -> Vec<TargetKey> {
        if !self.related.synced() {
            return Vec::new();
        }
        let mut out: Vec<TargetKey> = self
            .related
            .workload_keys()
            .filter(|key| !skip.contains(key))
            .filter(|key| {
                let Some(own) = self.index.result_refs(key).into_iter().next() else {
                    return false;
                };
                let Some(info) = self.index.result_info(&own) else {
                    return false;
                };
                !info.fingerprint.is_empty() && info.related_inputs != self.related.inputs_hash(key)
            })
            .cloned()
            .collect();
        out.sort();
        out
    }
}
