//! Objects that point at workloads which do not exist: Services selecting nothing, HPAs
//! scaling a missing target.

use crate::object::Field;
use serde_json::Value;

use super::{in_namespace_of, object, service_selector, service_type};
use crate::selectors::map_subset;
use crate::workload::{WORKLOAD_KINDS_RC, pod_labels};
use crate::{Applies, Context, Control, ControlMeta, Finding, Needs, Outcome, Resource};

// ---------------------------------------------------------------------------------------------
// C-0293

const SERVICE_RULE: &str = "service-with-no-workload";

/// C-0293 Service with no workload: a Service (not `ExternalName`, with a non-empty
/// `spec.selector`) fails when no Pod, Deployment, ReplicaSet, DaemonSet, StatefulSet, Job,
/// CronJob or ReplicationController of its namespace has pod labels containing every selector
/// entry. Failed path `spec.selector`. The workloads are context only. Compatible with Kubescape.
pub struct ServiceWithNoWorkload;

static SERVICE_WITH_NO_WORKLOAD: ControlMeta = ControlMeta {
    id: "C-0293",
    name: "Service with no workload",
    description: "A Service whose selector matches no workload has no endpoints: traffic to it \
                  fails, usually because labels drifted.",
    remediation: "Fix the Service selector to match the intended pods' labels, or delete the \
                  Service.",
    base_score: 3.0,
    frameworks: &["DevOpsBest"],
    applies: &[Applies::Kind("Service")],
    rules: &[SERVICE_RULE],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for ServiceWithNoWorkload {
    fn meta(&self) -> &'static ControlMeta {
        &SERVICE_WITH_NO_WORKLOAD
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        let Some(svc) = object(resource) else {
            return Outcome::NotApplicable;
        };
        if service_type(svc) == "ExternalName" {
            return Outcome::Passed;
        }
        let Some(selector) = service_selector(svc) else {
            return Outcome::Passed;
        };
        let matched = WORKLOAD_KINDS_RC.iter().any(|kind| {
            in_namespace_of(cx, kind, svc)
                .any(|wl| pod_labels(wl).is_some_and(|l| map_subset(Some(selector), Some(l))))
        });
        if matched {
            Outcome::Passed
        } else {
            Outcome::Failed(vec![Finding::new(SERVICE_RULE).failed("spec.selector")])
        }
    }
}

// ---------------------------------------------------------------------------------------------
// C-0300

const HPA_RULE: &str = "hpa-has-target";

/// Built-in scalable kinds whose existence can be checked; other kinds (custom resources with a
/// scale subresource) are not judged.
const SCALABLE_KINDS: &[&str] = &[
    "Deployment",
    "StatefulSet",
    "ReplicaSet",
    "ReplicationController",
];

/// C-0300 Dangling HPA target: a HorizontalPodAutoscaler whose `spec.scaleTargetRef.kind` is
/// Deployment, StatefulSet, ReplicaSet or ReplicationController fails when no object of that kind
/// and `spec.scaleTargetRef.name` exists in its namespace. Failed path
/// `spec.scaleTargetRef.name`. Other target kinds pass. Compatible with Kubescape.
pub struct DanglingHpaTarget;

static DANGLING_HPA_TARGET: ControlMeta = ControlMeta {
    id: "C-0300",
    name: "Dangling HPA target",
    description: "A HorizontalPodAutoscaler whose target does not exist scales nothing; the \
                  workload it was meant for runs without autoscaling.",
    remediation: "Point scaleTargetRef at the existing workload, or delete the \
                  HorizontalPodAutoscaler.",
    base_score: 4.0,
    frameworks: &["DevOpsBest"],
    applies: &[Applies::Kind("HorizontalPodAutoscaler")],
    rules: &[HPA_RULE],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for DanglingHpaTarget {
    fn meta(&self) -> &'static ControlMeta {
        &DANGLING_HPA_TARGET
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        let Some(hpa) = object(resource) else {
            return Outcome::NotApplicable;
        };
        let target = hpa.get("spec.scaleTargetRef");
        let field = |key: &str| {
            target
                .and_then(|t| t.field(key))
                .and_then(Value::as_str)
                .unwrap_or("")
        };
        let kind = field("kind");
        if !SCALABLE_KINDS.contains(&kind) {
            return Outcome::Passed;
        }
        let name = field("name");
        if in_namespace_of(cx, kind, hpa).any(|o| o.name == name) {
            Outcome::Passed
        } else {
            Outcome::Failed(vec![
                Finding::new(HPA_RULE).failed("spec.scaleTargetRef.name"),
            ])
        }
    }
}
