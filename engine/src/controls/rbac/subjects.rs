//! Triplet controls that are not the plain permission test: access to the Kubernetes dashboard
//! (with its workload half), the ServiceAccount listing, and `system:authenticated` holding
//! sensitive roles.

use kubevigil_crds::identity::SubjectKind;

use super::SUBJECTS;
use crate::object::{K8sObject, array, str_at};
use crate::workload::{WORKLOAD_KINDS, applies};
use crate::{
    Applies, BINDING_PATH, Context, Control, ControlMeta, Finding, Needs, Outcome, Resource,
    Triplet,
};

const DASHBOARD: &str = "kubernetes-dashboard";

/// C-0014 Access Kubernetes dashboard, two rules:
/// - `rule-access-dashboard-subject-v1`: a subject not named `kubernetes-dashboard` bound to a
///   Role/ClusterRole named `kubernetes-dashboard` fails (whatever the role grants); review
///   paths `relatedObjects[0].subjects[k]` and `relatedObjects[0].roleRef.name`.
/// - `rule-access-dashboard-wl-v1`: a workload whose pod spec uses the `kubernetes-dashboard`
///   ServiceAccount and whose name does not start with `kubernetes-dashboard` fails; delete path
///   `<podspec>.serviceAccountName`.
///
/// Compatible, except the subject path: Kubescape's subject rule does not re-check which binding
/// entry is the vector's subject, so a binding with n subjects gives every one of them n
/// findings, one per entry. Corrected: one finding, pointing at the subject's own entry.
pub struct AccessDashboard;

static ACCESS_DASHBOARD: ControlMeta = ControlMeta {
    id: "C-0014",
    name: "Access Kubernetes dashboard",
    description: "Subjects bound to the dashboard's role, or workloads running as its service account, get the dashboard's cluster access.",
    remediation: "Bind the kubernetes-dashboard role and service account only to the dashboard itself.",
    base_score: 2.0,
    frameworks: &["MITRE", "YAML", "cis-gke-v1.9.0"],
    applies: &applies::<8>(&[Applies::Subjects], WORKLOAD_KINDS),
    rules: &[
        "rule-access-dashboard-subject-v1",
        "rule-access-dashboard-wl-v1",
    ],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl AccessDashboard {
    fn subject(t: &Triplet, cx: &Context<'_>) -> Outcome {
        let Some(role) = cx.inventory.role_of(t) else {
            return Outcome::NotApplicable;
        };
        if role.name != DASHBOARD || t.subject.name == DASHBOARD {
            return Outcome::Passed;
        }
        Outcome::Failed(vec![
            Finding::new("rule-access-dashboard-subject-v1")
                .review(format!("{BINDING_PATH}.subjects[{}]", t.subject_index))
                .review(format!("{BINDING_PATH}.roleRef.name")),
        ])
    }

    fn workload(obj: &K8sObject, cx: &Context<'_>) -> Outcome {
        let Some(pod) = cx.pod_spec(obj) else {
            return Outcome::Passed;
        };
        if str_at(pod, "serviceAccountName") == Some(DASHBOARD) && !obj.name.starts_with(DASHBOARD)
        {
            Outcome::Failed(vec![
                Finding::new("rule-access-dashboard-wl-v1")
                    .delete(format!("{}.serviceAccountName", pod.path)),
            ])
        } else {
            Outcome::Passed
        }
    }
}

impl Control for AccessDashboard {
    fn meta(&self) -> &'static ControlMeta {
        &ACCESS_DASHBOARD
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        match resource {
            Resource::Triplet(t) => Self::subject(t, cx),
            Resource::Object(obj) => Self::workload(obj, cx),
        }
    }
}

/// C-0053 Access container service account: a listing control. Every ServiceAccount subject
/// bound to a role fails (whatever the role grants), without paths, so that each bound
/// ServiceAccount gets reviewed. Compatible for ServiceAccounts. Kubescape's filter leaves User
/// and Group subjects out of the control entirely; kubevigil reports them passed (they are no
/// container service account), which only changes the passed counters (fixture
/// `pass-only-people`).
pub struct AccessContainerServiceAccount;

