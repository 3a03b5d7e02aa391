//! Everything one scan sees: the objects, an index by kind and namespace for controls that relate
//! objects (a workload's ServiceAccount, the Services and NetworkPolicies of its namespace), and
//! the RBAC (subject, role, binding) triplets.

use crate::object::Field;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use kubevigil_crds::identity::{BindingRef, RoleRef, Subject, SubjectKind, Target};

use super::object::{K8sObject, array, str_at};

/// One RBAC subject bound to a role by a binding (Kubescape's "subject vector").
///
/// Paths reported for a triplet are relative to the vector: `relatedObjects[0]` is the binding
/// and `relatedObjects[1]` the role, as in Kubescape.
#[derive(Clone, Debug)]
pub struct Triplet {
    /// Index of the binding in the inventory.
    pub binding: usize,
    /// Index of the role in the inventory.
    pub role: usize,
    /// Index of the subject in the binding's `subjects`.
    pub subject_index: usize,
    /// The subject, with a ServiceAccount's namespace defaulted to the binding's.
    pub subject: Subject,
}

/// Path prefix of the binding inside a subject vector.
pub const BINDING_PATH: &str = "relatedObjects[0]";
/// Path prefix of the role inside a subject vector.
pub const ROLE_PATH: &str = "relatedObjects[1]";

/// FNV-1a, for the kind and namespace indexes: controls look kinds up in them dozens of times per
/// evaluated object, and for keys this short FNV is several times cheaper than the default
/// SipHash. The indexes are only ever looked up, never iterated, so the hasher cannot change
/// any order; and their keys are kinds and namespace names (short, chosen by the cluster's
/// administrators), not attacker-sized input.
#[derive(Clone, Copy, Debug)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// A map keyed by kind or namespace.
type Index<V> = HashMap<String, V, BuildHasherDefault<Fnv>>;

/// The objects of one scan with their indexes.
#[derive(Debug, Default)]
pub struct Inventory {
    objects: Vec<K8sObject>,
    by_kind: Index<Vec<usize>>,
    /// Kind, then namespace (missing = `default`), to indexes in input order.
    by_kind_namespace: Index<Index<Vec<usize>>>,
    triplets: Vec<Triplet>,
}

impl Inventory {
    /// Indexes the objects and builds the RBAC triplets.
    pub fn new(objects: Vec<K8sObject>) -> Self {
        let mut by_kind: Index<Vec<usize>> = Index::default();
        let mut by_kind_namespace: Index<Index<Vec<usize>>> = Index::default();
        for (i, o) in objects.iter().enumerate() {
            by_kind.entry(o.kind.clone()).or_default().push(i);
            by_kind_namespace
                .entry(o.kind.clone())
                .or_default()
                .entry(o.namespace_or_default().to_string())
                .or_default()
                .push(i);
        }
        let mut inv = Inventory {
            objects,
            by_kind,
            by_kind_namespace,
            triplets: Vec::new(),
        };
        inv.triplets = inv.build_triplets();
        inv
    }

    /// All objects, in input order.
    pub fn objects(&self) -> &[K8sObject] {
        &self.objects
    }

    /// The object at an index (as stored in a [`Triplet`]).
    pub fn get(&self, index: usize) -> Option<&K8sObject> {
        self.objects.get(index)
    }

    /// The objects of one kind.
    pub fn of_kind<'a>(&'a self, kind: &str) -> impl Iterator<Item = &'a K8sObject> + 'a {
        self.by_kind
            .get(kind)
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .filter_map(|&i| self.objects.get(i))
    }

    /// The objects of one kind in a namespace (a missing namespace counts as `default`), in
    /// input order. Indexed: the cost does not grow with the other namespaces' objects.
    pub fn of_kind_in<'a>(
        &'a self,
        kind: &str,
        namespace: &'a str,
    ) -> impl Iterator<Item = &'a K8sObject> + 'a {
        self.by_kind_namespace
            .get(kind)
            .and_then(|by_ns| by_ns.get(namespace))
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .filter_map(|&i| self.objects.get(i))
    }

    /// The RBAC triplets.
    pub fn triplets(&self) -> &[Triplet] {
        &self.triplets
    }

    /// The binding of a triplet.
    pub fn binding_of(&self, t: &Triplet) -> Option<&K8sObject> {
        self.objects.get(t.binding)
    }

    /// The role of a triplet.
    pub fn role_of(&self, t: &Triplet) -> Option<&K8sObject> {
        self.objects.get(t.role)
    }

    /// The identity of a triplet, for result names and labels.
    pub fn triplet_target(&self, t: &Triplet) -> Option<Target> {
        let binding = self.binding_of(t)?;
        let role = self.role_of(t)?;
        Some(Target::Triplet {
            subject: t.subject.clone(),
            role: RoleRef {
                cluster: role.kind == "ClusterRole",
                name: role.name.clone(),
                namespace: (role.kind == "Role").then(|| role.namespace_or_default().to_string()),
            },
            binding: BindingRef {
                cluster: binding.kind == "ClusterRoleBinding",
                name: binding.name.clone(),
                namespace: (binding.kind == "RoleBinding")
                    .then(|| binding.namespace_or_default().to_string()),
            },
        })
    }

    /// Pairs every binding with the role its `roleRef` names and makes one triplet per subject.
    ///
    /// Kubescape pairs by kind and name only; kubevigil also requires a Role to be in the
    /// RoleBinding's namespace, because that is the only Role Kubernetes would use.
    fn build_triplets(&self) -> Vec<Triplet> {
        let mut out = Vec::new();
        for binding_kind in ["RoleBinding", "ClusterRoleBinding"] {
            for &bi in self
                .by_kind
                .get(binding_kind)
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                let Some(binding) = self.objects.get(bi) else {
                    continue;
                };
                let Some(role_ref) = binding.value.field("roleRef") else {
                    continue;
                };
                let (Some(ref_kind), Some(ref_name)) =
                    (str_at(role_ref, "kind"), str_at(role_ref, "name"))
                else {
                    continue;
                };
                let role_index = self
                    .by_kind
                    .get(ref_kind)
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                    .iter()
                    .copied()
                    .find(|&ri| {
                        self.objects.get(ri).is_some_and(|role| {
                            role.name == ref_name
                                && (ref_kind != "Role"
                                    || role.namespace_or_default()
                                        == binding.namespace_or_default())
                        })
                    });
                let Some(ri) = role_index else { continue };
                // A ClusterRoleBinding can only grant a ClusterRole.
                if binding_kind == "ClusterRoleBinding" && ref_kind != "ClusterRole" {
                    continue;
                }
                for (k, subject) in array(&binding.value, "subjects").iter().enumerate() {
                    let Some(kind) = str_at(subject, "kind").and_then(SubjectKind::parse) else {
                        continue;
                    };
                    let Some(name) = str_at(subject, "name") else {
                        continue;
                    };
                    let namespace = match kind {
                        SubjectKind::ServiceAccount => Some(
                            str_at(subject, "namespace")
                                .filter(|ns| !ns.is_empty())
                                .unwrap_or_else(|| binding.namespace_or_default())
                                .to_string(),
                        ),
                        _ => None,
                    };
                    out.push(Triplet {
                        binding: bi,
                        role: ri,
                        subject_index: k,
                        subject: Subject {
                            kind,
                            name: name.to_string(),
                            namespace,
                        },
                    });
                }
            }
        }
        out
    }
}
