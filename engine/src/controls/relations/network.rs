//! Network policies: which policies select a workload, and policies that select nothing.

use crate::object::Field;
use serde_json::{Map, Value};

use super::{WL7, in_namespace_of, object};
use crate::object::{array, str_at};
use crate::selectors::{selector_is_empty, selector_matches};
use crate::workload::{WORKLOAD_KINDS_RC, pod_labels};
use crate::{Applies, Context, Control, ControlMeta, Finding, K8sObject, Needs, Outcome, Resource};

/// Cilium's pseudo-label holding an endpoint's namespace.
const CILIUM_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";

/// The value a Cilium selector key has on a pod: the `k8s:`/`any:` source prefix is dropped and
/// the namespace pseudo-label resolves to the pod's namespace.
fn cilium_label<'a>(
    key: &str,
    labels: Option<&'a Map<String, Value>>,
    namespace: &'a str,
) -> Option<&'a str> {
    let key = key
        .strip_prefix("k8s:")
        .or_else(|| key.strip_prefix("any:"))
        .unwrap_or(key);
    if key == CILIUM_NAMESPACE_LABEL {
        return Some(namespace);
    }
    labels.and_then(|l| l.field(key)).and_then(Value::as_str)
}

/// Whether a Cilium `endpointSelector` (a LabelSelector) selects a pod with these labels.
fn cilium_selector_matches(
    selector: &Value,
    labels: Option<&Map<String, Value>>,
    namespace: &str,
) -> bool {
    let match_labels = selector
        .field("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| {
            m.iter().all(|(k, v)| {
                v.as_str().is_some() && cilium_label(k, labels, namespace) == v.as_str()
            })
        });
    match_labels
        && array(selector, "matchExpressions").iter().all(|expr| {
            let Some(key) = str_at(expr, "key") else {
                return false;
            };
            let value = cilium_label(key, labels, namespace);
            let in_values = |v: &str| array(expr, "values").iter().any(|x| x.as_str() == Some(v));
            match str_at(expr, "operator") {
                Some("In") => value.is_some_and(in_values),
                Some("NotIn") => !value.is_some_and(in_values),
                Some("Exists") => value.is_some(),
                Some("DoesNotExist") => value.is_none(),
                _ => false,
            }
        })
}

/// The rule entries of a Cilium policy: `spec` and every element of `specs`.
fn cilium_specs(policy: &K8sObject) -> impl Iterator<Item = &Value> {
    policy
        .value
        .field("spec")
        .filter(|s| s.is_object())
        .into_iter()
        .chain(array(&policy.value, "specs").iter())
}

/// Whether a Cilium rule entry has an ingress or egress section.
fn cilium_spec_directional(spec: &Value) -> bool {
    ["ingress", "egress"].iter().any(|k| {
        spec.field(k)
            .is_some_and(|v| !v.is_null() && v != &Value::Bool(false))
    })
}

/// Whether a NetworkPolicy restricts a direction. Its `policyTypes` must name Ingress or Egress;
/// when `policyTypes` is absent or empty the API server's default applies (`Ingress`, plus
/// `Egress` when there are egress rules), so the policy is directional.
fn np_directional(np: &K8sObject) -> bool {
    let types = np
        .get("spec")
        .map(|s| array(s, "policyTypes"))
        .unwrap_or(&[]);
    types.is_empty()
        || types
            .iter()
            .any(|t| matches!(t.as_str(), Some("Ingress" | "Egress")))
}

/// How the workload is covered by network policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Coverage {
    /// No policy selects the workload.
    None,
    /// Some policy selects it, none restricts a direction.
    Undirected,
    /// A selecting policy restricts ingress or egress.
    Directional,
}

