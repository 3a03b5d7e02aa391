//! Container requests, limits and probes: C-0004, C-0009, C-0018, C-0050, C-0056, C-0268 to
//! C-0271.
//!
//! Quirk 1 (container coverage), compatible for every control here: like Kubescape, only
//! `containers` are inspected. Init containers run before the pod starts and get their own
//! requests/limits treatment by the scheduler, and they have no probes.

use serde_json::Value;

use super::quantity::{cpu_millis, cpu_millis_str, memory_bytes, memory_bytes_str};
use super::{MAIN, check_pod};
use crate::inputs::ControlInputs;
use crate::pod_view::ContainerView;
use crate::workload::{Container, WL7};
use crate::{Context, Control, ControlMeta, Finding, Needs, Outcome, Resource};

/// `resources.<section>.<resource>` of a container, when set (not absent, not `null`).
fn quantity_of<'a>(c: &Container<'a>, section: &str, name: &str) -> Option<&'a Value> {
    c.view.resource(section, name).filter(|v| !v.is_null())
}

/// How one resource (memory or CPU) is read and bounded.
struct Bounds {
    rule: &'static str,
    name: &'static str,
    value: fn(&Value) -> Option<f64>,
    input: fn(&str) -> Option<f64>,
    request_max: &'static str,
    request_min: &'static str,
    limit_max: &'static str,
    limit_min: &'static str,
}

static MEMORY: Bounds = Bounds {
    rule: "resources-memory-limit-and-request",
    name: "memory",
    value: memory_bytes,
    input: memory_bytes_str,
    request_max: "memory_request_max",
    request_min: "memory_request_min",
    limit_max: "memory_limit_max",
    limit_min: "memory_limit_min",
};

static CPU: Bounds = Bounds {
    rule: "resources-cpu-limit-and-request",
    name: "cpu",
    value: cpu_millis,
    input: cpu_millis_str,
    request_max: "cpu_request_max",
    request_min: "cpu_request_min",
    limit_max: "cpu_limit_max",
    limit_min: "cpu_limit_min",
};

