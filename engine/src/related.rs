//! Related objects: the one table of the kinds a scan reads besides its targets, how a control
//! relates each kind to a workload, and the hash of a workload's related inputs. Pure.
//!
//! The table is the single source of truth for three readers: scan-job's read plan (which kinds
//! it lists per namespace and cluster-wide), the controller's related-object watches (the kinds
//! whose [`Relation`] is watched) and the chart's RBAC (checked against this table by
//! `controller/tests/related_rbac.rs`). Secrets are never read.
//!
//! A workload's related inputs are the related objects a control relates it to: the policies
//! whose selectors select its pods, the Services that select them, the Ingresses and routes
//! whose backends are those Services, the PersistentVolumeClaims and ConfigMaps its pods mount,
//! and, where the relation really is namespace-wide (Cilium namespaced policies, Istio objects)
//! or cluster-wide (Cilium clusterwide policies), every object of the kind there. Their
//! identities and resourceVersions hash into [`inputs_hash`], which scan-job records on each
//! result and the controller recomputes from its watch caches, so that the resync finds results
//! made stale by a missed related event.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::object::{Field, array, get_path, str_at};
use crate::selectors::selector_matches;
use crate::workload::template_path;

/// How a control relates objects of a kind to a workload, and so which workloads a change of
/// one of them rescans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    /// Watched by the controller as a target kind of its own (ServiceAccounts and RBAC, whose
    /// changes already rescan what depends on them): no related watch.
    Target,
    /// Not watched: Nodes (their status changes all the time, and no workload control relates a
    /// workload to one node).
    Unwatched,
    /// `spec.podSelector` (a LabelSelector) selects pods of its namespace (NetworkPolicy; an
    /// empty selector selects every pod of the namespace).
    PodSelector,
    /// `spec.selector` (a map; empty or absent selects nothing) selects pods of its namespace
    /// (Service).
    ServiceSelector,
    /// Related through the Services its backends name in its namespace (Ingress, HTTPRoute).
    Backends,
    /// Mounted as a volume by name; the path is the name's path in a volume entry
    /// (`persistentVolumeClaim.claimName`).
    Mounted(&'static str),
    /// Every workload of its namespace (Cilium's namespaced policies, whose selectors use
    /// Cilium's own label sources; Istio objects, which route by host names).
    Namespace,
    /// Every workload of the cluster (CiliumClusterwideNetworkPolicy).
    Cluster,
}

/// A kind of related object, read with a LIST per namespace (or cluster-wide).
#[derive(Debug, PartialEq, Eq)]
pub struct RelatedKind {
    /// API group (empty for core).
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Plural resource name.
    pub plural: &'static str,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// A CRD that may not be installed: 404 and 403 are skipped quietly.
    pub optional: bool,
    /// How a control relates it to a workload.
    pub relation: Relation,
}

impl RelatedKind {
    /// Whether the controller watches this kind for related-object rescans.
    pub fn watched(&self) -> bool {
        !matches!(self.relation, Relation::Target | Relation::Unwatched)
    }
}

#[allow(clippy::too_many_arguments)]
const fn kind(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    optional: bool,
    relation: Relation,
) -> RelatedKind {
    RelatedKind {
        group,
        version,
        kind,
        plural,
        namespaced,
        optional,
        relation,
    }
}

const RBAC: &str = "rbac.authorization.k8s.io";
const ISTIO: &str = "networking.istio.io";

/// Roles (read for RoleBindings in the same namespace).
pub static ROLES: RelatedKind = kind(RBAC, "v1", "Role", "roles", true, false, Relation::Target);
/// ClusterRoles.
pub static CLUSTER_ROLES: RelatedKind = kind(
    RBAC,
    "v1",
    "ClusterRole",
    "clusterroles",
    false,
    false,
    Relation::Target,
);

