//! Exposure of workloads through Services, Ingresses, Gateway API routes and Istio.

use crate::object::Field;
use kubevigil_crds::SubStatus;
use serde_json::Value;

use super::{
    WL7, in_namespace_of, indexed, is_exposed_type, object, pod_labels_path, service_type,
    services_selecting, services_selecting_pods,
};
use crate::object::{array, get_path, str_at};
use crate::{
    Context, Control, ControlMeta, Finding, FindingPath, K8sObject, Needs, Outcome, PathKind,
    Resource,
};

/// A path on a related object that is both reviewed and reported failed.
fn review_path(path: String) -> FindingPath {
    FindingPath::new(path, PathKind::Review { also_failed: true })
}

/// Adds `related` to the finding with review paths on it.
fn with_review_paths(mut finding: Finding, related: &K8sObject, paths: Vec<String>) -> Finding {
    let id = related.resource_id();
    for p in paths {
        finding = finding.related_path(&id, review_path(p));
    }
    finding.related(id)
}

// ---------------------------------------------------------------------------------------------
// C-0021

const SENSITIVE_RULE: &str = "exposed-sensitive-interfaces-v1";

/// C-0021 Exposed sensitive interfaces: a workload whose name contains one of
/// `sensitiveInterfaces` (Jupyter, Kubeflow, dashboards, model servers...) and that a NodePort
/// Service, or a LoadBalancer Service that got an external address, selects in its namespace.
///
/// Only workloads with a sensitive name are evaluated (Kubescape's `filter.rego`); with an empty
/// `sensitiveInterfaces` the control is skipped (configuration). One finding per exposing
/// Service, with Kubescape's review paths `spec.selector.matchLabels` and `spec.selector`.
///
/// Decisions:
/// - Kubescape fails a synthetic `{name, namespace, kind, relatedObjects}` vector built from the
///   workload; kubevigil has one result per workload, so the workload itself fails (this is what
///   a Kubescape user sees too). The conformance cases, which only count `k8sApiObjects`, list no
///   failing object for this rule.
/// - Corrected: a LoadBalancer counts as exposed when `status.loadBalancer.ingress[0]` has an
///   `ip` **or a `hostname`** (Kubescape needs an `ip`, so AWS load balancers, which only get a
///   hostname, never count).
/// - Corrected: the Service must be in the workload's namespace, and the pod-template labels
///   count as well as Kubescape's own-labels and `matchLabels` comparisons (see the module doc).
///   Entries of `sensitiveInterfaces` that are empty strings are ignored.
pub struct ExposedSensitiveInterfaces;

static EXPOSED_SENSITIVE_INTERFACES: ControlMeta = ControlMeta {
    id: "C-0021",
    name: "Exposed sensitive interfaces",
    description: "Management and ML interfaces (dashboards, notebooks, model servers) exposed \
                  outside the cluster through NodePort or LoadBalancer Services are a common \
                  initial-access path.",
    remediation: "Expose sensitive interfaces only inside the cluster (ClusterIP) or behind \
                  authentication, or narrow the Service type.",
    base_score: 6.0,
    frameworks: &["MITRE", "YAML"],
    applies: WL7,
    rules: &[SENSITIVE_RULE],
    inputs: &["sensitiveInterfaces"],
    configuration_required: true,
    needs: Needs::Nothing,
};

/// Whether a LoadBalancer Service got an external address.
fn load_balancer_has_address(svc: &K8sObject) -> bool {
    svc.get("status.loadBalancer")
        .map(|lb| array(lb, "ingress"))
        .and_then(<[Value]>::first)
        .is_some_and(|first| {
            str_at(first, "ip").is_some_and(|s| !s.is_empty())
                || str_at(first, "hostname").is_some_and(|s| !s.is_empty())
        })
}

impl Control for ExposedSensitiveInterfaces {
    fn meta(&self) -> &'static ControlMeta {
        &EXPOSED_SENSITIVE_INTERFACES
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        let Some(wl) = object(resource) else {
            return Outcome::NotApplicable;
        };
        let names = cx.inputs.get("sensitiveInterfaces");
        if names.is_empty() {
            // The engine reports the control skipped / configuration.
            return Outcome::Passed;
        }
        if !names
            .iter()
            .any(|n| !n.is_empty() && wl.name.contains(n.as_str()))
        {
            return Outcome::NotApplicable;
        }
        let findings = services_selecting(cx, wl)
            .filter(|svc| match service_type(svc) {
                "NodePort" => true,
                "LoadBalancer" => load_balancer_has_address(svc),
                _ => false,
            })
            .map(|svc| {
                Finding::new(SENSITIVE_RULE)
                    .review("spec.selector.matchLabels")
                    .review("spec.selector")
                    .related(svc.resource_id())
            })
            .collect();
        Outcome::from_findings(findings)
    }
}

