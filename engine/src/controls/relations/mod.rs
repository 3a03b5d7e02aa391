//! Controls that relate a workload to other objects: Services, Ingresses, routes, NetworkPolicies,
//! ServiceAccounts, bindings, the sources of its volumes.
//!
//! Most of them report on the workload; C-0293 reports on the Service, C-0299 on the
//! NetworkPolicy and C-0300 on the HorizontalPodAutoscaler. The related objects come from
//! `cx.inventory`: in a cluster the scan Job reads them itself, offline they come from the same
//! manifest set.
//!
//! # Related kinds each control needs
//!
//! What the in-cluster reader must list besides the evaluated objects ([`RELATED_KINDS`] holds
//! the same table for code):
//!
//! | Control | Evaluates | Reads |
//! |---|---|---|
//! | C-0021 | WL7 | Service (same namespace) |
//! | C-0030 | WL7 | NetworkPolicy, CiliumNetworkPolicy (same namespace), CiliumClusterwideNetworkPolicy |
//! | C-0034, C-0190 | WL7 | ServiceAccount (same namespace) |
//! | C-0042 | WL7 | Service (same namespace) |
//! | C-0255 | WL7 | Secret (same namespace) |
//! | C-0256 | WL7 | Service, Ingress (same namespace) |
//! | C-0257 | WL7 | PersistentVolumeClaim (same namespace) |
//! | C-0258 | WL7 | ConfigMap (same namespace) |
//! | C-0260 | WL7 | NetworkPolicy, CiliumNetworkPolicy (same namespace), CiliumClusterwideNetworkPolicy |
//! | C-0261 | WL7 | ServiceAccount (same namespace), RoleBinding, ClusterRoleBinding |
//! | C-0266 | WL7 | Service (same namespace and `istio-system`), HTTPRoute, GRPCRoute, TCPRoute, TLSRoute, UDPRoute, VirtualService, Gateway (Istio) |
//! | C-0267, C-0272 | WL7 | ServiceAccount, RoleBinding, ClusterRoleBinding, Role, ClusterRole |
//! | C-0274 | WL7 | Service (same namespace), ServiceScanResult (`kubescape.io/v1`, same namespace) |
//! | C-0293 | Service | Pod, Deployment, ReplicaSet, DaemonSet, StatefulSet, Job, CronJob, ReplicationController (same namespace) |
//! | C-0299 | NetworkPolicy | Pod, Deployment, ReplicaSet, DaemonSet, StatefulSet, Job, CronJob, ReplicationController (same namespace) |
//! | C-0300 | HorizontalPodAutoscaler | Deployment, StatefulSet, ReplicaSet, ReplicationController (same namespace) |
//! | C-0307 | WL7, ReplicationController | ServiceAccount (same namespace) |
//!
//! WL7 = Pod, Deployment, ReplicaSet, DaemonSet, StatefulSet, Job, CronJob. Kinds a cluster does
//! not serve (Cilium, Gateway API, Istio, ServiceScanResult CRDs) are simply absent.
//!
//! # Selection conventions shared by the group
//!
//! - A missing `metadata.namespace` counts as `default` (Kubescape's `is_same_namespace`).
//! - A Service selects a workload when its `spec.selector` is non-empty and every entry is in the
//!   pod labels (a Pod's labels, a controller's pod-template labels, a CronJob's job-template pod
//!   labels). The exposure controls C-0021, C-0256 and C-0274 also accept Kubescape's two
//!   shortcuts: the selector is in the workload's own `metadata.labels`, or equals its
//!   `spec.selector.matchLabels`.

use crate::object::Field;
use serde_json::{Map, Value};

use crate::object::{array, str_at};
use crate::selectors::map_subset;
use crate::workload::{WL7, WL7_RC, WORKLOAD_KINDS_RC};
use crate::{Context, Control, K8sObject, Resource};

mod exposure;
mod network;
mod service_accounts;
mod targets;
mod volumes;