/// The namespaced kinds an object target's namespace is read for, in read order.
pub static NAMESPACED: [RelatedKind; 12] = [
    kind(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        true,
        false,
        Relation::Target,
    ),
    kind(
        "",
        "v1",
        "Service",
        "services",
        true,
        false,
        Relation::ServiceSelector,
    ),
    kind(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
        false,
        Relation::PodSelector,
    ),
    kind(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        true,
        false,
        Relation::Backends,
    ),
    kind(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        true,
        false,
        Relation::Mounted("configMap.name"),
    ),
    kind(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
        false,
        Relation::Mounted("persistentVolumeClaim.claimName"),
    ),
    kind(
        RBAC,
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
        false,
        Relation::Target,
    ),
    kind(RBAC, "v1", "Role", "roles", true, false, Relation::Target),
    kind(
        "cilium.io",
        "v2",
        "CiliumNetworkPolicy",
        "ciliumnetworkpolicies",
        true,
        true,
        Relation::Namespace,
    ),
    kind(
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
        "httproutes",
        true,
        true,
        Relation::Backends,
    ),
    // Istio serves v1beta1 in every release since 1.5 (v1 only since 1.22).
    kind(
        ISTIO,
        "v1beta1",
        "VirtualService",
        "virtualservices",
        true,
        true,
        Relation::Namespace,
    ),
    kind(
        ISTIO,
        "v1beta1",
        "Gateway",
        "gateways",
        true,
        true,
        Relation::Namespace,
    ),
];

/// The cluster-wide kinds read when the batch has an object target, in read order.
pub static CLUSTER: [RelatedKind; 4] = [
    kind(
        RBAC,
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
        false,
        Relation::Target,
    ),
    kind("", "v1", "Node", "nodes", false, false, Relation::Unwatched),
    kind(
        RBAC,
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
        false,
        Relation::Target,
    ),
    kind(
        "cilium.io",
        "v2",
        "CiliumClusterwideNetworkPolicy",
        "ciliumclusterwidenetworkpolicies",
        false,
        true,
        Relation::Cluster,
    ),
];

/// Every related kind of the table, namespaced first.
pub fn all_kinds() -> impl Iterator<Item = &'static RelatedKind> {
    NAMESPACED.iter().chain(CLUSTER.iter())
}

/// The related kinds the controller watches (metadata and what the relation reads).
pub fn watched_kinds() -> impl Iterator<Item = &'static RelatedKind> {
    all_kinds().filter(|k| k.watched())
}

/// The table's entry for a kind.
pub fn find_kind(group: &str, kind: &str) -> Option<&'static RelatedKind> {
    all_kinds().find(|k| k.group == group && k.kind == kind)
}

/// What the relations need of a workload: its pods' labels and the names of the objects its
/// pod spec mounts as volumes, per kind (PersistentVolumeClaim, ConfigMap).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodFacts {
    /// The labels its pods get (a Pod's own, or the template's).
    pub labels: Map<String, Value>,
    /// (kind, name) of each object mounted as a volume.
    pub mounts: BTreeSet<(&'static str, String)>,
}

impl PodFacts {
    /// The facts of a whole workload object (`metadata` and `spec`); `None` for a kind that is
    /// not a workload.
    pub fn of_object(kind: &str, object: &Value) -> Option<Self> {
        let own = object
            .field("metadata")
            .and_then(|m| m.field("labels"))
            .and_then(Value::as_object);
        Self::of_parts(kind, own, object.field("spec").unwrap_or(&Value::Null))
    }

    /// The facts from a workload's own labels (read for a Pod) and its `spec`; `None` for a
    /// kind that is not a workload.
    pub fn of_parts(
        kind: &str,
        own_labels: Option<&Map<String, Value>>,
        spec: &Value,
    ) -> Option<Self> {
        let base = template_path(kind)?;
        let (labels, pod_spec) = if base.is_empty() {
            (own_labels, Some(spec))
        } else {
            // `spec.template` is `template` below `spec`.
            let template = get_path(spec, base.strip_prefix("spec.").unwrap_or(base));
            (
                template
                    .and_then(|t| t.field("metadata"))
                    .and_then(|m| m.field("labels"))
                    .and_then(Value::as_object),
                template.and_then(|t| t.field("spec")),
            )
        };
        let mut mounts = BTreeSet::new();
        for volume in pod_spec.map(|s| array(s, "volumes")).unwrap_or(&[]) {
            for k in all_kinds() {
                if let Relation::Mounted(path) = k.relation
                    && let Some(name) = get_path(volume, path).and_then(Value::as_str)
                {
                    mounts.insert((k.kind, name.to_string()));
                }
            }
        }
        Some(PodFacts {
            labels: labels.cloned().unwrap_or_default(),
            mounts,
        })
    }
}