// ---------------------------------------------------------------------------------------------
// C-0042

const SSH_RULE: &str = "rule-can-ssh-to-pod-v1";

/// C-0042 SSH server running inside container: a Service in the workload's namespace selects its
/// pods and has a port whose `port` or `targetPort` is 22 or 2222. Review path: the pod labels
/// (`metadata.labels`, `spec.template.metadata.labels`,
/// `spec.jobTemplate.spec.template.metadata.labels`), related object: the Service.
///
/// Decisions:
/// - As for C-0021, Kubescape fails a synthetic vector of the workload; kubevigil fails the
///   workload (the conformance cases count no failing object for this rule).
/// - Corrected: the Service selects the workload when its selector is a subset of the pod labels,
///   as Kubernetes does. Kubescape requires the selector to be **exactly equal** to the labels
///   (minus `pod-template-hash`), which misses almost every real workload, whose pods carry more
///   labels than the Service selects on.
pub struct SshExposed;

static SSH_EXPOSED: ControlMeta = ControlMeta {
    id: "C-0042",
    name: "SSH server running inside container",
    description: "A Service exposing port 22 or 2222 of a workload suggests an SSH server in the \
                  container, which attackers can brute-force or use with stolen keys.",
    remediation: "Remove SSH servers from containers; use kubectl exec or debug containers, and \
                  drop the SSH port from the Service.",
    base_score: 3.0,
    frameworks: &["MITRE", "YAML"],
    applies: WL7,
    rules: &[SSH_RULE],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

fn is_ssh_port(v: Option<&Value>) -> bool {
    matches!(v.and_then(Value::as_i64), Some(22 | 2222))
}

fn has_ssh_port(svc: &K8sObject) -> bool {
    svc.get("spec")
        .map(|spec| array(spec, "ports"))
        .unwrap_or(&[])
        .iter()
        .any(|p| is_ssh_port(p.field("port")) || is_ssh_port(p.field("targetPort")))
}

impl Control for SshExposed {
    fn meta(&self) -> &'static ControlMeta {
        &SSH_EXPOSED
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        let Some(wl) = object(resource) else {
            return Outcome::NotApplicable;
        };
        let findings: Vec<Finding> = services_selecting_pods(cx, wl)
            .filter(|svc| has_ssh_port(svc))
            .map(|svc| {
                Finding::new(SSH_RULE)
                    .review(pod_labels_path(&wl.kind))
                    .related(svc.resource_id())
            })
            .collect();
        Outcome::from_findings(findings)
    }
}

// ---------------------------------------------------------------------------------------------
// C-0256

const EXTERNAL_RULE: &str = "exposure-to-internet";

/// C-0256 External facing: the workload is reachable from outside the cluster, either
/// (a) through a NodePort or LoadBalancer Service of its namespace that selects it (related
/// Service with review path `spec.type`), or (b) through an Ingress of its namespace whose
/// `spec.rules[i].http.paths[j].backend.service.name` names a ClusterIP Service that selects it
/// (related Ingress with those review paths, and the Service). The workload itself has no path.
///
/// Decisions:
/// - Corrected (quirk 12): a CronJob is matched through its job template's pod labels; in
///   Kubescape CronJobs only match on their own labels, so an exposed CronJob is missed.
/// - Corrected: the Service must be in the workload's namespace (the current Kubescape rule does
///   not compare them for branch (a)).
/// - Compatible: one Ingress finding collects every path of the Ingress that names the Service;
///   `defaultBackend` is not considered.
pub struct ExternalFacing;

