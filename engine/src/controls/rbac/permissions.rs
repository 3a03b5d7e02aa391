//! The generic "-v1" permission test and the controls that consist of it.
//!
//! A subject FAILS when one single rule of its bound role names at least one verb of a set V,
//! one API group of a set G and one resource of a set R (`resourceNames` is ignored, except
//! by C-0037). One finding per matching role rule, with the paths of the matching resources,
//! verbs and API groups of that rule, then the subject entry and `roleRef.name` of the binding:
//! `relatedObjects[1].rules[p].resources[l]`, `...verbs[l]`, `...apiGroups[a]`,
//! `relatedObjects[0].subjects[k]`, `relatedObjects[0].roleRef.name`. They are review paths
//! (C-0185: delete paths), always also reported as failed paths.
//!
//! Sets are matched literally, as Kubescape does: `pods/*` counts only where the set lists it,
//! and Kubernetes' `*/subresource` form (e.g. `*/proxy`) is not recognised.

use crate::object::Field;
use serde_json::Value;

use super::{CIS_ALL, SUBJECTS};
use crate::object::{K8sObject, array};
use crate::{
    BINDING_PATH, Context, Control, ControlMeta, Finding, Needs, Outcome, ROLE_PATH, Resource,
    Triplet,
};

/// How a role rule's `resourceNames` restricts a permission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceNames {
    /// Ignored: a rule limited to some names still grants the permission.
    Ignored,
    /// Granted only when the rule names no resource (all of them) or names this one.
    AllOrNamed(&'static str),
}

/// One permission: a role rule grants it when it names a verb, an API group and a resource from
/// these sets.
#[derive(Clone, Copy, Debug)]
pub struct Permission {
    /// The regolibrary rule that reports it.
    pub rule: &'static str,
    /// Verbs, any of which counts.
    pub verbs: &'static [&'static str],
    /// API groups, any of which counts (`""` is the core group).
    pub api_groups: &'static [&'static str],
    /// Resources, any of which counts.
    pub resources: &'static [&'static str],
    /// Restriction by `resourceNames`.
    pub resource_names: ResourceNames,
}

/// How the paths of a permission finding are reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// `reviewPaths` (and `failedPaths`).
    Review,
    /// `deletePaths` (and `failedPaths`).
    Delete,
}

fn names_any(list: &[Value], set: &[&str]) -> bool {
    list.iter()
        .any(|v| v.as_str().is_some_and(|s| set.contains(&s)))
}

/// Whether one role rule (an entry of `rules`) grants the permission.
pub fn grants(rule: &Value, permission: &Permission) -> bool {
    names_any(array(rule, "verbs"), permission.verbs)
        && names_any(array(rule, "apiGroups"), permission.api_groups)
        && names_any(array(rule, "resources"), permission.resources)
        && match permission.resource_names {
            ResourceNames::Ignored => true,
            ResourceNames::AllOrNamed(name) => match rule.field("resourceNames") {
                None | Some(Value::Null) => true,
                Some(Value::Array(names)) => {
                    names.is_empty() || names.iter().any(|n| n.as_str() == Some(name))
                }
                Some(_) => false,
            },
        }
}

/// The findings of `permissions` on a triplet whose role is `role`: one per permission and
/// matching role rule. Allocates nothing when no rule matches.
pub fn permission_findings(
    role: &K8sObject,
    subject_index: usize,
    permissions: &[Permission],
    kind: PathKind,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for permission in permissions {
        for (p, rule) in array(&role.value, "rules").iter().enumerate() {
            if grants(rule, permission) {
                out.push(rule_finding(rule, p, subject_index, permission, kind));
            }
        }
    }
    out
}

