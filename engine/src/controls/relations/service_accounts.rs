//! A workload's ServiceAccount: whether its token is mounted, whether it is bound to roles, and
//! whether it exists at all.

use crate::object::Field;
use kubevigil_crds::identity::SubjectKind;
use serde_json::Value;

use super::{
    WL7, WL7_RC, in_namespace_of, object, service_account_name, service_account_of, token_mounted,
};
use crate::object::{array, str_at};
use crate::{
    Context, Control, ControlMeta, Finding, FindingPath, K8sObject, Needs, Outcome, PathKind,
    Resource,
};

// ---------------------------------------------------------------------------------------------
// C-0034 / C-0190

const AUTOMOUNT_RULE: &str = "automount-service-account";

/// The shared rule of C-0034 and C-0190: the pod gets a ServiceAccount token.
///
/// - pod `automountServiceAccountToken: true` fails (failed path and fix path
///   `<podspec>.automountServiceAccountToken` = `false`);
/// - unset: fails when the ServiceAccount (`serviceAccountName`, `default` when unset, same
///   namespace) is in the inventory and does not set `automountServiceAccountToken: false`, or
///   when it is not in the inventory (Kubernetes mounts by default); only the fix path;
/// - `false` on the pod passes whatever the ServiceAccount says.
fn automount_service_account(resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
    let Some(wl) = object(resource) else {
        return Outcome::NotApplicable;
    };
    let Some(pod) = cx.pod_spec(wl) else {
        return Outcome::Passed;
    };
    let path = || format!("{}.automountServiceAccountToken", pod.path);
    match pod
        .spec
        .field("automountServiceAccountToken")
        .and_then(Value::as_bool)
    {
        Some(false) => Outcome::Passed,
        Some(true) => Outcome::Failed(vec![
            Finding::new(AUTOMOUNT_RULE)
                .failed(path())
                .fix(path(), "false"),
        ]),
        None => {
            let sa_disables = service_account_of(cx, wl, pod).is_some_and(|sa| {
                sa.value
                    .field("automountServiceAccountToken")
                    .and_then(Value::as_bool)
                    == Some(false)
            });
            if sa_disables {
                Outcome::Passed
            } else {
                Outcome::Failed(vec![Finding::new(AUTOMOUNT_RULE).fix(path(), "false")])
            }
        }
    }
}

/// C-0034 Automatic mapping of service account: the pod must not get a ServiceAccount token it
/// does not need. Rule `automount-service-account`, shared with C-0190:
///
/// - pod `automountServiceAccountToken: true` fails (failed path and fix path = `false`);
/// - unset fails unless the ServiceAccount in the inventory sets it to `false` (a missing
///   ServiceAccount fails too, as Kubernetes mounts by default); fix path only;
/// - `false` on the pod passes.
///
/// Compatible with Kubescape. An empty `serviceAccountName` means `default`, as in Kubernetes.
pub struct AutomountServiceAccount;

static AUTOMOUNT_SERVICE_ACCOUNT: ControlMeta = ControlMeta {
    id: "C-0034",
    name: "Automatic mapping of service account",
    description: "Pods that mount a ServiceAccount token give an attacker who compromises them \
                  the ServiceAccount's API permissions.",
    remediation: "Set automountServiceAccountToken: false on the pod spec (or on the \
                  ServiceAccount) unless the workload calls the Kubernetes API.",
    base_score: 6.0,
    frameworks: &["NSA", "ArmoBest", "WorkloadScan", "security", "YAML"],
    applies: WL7,
    rules: &[AUTOMOUNT_RULE],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for AutomountServiceAccount {
    fn meta(&self) -> &'static ControlMeta {
        &AUTOMOUNT_SERVICE_ACCOUNT
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        automount_service_account(resource, cx)
    }
}

/// C-0190 Ensure that Service Account Tokens are only mounted where necessary (CIS 5.1.6): the
/// same rule as C-0034 (`automount-service-account`), compatible with Kubescape.
pub struct ServiceAccountTokensMountedWhereNecessary;

