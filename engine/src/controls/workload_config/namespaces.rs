//! Objects in the `default` namespace.

use crate::object::Field;
use serde_json::Value;

use super::{WL7, object_control};
use crate::workload::applies;
use crate::{Context, ControlMeta, Finding, K8sObject, Needs, Outcome};

/// Kubescape's `<kind>-in-default-namespace` rules: an object whose `metadata.namespace` is
/// `default` fails with review path `metadata.namespace`; one without a namespace fails with fix
/// path `metadata.namespace` = `YOUR_NAMESPACE`. (An empty namespace string is neither.)
fn in_default_namespace(obj: &K8sObject, rule: &'static str) -> Option<Finding> {
    match obj.metadata().field("namespace") {
        None | Some(Value::Null) => {
            Some(Finding::new(rule).fix("metadata.namespace", "YOUR_NAMESPACE"))
        }
        Some(Value::String(ns)) if ns == "default" => {
            Some(Finding::new(rule).review("metadata.namespace"))
        }
        Some(_) => None,
    }
}

/// C-0061 Pods in default namespace.
///
/// A workload in namespace `default` fails (review path `metadata.namespace`); one without a
/// namespace fails with fix path `metadata.namespace` = `YOUR_NAMESPACE`.
pub struct PodsInDefaultNamespace;

static PODS_IN_DEFAULT: ControlMeta = ControlMeta {
    id: "C-0061",
    name: "Pods in default namespace",
    description: "Workloads in the default namespace are hard to isolate with policies and RBAC.",
    remediation: "Create a dedicated namespace for the workload and deploy it there.",
    base_score: 3.0,
    frameworks: &["ArmoBest", "DevOpsBest"],
    applies: WL7,
    rules: &["pods-in-default-namespace"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

object_control!(PodsInDefaultNamespace, PODS_IN_DEFAULT, pods_in_default);

fn pods_in_default(obj: &K8sObject, _cx: &Context<'_>) -> Outcome {
    Outcome::from_findings(
        in_default_namespace(obj, "pods-in-default-namespace")
            .into_iter()
            .collect(),
    )
}

/// The kinds C-0212 inspects, with the rule that covers each.
const DEFAULT_NAMESPACE_RULES: &[(&str, &str)] = &[
    ("Pod", "pods-in-default-namespace"),
    ("Deployment", "pods-in-default-namespace"),
    ("ReplicaSet", "pods-in-default-namespace"),
    ("DaemonSet", "pods-in-default-namespace"),
    ("StatefulSet", "pods-in-default-namespace"),
    ("Job", "pods-in-default-namespace"),
    ("CronJob", "pods-in-default-namespace"),
    ("RoleBinding", "rolebinding-in-default-namespace"),
    ("Role", "role-in-default-namespace"),
    ("ConfigMap", "configmap-in-default-namespace"),
    ("Endpoints", "endpoints-in-default-namespace"),
    (
        "PersistentVolumeClaim",
        "persistentvolumeclaim-in-default-namespace",
    ),
    ("PodTemplate", "podtemplate-in-default-namespace"),
    (
        "ReplicationController",
        "replicationcontroller-in-default-namespace",
    ),
    ("Service", "service-in-default-namespace"),
    ("ServiceAccount", "serviceaccount-in-default-namespace"),
    ("EndpointSlice", "endpointslice-in-default-namespace"),
    (
        "HorizontalPodAutoscaler",
        "horizontalpodautoscaler-in-default-namespace",
    ),
    ("Lease", "lease-in-default-namespace"),
    (
        "CSIStorageCapacity",
        "csistoragecapacity-in-default-namespace",
    ),
    ("Ingress", "ingress-in-default-namespace"),
    (
        "PodDisruptionBudget",
        "poddisruptionbudget-in-default-namespace",
    ),
    ("Secret", "resources-secret-in-default-namespace"),
];

/// C-0212 The default namespace should not be used.
///
/// Seventeen rules, one per kind (the seven workload kinds share `pods-in-default-namespace`):
/// a Pod, Deployment, ReplicaSet, DaemonSet, StatefulSet, Job, CronJob, RoleBinding, Role,
/// ConfigMap, Endpoints, PersistentVolumeClaim, PodTemplate, ReplicationController, Service,
/// ServiceAccount, EndpointSlice, HorizontalPodAutoscaler, Lease, CSIStorageCapacity, Ingress,
/// PodDisruptionBudget or Secret fails as in C-0061. The Service and the Endpoints named
/// `kubernetes` in `default` (created by the API server) are exempt, as in Kubescape; nothing
/// else is (an EndpointSlice claiming to belong to the `kubernetes` Service still fails).
pub struct DefaultNamespaceUsed;

static DEFAULT_NAMESPACE: ControlMeta = ControlMeta {
    id: "C-0212",
    name: "The default namespace should not be used",
    description: "Resources in the default namespace are hard to isolate and are easy to expose by mistake.",
    remediation: "Create namespaces for your resources and keep the default namespace empty.",
    base_score: 4.0,
    frameworks: &[
        "cis-aks-t1.2.0",
        "cis-aks-t1.8.0",
        "cis-eks-t1.7.0",
        "cis-eks-t1.8.0",
        "cis-gke-v1.9.0",
        "cis-v1.10.0",
        "cis-v1.12.0",
    ],
    applies: &applies::<23>(
        WL7,
        &[
            "RoleBinding",
            "Role",
            "ConfigMap",
            "Endpoints",
            "PersistentVolumeClaim",
            "PodTemplate",
            "ReplicationController",
            "Service",
            "ServiceAccount",
            "EndpointSlice",
            "HorizontalPodAutoscaler",
            "Lease",
            "CSIStorageCapacity",
            "Ingress",
            "PodDisruptionBudget",
            "Secret",
        ],
    ),
    rules: &[
        "pods-in-default-namespace",
        "rolebinding-in-default-namespace",
        "role-in-default-namespace",
        "configmap-in-default-namespace",
        "endpoints-in-default-namespace",
        "persistentvolumeclaim-in-default-namespace",
        "podtemplate-in-default-namespace",
        "replicationcontroller-in-default-namespace",
        "service-in-default-namespace",
        "serviceaccount-in-default-namespace",
        "endpointslice-in-default-namespace",
        "horizontalpodautoscaler-in-default-namespace",
        "lease-in-default-namespace",
        "csistoragecapacity-in-default-namespace",
        "ingress-in-default-namespace",
        "poddisruptionbudget-in-default-namespace",
        "resources-secret-in-default-namespace",
    ],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

object_control!(DefaultNamespaceUsed, DEFAULT_NAMESPACE, default_namespace);

fn default_namespace(obj: &K8sObject, _cx: &Context<'_>) -> Outcome {
    let Some(&(_, rule)) = DEFAULT_NAMESPACE_RULES
        .iter()
        .find(|(kind, _)| *kind == obj.kind)
    else {
        return Outcome::NotApplicable;
    };
    let api_server_object = matches!(obj.kind.as_str(), "Service" | "Endpoints")
        && obj.name == "kubernetes"
        && obj.metadata().field("namespace").and_then(Value::as_str) == Some("default");
    if api_server_object {
        return Outcome::Passed;
    }
    Outcome::from_findings(in_default_namespace(obj, rule).into_iter().collect())
}