fn rule_finding(
    rule: &Value,
    p: usize,
    subject_index: usize,
    permission: &Permission,
    kind: PathKind,
) -> Finding {
    let add = |f: Finding, path: String| match kind {
        PathKind::Review => f.review(path),
        PathKind::Delete => f.delete(path),
    };
    let mut f = Finding::new(permission.rule);
    for (field, set) in [
        ("resources", permission.resources),
        ("verbs", permission.verbs),
        ("apiGroups", permission.api_groups),
    ] {
        for (l, v) in array(rule, field).iter().enumerate() {
            if v.as_str().is_some_and(|s| set.contains(&s)) {
                f = add(f, format!("{ROLE_PATH}.rules[{p}].{field}[{l}]"));
            }
        }
    }
    f = add(f, format!("{BINDING_PATH}.subjects[{subject_index}]"));
    add(f, format!("{BINDING_PATH}.roleRef.name"))
}

/// A control that is the generic permission test, possibly limited to one role name and one
/// binding kind.
#[derive(Debug)]
pub struct PermissionControl {
    meta: &'static ControlMeta,
    permissions: &'static [Permission],
    role_name: Option<&'static str>,
    binding_kind: Option<&'static str>,
    paths: PathKind,
}

impl PermissionControl {
    /// The permissions this control tests.
    pub fn permissions(&self) -> &'static [Permission] {
        self.permissions
    }

    fn evaluate_triplet(&self, t: &Triplet, cx: &Context<'_>) -> Outcome {
        let (Some(binding), Some(role)) = (cx.inventory.binding_of(t), cx.inventory.role_of(t))
        else {
            return Outcome::NotApplicable;
        };
        if self.role_name.is_some_and(|n| role.name != n)
            || self.binding_kind.is_some_and(|k| binding.kind != k)
        {
            return Outcome::Passed;
        }
        Outcome::from_findings(permission_findings(
            role,
            t.subject_index,
            self.permissions,
            self.paths,
        ))
    }
}

impl Control for PermissionControl {
    fn meta(&self) -> &'static ControlMeta {
        self.meta
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        match resource {
            Resource::Triplet(t) => self.evaluate_triplet(t, cx),
            Resource::Object(_) => Outcome::NotApplicable,
        }
    }
}

const CORE: &[&str] = &["", "*"];
const CREATE: &[&str] = &["create", "*"];

const fn perm(
    rule: &'static str,
    verbs: &'static [&'static str],
    api_groups: &'static [&'static str],
    resources: &'static [&'static str],
) -> Permission {
    Permission {
        rule,
        verbs,
        api_groups,
        resources,
        resource_names: ResourceNames::Ignored,
    }
}

const fn control(
    meta: &'static ControlMeta,
    permissions: &'static [Permission],
) -> PermissionControl {
    PermissionControl {
        meta,
        permissions,
        role_name: None,
        binding_kind: None,
        paths: PathKind::Review,
    }
}

