//! Startup and the results resync: where startup stands ([`Startup`]), when the next results
//! list runs ([`Resync`]), and what a list says ([`ResultsSnapshot`], built by [`Merge`] from
//! the results of this installation's [`Scope`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubevigil_crds::identity::{annotations, labels};
use kubevigil_crds::target::TargetKey;

use super::messages::Effect;
use super::{DELETE_CHUNK, RESYNC_RETRY, State};
use crate::config::Config;
use crate::error::{Category, Error};
use crate::index::{ResultInfo, ResultRef, SourceKind};
use crate::scope::NamespaceView;
use crate::summaries::INSTALLATION;

/// Where startup stands. Dispatch waits for the Job watch (a running Job is adopted, not
/// duplicated), then for every kind's first list or `dispatch_hold`, so that the startup
/// backlog goes out in full batches.
#[derive(Debug)]
pub(super) enum Startup {
    /// The Job watch has not listed yet: nothing is dispatched.
    ListingJobs,
    /// Jobs are listed; some watched kinds are still listing.
    ListingKinds,
    /// Every watch has listed once (the initial sync); results are resynced.
    Synced(Resync),
}

/// The periodic results list, once the initial sync is done.
#[derive(Debug)]
pub(super) enum Resync {
    /// The next list starts at this time.
    Due(Instant),
    /// A list is running. Targets whose scans finish meanwhile are not rescanned by it: the
    /// list may predate their results.
    Listing {
        /// Targets whose scans finished since the list started.
        finished: HashSet<TargetKey>,
    },
}

impl Resync {
    /// A list running from now.
    fn listing() -> Self {
        Resync::Listing {
            finished: HashSet::new(),
        }
    }

    /// Brings a due list forward to `at` (a watch re-listed; a running list is left alone).
    pub(super) fn soon(&mut self, at: Instant) {
        if let Resync::Due(due) = self {
            *due = (*due).min(at);
        }
    }

    /// Records a target whose scan finished.
    pub(super) fn finished(&mut self, key: &TargetKey) {
        if let Resync::Listing { finished } = self {
            finished.insert(key.clone());
        }
    }

    /// When the next list is due, if none is running.
    pub(super) fn due(&self) -> Option<Instant> {
        match self {
            Resync::Due(at) => Some(*at),
            Resync::Listing { .. } => None,
        }
    }
}

/// Existing results and namespace summaries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResultsSnapshot {
    /// Every result (a WorkloadConfigurationScanSummary and/or WorkloadConfigurationScan).
    pub results: HashMap<ResultRef, ResultInfo>,
    /// Names of the existing ConfigurationScanSummaries (namespaces).
    pub summaries: BTreeSet<String>,
    /// Namespaces this installation scanned before ([`Scope::dropped`]) and that are out of its
    /// scope now: their results and summaries are deleted.
    pub dropped_namespaces: BTreeSet<String>,
    /// The results in [`ResultsSnapshot::dropped_namespaces`].
    pub out_of_scope: BTreeSet<ResultRef>,
}

/// The watched kind a result belongs to, from its labels.
fn source_of(labels_map: &BTreeMap<String, String>) -> Option<SourceKind> {
    if labels_map.get(labels::RBAC_RESOURCE).map(String::as_str) == Some("true") {
        let kind = if labels_map.contains_key(labels::CLUSTERROLEBINDING_NAME) {
            "ClusterRoleBinding"
        } else {
            "RoleBinding"
        };
        return Some(SourceKind {
            group: "rbac.authorization.k8s.io".into(),
            kind: kind.into(),
        });
    }
    Some(SourceKind {
        group: labels_map
            .get(labels::API_GROUP)
            .cloned()
            .unwrap_or_default(),
        kind: labels_map.get(labels::KIND)?.clone(),
    })
}