static EXTERNAL_FACING: ControlMeta = ControlMeta {
    id: "C-0256",
    name: "External facing",
    description: "Workloads reachable from outside the cluster (NodePort or LoadBalancer \
                  Services, Ingresses) are the first targets of an attacker.",
    remediation: "Expose only the workloads that must be public, and put them behind an \
                  authenticated ingress or gateway.",
    base_score: 7.0,
    frameworks: &["ClusterScan", "security"],
    applies: WL7,
    rules: &[EXTERNAL_RULE],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for ExternalFacing {
    fn meta(&self) -> &'static ControlMeta {
        &EXTERNAL_FACING
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        let Some(wl) = object(resource) else {
            return Outcome::NotApplicable;
        };
        let mut findings = Vec::new();
        let mut internal: Vec<&K8sObject> = Vec::new();
        for svc in services_selecting(cx, wl) {
            if is_exposed_type(svc) {
                let id = svc.resource_id();
                findings.push(
                    Finding::new(EXTERNAL_RULE)
                        .related_path(&id, review_path("spec.type".to_string()))
                        .related(id),
                );
            } else {
                internal.push(svc);
            }
        }
        if !internal.is_empty() {
            for ingress in in_namespace_of(cx, "Ingress", wl) {
                let Some(spec) = ingress.get("spec") else {
                    continue;
                };
                for svc in &internal {
                    let mut paths: Vec<String> = Vec::new();
                    for (i, rule) in indexed(spec, "rules") {
                        let Some(http) = rule.field("http") else {
                            continue;
                        };
                        for (j, path) in indexed(http, "paths") {
                            if get_path(path, "backend.service.name").and_then(Value::as_str)
                                == Some(svc.name.as_str())
                            {
                                paths.push(format!(
                                    "spec.rules[{i}].http.paths[{j}].backend.service.name"
                                ));
                            }
                        }
                    }
                    if !paths.is_empty() {
                        findings.push(
                            with_review_paths(Finding::new(EXTERNAL_RULE), ingress, paths)
                                .related(svc.resource_id()),
                        );
                    }
                }
            }
        }
        Outcome::from_findings(findings)
    }
}

// ---------------------------------------------------------------------------------------------
// C-0266

const GATEWAY_RULE: &str = "exposure-to-internet-via-gateway-api";
const ISTIO_RULE: &str = "exposure-to-internet-via-istio-ingress";

/// Gateway API route kinds whose `spec.rules[].backendRefs[]` point at Services.
const ROUTE_KINDS: &[&str] = &["HTTPRoute", "GRPCRoute", "TCPRoute", "TLSRoute", "UDPRoute"];

/// C-0266 Exposure to internet via Gateway API or Istio Ingress.
///
/// (a) Gateway API: a route (`HTTPRoute`, `GRPCRoute`, `TCPRoute`, `TLSRoute`, `UDPRoute`) has a
/// `spec.rules[i].backendRefs[j]` naming a ClusterIP Service of the workload's namespace that
/// selects the workload; related route (review path `spec.rules[i].backendRefs[j].name`) and
/// Service. NodePort/LoadBalancer Services are left to C-0256, as in Kubescape.
///
/// (b) Istio: a VirtualService routes (`spec.http[i].route[j].destination.host`, resolved as
/// `name`, `name.namespace` or `name.namespace.svc.cluster.local`, the VirtualService's
/// namespace by default) to a Service selecting the workload, and one of its `spec.gateways`
/// (`namespace/name` or `name` in the VirtualService's namespace) is a public Gateway: a Service
/// in `istio-system` shares a label value with the Gateway's `spec.selector` and either that
/// Service is NodePort/LoadBalancer or the Gateway's name ends in `public` (compatible with
/// Kubescape's loose match). Related: Gateway, its Service, the VirtualService (review paths)
/// and the Service.
///
/// Decisions:
/// - Corrected (quirk 9): the route must really reference the Service (Kubescape fails every
///   workload behind a ClusterIP Service as soon as any route exists in the namespace). A
///   `backendRef` without `kind` is a Service (the Gateway API default), and its `namespace`
///   (default: the route's) is honoured. GRPCRoute and TLSRoute are included.
/// - Corrected (quirk 9): Istio Gateway objects are read (Kubescape's match list says
///   `Gateways`, so a real Kubescape scan never feeds them and branch (b) never fires).
/// - Corrected: the VirtualService review path is `spec.http[i].route[j].destination.host`
///   (Kubescape writes `routes`, a field that does not exist).
/// - Corrected: CronJobs are matched through their job template's pod labels.
pub struct GatewayExposure;