/// The controls of this group.
pub fn controls() -> Vec<&'static dyn Control> {
    vec![
        &exposure::ExposedSensitiveInterfaces,
        &network::IngressEgressBlocked,
        &service_accounts::AutomountServiceAccount,
        &exposure::SshExposed,
        &service_accounts::ServiceAccountTokensMountedWhereNecessary,
        &volumes::SecretAccess,
        &exposure::ExternalFacing,
        &volumes::PvcAccess,
        &volumes::ConfigMapAccess,
        &network::MissingNetworkPolicy,
        &service_accounts::ServiceAccountTokenMounted,
        &exposure::GatewayExposure,
        &service_accounts::ClusterTakeoverRoles,
        &service_accounts::AdministrativeRoles,
        &exposure::UnauthenticatedService,
        &targets::ServiceWithNoWorkload,
        &network::DanglingNetworkPolicy,
        &targets::DanglingHpaTarget,
        &service_accounts::NonExistentServiceAccount,
    ]
}

/// For each control of the group: the kinds it reads besides the object it evaluates (see the
/// module documentation). The in-cluster reader lists these kinds.
pub const RELATED_KINDS: &[(&str, &[&str])] = &[
    ("C-0021", &["Service"]),
    (
        "C-0030",
        &[
            "NetworkPolicy",
            "CiliumNetworkPolicy",
            "CiliumClusterwideNetworkPolicy",
        ],
    ),
    ("C-0034", &["ServiceAccount"]),
    ("C-0042", &["Service"]),
    ("C-0190", &["ServiceAccount"]),
    ("C-0255", &["Secret"]),
    ("C-0256", &["Service", "Ingress"]),
    ("C-0257", &["PersistentVolumeClaim"]),
    ("C-0258", &["ConfigMap"]),
    (
        "C-0260",
        &[
            "NetworkPolicy",
            "CiliumNetworkPolicy",
            "CiliumClusterwideNetworkPolicy",
        ],
    ),
    (
        "C-0261",
        &["ServiceAccount", "RoleBinding", "ClusterRoleBinding"],
    ),
    (
        "C-0266",
        &[
            "Service",
            "HTTPRoute",
            "GRPCRoute",
            "TCPRoute",
            "TLSRoute",
            "UDPRoute",
            "VirtualService",
            "Gateway",
        ],
    ),
    (
        "C-0267",
        &[
            "ServiceAccount",
            "RoleBinding",
            "ClusterRoleBinding",
            "Role",
            "ClusterRole",
        ],
    ),
    (
        "C-0272",
        &[
            "ServiceAccount",
            "RoleBinding",
            "ClusterRoleBinding",
            "Role",
            "ClusterRole",
        ],
    ),
    ("C-0274", &["Service", "ServiceScanResult"]),
    ("C-0293", WORKLOAD_KINDS_RC),
    ("C-0299", WORKLOAD_KINDS_RC),
    (
        "C-0300",
        &[
            "Deployment",
            "StatefulSet",
            "ReplicaSet",
            "ReplicationController",
        ],
    ),
    ("C-0307", &["ServiceAccount"]),
];

/// The object being evaluated, if the resource is one.
fn object<'a>(resource: Resource<'a>) -> Option<&'a K8sObject> {
    match resource {
        Resource::Object(o) => Some(o),
        Resource::Triplet(_) => None,
    }
}

/// Objects of `kind` in the namespace of `obj` (missing namespace = `default`).
fn in_namespace_of<'a>(
    cx: &Context<'a>,
    kind: &str,
    obj: &'a K8sObject,
) -> impl Iterator<Item = &'a K8sObject> + 'a {
    cx.inventory.of_kind_in(kind, obj.namespace_or_default())
}

/// A Service's `spec.selector` when it is a non-empty map (an empty or missing selector selects
/// no pods: the endpoints are managed by hand).
fn service_selector(svc: &K8sObject) -> Option<&Map<String, Value>> {
    svc.get("spec.selector")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
}

/// `spec.type` of a Service (`ClusterIP` when unset).
fn service_type(svc: &K8sObject) -> &str {
    svc.get("spec.type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
}

/// Whether a Service is reachable from outside the cluster by its type (NodePort, LoadBalancer).
fn is_exposed_type(svc: &K8sObject) -> bool {
    matches!(service_type(svc), "NodePort" | "LoadBalancer")
}

/// The label sets a Service selector is compared with: the pod labels first, then the shortcuts.
#[derive(Clone, Copy)]
struct WorkloadLabels<'a> {
    /// The pods' labels (a Pod's own, a controller's template labels).
    pod: Option<&'a Map<String, Value>>,
    /// The workload, whose own labels and `spec.selector.matchLabels` are only looked up when
    /// the pod labels do not match (Kubescape's shortcuts, rarely needed).
    wl: &'a K8sObject,
}