/// What a related object's relation reads of it.
#[derive(Clone, Debug, PartialEq)]
pub enum Link {
    /// A LabelSelector on pod labels (a Service's map becomes its `matchLabels`).
    Selector(Value),
    /// Selects no pod (a Service without a selector).
    Nothing,
    /// The Services its backends name, in its namespace.
    Services(BTreeSet<String>),
    /// Related to the workloads that mount it by name.
    Mounted,
    /// Every workload of its namespace.
    Namespace,
    /// Every workload.
    Cluster,
}

/// What the relations need of a related object: its identity, resourceVersion and link.
#[derive(Clone, Debug, PartialEq)]
pub struct RelatedFacts {
    /// Its kind in the table.
    pub kind: &'static RelatedKind,
    /// Namespace; `None` for a cluster-scoped kind.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// resourceVersion (part of [`inputs_hash`]).
    pub resource_version: String,
    /// What its relation reads.
    pub link: Link,
}

/// The Service names a backend list names: an Ingress's `defaultBackend` and its rules' paths,
/// a route's rules' `backendRefs` of kind Service (the default) in the route's namespace.
fn backend_services(spec: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    if let Some(name) = get_path(spec, "defaultBackend.service.name").and_then(Value::as_str) {
        names.insert(name.to_string());
    }
    for rule in array(spec, "rules") {
        for path in rule.field("http").map(|h| array(h, "paths")).unwrap_or(&[]) {
            if let Some(name) = get_path(path, "backend.service.name").and_then(Value::as_str) {
                names.insert(name.to_string());
            }
        }
        for backend in array(rule, "backendRefs") {
            let service = str_at(backend, "kind").is_none_or(|k| k == "Service")
                && backend.field("namespace").is_none();
            if service && let Some(name) = str_at(backend, "name") {
                names.insert(name.to_string());
            }
        }
    }
    names
}

impl RelatedFacts {
    /// The facts of an object of `kind` from its identity and `spec`.
    pub fn of(
        kind: &'static RelatedKind,
        namespace: Option<&str>,
        name: &str,
        resource_version: &str,
        spec: &Value,
    ) -> Self {
        let link = match kind.relation {
            Relation::PodSelector => Link::Selector(
                spec.field("podSelector")
                    .cloned()
                    .unwrap_or_else(|| Value::Object(Map::new())),
            ),
            Relation::ServiceSelector => match spec.field("selector").and_then(Value::as_object) {
                Some(m) if !m.is_empty() => {
                    let mut selector = Map::new();
                    selector.insert("matchLabels".into(), Value::Object(m.clone()));
                    Link::Selector(Value::Object(selector))
                }
                _ => Link::Nothing,
            },
            Relation::Backends => Link::Services(backend_services(spec)),
            Relation::Mounted(_) => Link::Mounted,
            Relation::Namespace => Link::Namespace,
            Relation::Cluster => Link::Cluster,
            Relation::Target | Relation::Unwatched => Link::Nothing,
        };
        RelatedFacts {
            kind,
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
            resource_version: resource_version.to_string(),
            link,
        }
    }

    /// The facts of a whole object (`metadata` and `spec`) of `kind`.
    pub fn of_object(kind: &'static RelatedKind, object: &Value) -> Self {
        let meta = object.field("metadata");
        let s = |k: &str| meta.and_then(|m| str_at(m, k)).unwrap_or_default();
        let namespace = Some(s("namespace")).filter(|n| kind.namespaced && !n.is_empty());
        Self::of(
            kind,
            namespace,
            s("name"),
            s("resourceVersion"),
            object.field("spec").unwrap_or(&Value::Null),
        )
    }

