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
//! The related kinds are the engine's one table (`kubevigil_engine::related`), which the
//! controller's related-object watches and the chart's RBAC derive from too. Secrets are never
//! read.

use std::collections::{BTreeSet, HashMap};

use kube::discovery::ApiResource;
use kubevigil_crds::target::KindInfo;
pub use kubevigil_engine::related::{CLUSTER, CLUSTER_ROLES, NAMESPACED, ROLES, RelatedKind};

/// The resource of a related kind for kube's dynamic API.
pub fn api_resource(kind: &RelatedKind) -> ApiResource {
    kubevigil_crds::identity::api_resource(kind.group, kind.version, kind.kind, kind.plural)
}

#[cfg(test)]
const RBAC: &str = "rbac.authorization.k8s.io";

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
        let ar = api_resource(&CLUSTER[1]);
        assert_eq!(
            (ar.api_version.as_str(), ar.plural.as_str()),
            ("v1", "nodes")
        );
        assert_eq!(
            api_resource(&ROLES).api_version,
            "rbac.authorization.k8s.io/v1"
        );
    }
}