impl<'a> WorkloadLabels<'a> {
    fn of(cx: &Context<'a>, wl: &'a K8sObject) -> Self {
        WorkloadLabels {
            pod: cx.pod_labels(wl),
            wl,
        }
    }

    /// Whether a (non-empty) Service selector picks the pods: selector ⊆ pod labels.
    fn pods_selected_by(&self, selector: &Map<String, Value>) -> bool {
        self.pod
            .is_some_and(|labels| map_subset(Some(selector), Some(labels)))
    }

    /// [`Self::pods_selected_by`], or one of Kubescape's shortcuts: the selector is in the
    /// workload's own labels, or equals its `spec.selector.matchLabels`.
    fn selected_by(&self, selector: &Map<String, Value>) -> bool {
        self.pods_selected_by(selector)
            || self
                .wl
                .labels()
                .is_some_and(|labels| map_subset(Some(selector), Some(labels)))
            || self
                .wl
                .get("spec.selector.matchLabels")
                .and_then(Value::as_object)
                .is_some_and(|m| m == selector)
    }
}

/// The Services of the workload's namespace whose selector picks its pods.
fn services_selecting_pods<'a>(
    cx: &Context<'a>,
    wl: &'a K8sObject,
) -> impl Iterator<Item = &'a K8sObject> + 'a {
    let labels = WorkloadLabels::of(cx, wl);
    in_namespace_of(cx, "Service", wl)
        .filter(move |svc| service_selector(svc).is_some_and(|sel| labels.pods_selected_by(sel)))
}

/// The Services of the workload's namespace that select it, counting Kubescape's shortcuts
/// (see [`WorkloadLabels::selected_by`]).
fn services_selecting<'a>(
    cx: &Context<'a>,
    wl: &'a K8sObject,
) -> impl Iterator<Item = &'a K8sObject> + 'a {
    let labels = WorkloadLabels::of(cx, wl);
    in_namespace_of(cx, "Service", wl)
        .filter(move |svc| service_selector(svc).is_some_and(|sel| labels.selected_by(sel)))
}

/// The name a pod spec's ServiceAccount has: `serviceAccountName`, `default` when unset or empty.
fn service_account_name<'a>(pod_spec: impl Field<'a>) -> &'a str {
    str_at(pod_spec, "serviceAccountName")
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
}

/// The ServiceAccount object a workload runs as, if it is in the inventory.
fn service_account_of<'a, 'p>(
    cx: &Context<'a>,
    wl: &'a K8sObject,
    pod_spec: impl Field<'p>,
) -> Option<&'a K8sObject> {
    let name = service_account_name(pod_spec);
    in_namespace_of(cx, "ServiceAccount", wl).find(|sa| sa.name == name)
}

/// Whether the pod gets a token: the pod's `automountServiceAccountToken` wins; when unset, the
/// ServiceAccount's setting applies (mounted unless it says `false`).
fn token_mounted<'a>(pod_spec: impl Field<'a>, sa: &K8sObject) -> bool {
    match pod_spec
        .field("automountServiceAccountToken")
        .and_then(Value::as_bool)
    {
        Some(pod) => pod,
        None => {
            sa.value
                .field("automountServiceAccountToken")
                .and_then(Value::as_bool)
                != Some(false)
        }
    }
}

/// The labels path of a workload's pods, for findings (`spec.template.metadata.labels`).
fn pod_labels_path(kind: &str) -> String {
    match crate::workload::template_path(kind) {
        Some("") | None => "metadata.labels".to_string(),
        Some(base) => format!("{base}.metadata.labels"),
    }
}

/// The elements of `value[key]` with their indexes.
fn indexed<'a>(value: &'a Value, key: &str) -> impl Iterator<Item = (usize, &'a Value)> + 'a {
    array(value, key).iter().enumerate()
}
