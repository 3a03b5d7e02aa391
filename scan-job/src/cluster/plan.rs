//! Which related objects a batch of targets needs, read in batch once per Job. Pure: the live
//! targets in, an ordered list of (kind, namespace) reads out.
//!
//! - An object target (a workload, a ServiceAccount, a Namespace...) needs the objects of its
//!   namespace that controls relate it to (ServiceAccounts, Services, NetworkPolicies,
//!   Ingresses, ConfigMaps, PersistentVolumeClaims, RoleBindings and Roles, plus the optional
//!   CRD kinds), and the cluster-wide ClusterRoleBindings, Nodes and ClusterRoles. A Namespace
//!   target counts as being in itself.
//! - A binding target needs only the role its `roleRef` names: the Roles of its namespace, or
//!   the ClusterRoles.
//!
//! Secrets are never read.

use std::collections::{BTreeSet, HashMap};

use kube::discovery::ApiResource;
use kubevigil_crds::target::KindInfo;

/// A kind of related object, read with a LIST per namespace (or cluster-wide).
#[derive(Debug, PartialEq, Eq, Hash)]
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
}

impl RelatedKind {
    /// The resource for kube's dynamic API.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.to_string(),
            version: self.version.to_string(),
            api_version: kubevigil_crds::identity::join_api_version(self.group, self.version),
            kind: self.kind.to_string(),
            plural: self.plural.to_string(),
        }
    }
}

const fn kind(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    optional: bool,
) -> RelatedKind {
    RelatedKind {
        group,
        version,
        kind,
        plural,
        namespaced,
        optional,
    }
}

const RBAC: &str = "rbac.authorization.k8s.io";

/// Roles (read for RoleBindings in the same namespace).
pub static ROLES: RelatedKind = kind(RBAC, "v1", "Role", "roles", true, false);
/// ClusterRoles.
pub static CLUSTER_ROLES: RelatedKind =
    kind(RBAC, "v1", "ClusterRole", "clusterroles", false, false);

/// The namespaced kinds an object target's namespace is read for, in read order.
pub static NAMESPACED: [RelatedKind; 12] = [
    kind("", "v1", "ServiceAccount", "serviceaccounts", true, false),
    kind("", "v1", "Service", "services", true, false),
    kind(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
        false,
    ),
    kind(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        true,
        false,
    ),
    kind("", "v1", "ConfigMap", "configmaps", true, false),
    kind(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
        false,
    ),
    kind(RBAC, "v1", "RoleBinding", "rolebindings", true, false),
    kind(RBAC, "v1", "Role", "roles", true, false),
    kind(
        "cilium.io",
        "v2",
        "CiliumNetworkPolicy",
        "ciliumnetworkpolicies",
        true,
        true,
    ),
    kind(
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
        "httproutes",
        true,
        true,
    ),
    // Istio serves v1beta1 in every release since 1.5 (v1 only since 1.22).
    kind(
        "networking.istio.io",
        "v1beta1",
        "VirtualService",
        "virtualservices",
        true,
        true,
    ),
    kind(
        "networking.istio.io",
        "v1beta1",
        "Gateway",
        "gateways",
        true,
        true,
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
    ),
    kind("", "v1", "Node", "nodes", false, false),
    kind(RBAC, "v1", "ClusterRole", "clusterroles", false, false),
    kind(
        "cilium.io",
        "v2",
        "CiliumClusterwideNetworkPolicy",
        "ciliumclusterwidenetworkpolicies",
        false,
        true,
    ),
];

/// What the plan needs to know of one live target.
#[derive(Clone, Copy, Debug)]
pub struct PlanTarget<'a> {
    /// The target's kind.
    pub kind: &'a KindInfo,
    /// Its namespace.
    pub namespace: Option<&'a str>,
    /// Its name.
    pub name: &'a str,
    /// `roleRef.kind` of a binding target.
    pub role_ref_kind: Option<&'a str>,
}

/// One LIST of a kind in a namespace (or cluster-wide), and the targets that need it.
#[derive(Debug, PartialEq, Eq)]
pub struct Read {
    /// The kind to list.
    pub kind: &'static RelatedKind,
    /// The namespace; `None` for a cluster-wide list.
    pub namespace: Option<String>,
    /// Indexes (into the planned targets) of the targets whose results depend on this read.
    pub needed_by: Vec<usize>,
}