const EXEC: Permission = perm(
    "exec-into-container-v1",
    CREATE,
    CORE,
    &["pods/exec", "pods/*", "*"],
);
const DELETE_WORKLOADS: Permission = perm(
    "rule-excessive-delete-rights-v1",
    &["delete", "deletecollection", "*"],
    &["", "*", "apps", "batch"],
    &[
        "secrets",
        "pods",
        "services",
        "deployments",
        "replicasets",
        "daemonsets",
        "statefulsets",
        "jobs",
        "cronjobs",
        "*",
    ],
);
const READ_SECRETS: Permission = perm(
    "rule-can-list-get-secrets-v1",
    &["get", "list", "watch", "*"],
    CORE,
    &["secrets", "*"],
);
const DELETE_EVENTS_PERM: Permission = perm(
    "rule-can-delete-k8s-events-v1",
    &["delete", "deletecollection", "*"],
    CORE,
    &["events", "*"],
);
const ALL_ON_ALL: Permission = perm(
    "rule-list-all-cluster-admins-v1",
    &["*"],
    &["*", ""],
    &["*"],
);
const UPDATE_COREDNS: Permission = Permission {
    rule: "rule-can-update-configmap-v1",
    verbs: &["update", "patch", "*"],
    api_groups: CORE,
    resources: &["configmaps", "*"],
    resource_names: ResourceNames::AllOrNamed("coredns"),
};
const PORT_FORWARD: Permission = perm(
    "rule-can-portforward-v1",
    CREATE,
    CORE,
    &["pods/portforward", "pods/*", "*"],
);
const IMPERSONATE: Permission = perm(
    "rule-can-impersonate-users-groups-v1",
    &["impersonate", "*"],
    CORE,
    &["users", "serviceaccounts", "groups", "uids", "*"],
);
const CLUSTER_ADMIN: Permission = perm("cluster-admin-role", &["*"], &["*", ""], &["*"]);
const CREATE_PODS: Permission = perm("rule-can-create-pod", CREATE, CORE, &["pods", "*"]);
const RBAC_GROUPS: &[&str] = &["rbac.authorization.k8s.io", "*"];
const ROLE_RESOURCES: &[&str] = &["clusterroles", "roles", "*"];
const BIND: Permission = perm(
    "rule-can-bind-escalate",
    &["bind", "*"],
    RBAC_GROUPS,
    ROLE_RESOURCES,
);
const ESCALATE: Permission = perm(
    "rule-can-bind-escalate",
    &["escalate", "*"],
    RBAC_GROUPS,
    ROLE_RESOURCES,
);
const CREATE_PV: Permission = perm(
    "rule-can-create-pv",
    CREATE,
    CORE,
    &["persistentvolumes", "*"],
);
const PROXY_NODES: Permission = perm(
    "rule-can-access-proxy-subresource",
    &["get", "create", "connect", "*"],
    CORE,
    &["nodes/proxy", "*"],
);
const APPROVE_CSR_PERM: Permission = perm(
    "rule-can-approve-cert-signing-request",
    &["update", "*"],
    &["certificates.k8s.io", "*"],
    &["certificatesigningrequests/approval", "*"],
);
const MODIFY_WEBHOOKS: Permission = perm(
    "rule-can-modify-admission-webhooks",
    &["create", "update", "delete", "*"],
    &["admissionregistration.k8s.io", "*"],
    &[
        "validatingwebhookconfigurations",
        "mutatingwebhookconfigurations",
        "*",
    ],
);
const CREATE_SA_TOKEN: Permission = perm(
    "rule-can-create-service-account-token",
    CREATE,
    CORE,
    &["serviceaccounts/token", "*"],
);