    /// Whether this object relates to a workload of `namespace` with `pod` facts.
    /// `service` looks up a Service of the workload's namespace by name (for backends).
    pub fn relates<'a>(
        &self,
        pod: &PodFacts,
        namespace: &str,
        service: &dyn Fn(&str) -> Option<&'a RelatedFacts>,
    ) -> bool {
        if self.kind.namespaced && self.namespace.as_deref() != Some(namespace) {
            return false;
        }
        match &self.link {
            Link::Selector(selector) => selector_matches(selector, Some(&pod.labels)),
            Link::Nothing => false,
            Link::Services(names) => names.iter().any(|n| {
                service(n).is_some_and(|s| {
                    matches!(s.link, Link::Selector(_)) && s.relates(pod, namespace, &|_| None)
                })
            }),
            Link::Mounted => pod.mounts.contains(&(self.kind.kind, self.name.clone())),
            Link::Namespace | Link::Cluster => true,
        }
    }

    /// The line this object adds to [`inputs_hash`].
    fn identity(&self) -> String {
        format!(
            "{}/{}/{}/{}@{}",
            self.kind.group,
            self.kind.kind,
            self.namespace.as_deref().unwrap_or(""),
            self.name,
            self.resource_version
        )
    }
}

/// The related objects of a workload among `candidates` (the related objects of its namespace
/// and the cluster-wide ones; others are ignored).
pub fn related_to<'a>(
    pod: &PodFacts,
    namespace: &str,
    candidates: &[&'a RelatedFacts],
) -> Vec<&'a RelatedFacts> {
    let service = |name: &str| {
        candidates
            .iter()
            .find(|c| {
                c.kind.relation == Relation::ServiceSelector
                    && c.name == name
                    && c.namespace.as_deref() == Some(namespace)
            })
            .copied()
    };
    candidates
        .iter()
        .filter(|c| c.relates(pod, namespace, &service))
        .copied()
        .collect()
}