/// The reads a batch needs, each (kind, namespace) once, in a fixed order: the namespaced
/// kinds namespace by namespace (sorted), then the cluster-wide kinds, then what only binding
/// targets need.
pub fn plan_reads(targets: &[PlanTarget<'_>]) -> Vec<Read> {
    let mut object_targets = Vec::new();
    let mut namespaces: BTreeSet<&str> = BTreeSet::new();
    let mut by_namespace: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut binding_reads: Vec<(&'static RelatedKind, Option<&str>, usize)> = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        if t.kind.is_binding() {
            match (t.role_ref_kind, t.namespace) {
                (Some("ClusterRole"), _) => binding_reads.push((&CLUSTER_ROLES, None, i)),
                // Only a RoleBinding can name a Role, and only one in its own namespace.
                (Some("Role"), Some(ns)) if t.kind.kind == "RoleBinding" => {
                    binding_reads.push((&ROLES, Some(ns), i));
                }
                _ => {}
            }
            continue;
        }
        object_targets.push(i);
        let scope = match t.namespace {
            Some(ns) => Some(ns),
            None if t.kind.group.is_empty() && t.kind.kind == "Namespace" => Some(t.name),
            None => None,
        };
        if let Some(ns) = scope {
            namespaces.insert(ns);
            by_namespace.entry(ns).or_default().push(i);
        }
    }

    let mut reads: Vec<Read> = Vec::new();
    for ns in &namespaces {
        let needed_by = by_namespace.get(ns).cloned().unwrap_or_default();
        for k in &NAMESPACED {
            reads.push(Read {
                kind: k,
                namespace: Some((*ns).to_string()),
                needed_by: needed_by.clone(),
            });
        }
    }
    if !object_targets.is_empty() {
        for k in &CLUSTER {
            reads.push(Read {
                kind: k,
                namespace: None,
                needed_by: object_targets.clone(),
            });
        }
    }
    for (kind, ns, target) in binding_reads {
        let existing = reads.iter_mut().find(|r| {
            r.kind.group == kind.group && r.kind.kind == kind.kind && r.namespace.as_deref() == ns
        });
        match existing {
            Some(r) => {
                if !r.needed_by.contains(&target) {
                    r.needed_by.push(target);
                }
            }
            None => reads.push(Read {
                kind,
                namespace: ns.map(str::to_string),
                needed_by: vec![target],
            }),
        }
    }
    reads
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(group: &str, kind: &str, plural: &str, namespaced: bool) -> KindInfo {
        KindInfo {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            plural: plural.into(),
            namespaced,
        }
    }

    fn shown(reads: &[Read]) -> Vec<String> {
        reads
            .iter()
            .map(|r| {
                format!(
                    "{}@{}<-{:?}",
                    r.kind.plural,
                    r.namespace.as_deref().unwrap_or("*"),
                    r.needed_by
                )
            })
            .collect()
    }

    #[test]
    fn never_reads_secrets() {
        assert!(
            NAMESPACED
                .iter()
                .chain(CLUSTER.iter())
                .all(|k| k.kind != "Secret" && k.plural != "secrets")
        );
    }

    #[test]
    fn object_targets_read_their_namespaces_once_and_the_cluster_kinds() {
        let deploy = info("apps", "Deployment", "deployments", true);
        let ns = info("", "Namespace", "namespaces", false);
        let node = info("", "Node", "nodes", false);
        let targets = [
            PlanTarget {
                kind: &deploy,
                namespace: Some("shop"),
                name: "web",
                role_ref_kind: None,
            },
            PlanTarget {
                kind: &deploy,
                namespace: Some("shop"),
                name: "api",
                role_ref_kind: None,
            },
            PlanTarget {
                kind: &ns,
                namespace: None,
                name: "billing",
                role_ref_kind: None,
            },
            PlanTarget {
                kind: &node,
                namespace: None,
                name: "n1",
                role_ref_kind: None,
            },
        ];
        let reads = plan_reads(&targets);
        assert_eq!(reads.len(), 2 * NAMESPACED.len() + CLUSTER.len());
        let s = shown(&reads);
        assert_eq!(s[0], "serviceaccounts@billing<-[2]");
        assert_eq!(s[NAMESPACED.len()], "serviceaccounts@shop<-[0, 1]");
        assert_eq!(
            s[2 * NAMESPACED.len()],
            "clusterrolebindings@*<-[0, 1, 2, 3]"
        );
        assert!(s.contains(&"ciliumclusterwidenetworkpolicies@*<-[0, 1, 2, 3]".to_string()));
        assert!(reads.iter().filter(|r| r.kind.optional).count() == 2 * 4 + 1);
    }

    #[test]
    fn binding_targets_read_only_their_role_kind() {
        let rb = info(RBAC, "RoleBinding", "rolebindings", true);
        let crb = info(RBAC, "ClusterRoleBinding", "clusterrolebindings", false);
        let targets = [
            PlanTarget {
                kind: &rb,
                namespace: Some("ci"),
                name: "ci-edit",
                role_ref_kind: Some("ClusterRole"),
            },
            PlanTarget {
                kind: &rb,
                namespace: Some("ci"),
                name: "ci-local",
                role_ref_kind: Some("Role"),
            },
            PlanTarget {
                kind: &crb,
                namespace: None,
                name: "admins",
                role_ref_kind: Some("ClusterRole"),
            },
            // A ClusterRoleBinding cannot grant a Role: nothing to read.
            PlanTarget {
                kind: &crb,
                namespace: None,
                name: "broken",
                role_ref_kind: Some("Role"),
            },
        ];
        assert_eq!(
            shown(&plan_reads(&targets)),
            ["clusterroles@*<-[0, 2]", "roles@ci<-[1]"]
        );
    }

    #[test]
    fn binding_reads_join_the_object_reads() {
        let deploy = info("apps", "Deployment", "deployments", true);
        let rb = info(RBAC, "RoleBinding", "rolebindings", true);
        let targets = [
            PlanTarget {
                kind: &deploy,
                namespace: Some("shop"),
                name: "web",
                role_ref_kind: None,
            },
            PlanTarget {
                kind: &rb,
                namespace: Some("shop"),
                name: "b",
                role_ref_kind: Some("Role"),
            },
            PlanTarget {
                kind: &rb,
                namespace: Some("shop"),
                name: "c",
                role_ref_kind: Some("ClusterRole"),
            },
        ];
        let reads = plan_reads(&targets);
        assert_eq!(reads.len(), NAMESPACED.len() + CLUSTER.len());
        let s = shown(&reads);
        assert!(s.contains(&"roles@shop<-[0, 1]".to_string()), "{s:?}");
        assert!(s.contains(&"clusterroles@*<-[0, 2]".to_string()), "{s:?}");
        assert!(s.contains(&"services@shop<-[0]".to_string()), "{s:?}");
    }

    #[test]
    fn api_resources() {
        let ar = CLUSTER[1].api_resource();
        assert_eq!(
            (ar.api_version.as_str(), ar.plural.as_str()),
            ("v1", "nodes")
        );
        assert_eq!(
            ROLES.api_resource().api_version,
            "rbac.authorization.k8s.io/v1"
        );
    }
}