static EXEC_META: ControlMeta = ControlMeta {
    id: "C-0002",
    name: "Prevent containers from allowing command execution",
    description: "Subjects allowed to exec into containers can run arbitrary commands inside workloads.",
    remediation: "Remove create on pods/exec (and pods/*, *) from roles bound to subjects that do not need it.",
    base_score: 5.0,
    frameworks: &["NSA", "MITRE", "ArmoBest", "ClusterScan"],
    applies: SUBJECTS,
    rules: &["exec-into-container-v1"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

/// C-0002 Prevent containers from allowing command execution: a role rule grants `create` (or
/// `*`) on `pods/exec`, `pods/*` or `*` in the core group. Compatible with Kubescape (not in the
/// YAML framework: its stale control name there does not resolve).
pub static EXEC_INTO_CONTAINER: PermissionControl = control(&EXEC_META, &[EXEC]);

static DATA_DESTRUCTION_META: ControlMeta = ControlMeta {
    id: "C-0007",
    name: "Roles with delete capabilities",
    description: "Subjects allowed to delete workloads, services or secrets can destroy data and disrupt the cluster.",
    remediation: "Grant delete and deletecollection only to the subjects that need them, on named resources.",
    base_score: 5.0,
    frameworks: &["MITRE", "ClusterScan"],
    applies: SUBJECTS,
    rules: &["rule-excessive-delete-rights-v1"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

/// C-0007 Roles with delete capabilities: `delete`/`deletecollection`/`*` on secrets, pods,
/// services or workload resources (core, `apps`, `batch` or `*` group). Compatible.
pub static DATA_DESTRUCTION: PermissionControl =
    control(&DATA_DESTRUCTION_META, &[DELETE_WORKLOADS]);

static LIST_SECRETS_META: ControlMeta = ControlMeta {
    id: "C-0015",
    name: "List Kubernetes secrets",
    description: "Subjects allowed to get, list or watch secrets can read every credential they hold.",
    remediation: "Remove get, list and watch on secrets from roles bound to subjects that do not need them.",
    base_score: 7.0,
    frameworks: &["MITRE", "ClusterScan", "YAML"],
    applies: SUBJECTS,
    rules: &["rule-can-list-get-secrets-v1"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

/// C-0015 List Kubernetes secrets: `get`/`list`/`watch`/`*` on `secrets` or `*` in the core
/// group. Compatible, except subject matching (corrected, see the module docs; fixture
/// `fail-subjects-without-defaults`).
pub static LIST_SECRETS: PermissionControl = control(&LIST_SECRETS_META, &[READ_SECRETS]);

static DELETE_EVENTS_META: ControlMeta = ControlMeta {
    id: "C-0031",
    name: "Delete Kubernetes events",
    description: "Subjects allowed to delete events can erase the traces of an attack.",
    remediation: "Remove delete and deletecollection on events from roles bound to subjects that do not need them.",
    base_score: 4.0,
    frameworks: &["MITRE", "YAML"],
    applies: SUBJECTS,
    rules: &["rule-can-delete-k8s-events-v1"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

/// C-0031 Delete Kubernetes events: `delete`/`deletecollection`/`*` on `events` or `*` in the
/// core group. Compatible.
pub static DELETE_EVENTS: PermissionControl = control(&DELETE_EVENTS_META, &[DELETE_EVENTS_PERM]);

static ADMINISTRATIVE_ROLES_META: ControlMeta = ControlMeta {
    id: "C-0035",
    name: "Administrative Roles",
    description: "Subjects with every verb on every resource are cluster administrators.",
    remediation: "Bind administrative (wildcard) roles only to the few subjects that administer the cluster.",
    base_score: 6.0,
    frameworks: &[
        "NSA",
        "MITRE",
        "ArmoBest",
        "SOC2",
        "ClusterScan",
        "security",
        "YAML",
    ],
    applies: SUBJECTS,
    rules: &["rule-list-all-cluster-admins-v1"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

/// C-0035 Administrative Roles: a role rule with verb `*`, API group `*` or `""` and resource
/// `*`. Compatible.
pub static ADMINISTRATIVE_ROLES: PermissionControl =
    control(&ADMINISTRATIVE_ROLES_META, &[ALL_ON_ALL]);

static COREDNS_META: ControlMeta = ControlMeta {
    id: "C-0037",
    name: "CoreDNS poisoning",
    description: "Subjects allowed to modify the coredns ConfigMap can redirect the cluster's DNS.",
    remediation: "Remove update and patch on configmaps (or restrict resourceNames) for subjects that need not change CoreDNS.",
    base_score: 4.0,
    frameworks: &["MITRE", "YAML"],
    applies: SUBJECTS,
    rules: &["rule-can-update-configmap-v1"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

/// C-0037 CoreDNS poisoning: `update`/`patch`/`*` on `configmaps` or `*` in the core group, by a
/// rule that either names no `resourceNames` or names `coredns`; rules limited to other
/// ConfigMaps pass. Compatible, except: an empty `resourceNames: []` grants every name in
/// Kubernetes, but Kubescape passes it (`not rule.resourceNames` is false for `[]`). Corrected:
/// treated as unrestricted (fixture `fail-empty-resource-names`).
pub static COREDNS_POISONING: PermissionControl = control(&COREDNS_META, &[UPDATE_COREDNS]);

static PORT_FORWARDING_META: ControlMeta = ControlMeta {
    id: "C-0063",
    name: "Portforwarding privileges",
    description: "Subjects allowed to port-forward can open a tunnel into any pod, bypassing network policies.",
    remediation: "Remove create on pods/portforward (and pods/*, *) from roles bound to subjects that do not need it.",
    base_score: 5.0,
    frameworks: &["ArmoBest", "ClusterScan", "YAML"],
    applies: SUBJECTS,
    rules: &["rule-can-portforward-v1"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

/// C-0063 Portforwarding privileges: `create`/`*` on `pods/portforward`, `pods/*` or `*` in the
/// core group. Compatible.
pub static PORT_FORWARDING: PermissionControl = control(&PORT_FORWARDING_META, &[PORT_FORWARD]);

static NO_IMPERSONATION_META: ControlMeta = ControlMeta {
    id: "C-0065",
    name: "No impersonation",
    description: "Subjects allowed to impersonate users, groups or service accounts act with their permissions.",
    remediation: "Remove the impersonate verb from roles bound to subjects that do not need it.",
    base_score: 6.0,
    frameworks: &["ArmoBest", "YAML"],
    applies: SUBJECTS,
    rules: &["rule-can-impersonate-users-groups-v1"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

/// C-0065 No impersonation: `impersonate`/`*` on users, serviceaccounts, groups, uids or `*` in
/// the core (or `*`) group. Compatible.
pub static NO_IMPERSONATION: PermissionControl = control(&NO_IMPERSONATION_META, &[IMPERSONATE]);

static CLUSTER_ADMIN_META: ControlMeta = ControlMeta {
    id: "C-0185",
    name: "Ensure that the cluster-admin role is only used where required",
    description: "The cluster-admin role bound cluster-wide gives its subjects unrestricted power over the cluster.",
    remediation: "Remove subjects from cluster-admin ClusterRoleBindings and bind them to least-privilege roles.",
    base_score: 8.0,
    frameworks: CIS_ALL,
    applies: SUBJECTS,
    rules: &["cluster-admin-role"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

/// C-0185 Ensure that the cluster-admin role is only used where required: a role named
/// `cluster-admin`, bound by a ClusterRoleBinding, with a rule granting `*` on `*` (group `*` or
/// `""`). Compatible, including catalog quirk 10: the paths are delete paths (removing the
/// subject from the binding is the fix).
pub static CLUSTER_ADMIN_ONLY_WHERE_REQUIRED: PermissionControl = PermissionControl {
    meta: &CLUSTER_ADMIN_META,
    permissions: &[CLUSTER_ADMIN],
    role_name: Some("cluster-admin"),
    binding_kind: Some("ClusterRoleBinding"),
    paths: PathKind::Delete,
};

static MINIMIZE_SECRETS_META: ControlMeta = ControlMeta {
    id: "C-0186",
    name: "Minimize access to secrets",
    description: "Subjects allowed to get, list or watch secrets can read every credential they hold.",
    remediation: "Remove get, list and watch on secrets from roles bound to subjects that do not need them.",
    base_score: 6.0,
    frameworks: &[
        "SOC2",
        "cis-aks-t1.2.0",
        "cis-aks-t1.8.0",
        "cis-eks-t1.7.0",
        "cis-eks-t1.8.0",
        "cis-gke-v1.9.0",
        "cis-v1.10.0",
        "cis-v1.12.0",
    ],
    applies: SUBJECTS,
    rules: &["rule-can-list-get-secrets-v1"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

/// C-0186 Minimize access to secrets: the same rule as C-0015. Compatible.
pub static MINIMIZE_SECRETS_ACCESS: PermissionControl =
    control(&MINIMIZE_SECRETS_META, &[READ_SECRETS]);

static MINIMIZE_WILDCARDS_META: ControlMeta = ControlMeta {
    id: "C-0187",
    name: "Minimize wildcard use in Roles and ClusterRoles",
    description: "Wildcard rules grant every current and future verb and resource, far beyond least privilege.",
    remediation: "Replace wildcards in Roles and ClusterRoles with the verbs and resources actually needed.",
    base_score: 7.0,
    frameworks: &[
        "ClusterScan",
        "cis-aks-t1.2.0",
        "cis-aks-t1.8.0",
        "cis-eks-t1.7.0",
        "cis-eks-t1.8.0",
        "cis-gke-v1.9.0",
        "cis-v1.10.0",
        "cis-v1.12.0",
    ],
    applies: SUBJECTS,
    rules: &["rule-list-all-cluster-admins-v1"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

/// C-0187 Minimize wildcard use in Roles and ClusterRoles: the same rule as C-0035 (`*` verbs on
/// `*` resources). Compatible: a rule with only one wildcard does not fail.
pub static MINIMIZE_WILDCARDS: PermissionControl = control(&MINIMIZE_WILDCARDS_META, &[ALL_ON_ALL]);

static MINIMIZE_POD_CREATION_META: ControlMeta = ControlMeta {
    id: "C-0188",
    name: "Minimize access to create pods",
    description: "Subjects allowed to create pods can run any image with any service account of the namespace.",
    remediation: "Remove create on pods from roles bound to subjects that do not need it.",
    base_score: 5.0,
    frameworks: &[
        "ClusterScan",
        "cis-aks-t1.2.0",
        "cis-aks-t1.8.0",
        "cis-eks-t1.7.0",
        "cis-eks-t1.8.0",
        "cis-v1.10.0",
        "cis-v1.12.0",
    ],
    applies: SUBJECTS,
    rules: &["rule-can-create-pod"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

/// C-0188 Minimize access to create pods: `create`/`*` on `pods` or `*` in the core group.
/// Compatible.
pub static MINIMIZE_POD_CREATION: PermissionControl =
    control(&MINIMIZE_POD_CREATION_META, &[CREATE_PODS]);

static BIND_ESCALATE_META: ControlMeta = ControlMeta {
    id: "C-0191",
    name: "Limit use of the Bind, Impersonate and Escalate permissions in the Kubernetes cluster",
    description: "Bind, escalate and impersonate let a subject gain permissions it was not granted.",
    remediation: "Remove bind, escalate and impersonate from roles bound to subjects that do not need them.",
    base_score: 6.0,
    frameworks: &[
        "cis-eks-t1.7.0",
        "cis-eks-t1.8.0",
        "cis-gke-v1.9.0",
        "cis-v1.10.0",
        "cis-v1.12.0",
    ],
    applies: SUBJECTS,
    rules: &[
        "rule-can-bind-escalate",
        "rule-can-impersonate-users-groups-v1",
    ],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

/// C-0191 Limit use of the Bind, Impersonate and Escalate permissions: `bind`/`*` or
/// `escalate`/`*` on clusterroles, roles or `*` in the `rbac.authorization.k8s.io` (or `*`)
/// group, each reported separately, plus the impersonation test of C-0065. Compatible.
pub static BIND_ESCALATE_IMPERSONATE: PermissionControl =
    control(&BIND_ESCALATE_META, &[BIND, ESCALATE, IMPERSONATE]);

static CREATE_PV_META: ControlMeta = ControlMeta {
    id: "C-0278",
    name: "Minimize access to create persistent volumes",
    description: "Subjects allowed to create PersistentVolumes can mount host paths and reach node data.",
    remediation: "Remove create on persistentvolumes from roles bound to subjects that do not need it.",
    base_score: 5.0,
    frameworks: &["cis-eks-t1.8.0", "cis-v1.10.0", "cis-v1.12.0"],
    applies: SUBJECTS,
    rules: &["rule-can-create-pv"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

/// C-0278 Minimize access to create persistent volumes: `create`/`*` on `persistentvolumes` or
/// `*` in the core group. Compatible.
pub static CREATE_PERSISTENT_VOLUMES: PermissionControl = control(&CREATE_PV_META, &[CREATE_PV]);

static NODE_PROXY_META: ControlMeta = ControlMeta {
    id: "C-0279",
    name: "Minimize access to the proxy sub-resource of nodes",
    description: "Access to nodes/proxy reaches the kubelet API directly, bypassing audit and admission.",
    remediation: "Remove access to nodes/proxy from roles bound to subjects that do not need it.",
    base_score: 5.0,
    frameworks: &[
        "cis-aks-t1.8.0",
        "cis-eks-t1.8.0",
        "cis-v1.10.0",
        "cis-v1.12.0",
    ],
    applies: SUBJECTS,
    rules: &["rule-can-access-proxy-subresource"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

/// C-0279 Minimize access to the proxy sub-resource of nodes: `get`/`create`/`connect`/`*` on
/// `nodes/proxy` or `*` in the core group. Compatible.
pub static NODE_PROXY: PermissionControl = control(&NODE_PROXY_META, &[PROXY_NODES]);

static APPROVE_CSR_META: ControlMeta = ControlMeta {
    id: "C-0280",
    name: "Minimize access to the approval sub-resource of certificatesigningrequests objects",
    description: "Subjects allowed to approve certificate signing requests can mint credentials for any identity.",
    remediation: "Remove update on certificatesigningrequests/approval from roles bound to subjects that do not need it.",
    base_score: 5.0,
    frameworks: &["cis-aks-t1.8.0", "cis-v1.10.0", "cis-v1.12.0"],
    applies: SUBJECTS,
    rules: &["rule-can-approve-cert-signing-request"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

/// C-0280 Minimize access to the approval sub-resource of certificatesigningrequests objects:
/// `update`/`*` on `certificatesigningrequests/approval` or `*` in the `certificates.k8s.io`
/// (or `*`) group. Compatible.
pub static APPROVE_CSR: PermissionControl = control(&APPROVE_CSR_META, &[APPROVE_CSR_PERM]);

static WEBHOOKS_META: ControlMeta = ControlMeta {
    id: "C-0281",
    name: "Minimize access to webhook configuration objects",
    description: "Subjects allowed to change admission webhooks can intercept or silence every API write.",
    remediation: "Remove create, update and delete on webhook configurations from roles bound to subjects that do not need them.",
    base_score: 5.0,
    frameworks: &[
        "cis-aks-t1.8.0",
        "cis-eks-t1.8.0",
        "cis-v1.10.0",
        "cis-v1.12.0",
    ],
    applies: SUBJECTS,
    rules: &["rule-can-modify-admission-webhooks"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

/// C-0281 Minimize access to webhook configuration objects: `create`/`update`/`delete`/`*` on
/// validating or mutating webhook configurations or `*` in the `admissionregistration.k8s.io`
/// (or `*`) group. Compatible.
pub static WEBHOOK_CONFIGURATIONS: PermissionControl = control(&WEBHOOKS_META, &[MODIFY_WEBHOOKS]);

static SA_TOKEN_META: ControlMeta = ControlMeta {
    id: "C-0282",
    name: "Minimize access to the service account token creation",
    description: "Subjects allowed to create service account tokens can act as any service account they name.",
    remediation: "Remove create on serviceaccounts/token from roles bound to subjects that do not need it.",
    base_score: 5.0,
    frameworks: &[
        "cis-aks-t1.8.0",
        "cis-eks-t1.8.0",
        "cis-v1.10.0",
        "cis-v1.12.0",
    ],
    applies: SUBJECTS,
    rules: &["rule-can-create-service-account-token"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

/// C-0282 Minimize access to the service account token creation: `create`/`*` on
/// `serviceaccounts/token` or `*` in the core group. Compatible.
pub static SERVICE_ACCOUNT_TOKENS: PermissionControl = control(&SA_TOKEN_META, &[CREATE_SA_TOKEN]);

#[cfg(test)]
mod tests {
    use super::*;
    use kubevigil_crds::RulePath;
    use serde_json::json;

    fn role(rules: Value) -> K8sObject {
        K8sObject::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "r", "namespace": "default"},
            "rules": rules,
        }))
        .unwrap()
    }

    fn review(paths: &[&str]) -> Vec<RulePath> {
        paths
            .iter()
            .map(|p| RulePath {
                failed_path: Some((*p).to_string()),
                review_path: Some((*p).to_string()),
                ..RulePath::default()
            })
            .collect()
    }

    #[test]
    fn paths_follow_kubescape_order() {
        let r = role(json!([
            {"apiGroups": ["apps"], "resources": ["pods"], "verbs": ["create"]},
            {"apiGroups": ["extensions", "*"], "resources": ["nodes", "pods", "*"],
             "verbs": ["impersonate", "create", "list", "*"]},
        ]));
        let f = permission_findings(&r, 2, &[EXEC], PathKind::Review);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule, "exec-into-container-v1");
        assert_eq!(
            f[0].paths
                .iter()
                .map(crate::FindingPath::to_rule_path)
                .collect::<Vec<_>>(),
            review(&[
                "relatedObjects[1].rules[1].resources[2]",
                "relatedObjects[1].rules[1].verbs[1]",
                "relatedObjects[1].rules[1].verbs[3]",
                "relatedObjects[1].rules[1].apiGroups[1]",
                "relatedObjects[0].subjects[2]",
                "relatedObjects[0].roleRef.name",
            ])
        );
    }

    #[test]
    fn one_finding_per_matching_rule_and_permission() {
        let r = role(json!([
            {"apiGroups": ["*"], "resources": ["clusterroles"], "verbs": ["*", "escalate"]},
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["bind"]},
        ]));
        let f = permission_findings(&r, 0, &[BIND, ESCALATE, IMPERSONATE], PathKind::Review);
        // bind: rules 0 and 1; escalate: rule 0.
        assert_eq!(f.len(), 3);
        assert!(f.iter().all(|f| f.rule == "rule-can-bind-escalate"));
    }

    #[test]
    fn all_three_sets_must_hit_in_one_rule() {
        let r = role(json!([
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
            {"apiGroups": ["apps"], "resources": ["secrets"], "verbs": ["get"]},
        ]));
        assert!(permission_findings(&r, 0, &[READ_SECRETS], PathKind::Review).is_empty());
    }

    #[test]
    fn delete_paths_for_cluster_admin() {
        let r = role(json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]));
        let f = permission_findings(&r, 0, &[CLUSTER_ADMIN], PathKind::Delete);
        assert_eq!(f.len(), 1);
        assert!(
            f[0].paths
                .iter()
                .map(crate::FindingPath::to_rule_path)
                .all(|p| p.delete_path.is_some() && p.review_path.is_none())
        );
    }

    #[test]
    fn coredns_resource_names() {
        let rule = |names: Value| {
            let mut r = json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["patch"]});
            if !names.is_null() {
                r["resourceNames"] = names;
            }
            r
        };
        assert!(grants(&rule(Value::Null), &UPDATE_COREDNS));
        assert!(grants(&rule(json!([])), &UPDATE_COREDNS));
        assert!(grants(
            &rule(json!(["kube-proxy", "coredns"])),
            &UPDATE_COREDNS
        ));
        assert!(!grants(&rule(json!(["kube-proxy"])), &UPDATE_COREDNS));
        // Other permissions ignore resourceNames.
        let secrets = json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
                             "resourceNames": ["one"]});
        assert!(grants(&secrets, &READ_SECRETS));
    }

    #[test]
    fn malformed_rules_grant_nothing() {
        let r = role(json!([
            {"apiGroups": "", "resources": "*", "verbs": "*"},
            {"apiGroups": [1], "resources": [null], "verbs": [true]},
            "not a rule",
        ]));
        assert!(permission_findings(&r, 0, &[ALL_ON_ALL], PathKind::Review).is_empty());
    }
}
