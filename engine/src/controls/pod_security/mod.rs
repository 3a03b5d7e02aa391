//! Pod and container security settings: privileges, host namespaces, capabilities, resources,
//! probes, seccomp.
//!
//! Submodules: `host` (host namespaces, host ports, host paths), `context` (container and pod
//! `securityContext`, including C-0211), `resources` (requests, limits, probes) and `quantity`
//! (Kubernetes quantity parsing). Rules shared by several controls (C-0211 reuses those of
//! C-0013, C-0016, C-0017 and C-0057) are private functions called by each control.

mod context;
mod host;
mod quantity;
mod resources;

use crate::pod_view::SecurityContext;
use crate::workload::PodSpec;
use crate::{Context, Control, Finding, K8sObject, Outcome, Resource};

pub use context::{
    AllowPrivilegeEscalation, ImmutableFilesystem, InsecureCapabilities, LinuxHardening,
    NonRootContainers, PrivilegedContainer, SeccompRuntimeDefault, SecurityContextApplied,
};
pub use host::{
    ContainerHostPort, ContainerRuntimeSocket, HostIpc, HostNetwork, HostPathMount, HostPid,
    HostPidIpc, MountServicePrincipal, WritableHostPath,
};
pub use resources::{
    CpuLimitAndRequest, CpuLimits, CpuRequests, LivenessProbe, MemoryLimitAndRequest, MemoryLimits,
    MemoryRequests, ReadinessProbe, ResourceLimits,
};

/// The controls of this group.
pub fn controls() -> Vec<&'static dyn Control> {
    vec![
        &MemoryLimitAndRequest,
        &ResourceLimits,
        &NonRootContainers,
        &AllowPrivilegeEscalation,
        &ImmutableFilesystem,
        &ReadinessProbe,
        &MountServicePrincipal,
        &HostPidIpc,
        &HostNetwork,
        &ContainerHostPort,
        &WritableHostPath,
        &InsecureCapabilities,
        &HostPathMount,
        &CpuLimitAndRequest,
        &LinuxHardening,
        &LivenessProbe,
        &PrivilegedContainer,
        &ContainerRuntimeSocket,
        &SeccompRuntimeDefault,
        &SecurityContextApplied,
        &CpuRequests,
        &MemoryRequests,
        &CpuLimits,
        &MemoryLimits,
        &HostPid,
        &HostIpc,
    ]
}

/// `containers` only (most Kubescape rules).
const MAIN: &[&str] = &["containers"];
/// `containers` and `initContainers`.
const WITH_INIT: &[&str] = &["containers", "initContainers"];
/// All three container lists.
const ALL: &[&str] = &["containers", "initContainers", "ephemeralContainers"];

/// The lists of rules that cover `containers` and `initContainers` everywhere, and
/// `ephemeralContainers` on Pods only (C-0013, C-0017, C-0046).
fn with_init_and_pod_ephemeral(obj: &K8sObject) -> &'static [&'static str] {
    if obj.kind == "Pod" { ALL } else { WITH_INIT }
}

/// The pod spec's `securityContext`, or `Null`.
fn pod_sc(pod: PodSpec<'_>) -> SecurityContext<'_> {
    pod.security_context()
}

/// `<podspec>.<suffix>`.
fn pod_path(pod: PodSpec<'_>, suffix: &str) -> String {
    pod_path_parts(pod, &[suffix])
}

/// `<podspec>.<suffix>`, the suffix given in parts (no temporary string for it).
fn pod_path_parts(pod: PodSpec<'_>, suffix: &[&str]) -> String {
    let suffix_len: usize = suffix.iter().map(|p| p.len()).sum();
    let mut path = String::with_capacity(pod.path.len() + 1 + suffix_len);
    path.push_str(pod.path);
    path.push('.');
    for part in suffix {
        path.push_str(part);
    }
    path
}

/// Runs a check on a workload's pod spec. Workloads without a pod spec pass; triplets are not
/// for these controls.
fn check_pod(
    resource: Resource<'_>,
    cx: &Context<'_>,
    check: impl FnOnce(&K8sObject, PodSpec<'_>, &mut Vec<Finding>),
) -> Outcome {
    let Resource::Object(obj) = resource else {
        return Outcome::NotApplicable;
    };
    let Some(pod) = cx.pod_spec(obj) else {
        return Outcome::Passed;
    };
    let mut findings = Vec::new();
    check(obj, pod, &mut findings);
    Outcome::from_findings(findings)
}

#[cfg(test)]
mod test_support {
    //! Evaluating one control on manifests, for the unit tests of the submodules.

    use serde_json::Value;

    use crate::{
        Context, Control, ControlInputs, Finding, Inventory, K8sObject, Outcome, Resource,
    };

    /// The findings of `control` on the first of `objects` (the others are context).
    pub fn findings(control: &dyn Control, objects: Vec<Value>) -> Vec<Finding> {
        let objects: Vec<K8sObject> = objects
            .into_iter()
            .filter_map(|v| K8sObject::from_value(v).ok())
            .collect();
        let inventory = Inventory::new(objects);
        let inputs = ControlInputs::default();
        let cx = Context::new(&inventory, &inputs);
        let Some(first) = inventory.objects().first() else {
            return Vec::new();
        };
        match control.evaluate(Resource::Object(first), &cx) {
            Outcome::Failed(f) => f,
            _ => Vec::new(),
        }
    }

    /// `(rule, fix path, fix value)` of every fix path.
    pub fn fixes(findings: &[Finding]) -> Vec<(&'static str, String, String)> {
        findings
            .iter()
            .flat_map(|f| {
                f.paths.iter().filter_map(move |p| {
                    let p = p.to_rule_path();
                    Some((f.rule, p.fix_path?, p.fix_path_value?))
                })
            })
            .collect()
    }
}