/// The configured bounds of one resource, parsed once per evaluation. A quantity is above some
/// `max` input exactly when it is above the smallest one, and below some `min` input exactly when
/// it is below the largest one, so each list reduces to one number.
struct Limits {
    bounds: &'static Bounds,
    /// `(section, smallest max, largest min)` for `limits` then `requests`.
    sections: [(&'static str, Option<f64>, Option<f64>); 2],
}

impl Bounds {
    /// The parsed bounds of this resource. Unparsable inputs are ignored (in Rego they leave the
    /// comparison undefined).
    fn limits(&'static self, inputs: &ControlInputs) -> Limits {
        let parse = |key: &str| {
            inputs
                .get(key)
                .iter()
                .filter_map(|s| (self.input)(s.trim()))
        };
        let max = |key: &str| parse(key).reduce(f64::min);
        let min = |key: &str| parse(key).reduce(f64::max);
        Limits {
            bounds: self,
            sections: [
                ("limits", max(self.limit_max), min(self.limit_min)),
                ("requests", max(self.request_max), min(self.request_min)),
            ],
        }
    }
}

impl Limits {
    /// Per container: fix paths for a missing request or limit, review paths for one out of the
    /// configured bounds. Unparsable quantities never fail.
    fn check(&self, c: &Container<'_>, out: &mut Vec<Finding>) {
        let b = self.bounds;
        for (section, max, min) in self.sections {
            let Some(v) = quantity_of(c, section, b.name) else {
                out.push(Finding::new(b.rule).fix(
                    c.path_parts(&["resources.", section, ".", b.name]),
                    "YOUR_VALUE",
                ));
                continue;
            };
            if max.is_none() && min.is_none() {
                continue;
            }
            let out_of_bounds = (b.value)(v).is_some_and(|given| {
                max.is_some_and(|m| given > m) || min.is_some_and(|m| given < m)
            });
            if out_of_bounds {
                out.push(Finding::new(b.rule).review(c.path_parts(&[
                    "resources.",
                    section,
                    ".",
                    b.name,
                ])));
            }
        }
    }
}

/// C-0004 Resources memory limit and request: per container, fails when `resources.limits.memory`
/// or `resources.requests.memory` is missing (fix path, `YOUR_VALUE`), or when a set value is
/// above `memory_*_max` or below `memory_*_min` (review path). Quantities are compared in bytes
/// (`Ki`..`Ei`, `k`/`K`/`M`/`G`/`T`/`P`/`E`, `m`, bare numbers). Compatible with Kubescape,
/// including accepting `K` as a decimal suffix; quirk 1: only `containers`, compatible.
pub struct MemoryLimitAndRequest;

static MEMORY_LIMIT_AND_REQUEST: ControlMeta = ControlMeta {
    id: "C-0004",
    name: "Resources memory limit and request",
    description: "Containers without memory requests and limits, or with values outside the \
                  configured range, can starve the node or be killed unpredictably.",
    remediation: "Set resources.requests.memory and resources.limits.memory on every container, \
                  within the configured bounds.",
    base_score: 8.0,
    frameworks: &["YAML"],
    applies: WL7,
    rules: &["resources-memory-limit-and-request"],
    inputs: &[
        "memory_request_max",
        "memory_request_min",
        "memory_limit_max",
        "memory_limit_min",
    ],
    configuration_required: true,
    needs: Needs::Nothing,
};

impl Control for MemoryLimitAndRequest {
    fn meta(&self) -> &'static ControlMeta {
        &MEMORY_LIMIT_AND_REQUEST
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        check_pod(resource, cx, |_, pod, out| {
            let limits = MEMORY.limits(cx.inputs);
            for c in pod.containers(MAIN) {
                limits.check(&c, out);
            }
        })
    }
}

/// C-0050 Resources CPU limit and request: as C-0004 for CPU, compared in millicores (`500m`,
/// or cores × 1000). Compatible with Kubescape; quirk 1: only `containers`, compatible.
pub struct CpuLimitAndRequest;

static CPU_LIMIT_AND_REQUEST: ControlMeta = ControlMeta {
    id: "C-0050",
    name: "Resources CPU limit and request",
    description: "Containers without CPU requests and limits, or with values outside the \
                  configured range, can starve other workloads of the node.",
    remediation: "Set resources.requests.cpu and resources.limits.cpu on every container, within \
                  the configured bounds.",
    base_score: 8.0,
    frameworks: &["YAML"],
    applies: WL7,
    rules: &["resources-cpu-limit-and-request"],
    inputs: &[
        "cpu_request_max",
        "cpu_request_min",
        "cpu_limit_max",
        "cpu_limit_min",
    ],
    configuration_required: true,
    needs: Needs::Nothing,
};

impl Control for CpuLimitAndRequest {
    fn meta(&self) -> &'static ControlMeta {
        &CPU_LIMIT_AND_REQUEST
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        check_pod(resource, cx, |_, pod, out| {
            let limits = CPU.limits(cx.inputs);
            for c in pod.containers(MAIN) {
                limits.check(&c, out);
            }
        })
    }
}

/// C-0009 Resource limits: per container, fails when `resources.limits.cpu` and/or
/// `resources.limits.memory` is missing, with a fix path (`YOUR_VALUE`) for each missing one.
/// Namespace LimitRanges are not consulted, as in Kubescape; quirk 1: only `containers`,
/// compatible.
pub struct ResourceLimits;