/// A result's reference and what its annotations say.
fn result_from_meta(meta: &ObjectMeta) -> Option<(ResultRef, ResultInfo)> {
    let r = ResultRef {
        namespace: meta.namespace.clone()?,
        name: meta.name.clone()?,
    };
    let ann = |k: &str| {
        meta.annotations
            .as_ref()
            .and_then(|a| a.get(k))
            .cloned()
            .unwrap_or_default()
    };
    let info = ResultInfo {
        fingerprint: ann(annotations::FINGERPRINT),
        scanner_version: ann(annotations::SCANNER_VERSION),
        controls_hash: ann(annotations::CONTROLS_HASH),
        related_inputs: Some(ann(annotations::RELATED_INPUTS)).filter(|h| !h.is_empty()),
        source: meta.labels.as_ref().and_then(source_of),
    };
    Some((r, info))
}

/// Which results and namespace summaries belong to this installation, so that the resync of
/// one installation never collects (or rescans) another's: two releases with disjoint
/// `includeNamespaces` both watch the cluster-scoped kinds, each writing those results to its
/// own install namespace, and neither may take the other's results for orphans.
///
/// A result of a namespaced target is this installation's when its namespace is selected
/// (`includeNamespaces`/`excludeNamespaces`); a result of a cluster-scoped target (no
/// workload-namespace label, or a ClusterRoleBinding triplet) when it lives in the install
/// namespace. Namespaces are decided by the [`NamespaceView`] (patterns, and labels when a
/// namespace selector is set).
///
/// A namespace that left the scope (a chart upgrade, a label change while the controller was not
/// running) is found through its ConfigurationScanSummary: the installation that keeps it labels
/// it with its install namespace ([`INSTALLATION`]); such a summary out of this scope
/// makes its namespace [`Scope::dropped`], and the namespace's results are deleted. Results of
/// another installation are never taken: that installation labels its summaries with its own
/// install namespace.
#[derive(Clone, Debug)]
pub struct Scope {
    namespaces: Arc<NamespaceView>,
    install_namespace: String,
}

impl Scope {
    /// The scope of the installation in `install_namespace` with `config`, namespaces decided by
    /// their names.
    pub fn new(config: Arc<Config>, install_namespace: &str) -> Self {
        Self::with_namespaces(
            Arc::new(NamespaceView::static_scope(config.namespace_scope())),
            install_namespace,
        )
    }

    /// The scope of the installation in `install_namespace` with namespaces decided by `view`.
    pub fn with_namespaces(view: Arc<NamespaceView>, install_namespace: &str) -> Self {
        Scope {
            namespaces: view,
            install_namespace: install_namespace.to_string(),
        }
    }

    /// Whether the ConfigurationScanSummary of namespace `name`, with `labels_map`, says that
    /// this installation scanned that namespace, which is out of its scope now.
    pub fn dropped(&self, name: &str, labels_map: Option<&BTreeMap<String, String>>) -> bool {
        let ours = labels_map.and_then(|l| l.get(INSTALLATION)) == Some(&self.install_namespace);
        ours && !self.owns_summary(name)
    }

    /// Whether the result in `namespace` with `labels_map` belongs to this installation.
    pub fn owns(&self, namespace: &str, labels_map: Option<&BTreeMap<String, String>>) -> bool {
        let cluster_scoped = labels_map.map(|l| {
            if l.get(labels::RBAC_RESOURCE).map(String::as_str) == Some("true") {
                l.contains_key(labels::CLUSTERROLEBINDING_NAME)
            } else {
                !l.contains_key(labels::NAMESPACE)
            }
        });
        let in_install = namespace == self.install_namespace;
        let selected = self.namespaces.selected(namespace);
        match cluster_scoped {
            Some(true) => in_install,
            Some(false) => selected,
            None => in_install || selected,
        }
    }

    /// Whether the ConfigurationScanSummary of namespace `name` is this installation's to
    /// keep current.
    pub fn owns_summary(&self, name: &str) -> bool {
        name == self.install_namespace || self.namespaces.selected(name)
    }

