//! Namespace summaries: a ConfigurationScanSummary per namespace (cluster-scoped, named after
//! the namespace) with the sums of its WorkloadConfigurationScanSummaries, recomputed (debounced)
//! whenever results of that namespace change, and deleted when none are left.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::{Api, Client};
use kubevigil_crds::identity::labels::{MANAGED_BY, MANAGED_BY_VALUE};
use kubevigil_crds::{
    ConfigurationScanSummary, ConfigurationScanSummarySpec, SeveritySummary, SummaryRef,
    WorkloadConfigurationScanSummary,
};

use crate::dispatch::FIELD_MANAGER;
use crate::error::{Error, is_not_found};
use crate::slim::SummaryItem;

/// Per-key trailing debounce with at most one run per key at a time. Pure: time is passed in.
#[derive(Debug)]
pub struct Debouncer {
    delay: Duration,
    max_wait: Duration,
    pending: HashMap<String, (Instant, Instant)>,
    running: HashSet<String>,
    rerun: HashSet<String>,
}

impl Debouncer {
    /// A debouncer: a key runs `delay` after its last mark, at most `max_wait` after its first.
    pub fn new(delay: Duration, max_wait: Duration) -> Self {
        Debouncer {
            delay,
            max_wait,
            pending: HashMap::new(),
            running: HashSet::new(),
            rerun: HashSet::new(),
        }
    }

    /// Marks a key dirty at `now`.
    pub fn mark(&mut self, key: &str, now: Instant) {
        if self.running.contains(key) {
            self.rerun.insert(key.to_string());
            return;
        }
        let (delay, max_wait) = (self.delay, self.max_wait);
        let entry = self.pending.entry(key.to_string()).or_insert((now, now));
        entry.0 = (now + delay).min(entry.1 + max_wait);
    }

    /// Keys whose quiet period has passed; they are now running.
    pub fn take_due(&mut self, now: Instant) -> Vec<String> {
        let mut due: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, (d, _))| *d <= now)
            .map(|(k, _)| k.clone())
            .collect();
        due.sort();
        for k in &due {
            self.pending.remove(k);
            self.running.insert(k.clone());
        }
        due
    }

    /// A run finished; a key marked meanwhile (or whose run failed) is marked again.
    pub fn done(&mut self, key: &str, now: Instant, ok: bool) {
        self.running.remove(key);
        let rerun = self.rerun.remove(key);
        if !ok {
            // Retry after a pause rather than immediately.
            self.pending
                .entry(key.to_string())
                .or_insert((now + Duration::from_secs(10), now));
        } else if rerun {
            self.mark(key, now);
        }
    }

    /// When the next key becomes due.
    pub fn next_due(&self) -> Option<Instant> {
        self.pending.values().map(|(d, _)| *d).min()
    }
}

/// Sums one namespace's summaries (given as `(name, severities)`).
pub fn namespace_summary(
    namespace: &str,
    items: impl IntoIterator<Item = (String, SeveritySummary)>,
) -> ConfigurationScanSummarySpec {
    let mut spec = ConfigurationScanSummarySpec::default();
    for (name, severities) in items {
        spec.severities.merge(&severities);
        spec.workloads += 1;
        spec.summary_ref.push(SummaryRef {
            kind: "WorkloadConfigurationScanSummary".into(),
            namespace: namespace.to_string(),
            name,
        });
    }
    spec.summary_ref.sort();
    spec
}

/// The API resource of WorkloadConfigurationScanSummary (listed through [`SummaryItem`], which
/// reads only names and severities, so that one malformed object cannot break a namespace's
/// sums and the control maps are never held in memory).
pub fn wcss_resource() -> ApiResource {
    ApiResource::erase::<WorkloadConfigurationScanSummary>(&())
}

/// What became of a namespace summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SummaryOutcome {
    /// Applied with this many workloads.
    Applied(u32),
    /// The namespace has no results: its summary was deleted.
    Deleted,
}

/// Recomputes the ConfigurationScanSummary of `namespace`.
pub async fn summarize(client: Client, namespace: &str) -> Result<SummaryOutcome, Error> {
    let wcss: Api<SummaryItem> = Api::namespaced_with(client.clone(), namespace, &wcss_resource());
    let mut items = Vec::new();
    let mut lp = ListParams::default().limit(100);
    loop {
        let page = wcss.list(&lp).await.map_err(|source| Error::Summary {
            action: "list summaries for",
            name: namespace.to_string(),
            source,
        })?;
        for o in page.items {
            items.push((o.metadata.name.unwrap_or_default(), o.spec.severities));
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => break,
        }
    }
    let css: Api<ConfigurationScanSummary> = Api::all(client);
    if items.is_empty() {
        return match css.delete(namespace, &DeleteParams::default()).await {
            Ok(_) => Ok(SummaryOutcome::Deleted),
            Err(e) if is_not_found(&e) => Ok(SummaryOutcome::Deleted),
            Err(source) => Err(Error::Summary {
                action: "delete",
                name: namespace.to_string(),
                source,
            }),
        };
    }
    let spec = namespace_summary(namespace, items);
    let workloads = spec.workloads;
    let mut object = ConfigurationScanSummary::new(namespace, spec);
    object.metadata.labels = Some(BTreeMap::from([(
        MANAGED_BY.to_string(),
        MANAGED_BY_VALUE.to_string(),
    )]));
    css.patch(
        namespace,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&object),
    )
    .await
    .map_err(|source| Error::Summary {
        action: "apply",
        name: namespace.to_string(),
        source,
    })?;
    Ok(SummaryOutcome::Applied(workloads))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debounce_trails_and_never_runs_a_key_twice_at_once() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut d = Debouncer::new(2 * s, 10 * s);
        d.mark("a", t0);
        d.mark("a", t0 + s);
        assert!(d.take_due(t0 + 2 * s).is_empty());
        assert_eq!(d.next_due(), Some(t0 + 3 * s));
        assert_eq!(d.take_due(t0 + 3 * s), vec!["a".to_string()]);
        // Marked while running: runs again after.
        d.mark("a", t0 + 3 * s);
        assert_eq!(d.next_due(), None);
        d.done("a", t0 + 4 * s, true);
        assert_eq!(d.take_due(t0 + 6 * s), vec!["a".to_string()]);
        // A failed run is retried after a pause.
        d.done("a", t0 + 6 * s, false);
        assert!(d.take_due(t0 + 7 * s).is_empty());
        assert_eq!(d.take_due(t0 + 16 * s), vec!["a".to_string()]);
        d.done("a", t0 + 16 * s, true);
        assert_eq!(d.next_due(), None);
    }

    #[test]
    fn debounce_is_bounded_by_max_wait() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut d = Debouncer::new(2 * s, 5 * s);
        for i in 0..20 {
            d.mark("busy", t0 + i * s / 2);
        }
        assert_eq!(d.next_due(), Some(t0 + 5 * s));
    }

    #[test]
    fn sums_and_sorted_refs() {
        let sev = |c, h| SeveritySummary {
            critical: c,
            high: h,
            ..SeveritySummary::default()
        };
        let spec = namespace_summary(
            "shop",
            [
                ("deployment-web".to_string(), sev(1, 2)),
                ("deployment-api".to_string(), sev(0, 3)),
            ],
        );
        assert_eq!(spec.workloads, 2);
        assert_eq!(spec.severities, sev(1, 5));
        assert_eq!(spec.summary_ref[0].name, "deployment-api");
        assert_eq!(spec.summary_ref[1].kind, "WorkloadConfigurationScanSummary");
    }
}
