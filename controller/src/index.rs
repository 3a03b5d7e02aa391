//! The event table (SPEC "Controller"): a watch event and what the controller knows in, the
//! actions out. Pure: the edges (`watchers`, `dispatch`) do the I/O.
//!
//! | event | target | action |
//! |---|---|---|
//! | add / modify | workload, ServiceAccount, Namespace, other simple kind | scan it |
//! | add / modify | child whose controlling owner is of a watched kind | nothing: the owner is scanned |
//! | modify that leaves the fingerprint unchanged | any | nothing |
//! | add / modify | RoleBinding / ClusterRoleBinding | scan it (its triplets); delete results of removed subjects |
//! | add / modify | Role / ClusterRole | rescan the bindings that reference it |
//! | delete | simple resource | delete its results |
//! | delete | Role / ClusterRole | no delete; rescan the bindings that reference it (their fingerprint covers the role's) |
//! | delete | RoleBinding / ClusterRoleBinding | delete the results of its subjects and its own |
//!
//! A deleted ServiceAccount loses its own result; the triplet results of bindings that still name
//! it stay, because whoever recreates that ServiceAccount gets the bound role (a real finding).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubevigil_crds::identity::labels;
use kubevigil_crds::identity::{
    BindingRef, RoleRef, Subject, Target, binding_fingerprint, object_fingerprint_with_spec,
};
use kubevigil_crds::target::{KindInfo, TargetKey};
use serde_json::Value;

/// A result object, by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResultRef {
    /// Namespace of the result.
    pub namespace: String,
    /// Name of the result (shared by the scan and its summary).
    pub name: String,
}

/// What an existing result says about the scan that wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultInfo {
    /// Fingerprint of the target when scanned.
    pub fingerprint: String,
    /// Scanner version that wrote it.
    pub scanner_version: String,
    /// Hash of the control set and configuration.
    pub controls_hash: String,
    /// Hash of the workload's related inputs when scanned (`kubevigil.io/related-inputs`);
    /// `None` when the result has none (not a workload).
    pub related_inputs: Option<String>,
    /// The watched kind whose objects produce this result (from the result's labels), so that
    /// orphans are only collected once that kind's watch has listed everything.
    pub source: Option<SourceKind>,
}

/// The watched kind (API group and kind) that a result belongs to: the target's kind for an
/// ordinary result, the binding's kind for an RBAC triplet.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKind {
    /// API group (empty for the core group).
    pub group: String,
    /// Kind.
    pub kind: String,
}

/// What to do after an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Queue a scan of the target.
    Scan(TargetKey),
    /// Delete these results (scan and summary), without a Job.
    DeleteResults(Vec<ResultRef>),
    /// Drop a pending scan of a target that is gone.
    Forget(TargetKey),
}

/// A binding's role reference and subjects, all the controller keeps of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingSpec {
    /// `roleRef.kind` is `ClusterRole`.
    pub cluster_role: bool,
    /// `roleRef.name`.
    pub role_name: String,
    /// The subjects that can be bound (ServiceAccount, User, Group).
    pub subjects: Vec<Subject>,
}