static RESOURCE_LIMITS: ControlMeta = ControlMeta {
    id: "C-0009",
    name: "Resource limits",
    description: "Containers without CPU and memory limits can exhaust the node and hurt every \
                  other workload on it (denial of service).",
    remediation: "Set resources.limits.cpu and resources.limits.memory on every container, or \
                  use a LimitRange to default them.",
    base_score: 7.0,
    frameworks: &[],
    applies: WL7,
    rules: &["resource-policies"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for ResourceLimits {
    fn meta(&self) -> &'static ControlMeta {
        &RESOURCE_LIMITS
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        check_pod(resource, cx, |_, pod, out| {
            for c in pod.containers(MAIN) {
                let cpu = quantity_of(&c, "limits", "cpu").is_none();
                let memory = quantity_of(&c, "limits", "memory").is_none();
                if !cpu && !memory {
                    continue;
                }
                let mut f = Finding::new("resource-policies");
                if cpu {
                    f = f.fix(c.path("resources.limits.cpu"), "YOUR_VALUE");
                }
                if memory {
                    f = f.fix(c.path("resources.limits.memory"), "YOUR_VALUE");
                }
                out.push(f);
            }
        })
    }
}

/// Per container: a fix path (`YOUR_VALUE`) when `resources.<section>.<name>` is missing.
fn require_resource(
    rule: &'static str,
    section: &str,
    name: &str,
    resource: Resource<'_>,
    cx: &Context<'_>,
) -> Outcome {
    check_pod(resource, cx, |_, pod, out| {
        for c in pod.containers(MAIN) {
            if quantity_of(&c, section, name).is_none() {
                out.push(Finding::new(rule).fix(
                    c.path_parts(&["resources.", section, ".", name]),
                    "YOUR_VALUE",
                ));
            }
        }
    })
}

/// C-0268 Ensure CPU requests are set: per container, fails when `resources.requests.cpu` is
/// missing; fix path `YOUR_VALUE`. Compatible with Kubescape (quirk 1: only `containers`).
pub struct CpuRequests;

static CPU_REQUESTS: ControlMeta = ControlMeta {
    id: "C-0268",
    name: "Ensure CPU requests are set",
    description: "Without CPU requests the scheduler cannot place the pod sensibly and the \
                  container gets the lowest CPU share under contention.",
    remediation: "Set resources.requests.cpu on every container.",
    base_score: 3.0,
    frameworks: &["DevOpsBest"],
    applies: WL7,
    rules: &["resources-cpu-requests"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for CpuRequests {
    fn meta(&self) -> &'static ControlMeta {
        &CPU_REQUESTS
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        require_resource("resources-cpu-requests", "requests", "cpu", resource, cx)
    }
}

/// C-0269 Ensure memory requests are set: per container, fails when `resources.requests.memory`
/// is missing; fix path `YOUR_VALUE`. Compatible with Kubescape (quirk 1: only `containers`).
pub struct MemoryRequests;

static MEMORY_REQUESTS: ControlMeta = ControlMeta {
    id: "C-0269",
    name: "Ensure memory requests are set",
    description: "Without memory requests the scheduler can overcommit the node and the \
                  container is among the first evicted under memory pressure.",
    remediation: "Set resources.requests.memory on every container.",
    base_score: 3.0,
    frameworks: &["DevOpsBest"],
    applies: WL7,
    rules: &["resources-memory-requests"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for MemoryRequests {
    fn meta(&self) -> &'static ControlMeta {
        &MEMORY_REQUESTS
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        require_resource(
            "resources-memory-requests",
            "requests",
            "memory",
            resource,
            cx,
        )
    }
}

/// C-0270 Ensure CPU limits are set: per container, fails when `resources.limits.cpu` is
/// missing; fix path `YOUR_VALUE`. Compatible with Kubescape (quirk 1: only `containers`).
pub struct CpuLimits;

static CPU_LIMITS: ControlMeta = ControlMeta {
    id: "C-0270",
    name: "Ensure CPU limits are set",
    description: "A container without a CPU limit can use every core of the node and starve the \
                  other workloads on it.",
    remediation: "Set resources.limits.cpu on every container.",
    base_score: 8.0,
    frameworks: &["NSA", "ArmoBest", "DevOpsBest", "WorkloadScan", "security"],
    applies: WL7,
    rules: &["resources-cpu-limits"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for CpuLimits {
    fn meta(&self) -> &'static ControlMeta {
        &CPU_LIMITS
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        require_resource("resources-cpu-limits", "limits", "cpu", resource, cx)
    }
}

/// C-0271 Ensure memory limits are set: per container, fails when `resources.limits.memory` is
/// missing; fix path `YOUR_VALUE`. Compatible with Kubescape (quirk 1: only `containers`).
pub struct MemoryLimits;

static MEMORY_LIMITS: ControlMeta = ControlMeta {
    id: "C-0271",
    name: "Ensure memory limits are set",
    description: "A container without a memory limit can use all the memory of the node and get \
                  other workloads killed.",
    remediation: "Set resources.limits.memory on every container.",
    base_score: 8.0,
    frameworks: &["NSA", "ArmoBest", "DevOpsBest", "WorkloadScan", "security"],
    applies: WL7,
    rules: &["resources-memory-limits"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for MemoryLimits {
    fn meta(&self) -> &'static ControlMeta {
        &MEMORY_LIMITS
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        require_resource("resources-memory-limits", "limits", "memory", resource, cx)
    }
}

/// Per container: a fix path (`YOUR_VALUE`) when the probe `field` (read by `probe`, one of
/// the [`ContainerView`] accessors) is missing.
fn require_probe(
    rule: &'static str,
    field: &str,
    probe: for<'v> fn(&ContainerView<'v>) -> Option<&'v Value>,
    resource: Resource<'_>,
    cx: &Context<'_>,
) -> Outcome {
    check_pod(resource, cx, |_, pod, out| {
        for c in pod.containers(MAIN) {
            if probe(&c.view).is_none_or(Value::is_null) {
                out.push(Finding::new(rule).fix(c.path(field), "YOUR_VALUE"));
            }
        }
    })
}

/// C-0018 Configured readiness probe: per container, fails when `readinessProbe` is missing;
/// fix path `YOUR_VALUE`. Compatible with Kubescape (also for Jobs and CronJobs, whose pods are
/// rarely behind a Service); quirk 1: only `containers`, compatible.
pub struct ReadinessProbe;

static READINESS_PROBE: ControlMeta = ControlMeta {
    id: "C-0018",
    name: "Configured readiness probe",
    description: "Without a readiness probe, traffic is sent to containers that are not ready to \
                  serve it.",
    remediation: "Define a readinessProbe on every container.",
    base_score: 3.0,
    frameworks: &["DevOpsBest", "YAML"],
    applies: WL7,
    rules: &["configured-readiness-probe"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for ReadinessProbe {
    fn meta(&self) -> &'static ControlMeta {
        &READINESS_PROBE
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        require_probe(
            "configured-readiness-probe",
            "readinessProbe",
            |c| c.readiness_probe(),
            resource,
            cx,
        )
    }
}

/// C-0056 Configured liveness probe: per container, fails when `livenessProbe` is missing; fix
/// path `YOUR_VALUE`. Compatible with Kubescape (quirk 1: only `containers`).
pub struct LivenessProbe;

static LIVENESS_PROBE: ControlMeta = ControlMeta {
    id: "C-0056",
    name: "Configured liveness probe",
    description: "Without a liveness probe, a hung container is never restarted.",
    remediation: "Define a livenessProbe on every container.",
    base_score: 4.0,
    frameworks: &["DevOpsBest", "YAML"],
    applies: WL7,
    rules: &["configured-liveness-probe"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for LivenessProbe {
    fn meta(&self) -> &'static ControlMeta {
        &LIVENESS_PROBE
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        require_probe(
            "configured-liveness-probe",
            "livenessProbe",
            |c| c.liveness_probe(),
            resource,
            cx,
        )
    }
}