    /// Whether the listed result with `meta` belongs to this installation.
    pub fn owns_meta(&self, meta: &ObjectMeta) -> bool {
        meta.namespace
            .as_deref()
            .is_some_and(|ns| self.owns(ns, meta.labels.as_ref()))
    }
}

/// Merges scans and summaries, page by page, into one map: a result counts as current only when
/// both objects exist and say the same about the scan that wrote them (fingerprint, scanner
/// version, controls hash, related inputs). A lone object, or a pair that disagrees, is given an
/// empty fingerprint, so that it is rescanned or, when its target is gone, collected.
///
/// The pair can disagree when two scans of one target overlap: a scan Job deleted while its
/// pod still runs (the controller has already started the next one) may write one object of
/// the pair after the newer scan wrote both. Each object is then well-formed, and only the
/// comparison finds the older one. Scans must be added before summaries.
#[derive(Debug, Default)]
pub struct Merge {
    scans: HashMap<ResultRef, ResultInfo>,
    out: HashMap<ResultRef, ResultInfo>,
}

impl Merge {
    /// Adds a listed WorkloadConfigurationScan.
    pub fn add_scan(&mut self, meta: &ObjectMeta) {
        if let Some((r, info)) = result_from_meta(meta) {
            self.scans.insert(r, info);
        }
    }

    /// Adds a listed WorkloadConfigurationScanSummary.
    pub fn add_summary(&mut self, meta: &ObjectMeta) {
        if let Some((r, mut info)) = result_from_meta(meta) {
            if self.scans.remove(&r).is_none_or(|scan| scan != info) {
                info.fingerprint.clear();
            }
            self.out.insert(r, info);
        }
    }

    /// The merged map.
    pub fn finish(self) -> HashMap<ResultRef, ResultInfo> {
        let mut out = self.out;
        for (r, scan) in self.scans {
            out.entry(r).or_insert(ResultInfo {
                fingerprint: String::new(),
                ..scan
            });
        }
        out
    }
}

impl State {
    /// Whether the initial sync is done.
    pub fn initial_sync_done(&self) -> bool {
        matches!(self.startup, Startup::Synced(_))
    }

    /// Ends startup once the Jobs and every kind are listed: the first resync list starts.
    pub(super) fn check_initial_sync(&mut self, now: Instant) -> Vec<Effect> {
        if !matches!(self.startup, Startup::ListingKinds) || self.kinds.any_listing() {
            return Vec::new();
        }
        self.startup = Startup::Synced(Resync::listing());
        self.kinds.mark_changed();
        tracing::info!(
            targets = self.index.target_count(),
            queued = self.queue.counts(now).0,
            "initial sync done"
        );
        vec![Effect::ListResults]
    }

    /// Starts the results list when it is due.
    pub(super) fn resync_if_due(&mut self, now: Instant) -> Option<Effect> {
        let Startup::Synced(resync) = &mut self.startup else {
            return None;
        };
        if resync.due().is_some_and(|d| d <= now) {
            *resync = Resync::listing();
            return Some(Effect::ListResults);
        }
        None
    }