impl BindingSpec {
    /// Reads `roleRef` and `subjects` of a binding object's JSON; ServiceAccount subjects
    /// without a namespace get the binding's.
    pub fn from_json(data: &Value, binding_namespace: Option<&str>) -> Self {
        let role_ref = data.get("roleRef");
        let str_of = |v: Option<&Value>, k: &str| {
            v.and_then(|v| v.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let subjects = data
            .get("subjects")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .filter_map(|s| Subject::from_json(s, binding_namespace))
            .collect();
        BindingSpec {
            cluster_role: str_of(role_ref, "kind") == "ClusterRole",
            role_name: str_of(role_ref, "name"),
            subjects,
        }
    }
}

/// The controller's knowledge, driven by watch events. Holds no object bodies: fingerprints,
/// binding subjects and role references only.
#[derive(Debug)]
pub struct Index {
    install_namespace: String,
    watched: HashSet<(String, String)>,
    targets: HashMap<TargetKey, String>,
    bindings: HashMap<TargetKey, BindingSpec>,
    binding_own: HashMap<TargetKey, String>,
    role_bindings: HashMap<RoleRef, BTreeSet<TargetKey>>,
    roles: HashMap<RoleRef, String>,
    results: HashMap<ResultRef, ResultInfo>,
    scanner_version: String,
    controls_hash: String,
}

/// The key of a Role or ClusterRole target.
fn role_key_of(role: &TargetKey) -> RoleRef {
    RoleRef::new(
        role.kind.kind == "ClusterRole",
        &role.name,
        role.namespace.as_deref(),
    )
}

/// The role a binding grants (a Role lives in the binding's namespace).
fn binding_role_key(binding: &TargetKey, spec: &BindingSpec) -> RoleRef {
    RoleRef::new(
        spec.cluster_role,
        &spec.role_name,
        binding.namespace.as_deref(),
    )
}

impl Index {
    /// An index for the given watched kinds; results are current when written by this scanner
    /// version with this controls hash.
    pub fn new(
        install_namespace: &str,
        watched: &[Arc<KindInfo>],
        scanner_version: &str,
        controls_hash: &str,
    ) -> Self {
        Index {
            install_namespace: install_namespace.to_string(),
            watched: watched
                .iter()
                .map(|k| (k.group.clone(), k.kind.clone()))
                .collect(),
            targets: HashMap::new(),
            bindings: HashMap::new(),
            binding_own: HashMap::new(),
            role_bindings: HashMap::new(),
            roles: HashMap::new(),
            results: HashMap::new(),
            scanner_version: scanner_version.to_string(),
            controls_hash: controls_hash.to_string(),
        }
    }

    /// Adds a watched kind (discovered after startup).
    pub fn watch_kind(&mut self, kind: &KindInfo) {
        self.watched.insert((kind.group.clone(), kind.kind.clone()));
    }

    /// Replaces what is known of existing results (from a list at startup or resync).
    pub fn set_results(&mut self, results: HashMap<ResultRef, ResultInfo>) {
        self.results = results;
    }

    /// Number of tracked targets.
    pub fn target_count(&self) -> usize {
        self.targets.len()
    }

    /// Every tracked target, sorted (the `rescanAfter` sweep's order).
    pub fn target_keys_sorted(&self) -> Vec<TargetKey> {
        let mut keys: Vec<TargetKey> = self.targets.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// What is known of an existing result.
    pub fn result_info(&self, result: &ResultRef) -> Option<&ResultInfo> {
        self.results.get(result)
    }

    /// Results written by another scanner version or control set than this controller expects,
    /// with one example. Many of them after a resync mean the controller and the scan-job image
    /// are from different releases (their results would be rescanned at every resync).
    pub fn version_mismatches(&self) -> (usize, Option<&ResultInfo>) {
        let mut mismatched = self.results.values().filter(|i| {
            !i.fingerprint.is_empty()
                && (i.scanner_version != self.scanner_version
                    || i.controls_hash != self.controls_hash)
        });
        let example = mismatched.next();
        (example.map_or(0, |_| 1 + mismatched.count()), example)
    }

    /// Namespaces holding at least one known result.
    pub fn result_namespaces(&self) -> BTreeSet<String> {
        self.results.keys().map(|r| r.namespace.clone()).collect()
    }

    /// Every object of `kind` the index knows: its targets, and for a role kind its roles. After
    /// a watch re-list, the ones not listed again were deleted while the watch was down.
    pub fn keys_of_kind(&self, kind: &Arc<KindInfo>) -> Vec<TargetKey> {
        if kind.is_role() {
            let cluster = kind.kind == "ClusterRole";
            return self
                .roles
                .keys()
                .filter(|r| r.cluster == cluster)
                .map(|r| TargetKey {
                    kind: kind.clone(),
                    namespace: r.namespace.clone(),
                    name: r.name.clone(),
                })
                .collect();
        }
        self.targets
            .keys()
            .filter(|k| *k.kind == **kind)
            .cloned()
            .collect()
    }

    /// Whether the controlling owner of an object is of a watched kind.
    fn owned_by_watched(&self, meta: &ObjectMeta) -> bool {
        meta.owner_references
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .filter(|o| o.controller == Some(true))
            .any(|o| {
                let group = kubevigil_crds::identity::split_api_version(&o.api_version).0;
                self.watched.contains(&(group.to_string(), o.kind.clone()))
            })
    }

    /// Result names of a target: its own, plus one per subject for a binding.
    pub fn result_refs(&self, key: &TargetKey) -> Vec<ResultRef> {
        let own = key.target();
        let mut out = vec![self.result_ref(&own)];
        if let Some(spec) = self.bindings.get(key)
            && self.role_known(key, spec)
        {
            out.extend(self.triplet_refs(key, spec, &spec.subjects));
        }
        out
    }

    /// Every result `key` may have: its own and, for a binding, the triplet of each subject
    /// whether or not its role exists now (a role deleted before its binding leaves the
    /// triplets written while it existed). What a delete of the target removes.
    fn all_result_refs(&self, key: &TargetKey) -> Vec<ResultRef> {
        let mut out = vec![self.result_ref(&key.target())];
        if let Some(spec) = self.bindings.get(key) {
            out.extend(self.triplet_refs(key, spec, &spec.subjects));
        }
        out
    }

    /// Whether a binding's role exists (assumed when that role kind is not watched): only then
    /// does a scan produce triplet results.
    fn role_known(&self, key: &TargetKey, spec: &BindingSpec) -> bool {
        let kind = if spec.cluster_role {
            "ClusterRole"
        } else {
            "Role"
        };
        !self
            .watched
            .contains(&("rbac.authorization.k8s.io".to_string(), kind.to_string()))
            || self.roles.contains_key(&binding_role_key(key, spec))
    }

    fn result_ref(&self, target: &Target) -> ResultRef {
        ResultRef {
            namespace: target.result_namespace(&self.install_namespace).to_string(),
            name: target.result_name(),
        }
    }

    fn triplet_refs(
        &self,
        key: &TargetKey,
        spec: &BindingSpec,
        subjects: &[Subject],
    ) -> Vec<ResultRef> {
        let cluster_binding = key.kind.kind == "ClusterRoleBinding";
        subjects
            .iter()
            .map(|s| {
                self.result_ref(&Target::Triplet {
                    subject: s.clone(),
                    role: binding_role_key(key, spec),
                    binding: BindingRef {
                        cluster: cluster_binding,
                        name: key.name.clone(),
                        namespace: (!cluster_binding)
                            .then(|| key.namespace.clone().unwrap_or_default()),
                    },
                })
            })
            .collect()
    }

    /// Whether result `r` exists and was written from fingerprint `fp` by this scanner and
    /// control set: the one test of a current result.
    fn is_current(&self, r: &ResultRef, fp: &str) -> bool {
        self.results.get(r).is_some_and(|i| {
            i.fingerprint == fp
                && i.scanner_version == self.scanner_version
                && i.controls_hash == self.controls_hash
        })
    }

    /// The fingerprint a binding's results carry: the binding's and its role's.
    fn binding_fingerprint(&self, key: &TargetKey, own: &str) -> String {
        let role = self
            .bindings
            .get(key)
            .and_then(|spec| self.roles.get(&binding_role_key(key, spec)))
            .map(String::as_str);
        binding_fingerprint(own, role)
    }

    /// The fingerprint a target's results must carry to be current, if the target is known.
    pub fn expected_fingerprint(&self, key: &TargetKey) -> Option<&str> {
        self.targets.get(key).map(String::as_str)
    }

    /// An object was added or modified. `binding` holds a binding's spec. (The tests' form of
    /// [`Index::applied_with_spec`] for kinds without a spec hash.)
    #[cfg(test)]
    pub(crate) fn applied(
        &mut self,
        key: TargetKey,
        meta: &ObjectMeta,
        binding: Option<BindingSpec>,
    ) -> Vec<Action> {
        self.applied_with_spec(key, meta, binding, None)
    }

    /// [`Index::applied`] for a scalable kind, whose fingerprint covers `spec_hash` (its spec
    /// without `replicas`) instead of the generation: scaling changes nothing the controls see.
    pub fn applied_with_spec(
        &mut self,
        key: TargetKey,
        meta: &ObjectMeta,
        binding: Option<BindingSpec>,
        spec_hash: Option<&str>,
    ) -> Vec<Action> {
        if meta.deletion_timestamp.is_some() {
            // Being deleted (finalizers or graceful termination): its delete event follows, and
            // a scan now would only race it.
            return Vec::new();
        }
        let own_fp = object_fingerprint_with_spec(meta, spec_hash);
        if key.kind.is_role() {
            let rk = role_key_of(&key);
            if self.roles.get(&rk) == Some(&own_fp) {
                return Vec::new();
            }
            self.roles.insert(rk.clone(), own_fp);
            return self.rescore_bindings_of(&rk);
        }
        if self.owned_by_watched(meta) || is_own_scan_job(meta) {
            // The owner is scanned; a child that was scanned before its adoption keeps nothing.
            // kubevigil's own scan Jobs are never targets: scanning one would start another Job,
            // which would be scanned in turn, forever.
            return match self.targets.remove(&key) {
                Some(_) => vec![
                    Action::DeleteResults(self.result_refs(&key)),
                    Action::Forget(key),
                ],
                None => Vec::new(),
            };
        }
        let mut actions = Vec::new();
        if let Some(spec) = binding {
            if let Some(old) = self.bindings.get(&key) {
                let removed: Vec<Subject> = old
                    .subjects
                    .iter()
                    .filter(|s| !spec.subjects.contains(s))
                    .cloned()
                    .collect();
                if !removed.is_empty() {
                    actions.push(Action::DeleteResults(
                        self.triplet_refs(&key, old, &removed),
                    ));
                }
                let old_rk = binding_role_key(&key, old);
                if let Some(set) = self.role_bindings.get_mut(&old_rk) {
                    set.remove(&key);
                }
            }
            self.role_bindings
                .entry(binding_role_key(&key, &spec))
                .or_default()
                .insert(key.clone());
            self.bindings.insert(key.clone(), spec);
        }
        let fp = if key.kind.is_binding() {
            self.binding_own.insert(key.clone(), own_fp.clone());
            self.binding_fingerprint(&key, &own_fp)
        } else {
            own_fp
        };
        if self.targets.get(&key) == Some(&fp) {
            return actions;
        }
        let current = self
            .result_refs(&key)
            .iter()
            .all(|r| self.is_current(r, &fp));
        self.targets.insert(key.clone(), fp);
        if !current {
            actions.push(Action::Scan(key));
        }
        actions
    }

    /// Rescores every binding that names the role `rk` (its fingerprint covers the role's).
    fn rescore_bindings_of(&mut self, rk: &RoleRef) -> Vec<Action> {
        let bindings: Vec<TargetKey> = self
            .role_bindings
            .get(rk)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        bindings
            .into_iter()
            .filter_map(|b| self.rescore(b))
            .collect()
    }

    /// Recomputes a binding's fingerprint after its role changed; a scan when it differs.
    fn rescore(&mut self, binding: TargetKey) -> Option<Action> {
        let own = self.binding_own.get(&binding)?.clone();
        let fp = self.binding_fingerprint(&binding, &own);
        if self.targets.get(&binding) == Some(&fp) {
            return None;
        }
        self.targets.insert(binding.clone(), fp);
        Some(Action::Scan(binding))
    }

    /// An object was deleted. `binding` holds a binding's last spec from the delete event.
    pub fn deleted(&mut self, key: TargetKey, binding: Option<BindingSpec>) -> Vec<Action> {
        if key.kind.is_role() {
            let rk = role_key_of(&key);
            if self.roles.remove(&rk).is_none() {
                return Vec::new();
            }
            // Nothing is deleted (the role may come back; the resync collects the triplet
            // results of a binding without a role). But the bindings' fingerprint covers the
            // role's: they are rescanned, so that their results stop describing the deleted
            // role (found by the chaos scenario: they counted as current while this controller
            // ran, and were rescanned only by a restarted one).
            return self.rescore_bindings_of(&rk);
        }
        if let Some(spec) = binding {
            self.bindings.entry(key.clone()).or_insert(spec);
        }
        let was_target = self.targets.remove(&key).is_some();
        self.binding_own.remove(&key);
        let refs = self.all_result_refs(&key);
        if let Some(spec) = self.bindings.remove(&key) {
            if let Some(set) = self.role_bindings.get_mut(&binding_role_key(&key, &spec)) {
                set.remove(&key);
            }
        } else if !was_target {
            return Vec::new();
        }
        for r in &refs {
            self.results.remove(r);
        }
        vec![Action::DeleteResults(refs), Action::Forget(key)]
    }

    /// Resync: scans for live targets whose results are missing or stale, and the results that
    /// no live target produces (orphans: missed deletes) to delete.
    pub fn resync(&self) -> (Vec<TargetKey>, Vec<ResultRef>) {
        let mut expected: HashSet<ResultRef> = HashSet::with_capacity(self.targets.len());
        let mut scans = Vec::new();
        for (key, fp) in &self.targets {
            let refs = self.result_refs(key);
            let current = refs.iter().all(|r| self.is_current(r, fp));
            if !current {
                scans.push(key.clone());
            }
            expected.extend(refs);
        }
        let mut orphans: Vec<ResultRef> = self
            .results
            .keys()
            .filter(|r| !expected.contains(r))
            .cloned()
            .collect();
        orphans.sort();
        scans.sort();
        (scans, orphans)
    }
}

/// Whether `meta` is one of kubevigil's scan Jobs (their pods are owned by them, so they are
/// skipped as children). Both labels must match, so a user's Job that merely reuses the common
/// `component=scan-job` label is still scanned.
fn is_own_scan_job(meta: &ObjectMeta) -> bool {
    meta.labels.as_ref().is_some_and(|l| {
        l.get(crate::jobs::COMPONENT_LABEL).map(String::as_str) == Some(crate::jobs::COMPONENT)
            && l.get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGED_BY_VALUE)
    })
}

#[cfg(test)]
mod tests;
