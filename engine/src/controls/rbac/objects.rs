//! RBAC controls on the objects themselves: bindings naming the `default` ServiceAccount or the
//! anonymous user, `default` ServiceAccounts that automount their token, Namespaces without a
//! dedicated ServiceAccount, and the EKS IAM-authenticator review of Roles.

use crate::object::Field;
use serde_json::Value;

use crate::object::{K8sObject, array, str_at};
use crate::{Applies, Context, Control, ControlMeta, Finding, Needs, Outcome, Resource};

const AUTOMOUNT: &str = "automountServiceAccountToken";
const AUTOMOUNT_RULE: &str = "automount-default-service-account";
const DEFAULT_ROLES_RULE: &str = "ensure-default-service-accounts-has-only-default-roles";

/// Rule `automount-default-service-account`: a ServiceAccount named `default` fails when
/// `automountServiceAccountToken` is `true` (delete path) or not `false` (fix path, value
/// `false`). Other ServiceAccounts are not evaluated (the rule's filter).
fn default_sa_automount(obj: &K8sObject) -> Outcome {
    if obj.kind != "ServiceAccount" || obj.name != "default" {
        return Outcome::NotApplicable;
    }
    match obj.value.get(AUTOMOUNT) {
        Some(Value::Bool(false)) => Outcome::Passed,
        Some(Value::Bool(true)) => {
            Outcome::Failed(vec![Finding::new(AUTOMOUNT_RULE).delete(AUTOMOUNT)])
        }
        _ => Outcome::Failed(vec![Finding::new(AUTOMOUNT_RULE).fix(AUTOMOUNT, "false")]),
    }
}

/// Rule `ensure-default-service-accounts-has-only-default-roles`: a RoleBinding or
/// ClusterRoleBinding without the label `kubernetes.io/bootstrapping: rbac-defaults` fails once
/// per subject `kind: ServiceAccount, name: default` (any namespace), delete path
/// `subjects[i]`.
fn binds_default_sa(obj: &K8sObject) -> Outcome {
    if obj.kind != "RoleBinding" && obj.kind != "ClusterRoleBinding" {
        return Outcome::NotApplicable;
    }
    let rbac_defaults = obj
        .labels()
        .and_then(|l| l.field("kubernetes.io/bootstrapping"))
        .and_then(Value::as_str)
        == Some("rbac-defaults");
    if rbac_defaults {
        return Outcome::Passed;
    }
    let findings = array(&obj.value, "subjects")
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            str_at(*s, "kind") == Some("ServiceAccount") && str_at(*s, "name") == Some("default")
        })
        .map(|(i, _)| Finding::new(DEFAULT_ROLES_RULE).delete(format!("subjects[{i}]")))
        .collect();
    Outcome::from_findings(findings)
}

/// Whether a cloud-scoped control runs: on the named providers, and whenever the provider is
/// unknown (file scans, self-managed clusters), where the check is still meaningful.
fn provider_in(cx: &Context<'_>, providers: &[&str]) -> bool {
    match cx.cloud_provider {
        None | Some("") => true,
        Some(p) => providers.iter().any(|q| q.eq_ignore_ascii_case(p)),
    }
}

/// C-0189 Ensure that default service accounts are not actively used, two rules:
/// - `automount-default-service-account`: a ServiceAccount named `default` fails unless it sets
///   `automountServiceAccountToken: false` (delete path when `true`, fix path `false` when
///   unset); other ServiceAccounts are not evaluated.
/// - `namespace-without-service-account`: a Namespace fails when no ServiceAccount other than
///   `default` lives in it, i.e. its workloads can only run as `default`.
///
/// Compatible, except that a ServiceAccount without `metadata.namespace` counts as being in
/// `default` (Kubescape never counts it); fixture `pass-namespace-with-sa-without-namespace`.
pub struct DefaultServiceAccountsNotUsed;