/// Walks every policy that can select the workload (NetworkPolicy and CiliumNetworkPolicy of its
/// namespace, every CiliumClusterwideNetworkPolicy) and returns the best coverage.
fn coverage(cx: &Context<'_>, wl: &K8sObject) -> Coverage {
    let labels = cx.pod_labels(wl);
    let ns = wl.namespace_or_default();
    let mut best = Coverage::None;
    for np in in_namespace_of(cx, "NetworkPolicy", wl) {
        let selects = match np.get("spec.podSelector") {
            None | Some(Value::Null) => true,
            Some(sel) => selector_matches(sel, labels),
        };
        if selects {
            if np_directional(np) {
                return Coverage::Directional;
            }
            best = Coverage::Undirected;
        }
    }
    let cilium = in_namespace_of(cx, "CiliumNetworkPolicy", wl)
        .chain(cx.inventory.of_kind("CiliumClusterwideNetworkPolicy"));
    for policy in cilium {
        for spec in cilium_specs(policy) {
            let Some(sel) = spec.field("endpointSelector") else {
                continue;
            };
            if cilium_selector_matches(sel, labels, ns) {
                if cilium_spec_directional(spec) {
                    return Coverage::Directional;
                }
                best = Coverage::Undirected;
            }
        }
    }
    best
}

// ---------------------------------------------------------------------------------------------
// C-0030

const INGRESS_EGRESS_RULE: &str = "ingress-and-egress-blocked";

/// C-0030 Ingress and Egress blocked: the workload must be selected by a network policy that
/// restricts ingress or egress: a NetworkPolicy of its namespace (`podSelector` selecting the
/// pod labels, empty selects all) whose `policyTypes` has Ingress or Egress, or a Cilium rule
/// (`spec` or an entry of `specs` of a CiliumNetworkPolicy of its namespace or of any
/// CiliumClusterwideNetworkPolicy) whose `endpointSelector` selects it and which has an
/// `ingress` or `egress` section. Fails when no policy selects it or none of them is
/// directional. No paths.
///
/// Decisions:
/// - Corrected: `podSelector` and `endpointSelector` are full LabelSelectors (`matchLabels` and
///   `matchExpressions`). Kubescape ignores `matchExpressions` of a NetworkPolicy (so a policy
///   with only expressions "selects" every pod of the namespace) and of a Cilium selector with
///   `matchLabels`.
/// - Corrected: a NetworkPolicy without `policyTypes` gets the API server's default (Ingress), as
///   it has in a cluster; Kubescape fails it in manifest scans.
/// - Corrected: for Cilium, the entry that selects the workload must itself have `ingress` or
///   `egress` (Kubescape accepts a direction from any entry of the policy). Cilium selector keys
///   may carry the `k8s:`/`any:` source prefix, and `io.kubernetes.pod.namespace` matches the
///   pod's namespace.
pub struct IngressEgressBlocked;