static ACCESS_CONTAINER_SA: ControlMeta = ControlMeta {
    id: "C-0053",
    name: "Access container service account",
    description: "A pod's service account token lets anyone inside the container use the account's RBAC permissions.",
    remediation: "Give service accounts only the permissions they need and mount their tokens only where required.",
    base_score: 6.0,
    frameworks: &["MITRE", "YAML"],
    applies: SUBJECTS,
    rules: &["access-container-service-account-v1"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for AccessContainerServiceAccount {
    fn meta(&self) -> &'static ControlMeta {
        &ACCESS_CONTAINER_SA
    }

    fn evaluate(&self, resource: Resource<'_>, _cx: &Context<'_>) -> Outcome {
        match resource {
            Resource::Triplet(t) if t.subject.kind == SubjectKind::ServiceAccount => {
                Outcome::Failed(vec![Finding::new("access-container-service-account-v1")])
            }
            Resource::Triplet(_) => Outcome::Passed,
            Resource::Object(_) => Outcome::NotApplicable,
        }
    }
}

const SYSTEM_AUTHENTICATED: &str = "system:authenticated";

/// Resources of C-0265. Kubescape lists `statefulset` and `daemonset` in the singular, which
/// never match a real role; the plural forms are added (corrected), the singular kept.
const TAKEOVER_RESOURCES: &[&str] = &[
    "*",
    "pods",
    "pods/exec",
    "pods/attach",
    "pods/portforward",
    "deployments",
    "statefulset",
    "statefulsets",
    "daemonset",
    "daemonsets",
    "jobs",
    "cronjobs",
    "nodes",
    "secrets",
];

/// C-0265 system:authenticated user has elevated roles: the Group `system:authenticated` (every
/// authenticated identity, including any ServiceAccount) bound to a role with a rule whose
/// resources include `*`, pods (or exec/attach/portforward), workload controllers, nodes or
/// secrets, whatever the verbs. Review paths `relatedObjects[0].subjects[k]` and
/// `relatedObjects[0].roleRef.name`.
///
/// Decisions, all corrected because they hide or misplace real findings:
/// - Kubescape fails every subject of a binding that contains `system:authenticated`; only that
///   Group subject fails here (fixture `fail-group-among-others`).
/// - Kubescape accepts only RoleBinding→Role and ClusterRoleBinding→ClusterRole; a RoleBinding
///   granting a ClusterRole to all authenticated users in a namespace counts too here (fixture
///   `fail-rolebinding-to-clusterrole-plural`).
/// - `statefulsets`/`daemonsets` (plural) count (see [`TAKEOVER_RESOURCES`]).
/// - Catalog quirk 10: Kubescape reports `relatedObjects[1].roleRef.name` (the role's index, a
///   path that does not exist) and an empty path; the binding's `roleRef.name` is reported.
pub struct SystemAuthenticatedElevated;

static SYSTEM_AUTHENTICATED_META: ControlMeta = ControlMeta {
    id: "C-0265",
    name: "system:authenticated user has elevated roles",
    description: "Roles bound to system:authenticated are held by every authenticated identity, including every service account.",
    remediation: "Remove system:authenticated from bindings of roles that reach pods, workloads, nodes or secrets.",
    base_score: 7.0,
    frameworks: &["ClusterScan", "security", "cis-gke-v1.9.0"],
    applies: SUBJECTS,
    rules: &["system-authenticated-allowed-to-take-over-cluster"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl SystemAuthenticatedElevated {
    fn grants_takeover(role: &K8sObject) -> bool {
        array(&role.value, "rules").iter().any(|rule| {
            array(rule, "resources")
                .iter()
                .any(|r| r.as_str().is_some_and(|r| TAKEOVER_RESOURCES.contains(&r)))
        })
    }
}

impl Control for SystemAuthenticatedElevated {
    fn meta(&self) -> &'static ControlMeta {
        &SYSTEM_AUTHENTICATED_META
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        let Resource::Triplet(t) = resource else {
            return Outcome::NotApplicable;
        };
        let Some(role) = cx.inventory.role_of(t) else {
            return Outcome::NotApplicable;
        };
        if t.subject.kind != SubjectKind::Group
            || t.subject.name != SYSTEM_AUTHENTICATED
            || !Self::grants_takeover(role)
        {
            return Outcome::Passed;
        }
        Outcome::Failed(vec![
            Finding::new("system-authenticated-allowed-to-take-over-cluster")
                .review(format!("{BINDING_PATH}.subjects[{}]", t.subject_index))
                .review(format!("{BINDING_PATH}.roleRef.name")),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ControlInputs, Inventory};
    use serde_json::{Value, json};

    fn inventory(objects: Value) -> Inventory {
        let Value::Array(items) = objects else {
            return Inventory::default();
        };
        Inventory::new(
            items
                .into_iter()
                .map(|v| K8sObject::from_value(v).unwrap())
                .collect(),
        )
    }

    fn run(control: &dyn Control, inv: &Inventory) -> Vec<(String, Outcome)> {
        let inputs = ControlInputs::default();
        let cx = Context {
            inventory: inv,
            inputs: &inputs,
            cloud_provider: None,
            memo: None,
        };
        inv.triplets()
            .iter()
            .map(|t| {
                (
                    t.subject.name.clone(),
                    control.evaluate(Resource::Triplet(t), &cx),
                )
            })
            .collect()
    }

    fn paths(outcome: &Outcome) -> Vec<String> {
        match outcome {
            Outcome::Failed(f) => f
                .iter()
                .flat_map(|f| f.paths.iter().filter_map(|p| p.to_rule_path().review_path))
                .collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn system_authenticated_paths_point_at_the_binding() {
        let inv = inventory(json!([
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
             "metadata": {"name": "viewer"},
             "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": "viewer"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "viewer"},
             "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"},
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"}]}
        ]));
        let out = run(&SystemAuthenticatedElevated, &inv);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].1, Outcome::Passed);
        assert_eq!(
            paths(&out[1].1),
            vec![
                "relatedObjects[0].subjects[1]".to_string(),
                "relatedObjects[0].roleRef.name".to_string()
            ]
        );
    }

    #[test]
    fn dashboard_subject_path_is_its_own_entry() {
        let inv = inventory(json!([
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
             "metadata": {"name": "kubernetes-dashboard"}, "rules": []},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": "b"},
             "roleRef": {"kind": "ClusterRole", "name": "kubernetes-dashboard"},
             "subjects": [
                {"kind": "Group", "name": "manager"},
                {"kind": "ServiceAccount", "name": "kubernetes-dashboard", "namespace": "kd"},
                {"kind": "Group", "name": "dev"}]}
        ]));
        let out = run(&AccessDashboard, &inv);
        assert_eq!(
            paths(&out[0].1),
            vec![
                "relatedObjects[0].subjects[0]".to_string(),
                "relatedObjects[0].roleRef.name".to_string()
            ]
        );
        assert_eq!(out[1].1, Outcome::Passed);
        assert_eq!(paths(&out[2].1)[0], "relatedObjects[0].subjects[2]");
    }
}
