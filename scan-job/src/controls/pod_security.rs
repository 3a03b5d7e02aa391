//! Pod and container security settings: privileges, host namespaces, capabilities, resources,
//! probes, seccomp.

use crate::engine::workload::{WORKLOAD_KINDS, pod_spec};
use crate::engine::{Applies, Context, Control, ControlMeta, Finding, Needs, Outcome, Resource};

/// The controls of this group.
pub fn controls() -> Vec<&'static dyn Control> {
    vec![&HostNetwork]
}

const WL7: &[Applies] = &[
    Applies::Kind(WORKLOAD_KINDS[0]),
    Applies::Kind(WORKLOAD_KINDS[1]),
    Applies::Kind(WORKLOAD_KINDS[2]),
    Applies::Kind(WORKLOAD_KINDS[3]),
    Applies::Kind(WORKLOAD_KINDS[4]),
    Applies::Kind(WORKLOAD_KINDS[5]),
    Applies::Kind(WORKLOAD_KINDS[6]),
];

/// C-0041 HostNetwork access: a pod on the host network sees every interface of the node.
/// Compatible with Kubescape: fails when `hostNetwork` is `true`, delete path on it.
pub struct HostNetwork;

static HOST_NETWORK: ControlMeta = ControlMeta {
    id: "C-0041",
    name: "HostNetwork access",
    description: "Pods on the host network can reach every node interface and bypass network policies.",
    remediation: "Remove hostNetwork: true unless the workload really needs the node's network.",
    base_score: 7.0,
    frameworks: &[
        "NSA",
        "ArmoBest",
        "ClusterScan",
        "WorkloadScan",
        "security",
        "YAML",
        "cis-v1.10.0",
        "cis-v1.12.0",
    ],
    applies: WL7,
    rules: &["host-network-access"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for HostNetwork {
    fn meta(&self) -> &'static ControlMeta {
        &HOST_NETWORK
    }

    fn evaluate(&self, resource: Resource<'_>, _cx: &Context<'_>) -> Outcome {
        let Resource::Object(obj) = resource else {
            return Outcome::NotApplicable;
        };
        let Some(pod) = pod_spec(obj) else {
            return Outcome::Passed;
        };
        if pod
            .spec
            .get("hostNetwork")
            .and_then(serde_json::Value::as_bool)
            == Some(true)
        {
            Outcome::Failed(vec![
                Finding::new("host-network-access").delete(format!("{}.hostNetwork", pod.path)),
            ])
        } else {
            Outcome::Passed
        }
    }
}