static SA_TOKENS_WHERE_NECESSARY: ControlMeta = ControlMeta {
    id: "C-0190",
    name: "Ensure that Service Account Tokens are only mounted where necessary",
    description: "Service account tokens should only be mounted into pods that need to talk to \
                  the Kubernetes API.",
    remediation: "Set automountServiceAccountToken: false on pods and ServiceAccounts that do \
                  not need API access.",
    base_score: 5.0,
    frameworks: &[
        "cis-aks-t1.2.0",
        "cis-aks-t1.8.0",
        "cis-eks-t1.7.0",
        "cis-eks-t1.8.0",
        "cis-gke-v1.9.0",
        "cis-v1.10.0",
        "cis-v1.12.0",
    ],
    applies: WL7,
    rules: &[AUTOMOUNT_RULE],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for ServiceAccountTokensMountedWhereNecessary {
    fn meta(&self) -> &'static ControlMeta {
        &SA_TOKENS_WHERE_NECESSARY
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        automount_service_account(resource, cx)
    }
}

// ---------------------------------------------------------------------------------------------
// C-0261

const TOKEN_MOUNT_RULE: &str = "serviceaccount-token-mount";

/// Groups whose bindings apply to every ServiceAccount (of a namespace, for the last form).
fn binds_all_service_accounts(subject: &Value, sa_namespace: &str) -> bool {
    match str_at(subject, "name") {
        Some("system:authenticated" | "system:serviceaccounts") => true,
        Some(name) => name
            .strip_prefix("system:serviceaccounts:")
            .is_some_and(|ns| ns == sa_namespace),
        None => false,
    }
}

/// Whether some RoleBinding or ClusterRoleBinding names the ServiceAccount (in one subject:
/// kind ServiceAccount, its name and its namespace, a RoleBinding's namespace by default), or a
/// group that contains every ServiceAccount.
fn service_account_bound(cx: &Context<'_>, sa: &K8sObject) -> bool {
    let sa_ns = sa.namespace_or_default();
    cx.inventory
        .of_kind("RoleBinding")
        .chain(cx.inventory.of_kind("ClusterRoleBinding"))
        .any(|binding| {
            array(&binding.value, "subjects").iter().any(|s| {
                if binds_all_service_accounts(s, sa_ns) {
                    return true;
                }
                let ns = str_at(s, "namespace")
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| binding.namespace_or_default());
                str_at(s, "kind") == Some("ServiceAccount")
                    && str_at(s, "name") == Some(sa.name.as_str())
                    && ns == sa_ns
            })
        })
}

/// C-0261 ServiceAccount token mounted: the workload's ServiceAccount (`serviceAccountName`,
/// `default` when unset, same namespace) is in the inventory and bound by a RoleBinding or
/// ClusterRoleBinding (directly, or through the groups `system:authenticated`,
/// `system:serviceaccounts`, `system:serviceaccounts:<namespace>`), and the pod gets its token:
/// pod `automountServiceAccountToken: true` (review path) or unset while the ServiceAccount does
/// not set `false` (fix path `<podspec>.automountServiceAccountToken` = `false`). Related object:
/// the ServiceAccount.
///
/// Decisions:
/// - Corrected: the ServiceAccount's kind, name and namespace must be in the **same** subject
///   (Kubescape matches them across different subjects of the binding); a subject without
///   namespace in a RoleBinding means the binding's namespace.
/// - Corrected: the `system:serviceaccounts:<namespace>` group binds the namespace's
///   ServiceAccounts (Kubescape only knows the two cluster-wide groups).
pub struct ServiceAccountTokenMounted;

static SA_TOKEN_MOUNTED: ControlMeta = ControlMeta {
    id: "C-0261",
    name: "ServiceAccount token mounted",
    description: "A pod that mounts the token of a ServiceAccount bound to roles hands those \
                  permissions to whoever compromises the pod.",
    remediation: "Set automountServiceAccountToken: false on the pod or its ServiceAccount, or \
                  give the workload a ServiceAccount without bindings.",
    base_score: 7.0,
    frameworks: &["security"],
    applies: WL7,
    rules: &[TOKEN_MOUNT_RULE],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for ServiceAccountTokenMounted {
    fn meta(&self) -> &'static ControlMeta {
        &SA_TOKEN_MOUNTED
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        let Some(wl) = object(resource) else {
            return Outcome::NotApplicable;
        };
        let Some(pod) = cx.pod_spec(wl) else {
            return Outcome::Passed;
        };
        let Some(sa) = service_account_of(cx, wl, pod) else {
            return Outcome::Passed;
        };
        if !token_mounted(pod, sa) || !service_account_bound(cx, sa) {
            return Outcome::Passed;
        }
        let path = format!("{}.automountServiceAccountToken", pod.path);
        let finding = if pod
            .spec
            .field("automountServiceAccountToken")
            .and_then(Value::as_bool)
            == Some(true)
        {
            Finding::new(TOKEN_MOUNT_RULE).review(path)
        } else {
            Finding::new(TOKEN_MOUNT_RULE).fix(path, "false")
        };
        Outcome::Failed(vec![finding.related(sa.resource_id())])
    }
}

