//! Related-object rescans, pure: which targets a change of a related object (a NetworkPolicy, a
//! Service, an Ingress, a mounted PersistentVolumeClaim or ConfigMap...) affects, and the hash
//! of each workload's related inputs as the controller's watch caches see them.
//!
//! The relations are the engine's ([`kubevigil_engine::related`]), the same scan-job records
//! on each result, so that a result whose recorded hash differs from [`RelatedIndex::inputs_hash`]
//! was made stale by a related change (one the controller missed, say while it was down).
//!
//! What is kept is small: per workload target, its pods' labels and the names of what it mounts
//! ([`PodFacts`]); per related object, its identity, resourceVersion and what its relation reads
//! (a selector, backend Service names). A change rescans the workloads its old or its new form
//! relates to: a NetworkPolicy the workloads its `podSelector` selects in its namespace, a Service
//! those its selector selects, an Ingress those of the Services it routes to, a PVC or ConfigMap
//! those that mount it; the namespace's workloads for Cilium's namespaced policies and Istio's
//! objects, every workload for a Cilium clusterwide policy.

use std::collections::{BTreeSet, HashMap, HashSet};

use kubevigil_crds::target::TargetKey;
use kubevigil_engine::related::{self, PodFacts, RelatedFacts, RelatedKind};

/// A related object, by kind, namespace (`""` when cluster-scoped) and name.
type ObjectKey = (&'static str, &'static str, String);

/// The related objects and the workloads' pod facts, kept from the watches.
#[derive(Debug, Default)]
pub struct RelatedIndex {
    /// Pod facts of each workload target, by namespace.
    workloads: HashMap<String, HashMap<TargetKey, PodFacts>>,
    /// Related objects by namespace (`""` for cluster-scoped ones).
    objects: HashMap<String, HashMap<ObjectKey, RelatedFacts>>,
    /// Watches started and not yet listed once (or known missing).
    listing: HashSet<&'static str>,
    /// Per watch being re-listed, the objects listed so far.
    relist: HashMap<&'static str, HashSet<ObjectKey>>,
}

fn object_key(f: &RelatedFacts) -> ObjectKey {
    (
        f.kind.group,
        f.kind.kind,
        format!("{}/{}", f.namespace.as_deref().unwrap_or(""), f.name),
    )
}

fn namespace_of(f: &RelatedFacts) -> String {
    f.namespace.clone().unwrap_or_default()
}