/// The hash of a workload's related inputs: the identities (group, kind, namespace, name) and
/// resourceVersions of the related objects, in any order. The value of the
/// `kubevigil.io/related-inputs` annotation.
pub fn inputs_hash<'a>(related: impl IntoIterator<Item = &'a RelatedFacts>) -> String {
    let mut lines: Vec<String> = related.into_iter().map(RelatedFacts::identity).collect();
    lines.sort();
    lines.dedup();
    let parts: Vec<&str> = lines.iter().map(String::as_str).collect();
    kubevigil_crds::identity::combine_fingerprints(&parts)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn k(kind: &str) -> &'static RelatedKind {
        all_kinds().find(|x| x.kind == kind).expect("kind in table")
    }

    fn obj(kind: &str, ns: &str, name: &str, rv: &str, spec: Value) -> RelatedFacts {
        RelatedFacts::of(k(kind), Some(ns), name, rv, &spec)
    }

    fn web() -> PodFacts {
        PodFacts::of_object(
            "Deployment",
            &json!({"spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {
            "volumes": [
                {"name": "d", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "c", "configMap": {"name": "conf"}},
                {"name": "s", "secret": {"secretName": "nope"}}
            ]}}}}),
        )
        .expect("workload")
    }

    #[test]
    fn secrets_are_never_read_and_nodes_never_watched() {
        assert!(all_kinds().all(|k| k.kind != "Secret" && k.plural != "secrets"));
        let watched: Vec<&str> = watched_kinds().map(|k| k.kind).collect();
        assert_eq!(
            watched,
            [
                "Service",
                "NetworkPolicy",
                "Ingress",
                "ConfigMap",
                "PersistentVolumeClaim",
                "CiliumNetworkPolicy",
                "HTTPRoute",
                "VirtualService",
                "Gateway",
                "CiliumClusterwideNetworkPolicy"
            ]
        );
    }

    #[test]
    fn pod_facts_of_each_workload_shape() {
        let w = web();
        assert_eq!(w.labels.get("app"), Some(&json!("web")));
        assert_eq!(
            w.mounts.iter().cloned().collect::<Vec<_>>(),
            [
                ("ConfigMap", "conf".to_string()),
                ("PersistentVolumeClaim", "data".to_string())
            ]
        );
        let pod = PodFacts::of_object(
            "Pod",
            &json!({"metadata": {"labels": {"a": "b"}}, "spec": {"volumes": [{"name": "x", "configMap": {"name": "m"}}]}}),
        )
        .expect("pod");
        assert_eq!(pod.labels.get("a"), Some(&json!("b")));
        assert!(pod.mounts.contains(&("ConfigMap", "m".to_string())));
        let cron = PodFacts::of_object(
            "CronJob",
            &json!({"spec": {"jobTemplate": {"spec": {"template": {"metadata": {"labels": {"c": "d"}}}}}}}),
        )
        .expect("cronjob");
        assert_eq!(cron.labels.get("c"), Some(&json!("d")));
        assert!(PodFacts::of_object("Service", &json!({})).is_none());
    }

    #[test]
    fn each_relation_selects_what_its_control_reads() {
        let w = web();
        let np = obj(
            "NetworkPolicy",
            "shop",
            "np",
            "1",
            json!({"podSelector": {"matchLabels": {"app": "web"}}}),
        );
        let np_other = obj(
            "NetworkPolicy",
            "shop",
            "np2",
            "1",
            json!({"podSelector": {"matchLabels": {"app": "db"}}}),
        );
        let np_all = obj(
            "NetworkPolicy",
            "shop",
            "deny",
            "1",
            json!({"podSelector": {}}),
        );
        let np_elsewhere = obj(
            "NetworkPolicy",
            "other",
            "np",
            "1",
            json!({"podSelector": {}}),
        );
        let svc = obj(
            "Service",
            "shop",
            "web",
            "1",
            json!({"selector": {"app": "web"}, "type": "NodePort"}),
        );
        let svc_none = obj(
            "Service",
            "shop",
            "manual",
            "1",
            json!({"type": "ClusterIP"}),
        );
        let ing = obj(
            "Ingress",
            "shop",
            "ing",
            "1",
            json!({"rules": [{"http": {"paths": [{"backend": {"service": {"name": "web"}}}]}}]}),
        );
        let ing_other = obj(
            "Ingress",
            "shop",
            "ing2",
            "1",
            json!({"defaultBackend": {"service": {"name": "manual"}}}),
        );
        let route = obj(
            "HTTPRoute",
            "shop",
            "r",
            "1",
            json!({"rules": [{"backendRefs": [{"name": "web"}]}]}),
        );
        let pvc = obj("PersistentVolumeClaim", "shop", "data", "1", json!({}));
        let pvc_other = obj("PersistentVolumeClaim", "shop", "logs", "1", json!({}));
        let cm = obj("ConfigMap", "shop", "conf", "1", json!({}));
        let cnp = obj("CiliumNetworkPolicy", "shop", "c", "1", json!({}));
        let ccnp = RelatedFacts::of(
            k("CiliumClusterwideNetworkPolicy"),
            None,
            "cc",
            "1",
            &json!({}),
        );
        let all = [
            &np,
            &np_other,
            &np_all,
            &np_elsewhere,
            &svc,
            &svc_none,
            &ing,
            &ing_other,
            &route,
            &pvc,
            &pvc_other,
            &cm,
            &cnp,
            &ccnp,
        ];
        let names: Vec<&str> = related_to(&w, "shop", &all)
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["np", "deny", "web", "ing", "r", "data", "conf", "c", "cc"]
        );
    }

    #[test]
    fn the_hash_covers_identity_and_version_not_order() {
        let a = obj("Service", "shop", "web", "1", json!({}));
        let b = obj("ConfigMap", "shop", "conf", "7", json!({}));
        let b2 = obj("ConfigMap", "shop", "conf", "8", json!({}));
        assert_eq!(inputs_hash([&a, &b]), inputs_hash([&b, &a]));
        assert_ne!(inputs_hash([&a, &b]), inputs_hash([&a, &b2]));
        assert_ne!(inputs_hash([&a]), inputs_hash([&a, &b]));
        assert_eq!(inputs_hash([]).len(), 16);
    }

    #[test]
    fn facts_from_a_whole_object() {
        let f = RelatedFacts::of_object(
            k("NetworkPolicy"),
            &json!({"metadata": {"namespace": "shop", "name": "np", "resourceVersion": "5"}, "spec": {}}),
        );
        assert_eq!(
            (
                f.namespace.as_deref(),
                f.name.as_str(),
                f.resource_version.as_str()
            ),
            (Some("shop"), "np", "5")
        );
        assert_eq!(f.link, Link::Selector(json!({})));
    }
}