// ---------------------------------------------------------------------------------------------
// C-0267 / C-0272

/// `(resources, verbs, apiGroups)` sets; a role rule matches when it has one of each.
type PermissionSet = (
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
);

const TAKEOVER: &[PermissionSet] = &[
    (
        &["pods", "*"],
        &["create", "update", "patch", "*"],
        &["", "*"],
    ),
    (
        &["secrets", "*"],
        &["get", "list", "watch", "*"],
        &["", "*"],
    ),
];

const ADMINISTRATIVE: &[PermissionSet] = &[(&["*"], &["*"], &["", "*"])];

fn any_in(rule: &Value, key: &str, set: &[&str]) -> bool {
    array(rule, key)
        .iter()
        .any(|v| v.as_str().is_some_and(|s| set.contains(&s)))
}

/// Whether some single rule of the role grants one of the permission sets.
fn role_grants(role: &K8sObject, sets: &[PermissionSet]) -> bool {
    array(&role.value, "rules").iter().any(|rule| {
        sets.iter().any(|(resources, verbs, groups)| {
            any_in(rule, "resources", resources)
                && any_in(rule, "verbs", verbs)
                && any_in(rule, "apiGroups", groups)
        })
    })
}

/// Findings for a workload whose mounted ServiceAccount is bound to a role granting `sets`:
/// related ServiceAccount, binding (delete path `subjects[j]`, plus review path `roleRef` when
/// `review_role_ref`) and role.
fn bound_role_findings(
    resource: Resource<'_>,
    cx: &Context<'_>,
    rule: &'static str,
    sets: &[PermissionSet],
    review_role_ref: bool,
) -> Outcome {
    let Some(wl) = object(resource) else {
        return Outcome::NotApplicable;
    };
    let Some(pod) = cx.pod_spec(wl) else {
        return Outcome::Passed;
    };
    let Some(sa) = service_account_of(cx, wl, pod) else {
        return Outcome::Passed;
    };
    if !token_mounted(pod, sa) {
        return Outcome::Passed;
    }
    let sa_ns = sa.namespace_or_default();
    let mut findings = Vec::new();
    for t in cx.inventory.triplets() {
        if t.subject.kind != SubjectKind::ServiceAccount
            || t.subject.name != sa.name
            || t.subject.namespace.as_deref() != Some(sa_ns)
        {
            continue;
        }
        let (Some(binding), Some(role)) = (cx.inventory.binding_of(t), cx.inventory.role_of(t))
        else {
            continue;
        };
        if !role_grants(role, sets) {
            continue;
        }
        let binding_id = binding.resource_id();
        let mut f = Finding::new(rule).related(sa.resource_id()).related_path(
            &binding_id,
            FindingPath::new(
                format!("subjects[{}]", t.subject_index),
                PathKind::Delete { also_failed: false },
            ),
        );
        if review_role_ref {
            f = f.related_path(
                &binding_id,
                FindingPath::new("roleRef", PathKind::Review { also_failed: false }),
            );
        }
        findings.push(f.related(binding_id).related(role.resource_id()));
    }
    Outcome::from_findings(findings)
}

const TAKEOVER_RULE: &str = "workload-with-cluster-takeover-roles";

/// C-0267 Workload with cluster takeover roles: the workload mounts the token of its
/// ServiceAccount (pod `automountServiceAccountToken: true`, or unset while the ServiceAccount
/// does not say `false`; the ServiceAccount must be in the inventory) and a RoleBinding or
/// ClusterRoleBinding binds that ServiceAccount to a Role/ClusterRole with a rule allowing
/// create/update/patch of pods or get/list/watch of secrets (core group or `*`). Related:
/// ServiceAccount, binding (delete path `subjects[j]`), role.
///
/// Decision: bindings are paired with roles by the engine's RBAC triplets (`roleRef` kind and
/// name; a Role must be in the RoleBinding's namespace, which Kubescape does not check).
/// Otherwise compatible.
pub struct ClusterTakeoverRoles;