static GATEWAY_EXPOSURE: ControlMeta = ControlMeta {
    id: "C-0266",
    name: "Exposure to internet via Gateway API or Istio Ingress",
    description: "Workloads routed from a Gateway API route or a public Istio gateway are \
                  reachable from outside the cluster.",
    remediation: "Route only the workloads that must be public, and protect them with \
                  authentication at the gateway.",
    base_score: 7.0,
    frameworks: &["security"],
    applies: WL7,
    rules: &[GATEWAY_RULE, ISTIO_RULE],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

/// Gateway API findings: routes whose backendRefs name one of `services`.
fn gateway_api_findings(cx: &Context<'_>, services: &[&K8sObject], out: &mut Vec<Finding>) {
    for kind in ROUTE_KINDS {
        for route in cx.inventory.of_kind(kind) {
            let Some(spec) = route.get("spec") else {
                continue;
            };
            let route_ns = route.namespace_or_default();
            for svc in services {
                let mut paths: Vec<String> = Vec::new();
                for (i, rule) in indexed(spec, "rules") {
                    for (j, backend) in indexed(rule, "backendRefs") {
                        let kind = str_at(backend, "kind").unwrap_or("Service");
                        let group = str_at(backend, "group").unwrap_or("");
                        let ns = str_at(backend, "namespace")
                            .filter(|s| !s.is_empty())
                            .unwrap_or(route_ns);
                        if kind == "Service"
                            && group.is_empty()
                            && str_at(backend, "name") == Some(svc.name.as_str())
                            && ns == svc.namespace_or_default()
                        {
                            paths.push(format!("spec.rules[{i}].backendRefs[{j}].name"));
                        }
                    }
                }
                if !paths.is_empty() {
                    out.push(
                        with_review_paths(Finding::new(GATEWAY_RULE), route, paths)
                            .related(svc.resource_id()),
                    );
                }
            }
        }
    }
}

/// A Service in `istio-system` that makes the Istio Gateway public, if any.
fn public_gateway_service<'a>(cx: &Context<'a>, gateway: &K8sObject) -> Option<&'a K8sObject> {
    let selector = gateway.get("spec.selector").and_then(Value::as_object)?;
    let name_public = gateway.name.ends_with("public");
    cx.inventory
        .of_kind_in("Service", "istio-system")
        .find(|svc| {
            let shares_value = svc.labels().is_some_and(|labels| {
                selector
                    .values()
                    .any(|sv| labels.values().any(|lv| lv == sv))
            });
            shares_value && (name_public || is_exposed_type(svc))
        })
}

/// Resolves a VirtualService destination host to (Service name, namespace).
fn resolve_host<'a>(host: &'a str, vs_ns: &'a str) -> (&'a str, &'a str) {
    let mut parts = host.split('.');
    let name = parts.next().unwrap_or(host);
    let ns = parts.next().filter(|s| !s.is_empty()).unwrap_or(vs_ns);
    (name, ns)
}

/// Istio findings: VirtualServices attached to a public Gateway that route to one of `services`.
fn istio_findings(cx: &Context<'_>, services: &[&K8sObject], out: &mut Vec<Finding>) {
    for vs in cx.inventory.of_kind("VirtualService") {
        let Some(spec) = vs.get("spec") else {
            continue;
        };
        let vs_ns = vs.namespace_or_default();
        for svc in services {
            let mut paths: Vec<String> = Vec::new();
            for (i, http) in indexed(spec, "http") {
                for (j, route) in indexed(http, "route") {
                    let Some(host) = get_path(route, "destination.host").and_then(Value::as_str)
                    else {
                        continue;
                    };
                    let (name, ns) = resolve_host(host, vs_ns);
                    if name == svc.name && ns == svc.namespace_or_default() {
                        paths.push(format!("spec.http[{i}].route[{j}].destination.host"));
                    }
                }
            }
            if paths.is_empty() {
                continue;
            }
            let public = array(spec, "gateways").iter().find_map(|g| {
                let g = g.as_str()?;
                let (gw_ns, gw_name) = g.split_once('/').unwrap_or((vs_ns, g));
                cx.inventory
                    .of_kind_in("Gateway", gw_ns)
                    .filter(|gw| gw.name == gw_name)
                    .find_map(|gw| public_gateway_service(cx, gw).map(|gsvc| (gw, gsvc)))
            });
            let Some((gateway, gateway_svc)) = public else {
                continue;
            };
            let f = Finding::new(ISTIO_RULE)
                .related(gateway.resource_id())
                .related(gateway_svc.resource_id());
            out.push(with_review_paths(f, vs, paths).related(svc.resource_id()));
        }
    }
}