static INGRESS_EGRESS_BLOCKED: ControlMeta = ControlMeta {
    id: "C-0030",
    name: "Ingress and Egress blocked",
    description: "Without a network policy restricting its traffic, a compromised pod can reach \
                  and be reached by anything in the cluster.",
    remediation: "Define NetworkPolicies (or Cilium policies) that select every workload and \
                  restrict its ingress and egress.",
    base_score: 6.0,
    frameworks: &["NSA", "ArmoBest", "YAML"],
    applies: WL7,
    rules: &[INGRESS_EGRESS_RULE],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for IngressEgressBlocked {
    fn meta(&self) -> &'static ControlMeta {
        &INGRESS_EGRESS_BLOCKED
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        let Some(wl) = object(resource) else {
            return Outcome::NotApplicable;
        };
        match coverage(cx, wl) {
            Coverage::Directional => Outcome::Passed,
            Coverage::None | Coverage::Undirected => {
                Outcome::Failed(vec![Finding::new(INGRESS_EGRESS_RULE)])
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// C-0260

const MISSING_POLICY_RULE: &str = "ensure_network_policy_configured_in_labels";

/// C-0260 Missing network policy: fails a workload that no NetworkPolicy,
/// CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy selects (selection as in C-0030; the
/// direction does not matter). No paths.
///
/// Decisions: the selector corrections of C-0030 (full LabelSelectors, Cilium source prefixes
/// and namespace pseudo-label) apply.
pub struct MissingNetworkPolicy;

static MISSING_NETWORK_POLICY: ControlMeta = ControlMeta {
    id: "C-0260",
    name: "Missing network policy",
    description: "Workloads that no network policy selects accept traffic from, and send \
                  traffic to, any pod of the cluster.",
    remediation: "Create a NetworkPolicy (or Cilium policy) whose selector matches the \
                  workload's pod labels.",
    base_score: 5.0,
    frameworks: &["SOC2", "ClusterScan", "WorkloadScan", "security"],
    applies: WL7,
    rules: &[MISSING_POLICY_RULE],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for MissingNetworkPolicy {
    fn meta(&self) -> &'static ControlMeta {
        &MISSING_NETWORK_POLICY
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        let Some(wl) = object(resource) else {
            return Outcome::NotApplicable;
        };
        match coverage(cx, wl) {
            Coverage::None => Outcome::Failed(vec![Finding::new(MISSING_POLICY_RULE)]),
            Coverage::Undirected | Coverage::Directional => Outcome::Passed,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// C-0299

const DANGLING_POLICY_RULE: &str = "dangling-networkpolicy";

/// C-0299 Dangling NetworkPolicy: a NetworkPolicy whose `podSelector` is not empty
/// (`matchLabels` or `matchExpressions`) fails when no Pod, Deployment, ReplicaSet, DaemonSet,
/// StatefulSet, Job, CronJob or ReplicationController of its namespace has pod labels it
/// selects. An empty selector (all pods) never fails. Failed path `spec.podSelector`.
/// Compatible with Kubescape.
pub struct DanglingNetworkPolicy;

static DANGLING_NETWORK_POLICY: ControlMeta = ControlMeta {
    id: "C-0299",
    name: "Dangling NetworkPolicy",
    description: "A NetworkPolicy whose pod selector matches no workload protects nothing, \
                  often because labels drifted.",
    remediation: "Fix the podSelector to match the intended pods' labels, or delete the policy.",
    base_score: 4.0,
    frameworks: &["DevOpsBest"],
    applies: &[Applies::Kind("NetworkPolicy")],
    rules: &[DANGLING_POLICY_RULE],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for DanglingNetworkPolicy {
    fn meta(&self) -> &'static ControlMeta {
        &DANGLING_NETWORK_POLICY
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        let Some(np) = object(resource) else {
            return Outcome::NotApplicable;
        };
        let Some(selector) = np.get("spec.podSelector").filter(|s| s.is_object()) else {
            return Outcome::Passed;
        };
        if selector_is_empty(selector) {
            return Outcome::Passed;
        }
        let matched = WORKLOAD_KINDS_RC.iter().any(|kind| {
            in_namespace_of(cx, kind, np).any(|wl| selector_matches(selector, pod_labels(wl)))
        });
        if matched {
            Outcome::Passed
        } else {
            Outcome::Failed(vec![
                Finding::new(DANGLING_POLICY_RULE).failed("spec.podSelector"),
            ])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cilium_selector_prefixes_and_namespace() {
        let labels = json!({"app": "web"});
        let l = labels.as_object();
        assert!(cilium_selector_matches(
            &json!({"matchLabels": {"k8s:app": "web"}}),
            l,
            "shop"
        ));
        assert!(cilium_selector_matches(
            &json!({"matchLabels": {"k8s:io.kubernetes.pod.namespace": "shop"}}),
            l,
            "shop"
        ));
        assert!(!cilium_selector_matches(
            &json!({"matchLabels": {"io.kubernetes.pod.namespace": "other"}}),
            l,
            "shop"
        ));
        assert!(!cilium_selector_matches(
            &json!({"matchLabels": {}, "matchExpressions": [{"key": "role", "operator": "In", "values": ["frontend"]}]}),
            l,
            "shop"
        ));
        assert!(cilium_selector_matches(&json!({}), l, "shop"));
    }
}