static DEFAULT_SA_NOT_USED: ControlMeta = ControlMeta {
    id: "C-0189",
    name: "Ensure that default service accounts are not actively used",
    description: "Workloads that run as the default service account share its token and permissions with every other such workload.",
    remediation: "Set automountServiceAccountToken: false on each default service account and create dedicated service accounts.",
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
    applies: &[Applies::Kind("ServiceAccount"), Applies::Kind("Namespace")],
    rules: &[AUTOMOUNT_RULE, "namespace-without-service-account"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl DefaultServiceAccountsNotUsed {
    fn namespace_without_sa(ns: &K8sObject, cx: &Context<'_>) -> Outcome {
        let has_own = cx
            .inventory
            .of_kind_in("ServiceAccount", &ns.name)
            .any(|sa| sa.name != "default");
        if has_own {
            Outcome::Passed
        } else {
            Outcome::Failed(vec![Finding::new("namespace-without-service-account")])
        }
    }
}

impl Control for DefaultServiceAccountsNotUsed {
    fn meta(&self) -> &'static ControlMeta {
        &DEFAULT_SA_NOT_USED
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        match resource {
            Resource::Object(obj) if obj.kind == "Namespace" => Self::namespace_without_sa(obj, cx),
            Resource::Object(obj) => default_sa_automount(obj),
            Resource::Triplet(_) => Outcome::NotApplicable,
        }
    }
}

/// C-0225 Prefer using dedicated EKS Service Accounts, two rules:
/// - `ensure-default-service-accounts-has-only-default-roles`: a RoleBinding/ClusterRoleBinding
///   that is not a bootstrap default (`kubernetes.io/bootstrapping: rbac-defaults`) and names the
///   ServiceAccount `default` of any namespace fails, delete path `subjects[i]`;
/// - `automount-default-service-account`: as C-0189.
///
/// Compatible. Kubescape scopes the control to EKS clusters; kubevigil evaluates it on EKS and
/// GKE (its CIS GKE benchmark includes it) and whenever the provider is unknown (file scans),
/// and skips it (not applicable) on other known providers.
pub struct DedicatedEksServiceAccounts;

static DEDICATED_EKS_SA: ControlMeta = ControlMeta {
    id: "C-0225",
    name: "Prefer using dedicated EKS Service Accounts",
    description: "Permissions granted to a default service account reach every pod of its namespace that does not name another account.",
    remediation: "Bind roles to dedicated service accounts (with IAM roles for service accounts), not to default, and disable its token automount.",
    base_score: 7.0,
    frameworks: &["cis-eks-t1.7.0", "cis-eks-t1.8.0", "cis-gke-v1.9.0"],
    applies: &[
        Applies::Kind("RoleBinding"),
        Applies::Kind("ClusterRoleBinding"),
        Applies::Kind("ServiceAccount"),
    ],
    rules: &[DEFAULT_ROLES_RULE, AUTOMOUNT_RULE],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for DedicatedEksServiceAccounts {
    fn meta(&self) -> &'static ControlMeta {
        &DEDICATED_EKS_SA
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        let Resource::Object(obj) = resource else {
            return Outcome::NotApplicable;
        };
        if !provider_in(cx, &["eks", "gke"]) {
            return Outcome::NotApplicable;
        }
        if obj.kind == "ServiceAccount" {
            default_sa_automount(obj)
        } else {
            binds_default_sa(obj)
        }
    }
}

/// C-0232 Manage Kubernetes RBAC users with AWS IAM Authenticator for Kubernetes or Upgrade to
/// AWS CLI v1.16.156: a manual-review reminder; every Role is flagged for review. Reported
/// `skipped` / `manual review` (Kubescape turns the failure of a manual-review control into that
/// status too). Compatible.
pub struct AwsIamAuthenticator;

static AWS_IAM_AUTHENTICATOR: ControlMeta = ControlMeta {
    id: "C-0232",
    name: "Manage Kubernetes RBAC users with AWS IAM Authenticator for Kubernetes or Upgrade to AWS CLI v1.16.156",
    description: "On EKS, RBAC users should come from AWS IAM through the IAM authenticator rather than static credentials.",
    remediation: "Map IAM users and roles to Kubernetes identities (aws-auth or EKS access entries) and review each Role's users.",
    base_score: 7.0,
    frameworks: &["cis-eks-t1.7.0", "cis-eks-t1.8.0", "cis-gke-v1.9.0"],
    applies: &[Applies::Kind("Role")],
    rules: &["review-roles-with-aws-iam-authenticator"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::ManualReview,
};

impl Control for AwsIamAuthenticator {
    fn meta(&self) -> &'static ControlMeta {
        &AWS_IAM_AUTHENTICATOR
    }

    fn evaluate(&self, resource: Resource<'_>, _cx: &Context<'_>) -> Outcome {
        match resource {
            Resource::Object(obj) if obj.kind == "Role" => Outcome::Failed(vec![Finding::new(
                "review-roles-with-aws-iam-authenticator",
            )]),
            _ => Outcome::NotApplicable,
        }
    }
}

/// C-0239 Prefer using dedicated AKS Service Accounts: the binding rule of C-0225
/// (`ensure-default-service-accounts-has-only-default-roles`). Compatible. Kubescape scopes it
/// to AKS; kubevigil evaluates it on AKS and whenever the provider is unknown (file scans), and
/// skips it (not applicable) on other known providers.
pub struct DedicatedAksServiceAccounts;

static DEDICATED_AKS_SA: ControlMeta = ControlMeta {
    id: "C-0239",
    name: "Prefer using dedicated AKS Service Accounts",
    description: "Permissions granted to a default service account reach every pod of its namespace that does not name another account.",
    remediation: "Bind roles to dedicated service accounts (with workload identity), not to default.",
    base_score: 7.0,
    frameworks: &["cis-aks-t1.2.0", "cis-aks-t1.8.0"],
    applies: &[
        Applies::Kind("RoleBinding"),
        Applies::Kind("ClusterRoleBinding"),
    ],
    rules: &[DEFAULT_ROLES_RULE],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for DedicatedAksServiceAccounts {
    fn meta(&self) -> &'static ControlMeta {
        &DEDICATED_AKS_SA
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        match resource {
            Resource::Object(obj) if provider_in(cx, &["aks"]) => binds_default_sa(obj),
            _ => Outcome::NotApplicable,
        }
    }
}

/// C-0262 Anonymous user has RoleBinding: a RoleBinding/ClusterRoleBinding with a subject named
/// `system:anonymous` or `system:unauthenticated` (any kind) fails, once per such subject, with
/// delete path `subjects[i]`. Compatible.
pub struct AnonymousBinding;

static ANONYMOUS_BINDING: ControlMeta = ControlMeta {
    id: "C-0262",
    name: "Anonymous user has RoleBinding",
    description: "Bindings to system:anonymous or system:unauthenticated give permissions to requests without any credentials.",
    remediation: "Remove system:anonymous and system:unauthenticated from role bindings.",
    base_score: 7.0,
    frameworks: &["ClusterScan", "security", "cis-gke-v1.9.0"],
    applies: &[
        Applies::Kind("RoleBinding"),
        Applies::Kind("ClusterRoleBinding"),
    ],
    rules: &["anonymous-access-enabled"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for AnonymousBinding {
    fn meta(&self) -> &'static ControlMeta {
        &ANONYMOUS_BINDING
    }

    fn evaluate(&self, resource: Resource<'_>, _cx: &Context<'_>) -> Outcome {
        let Resource::Object(obj) = resource else {
            return Outcome::NotApplicable;
        };
        let findings = array(&obj.value, "subjects")
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                matches!(
                    str_at(*s, "name"),
                    Some("system:anonymous" | "system:unauthenticated")
                )
            })
            .map(|(i, _)| Finding::new("anonymous-access-enabled").delete(format!("subjects[{i}]")))
            .collect();
        Outcome::from_findings(findings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ControlInputs, FindingPath, Inventory};
    use serde_json::json;

    fn binding() -> K8sObject {
        K8sObject::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "b"},
            "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [
                {"kind": "ServiceAccount", "name": "default", "namespace": "a"},
                {"kind": "User", "name": "default"},
                {"kind": "ServiceAccount", "name": "default", "namespace": "b"}]
        }))
        .unwrap()
    }

    fn eval(control: &dyn Control, obj: &K8sObject, provider: Option<&str>) -> Outcome {
        let inv = Inventory::default();
        let inputs = ControlInputs::default();
        let cx = Context {
            inventory: &inv,
            inputs: &inputs,
            cloud_provider: provider,
            memo: None,
        };
        control.evaluate(Resource::Object(obj), &cx)
    }

    #[test]
    fn one_delete_path_per_default_sa_subject() {
        let Outcome::Failed(f) = eval(&DedicatedAksServiceAccounts, &binding(), None) else {
            panic!("expected a failure");
        };
        let paths: Vec<_> = f
            .iter()
            .flat_map(|f| f.paths.iter().map(FindingPath::to_rule_path))
            .collect();
        assert_eq!(paths.len(), 2);
        assert_eq!(paths[0].delete_path.as_deref(), Some("subjects[0]"));
        assert_eq!(paths[1].delete_path.as_deref(), Some("subjects[2]"));
    }

    #[test]
    fn cloud_scope() {
        let b = binding();
        assert!(matches!(
            eval(&DedicatedAksServiceAccounts, &b, Some("aks")),
            Outcome::Failed(_)
        ));
        assert_eq!(
            eval(&DedicatedAksServiceAccounts, &b, Some("eks")),
            Outcome::NotApplicable
        );
        assert!(matches!(
            eval(&DedicatedEksServiceAccounts, &b, Some("eks")),
            Outcome::Failed(_)
        ));
        assert!(matches!(
            eval(&DedicatedEksServiceAccounts, &b, Some("GKE")),
            Outcome::Failed(_)
        ));
        assert_eq!(
            eval(&DedicatedEksServiceAccounts, &b, Some("aks")),
            Outcome::NotApplicable
        );
    }

    #[test]
    fn automount_paths() {
        let sa = |v: Value| {
            let mut o = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                               "metadata": {"name": "default", "namespace": "x"}});
            if !v.is_null() {
                o[AUTOMOUNT] = v;
            }
            K8sObject::from_value(o).unwrap()
        };
        let Outcome::Failed(f) = default_sa_automount(&sa(Value::Null)) else {
            panic!("unset must fail");
        };
        assert_eq!(
            f[0].paths[0].to_rule_path().fix_path.as_deref(),
            Some(AUTOMOUNT)
        );
        assert_eq!(
            f[0].paths[0].to_rule_path().fix_path_value.as_deref(),
            Some("false")
        );
        let Outcome::Failed(f) = default_sa_automount(&sa(json!(true))) else {
            panic!("true must fail");
        };
        assert_eq!(
            f[0].paths[0].to_rule_path().delete_path.as_deref(),
            Some(AUTOMOUNT)
        );
        assert_eq!(default_sa_automount(&sa(json!(false))), Outcome::Passed);
    }
}
