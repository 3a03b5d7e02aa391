//! RBAC controls on (subject, role, binding) triplets and on bindings and ServiceAccounts themselves.
//!
//! - [`permissions`]: the generic "-v1" permission test (a single role rule granting a verb, an API
//!   group and a resource from given sets) and the controls that are only that test.
//! - [`subjects`]: the other triplet controls (dashboard access, ServiceAccount listing,
//!   `system:authenticated`), plus the workload half of C-0014.
//! - [`objects`]: controls on the binding, ServiceAccount, Namespace and Role objects themselves.
//!
//! # Decisions shared by every triplet control
//!
//! - **Pairing** (engine `build_triplets`): Kubescape pairs a binding with every role of the
//!   `roleRef` kind and name, whatever its namespace. kubevigil also requires a `Role` to be in
//!   its RoleBinding's namespace (a missing namespace counts as `default`), the only Role
//!   Kubernetes would use. Corrected: a same-named Role of another namespace grants nothing
//!   (fixtures `pass-near-misses` of the permission controls). No conformance case depends on
//!   the cross-namespace pairing.
//! - **Subject matching**: Kubescape's rules re-check that the binding subject equals the vector
//!   field by field, so a ServiceAccount subject without `namespace` or a User/Group subject
//!   without `apiGroup` (both valid in a manifest: Kubernetes defaults them) never fails.
//!   kubevigil uses the subject as Kubernetes resolves it (the engine defaults a ServiceAccount's
//!   namespace to the binding's). Corrected; fixture `C-0015/fail-subjects-without-defaults`.
//! - **Paths**: relative to the vector, `relatedObjects[0]` the binding and `relatedObjects[1]`
//!   the role, with the subject path pointing at the triplet's own subject entry.

use crate::{Applies, Control};

pub mod objects;
pub mod permissions;
pub mod subjects;

/// The controls of this group.
pub fn controls() -> Vec<&'static dyn Control> {
    vec![
        &permissions::EXEC_INTO_CONTAINER,
        &permissions::DATA_DESTRUCTION,
        &subjects::AccessDashboard,
        &permissions::LIST_SECRETS,
        &permissions::DELETE_EVENTS,
        &permissions::ADMINISTRATIVE_ROLES,
        &permissions::COREDNS_POISONING,
        &subjects::AccessContainerServiceAccount,
        &permissions::PORT_FORWARDING,
        &permissions::NO_IMPERSONATION,
        &permissions::CLUSTER_ADMIN_ONLY_WHERE_REQUIRED,
        &permissions::MINIMIZE_SECRETS_ACCESS,
        &permissions::MINIMIZE_WILDCARDS,
        &permissions::MINIMIZE_POD_CREATION,
        &objects::DefaultServiceAccountsNotUsed,
        &permissions::BIND_ESCALATE_IMPERSONATE,
        &objects::DedicatedEksServiceAccounts,
        &objects::AwsIamAuthenticator,
        &objects::DedicatedAksServiceAccounts,
        &objects::AnonymousBinding,
        &subjects::SystemAuthenticatedElevated,
        &permissions::CREATE_PERSISTENT_VOLUMES,
        &permissions::NODE_PROXY,
        &permissions::APPROVE_CSR,
        &permissions::WEBHOOK_CONFIGURATIONS,
        &permissions::SERVICE_ACCOUNT_TOKENS,
    ]
}

/// RBAC triplets only.
const SUBJECTS: &[Applies] = &[Applies::Subjects];

/// The CIS recommendation set shared by C-0185, C-0186 and C-0187 (AKS, EKS, GKE, generic).
const CIS_ALL: &[&str] = &[
    "cis-aks-t1.2.0",
    "cis-aks-t1.8.0",
    "cis-eks-t1.7.0",
    "cis-eks-t1.8.0",
    "cis-gke-v1.9.0",
    "cis-v1.10.0",
    "cis-v1.12.0",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_listed_once() {
        let mut ids: Vec<&str> = controls().iter().map(|c| c.meta().id).collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n);
        assert_eq!(n, 26);
    }

    #[test]
    fn findings_name_declared_rules() {
        for c in controls() {
            assert!(!c.meta().rules.is_empty(), "{}", c.meta().id);
        }
    }
}