    pub(super) fn on_results(
        &mut self,
        result: Result<ResultsSnapshot, Error>,
        now: Instant,
    ) -> Vec<Effect> {
        let Startup::Synced(resync) = &mut self.startup else {
            // Only the startup list runs before the initial sync, and its answer is not a
            // message.
            return Vec::new();
        };
        let done_during_list = match std::mem::replace(resync, Resync::Due(now)) {
            Resync::Listing { finished } => finished,
            Resync::Due(_) => HashSet::new(),
        };
        let snapshot = match result {
            Ok(s) => s,
            Err(e) => {
                self.metrics.error(&e);
                // A transient error is retried soon; a permanent one (RBAC, say) at the next
                // regular resync.
                let retry = if e.category() == Category::Retry {
                    tracing::warn!(error = %e, "listing results for the resync failed; retrying");
                    RESYNC_RETRY
                } else {
                    tracing::error!(error = %e, category = ?e.category(), "listing results for the resync failed; trying again at the next resync");
                    self.s.config.continuous_scanning.resync_period
                };
                *resync = Resync::Due(now + retry);
                return Vec::new();
            }
        };
        *resync = Resync::Due(now + self.s.config.continuous_scanning.resync_period);
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
        let (mut scans, orphans) = self.index.resync();
        let stale_by_relation = {
            let skip: HashSet<&TargetKey> = scans.iter().collect();
            self.related_stale(&skip)
        };
        if !stale_by_relation.is_empty() {
            tracing::info!(
                results = stale_by_relation.len(),
                "results stale by relation (a related object changed unseen); rescanning"
            );
            self.metrics
                .related_stale
                .inc_by(u64::try_from(stale_by_relation.len()).unwrap_or(u64::MAX));
        }
        scans.extend(stale_by_relation);
        let mut queued = 0usize;
        for key in scans {
            let oom_unchanged = self
                .oom_killed
                .get(&key)
                .is_some_and(|fp| fp.as_deref() == self.index.expected_fingerprint(&key));
            if oom_unchanged {
                tracing::debug!(target = %key, "not rescanned: its scan Job was OOMKilled and it did not change");
                continue;
            }
            if !self.queue.is_queued(&key) && !done_during_list.contains(&key) {
                self.enqueue(key, now);
                queued += 1;
            }
        }
        let (deletable, kept): (Vec<ResultRef>, Vec<ResultRef>) =
            orphans.into_iter().partition(|r| {
                let source = self.index.result_info(r).and_then(|i| i.source.clone());
                self.kinds.source_synced(source.as_ref())
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
        effects.extend(self.drop_out_of_scope(
            snapshot.dropped_namespaces,
            snapshot.out_of_scope,
            now,
        ));
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

    /// Deletes the results of namespaces that left this installation's scope. A namespace
    /// without results left gets its summary recomputed at once (which deletes it); the others
    /// when their deletes are done ([`Msg::ResultsDeleted`](super::Msg::ResultsDeleted)).
    fn drop_out_of_scope(
        &mut self,
        namespaces: BTreeSet<String>,
        results: BTreeSet<ResultRef>,
        now: Instant,
    ) -> Vec<Effect> {
        if namespaces.is_empty() {
            return Vec::new();
        }
        tracing::info!(
            namespaces = ?namespaces,
            results = results.len(),
            "namespaces left the scope; deleting their results"
        );
        for ns in &namespaces {
            if !results.iter().any(|r| &r.namespace == ns) {
                self.summaries.mark(ns, now);
            }
        }
        let refs: Vec<ResultRef> = results.into_iter().collect();
        refs.chunks(DELETE_CHUNK)
            .map(|chunk| Effect::DeleteResults(chunk.to_vec()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(ns: &str, name: &str, fp: &str, labels_map: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            annotations: Some(BTreeMap::from([
                (annotations::FINGERPRINT.to_string(), fp.to_string()),
                (
                    annotations::SCANNER_VERSION.to_string(),
                    "0.1.0".to_string(),
                ),
                (annotations::CONTROLS_HASH.to_string(), "abc".to_string()),
            ])),
            labels: Some(
                labels_map
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn sources_from_labels() {
        let deploy = meta(
            "shop",
            "deployment-web",
            "f",
            &[(labels::API_GROUP, "apps"), (labels::KIND, "Deployment")],
        );
        let (r, info) = result_from_meta(&deploy).unwrap();
        assert_eq!(r.name, "deployment-web");
        assert_eq!(info.fingerprint, "f");
        assert_eq!(
            info.source,
            Some(SourceKind {
                group: "apps".into(),
                kind: "Deployment".into()
            })
        );
        let triplet = meta(
            "kubevigil",
            "user-x-clusterrole-y-clusterrolebinding-z",
            "f",
            &[
                (labels::RBAC_RESOURCE, "true"),
                (labels::KIND, "User"),
                (labels::CLUSTERROLEBINDING_NAME, "z"),
            ],
        );
        assert_eq!(
            result_from_meta(&triplet).unwrap().1.source.unwrap().kind,
            "ClusterRoleBinding"
        );
        assert_eq!(
            result_from_meta(&meta("a", "b", "f", &[]))
                .unwrap()
                .1
                .source,
            None
        );
    }

    fn scope(include: &str, install: &str) -> Scope {
        let config = Config::parse(
            "t",
            &format!(
                r#"
clusterName: test
includeNamespaces: {include}
excludeNamespaces: [kube-system]
continuousScanning:
  matchingRules:
  - {{apiGroups: [apps], apiVersions: [v1], resources: [deployments]}}
scanJob: {{image: scan:1, serviceAccountName: sa, batchSize: 5, maxConcurrentJobs: 2, ttlSecondsAfterFinished: 300, activeDeadlineSeconds: 300, backoffLimit: 2}}
"#
            ),
        )
        .unwrap();
        Scope::new(Arc::new(config), install)
    }

    fn labelled(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn two_installations_with_disjoint_namespaces_own_disjoint_results() {
        let a = scope("[team-a]", "kv-a");
        let b = scope("[team-b]", "kv-b");
        let deployment_a = labelled(&[(labels::KIND, "Deployment"), (labels::NAMESPACE, "team-a")]);
        let namespace = labelled(&[(labels::KIND, "Namespace")]);
        let crb = labelled(&[
            (labels::RBAC_RESOURCE, "true"),
            (labels::KIND, "User"),
            (labels::CLUSTERROLEBINDING_NAME, "admins"),
        ]);
        let rb = labelled(&[
            (labels::RBAC_RESOURCE, "true"),
            (labels::KIND, "User"),
            (labels::ROLEBINDING_NAME, "readers"),
            (labels::ROLEBINDING_NAMESPACE, "team-a"),
        ]);
        // Namespaced targets: by the namespace selection.
        assert!(a.owns("team-a", Some(&deployment_a)));
        assert!(!b.owns("team-a", Some(&deployment_a)));
        assert!(a.owns("team-a", Some(&rb)));
        assert!(!b.owns("team-a", Some(&rb)));
        // Cluster-scoped targets (Namespaces, ClusterRoleBinding triplets): each installation
        // writes its own copy to its install namespace and owns only that one.
        for l in [&namespace, &crb] {
            assert!(a.owns("kv-a", Some(l)));
            assert!(!a.owns("kv-b", Some(l)));
            assert!(b.owns("kv-b", Some(l)));
            assert!(!b.owns("kv-a", Some(l)));
        }
        // Summaries: selected namespaces and the install namespace.
        assert!(a.owns_summary("team-a") && a.owns_summary("kv-a"));
        assert!(!a.owns_summary("team-b") && !a.owns_summary("kv-b"));
    }

    #[test]
    fn namespaces_that_left_the_scope_are_found_by_their_summaries_label() {
        let a = scope("[team-*]", "kv-a");
        let mine = labelled(&[(INSTALLATION, "kv-a")]);
        let theirs = labelled(&[(INSTALLATION, "kv-b")]);
        // Scanned before, out of the patterns now: dropped.
        assert!(a.dropped("shop", Some(&mine)));
        // Still in scope, or kept by another installation, or written before the label existed:
        // never dropped.
        assert!(!a.dropped("team-x", Some(&mine)));
        assert!(!a.dropped("kv-a", Some(&mine)));
        assert!(!a.dropped("shop", Some(&theirs)));
        assert!(!a.dropped("shop", None));
        assert!(a.owns_summary("team-x") && !a.owns_summary("shop"));
    }

    #[test]
    fn a_namespace_selector_decides_through_the_namespace_view() {
        use crate::scope::{NamespaceScope, NamespaceTable};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
        let mut table = NamespaceTable::new(NamespaceScope {
            selector: Some(LabelSelector {
                match_labels: Some(labelled(&[("scan", "yes")])),
                match_expressions: None,
            }),
            ..NamespaceScope::default()
        });
        table.list_started();
        table.applied("labelled", &labelled(&[("scan", "yes")]));
        table.applied("plain", &labelled(&[]));
        table.list_done();
        let s = Scope::with_namespaces(Arc::new(table.view().clone()), "kv");
        let deployment =
            |ns: &str| labelled(&[(labels::KIND, "Deployment"), (labels::NAMESPACE, ns)]);
        assert!(s.owns("labelled", Some(&deployment("labelled"))));
        assert!(!s.owns("plain", Some(&deployment("plain"))));
        assert!(!s.owns("unknown", Some(&deployment("unknown"))));
        assert!(s.dropped("plain", Some(&labelled(&[(INSTALLATION, "kv")]))));
    }

    #[test]
    fn an_installation_watching_every_namespace_leaves_others_cluster_results_alone() {
        let all = scope("[]", "kubevigil");
        let namespace = labelled(&[(labels::KIND, "Namespace")]);
        let deployment = labelled(&[(labels::KIND, "Deployment"), (labels::NAMESPACE, "shop")]);
        assert!(all.owns("shop", Some(&deployment)));
        assert!(!all.owns("kube-system", Some(&deployment)));
        assert!(all.owns("kubevigil", Some(&namespace)));
        // Another installation's install namespace is selected, but its cluster-scoped
        // results there are not this one's.
        assert!(!all.owns("kv-other", Some(&namespace)));
        // Without labels: by namespace.
        assert!(all.owns("shop", None));
        assert!(!all.owns("kube-system", None));
    }

    /// The merged fingerprint of result `name` in namespace `shop`.
    fn merged_fingerprint(merged: &HashMap<ResultRef, ResultInfo>, name: &str) -> String {
        merged[&ResultRef {
            namespace: "shop".into(),
            name: name.into(),
        }]
            .fingerprint
            .clone()
    }

    #[test]
    fn a_result_needs_both_objects_to_be_current() {
        let both = meta("shop", "deployment-web", "f1", &[]);
        let summary_only = meta("shop", "deployment-api", "f2", &[]);
        let scan_only = meta("shop", "deployment-db", "f3", &[]);
        let mut merge = Merge::default();
        for m in [&both, &scan_only] {
            merge.add_scan(m);
        }
        for m in [&both, &summary_only] {
            merge.add_summary(m);
        }
        let merged = merge.finish();
        let fp = |n: &str| merged_fingerprint(&merged, n);
        assert_eq!(merged.len(), 3);
        assert_eq!(fp("deployment-web"), "f1");
        assert_eq!(fp("deployment-api"), "");
        assert_eq!(fp("deployment-db"), "");
    }

    #[test]
    fn a_scan_and_summary_from_different_scans_are_stale() {
        // An overlapping older scan rewrote the scan object after the newer scan wrote both.
        let mut merge = Merge::default();
        merge.add_scan(&meta("shop", "statefulset-s0", "old", &[]));
        merge.add_scan(&meta("shop", "deployment-web", "f1", &[]));
        merge.add_summary(&meta("shop", "statefulset-s0", "new", &[]));
        merge.add_summary(&meta("shop", "deployment-web", "f1", &[]));
        let merged = merge.finish();
        let fp = |n: &str| merged_fingerprint(&merged, n);
        assert_eq!(fp("statefulset-s0"), "");
        assert_eq!(fp("deployment-web"), "f1");
    }
}