impl RelatedIndex {
    /// An index waiting for the first list of each of `kinds`.
    pub fn new<'a>(kinds: impl IntoIterator<Item = &'a RelatedKind>) -> Self {
        RelatedIndex {
            listing: kinds.into_iter().map(|k| k.kind).collect(),
            ..RelatedIndex::default()
        }
    }

    /// Whether every related watch has listed once (or its kind is not installed): only then
    /// does [`RelatedIndex::inputs_hash`] describe the cluster.
    pub fn synced(&self) -> bool {
        self.listing.is_empty()
    }

    /// Whether `kind`'s watch has not yet listed once.
    pub fn first_listing(&self, kind: &RelatedKind) -> bool {
        self.listing.contains(kind.kind)
    }

    /// Number of workloads with pod facts and of related objects known.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.workloads.values().map(HashMap::len).sum(),
            self.objects.values().map(HashMap::len).sum(),
        )
    }

    /// A workload target was applied with these facts (`None`: it is not a workload target, or
    /// no longer one, e.g. adopted by an owner).
    pub fn workload_applied(&mut self, key: &TargetKey, facts: Option<PodFacts>) {
        let ns = key.namespace.clone().unwrap_or_default();
        match facts {
            Some(f) => {
                self.workloads.entry(ns).or_default().insert(key.clone(), f);
            }
            None => self.workload_deleted(key),
        }
    }

    /// A workload target is gone.
    pub fn workload_deleted(&mut self, key: &TargetKey) {
        let ns = key.namespace.clone().unwrap_or_default();
        if let Some(m) = self.workloads.get_mut(&ns) {
            m.remove(key);
            if m.is_empty() {
                self.workloads.remove(&ns);
            }
        }
    }

    /// A related watch starts (re-)listing.
    pub fn relist_started(&mut self, kind: &'static RelatedKind) {
        self.relist.insert(kind.kind, HashSet::new());
    }

    /// A related watch finished listing: objects it had before and did not list again were
    /// deleted meanwhile. The targets they related to are returned for rescans.
    pub fn relist_done(&mut self, kind: &'static RelatedKind) -> BTreeSet<TargetKey> {
        self.listing.remove(kind.kind);
        let Some(seen) = self.relist.remove(kind.kind) else {
            return BTreeSet::new();
        };
        let gone: Vec<RelatedFacts> = self
            .objects
            .values()
            .flat_map(HashMap::iter)
            .filter(|(k, _)| k.0 == kind.group && k.1 == kind.kind && !seen.contains(*k))
            .map(|(_, f)| f.clone())
            .collect();
        let mut out = BTreeSet::new();
        for f in gone {
            out.extend(self.deleted(&f));
        }
        out
    }

    /// A related kind is not installed (its optional CRD is missing): nothing to wait for.
    pub fn kind_missing(&mut self, kind: &'static RelatedKind) {
        self.listing.remove(kind.kind);
        self.relist.remove(kind.kind);
    }

    /// A related object was added or modified: the targets its old or new form relates to.
    /// Nothing when it is unchanged (a re-list).
    pub fn applied(&mut self, facts: RelatedFacts) -> BTreeSet<TargetKey> {
        let key = object_key(&facts);
        if let Some(seen) = self.relist.get_mut(facts.kind.kind) {
            seen.insert(key.clone());
        }
        let ns = namespace_of(&facts);
        let old = self.objects.get(&ns).and_then(|m| m.get(&key)).cloned();
        if old.as_ref() == Some(&facts) {
            return BTreeSet::new();
        }
        let mut out = old.map(|o| self.affected(&o)).unwrap_or_default();
        self.objects
            .entry(ns)
            .or_default()
            .insert(key, facts.clone());
        out.extend(self.affected(&facts));
        out
    }

    /// A related object was deleted: the targets it related to.
    pub fn deleted(&mut self, facts: &RelatedFacts) -> BTreeSet<TargetKey> {
        let key = object_key(facts);
        let ns = namespace_of(facts);
        let Some(old) = self.objects.get(&ns).and_then(|m| m.get(&key)).cloned() else {
            return BTreeSet::new();
        };
        // Affected as it was, while it still is in the index (an Ingress finds its Services).
        let out = self.affected(&old);
        if let Some(m) = self.objects.get_mut(&ns) {
            m.remove(&key);
            if m.is_empty() {
                self.objects.remove(&ns);
            }
        }
        out
    }

    /// The related objects a workload of `namespace` may relate to: its namespace's and the
    /// cluster-scoped ones.
    fn candidates(&self, namespace: &str) -> Vec<&RelatedFacts> {
        let mut out: Vec<&RelatedFacts> = Vec::new();
        for ns in [namespace, ""] {
            if let Some(m) = self.objects.get(ns) {
                out.extend(m.values());
            }
            if namespace.is_empty() {
                break;
            }
        }
        out
    }

    /// The workload targets `facts` relates to (a Service also through the Ingresses and routes
    /// naming it: the same workloads, those its selector selects).
    fn affected(&self, facts: &RelatedFacts) -> BTreeSet<TargetKey> {
        let namespaces: Vec<&String> = match &facts.namespace {
            Some(ns) => self
                .workloads
                .get_key_value(ns)
                .map(|(k, _)| k)
                .into_iter()
                .collect(),
            None => self.workloads.keys().collect(),
        };
        let mut out = BTreeSet::new();
        for ns in namespaces {
            let candidates = self.candidates(ns);
            let service = |name: &str| {
                candidates
                    .iter()
                    .find(|c| {
                        c.kind.relation == related::Relation::ServiceSelector && c.name == name
                    })
                    .copied()
            };
            for (key, pod) in self.workloads.get(ns).into_iter().flatten() {
                if facts.relates(pod, ns, &service) {
                    out.insert(key.clone());
                }
            }
        }
        out
    }

    /// The hash of a workload target's related inputs, as scan-job computes it from what it
    /// reads; `None` when the target is not a known workload.
    pub fn inputs_hash(&self, key: &TargetKey) -> Option<String> {
        let ns = key.namespace.as_deref().unwrap_or_default();
        let pod = self.workloads.get(ns)?.get(key)?;
        let candidates = self.candidates(ns);
        Some(related::inputs_hash(related::related_to(
            pod,
            ns,
            &candidates,
        )))
    }

    /// Every workload target with pod facts.
    pub fn workload_keys(&self) -> impl Iterator<Item = &TargetKey> {
        self.workloads.values().flat_map(HashMap::keys)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kubevigil_crds::target::KindInfo;
    use kubevigil_engine::related::find_kind;
    use serde_json::{Value, json};

    use super::*;

    fn deploy(ns: &str, name: &str) -> TargetKey {
        TargetKey {
            kind: Arc::new(KindInfo {
                group: "apps".into(),
                version: "v1".into(),
                kind: "Deployment".into(),
                plural: "deployments".into(),
                namespaced: true,
            }),
            namespace: Some(ns.into()),
            name: name.into(),
        }
    }

    fn pod(app: &str, claim: Option<&str>) -> PodFacts {
        let volumes: Vec<Value> = claim
            .map(|c| json!({"name": "v", "persistentVolumeClaim": {"claimName": c}}))
            .into_iter()
            .collect();
        PodFacts::of_object(
            "Deployment",
            &json!({"spec": {"template": {"metadata": {"labels": {"app": app}}, "spec": {"volumes": volumes}}}}),
        )
        .expect("workload")
    }

    fn facts(
        group: &str,
        kind: &str,
        ns: Option<&str>,
        name: &str,
        rv: &str,
        spec: Value,
    ) -> RelatedFacts {
        RelatedFacts::of(find_kind(group, kind).expect("kind"), ns, name, rv, &spec)
    }

    fn np(ns: &str, name: &str, rv: &str, selector: Value) -> RelatedFacts {
        facts(
            "networking.k8s.io",
            "NetworkPolicy",
            Some(ns),
            name,
            rv,
            json!({"podSelector": selector}),
        )
    }

    fn svc(ns: &str, name: &str, rv: &str, selector: Value) -> RelatedFacts {
        facts(
            "",
            "Service",
            Some(ns),
            name,
            rv,
            json!({"selector": selector}),
        )
    }

    fn names(keys: &BTreeSet<TargetKey>) -> Vec<String> {
        keys.iter()
            .map(|k| format!("{}/{}", k.namespace.as_deref().unwrap_or(""), k.name))
            .collect()
    }

    fn shop() -> RelatedIndex {
        let mut ix = RelatedIndex::new(related::watched_kinds());
        ix.workload_applied(&deploy("shop", "web"), Some(pod("web", Some("data"))));
        ix.workload_applied(&deploy("shop", "api"), Some(pod("api", None)));
        ix.workload_applied(&deploy("other", "web"), Some(pod("web", None)));
        ix
    }

    #[test]
    fn a_policy_rescans_what_its_selector_selects_old_and_new() {
        let mut ix = shop();
        assert_eq!(
            names(&ix.applied(np("shop", "p", "1", json!({"matchLabels": {"app": "web"}})))),
            ["shop/web"]
        );
        // Unchanged (a re-list): nothing.
        assert!(
            ix.applied(np("shop", "p", "1", json!({"matchLabels": {"app": "web"}})))
                .is_empty()
        );
        // Moved to another app: both the old and the new selection.
        assert_eq!(
            names(&ix.applied(np("shop", "p", "2", json!({"matchLabels": {"app": "api"}})))),
            ["shop/api", "shop/web"]
        );
        // An empty selector selects the whole namespace, not the other one.
        assert_eq!(
            names(&ix.applied(np("shop", "deny", "3", json!({})))),
            ["shop/api", "shop/web"]
        );
        assert_eq!(
            names(&ix.deleted(&np("shop", "deny", "3", json!({})))),
            ["shop/api", "shop/web"]
        );
        assert!(ix.deleted(&np("shop", "deny", "3", json!({}))).is_empty());
    }

    #[test]
    fn services_ingresses_and_mounts() {
        let mut ix = shop();
        assert_eq!(
            names(&ix.applied(svc("shop", "web", "1", json!({"app": "web"})))),
            ["shop/web"]
        );
        // A Service without a selector selects nothing.
        assert!(ix.applied(svc("shop", "manual", "1", json!({}))).is_empty());
        let ing = facts(
            "networking.k8s.io",
            "Ingress",
            Some("shop"),
            "ing",
            "1",
            json!({"rules": [{"http": {"paths": [{"backend": {"service": {"name": "web"}}}]}}]}),
        );
        assert_eq!(names(&ix.applied(ing)), ["shop/web"]);
        let pvc = facts(
            "",
            "PersistentVolumeClaim",
            Some("shop"),
            "data",
            "1",
            json!({}),
        );
        assert_eq!(names(&ix.applied(pvc)), ["shop/web"]);
        let cm = facts("", "ConfigMap", Some("shop"), "unused", "1", json!({}));
        assert!(ix.applied(cm).is_empty());
        let ccnp = facts(
            "cilium.io",
            "CiliumClusterwideNetworkPolicy",
            None,
            "cc",
            "1",
            json!({}),
        );
        assert_eq!(
            names(&ix.applied(ccnp)),
            ["other/web", "shop/api", "shop/web"]
        );
    }

    #[test]
    fn the_hash_follows_related_inputs_only() {
        let mut ix = shop();
        let web = deploy("shop", "web");
        let api = deploy("shop", "api");
        let (h_web, h_api) = (ix.inputs_hash(&web), ix.inputs_hash(&api));
        ix.applied(np("shop", "p", "1", json!({"matchLabels": {"app": "web"}})));
        assert_ne!(ix.inputs_hash(&web), h_web);
        assert_eq!(ix.inputs_hash(&api), h_api);
        // The same hash as the engine computes from the same objects (what scan-job records).
        let p = np("shop", "p", "1", json!({"matchLabels": {"app": "web"}}));
        assert_eq!(ix.inputs_hash(&web), Some(related::inputs_hash([&p])));
        ix.workload_deleted(&web);
        assert_eq!(ix.inputs_hash(&web), None);
    }

    #[test]
    fn a_relist_finds_deletions_and_syncs() {
        let mut ix = shop();
        assert!(!ix.synced());
        ix.applied(np("shop", "p", "1", json!({"matchLabels": {"app": "web"}})));
        let kind = find_kind("networking.k8s.io", "NetworkPolicy").expect("kind");
        ix.relist_started(kind);
        ix.applied(np("shop", "q", "1", json!({"matchLabels": {"app": "api"}})));
        assert_eq!(names(&ix.relist_done(kind)), ["shop/web"]);
        for k in related::watched_kinds() {
            ix.kind_missing(k);
        }
        assert!(ix.synced());
        assert_eq!(ix.counts(), (3, 1));
    }
}