static CLUSTER_TAKEOVER_ROLES: ControlMeta = ControlMeta {
    id: "C-0267",
    name: "Workload with cluster takeover roles",
    description: "A workload whose mounted ServiceAccount can create pods or read secrets lets \
                  an attacker who compromises it take over the cluster.",
    remediation: "Remove the role from the workload's ServiceAccount, or stop mounting its token \
                  (automountServiceAccountToken: false).",
    base_score: 6.0,
    frameworks: &["security"],
    applies: WL7,
    rules: &[TAKEOVER_RULE],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for ClusterTakeoverRoles {
    fn meta(&self) -> &'static ControlMeta {
        &CLUSTER_TAKEOVER_ROLES
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        bound_role_findings(resource, cx, TAKEOVER_RULE, TAKEOVER, false)
    }
}

const ADMIN_RULE: &str = "workload-with-administrative-roles";

/// C-0272 Workload with administrative roles: as C-0267, with a role that has a rule granting
/// every verb (`*`) on every resource (`*`) in the core group or `*`. The related binding carries
/// the review path `roleRef` and the delete path `subjects[j]`.
///
/// Decision: corrected, the binding's `roleRef` must name the role's **kind** as well as its name
/// (Kubescape compares names only, so a RoleBinding to a Role `admin` matches an unrelated
/// ClusterRole `admin`); pairing uses the engine's RBAC triplets.
pub struct AdministrativeRoles;

static ADMINISTRATIVE_ROLES: ControlMeta = ControlMeta {
    id: "C-0272",
    name: "Workload with administrative roles",
    description: "A workload whose mounted ServiceAccount has administrative permissions gives \
                  an attacker who compromises it control of the cluster or namespace.",
    remediation: "Bind the workload's ServiceAccount to a least-privilege role, or stop mounting \
                  its token.",
    base_score: 6.0,
    frameworks: &["security"],
    applies: WL7,
    rules: &[ADMIN_RULE],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for AdministrativeRoles {
    fn meta(&self) -> &'static ControlMeta {
        &ADMINISTRATIVE_ROLES
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        bound_role_findings(resource, cx, ADMIN_RULE, ADMINISTRATIVE, true)
    }
}

// ---------------------------------------------------------------------------------------------
// C-0307

const MISSING_SA_RULE: &str = "non-existent-service-account";

/// C-0307 Non-existent service account: `<podspec>.serviceAccountName` is set to something other
/// than `default` (or empty) and no ServiceAccount of that name exists in the workload's
/// namespace; failed path `<podspec>.serviceAccountName`. Includes ReplicationControllers.
/// Compatible with Kubescape.
pub struct NonExistentServiceAccount;

static NON_EXISTENT_SERVICE_ACCOUNT: ControlMeta = ControlMeta {
    id: "C-0307",
    name: "Non-existent service account",
    description: "Pods referencing a ServiceAccount that does not exist cannot be created, and \
                  whoever creates that name later chooses their permissions.",
    remediation: "Create the ServiceAccount with the intended permissions, or fix the \
                  serviceAccountName.",
    base_score: 5.0,
    frameworks: &["DevOpsBest"],
    applies: WL7_RC,
    rules: &[MISSING_SA_RULE],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for NonExistentServiceAccount {
    fn meta(&self) -> &'static ControlMeta {
        &NON_EXISTENT_SERVICE_ACCOUNT
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        let Some(wl) = object(resource) else {
            return Outcome::NotApplicable;
        };
        let Some(pod) = cx.pod_spec(wl) else {
            return Outcome::Passed;
        };
        let name = service_account_name(pod);
        if name == "default" || in_namespace_of(cx, "ServiceAccount", wl).any(|sa| sa.name == name)
        {
            return Outcome::Passed;
        }
        Outcome::Failed(vec![
            Finding::new(MISSING_SA_RULE).failed(format!("{}.serviceAccountName", pod.path)),
        ])
    }
}