impl Control for GatewayExposure {
    fn meta(&self) -> &'static ControlMeta {
        &GATEWAY_EXPOSURE
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        let Some(wl) = object(resource) else {
            return Outcome::NotApplicable;
        };
        let mut findings = Vec::new();
        let selecting: Vec<&K8sObject> = services_selecting_pods(cx, wl).collect();
        if selecting.is_empty() {
            return Outcome::Passed;
        }
        let internal: Vec<&K8sObject> = selecting
            .iter()
            .copied()
            .filter(|svc| !is_exposed_type(svc))
            .collect();
        if !internal.is_empty() {
            gateway_api_findings(cx, &internal, &mut findings);
        }
        istio_findings(cx, &selecting, &mut findings);
        Outcome::from_findings(findings)
    }
}

// ---------------------------------------------------------------------------------------------
// C-0274

const UNAUTHENTICATED_RULE: &str = "unauthenticated-service";
const SCAN_RESULT_KIND: &str = "ServiceScanResult";

/// C-0274 Verify Authenticated Service: a Service of the workload's namespace selects it, and
/// the `ServiceScanResult` of that Service (same name and namespace, produced by Kubescape's
/// in-cluster service discovery, `kubescape.io/v1`) has a port with `authenticated: false`.
/// No paths; related objects: the Service and its scan result.
///
/// Decisions:
/// - The scan results are outside data. When the inventory holds **no** `ServiceScanResult` at
///   all, the control is reported skipped / integration (Kubescape silently passes every
///   workload, which would claim services were verified when nothing was). When scan results are
///   present, the control is evaluated from them (so it is not `Needs::Integration`).
/// - Corrected (quirk 11): the Service must be in the workload's namespace; Kubescape's
///   namespace check is ineffective, so a Service in another namespace with matching labels
///   fails unrelated workloads.
pub struct UnauthenticatedService;

static UNAUTHENTICATED_SERVICE: ControlMeta = ControlMeta {
    id: "C-0274",
    name: "Verify Authenticated Service",
    description: "Services that answer without authentication let anyone in the cluster (or \
                  outside, when exposed) use the workload behind them.",
    remediation: "Require authentication on every port of the Service (mTLS, tokens, or an \
                  authenticating proxy).",
    base_score: 7.0,
    frameworks: &["security"],
    applies: WL7,
    rules: &[UNAUTHENTICATED_RULE],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for UnauthenticatedService {
    fn meta(&self) -> &'static ControlMeta {
        &UNAUTHENTICATED_SERVICE
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        let Some(wl) = object(resource) else {
            return Outcome::NotApplicable;
        };
        if cx.inventory.of_kind(SCAN_RESULT_KIND).next().is_none() {
            return Outcome::Skipped {
                sub_status: SubStatus::Integration,
                info: "Control needs ServiceScanResult objects from Kubescape's in-cluster \
                       service discovery; none were found"
                    .to_string(),
            };
        }
        let mut findings = Vec::new();
        for svc in services_selecting(cx, wl) {
            let unauthenticated = in_namespace_of(cx, SCAN_RESULT_KIND, svc).find(|r| {
                r.name == svc.name
                    && r.get("spec")
                        .map(|s| array(s, "ports"))
                        .unwrap_or(&[])
                        .iter()
                        .any(|p| p.field("authenticated").and_then(Value::as_bool) == Some(false))
            });
            if let Some(result) = unauthenticated {
                findings.push(
                    Finding::new(UNAUTHENTICATED_RULE)
                        .related(svc.resource_id())
                        .related(result.resource_id()),
                );
            }
        }
        Outcome::from_findings(findings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_service_hosts() {
        assert_eq!(resolve_host("nginx", "shop"), ("nginx", "shop"));
        assert_eq!(resolve_host("nginx.web", "shop"), ("nginx", "web"));
        assert_eq!(
            resolve_host("nginx.web.svc.cluster.local", "shop"),
            ("nginx", "web")
        );
    }
}
