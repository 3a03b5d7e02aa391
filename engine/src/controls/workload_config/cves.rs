//! Known-vulnerable versions (CVE controls) and the vulnerability-scan controls.

use crate::object::Field;
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;
use regex::Regex;
use serde_json::Value;

use super::{DEPLOYMENT, POD, WL7, integration_control, object_control};
use crate::object::{get_path, str_at};
use crate::pod_view::ContainerView;
use crate::workload::Containers;
use crate::{Context, ControlMeta, Finding, K8sObject, Needs, Outcome};

/// Reports `<c>.image` (review + failed) for every container of a Deployment whose image
/// satisfies `vulnerable` (the CVE rules inspect `containers` only).
fn vulnerable_images(
    obj: &K8sObject,
    cx: &Context<'_>,
    rule: &'static str,
    mut vulnerable: impl FnMut(&str) -> bool,
) -> Outcome {
    let Some(pod) = cx.pod_spec(obj) else {
        return Outcome::Passed;
    };
    let mut findings = Vec::new();
    for c in pod.containers(Containers::Main.lists()) {
        if c.image_str().is_some_and(&mut vulnerable) {
            findings.push(Finding::new(rule).review(c.path("image")));
        }
    }
    Outcome::from_findings(findings)
}

/// A dotted version of exactly three numeric parts (Rego `split` + `to_number`).
fn triplet(version: &str) -> Option<(i64, i64, i64)> {
    let mut parts = version.split('.');
    let a = parts.next()?.parse().ok()?;
    let b = parts.next()?.parse().ok()?;
    let c = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((a, b, c))
}

/// C-0058 CVE-2021-25741 - Using symlink for arbitrary host file system access.
///
/// When the scan contains a Node whose `status.nodeInfo.kubeletVersion` is vulnerable (before
/// 1.19.15, 1.20.0–1.20.10, 1.21.0–1.21.4, 1.22.0–1.22.1), every container (`containers`
/// only, quirk 1: compatible) mounting a volume with a non-empty `subPath` fails; delete paths
/// `<c>.volumeMounts[j].subPath`.
///
/// Quirk 5: **corrected**. Kubescape compares kubelet versions as strings, which misses
/// vulnerable v1.19.2–v1.19.9 and vendor builds such as `v1.21.2-eks-…`, and flags fixed
/// v1.21.10+. kubevigil compares the numeric major.minor.patch (ignoring a leading `v` and any
/// `-`/`+` suffix); a version it cannot parse is not considered vulnerable.
pub struct SubPathSymlink;

static SUBPATH_SYMLINK: ControlMeta = ControlMeta {
    id: "C-0058",
    name: "CVE-2021-25741 - Using symlink for arbitrary host file system access.",
    description: "On vulnerable kubelets a container using subPath mounts can reach any file on the node through a symlink.",
    remediation: "Upgrade kubelets to 1.19.15, 1.20.11, 1.21.5, 1.22.2 or later, or stop using subPath mounts.",
    base_score: 6.0,
    frameworks: &["NSA", "MITRE", "ArmoBest", "YAML"],
    applies: WL7,
    rules: &["Symlink-Exchange-Can-Allow-Host-Filesystem-Access"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

object_control!(SubPathSymlink, SUBPATH_SYMLINK, subpath_symlink);

/// `(major, minor, patch)` of a kubelet version such as `v1.21.2-eks-0389ca3`.
fn kubelet_version(version: &str) -> Option<(u64, u64, u64)> {
    let v = version.strip_prefix('v').unwrap_or(version);
    let core = v.split(['-', '+']).next().unwrap_or(v);
    let mut parts = core.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    Some((major, minor, patch))
}

/// Whether a kubelet version is affected by CVE-2021-25741.
fn kubelet_vulnerable(version: &str) -> bool {
    kubelet_version(version).is_some_and(|v| {
        v <= (1, 19, 14)
            || ((1, 20, 0)..=(1, 20, 10)).contains(&v)
            || ((1, 21, 0)..=(1, 21, 4)).contains(&v)
            || ((1, 22, 0)..=(1, 22, 1)).contains(&v)
    })
}

fn subpath_symlink(obj: &K8sObject, cx: &Context<'_>) -> Outcome {
    let Some(pod) = cx.pod_spec(obj) else {
        return Outcome::Passed;
    };
    let mut findings = Vec::new();
    let mut vulnerable_node: Option<bool> = None;
    for c in pod.containers(Containers::Main.lists()) {
        let mut finding: Option<Finding> = None;
        for (j, mount) in ContainerView::list_of(c.volume_mounts()).iter().enumerate() {
            if str_at(mount, "subPath").is_none_or(str::is_empty) {
                continue;
            }
            let vulnerable = *vulnerable_node.get_or_insert_with(|| {
                cx.inventory.of_kind("Node").any(|n| {
                    get_path(&n.value, "status.nodeInfo.kubeletVersion")
                        .and_then(Value::as_str)
                        .is_some_and(kubelet_vulnerable)
                })
            });
            if !vulnerable {
                return Outcome::Passed;
            }
            let path = c.path(&format!("volumeMounts[{j}].subPath"));
            finding = Some(
                finding
                    .take()
                    .unwrap_or_else(|| {
                        Finding::new("Symlink-Exchange-Can-Allow-Host-Filesystem-Access")
                    })
                    .delete(path),
            );
        }
        findings.extend(finding);
    }
    Outcome::from_findings(findings)
}

/// C-0059 CVE-2021-25742-nginx-ingress-snippet-annotation-vulnerability.
///
/// Deployments whose container (`containers` only, quirk 1: compatible) image contains
/// `nginx-controller`, `ingress-controller` or `ingress-nginx`, has a tag, and whose first
/// `x.y.z` in the image string is below 0.49.0, exactly 0.49.0 or exactly 1.0.0, fail — unless a
/// ConfigMap in the Deployment's namespace (a missing namespace counts as `default`) sets
/// `data.allow-snippet-annotations: "false"`. Review path `<c>.image`.
pub struct NginxSnippetAnnotation;

static NGINX_SNIPPET: ControlMeta = ControlMeta {
    id: "C-0059",
    name: "CVE-2021-25742-nginx-ingress-snippet-annotation-vulnerability",
    description: "ingress-nginx snippet annotations let Ingress authors read the controller's secrets on vulnerable versions.",
    remediation: "Upgrade ingress-nginx to 1.0.1 or later, or set allow-snippet-annotations: \"false\" in its ConfigMap.",
    base_score: 8.0,
    frameworks: &["NSA", "MITRE", "ArmoBest"],
    applies: DEPLOYMENT,
    rules: &["nginx-ingress-snippet-annotation-vulnerability"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

object_control!(NginxSnippetAnnotation, NGINX_SNIPPET, nginx_snippet);

/// A `:tag` (Kubescape's `:[\w][\w.-]{0,127}(/)?`, a match not ending in `/`).
static TAG_LIKE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(":[0-9A-Za-z_][0-9A-Za-z_.-]{0,127}/?").ok());
static VERSION_TRIPLET: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"[0-9]+\.[0-9]+\.[0-9]+").ok());

fn has_tag(image: &str) -> bool {
    TAG_LIKE
        .as_ref()
        .is_some_and(|r| r.find_iter(image).any(|m| !m.as_str().ends_with('/')))
}

fn nginx_vulnerable_version(image: &str) -> bool {
    let Some(m) = VERSION_TRIPLET.as_ref().and_then(|r| r.find(image)) else {
        return false;
    };
    matches!(
        triplet(m.as_str()),
        Some((0, minor, _)) if minor < 49
    ) || matches!(triplet(m.as_str()), Some((0, 49, 0) | (1, 0, 0)))
}

/// Image name parts of nginx ingress controllers (substrings), searched in one pass.
static NGINX_IMAGE_NAMES: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| {
    AhoCorasick::new(["nginx-controller", "ingress-controller", "ingress-nginx"]).ok()
});

fn nginx_snippet(obj: &K8sObject, cx: &Context<'_>) -> Outcome {
    let mut snippets_off: Option<bool> = None;
    let ns = obj.namespace_or_default();
    vulnerable_images(
        obj,
        cx,
        "nginx-ingress-snippet-annotation-vulnerability",
        |image| {
            let nginx = NGINX_IMAGE_NAMES
                .as_ref()
                .is_some_and(|ac| ac.is_match(image));
            nginx
                && has_tag(image)
                && nginx_vulnerable_version(image)
                && !*snippets_off.get_or_insert_with(|| {
                    cx.inventory.of_kind_in("ConfigMap", ns).any(|cm| {
                        get_path(&cm.value, "data")
                            .and_then(|d| d.field("allow-snippet-annotations"))
                            .and_then(Value::as_str)
                            == Some("false")
                    })
                })
        },
    )
}

/// C-0081 CVE-2022-24348-argocddirtraversal.
///
/// Deployments whose container (`containers` only) image contains `argocd:v` and whose
/// version after `:v` is `x.y.z` with major 1, 2.0.x, 2.1 before 2.1.9 or 2.2 before 2.2.4 fail;
/// review path `<c>.image`.
pub struct ArgoCdDirTraversal;

static ARGOCD: ControlMeta = ControlMeta {
    id: "C-0081",
    name: "CVE-2022-24348-argocddirtraversal",
    description: "Vulnerable Argo CD versions let a malicious Helm chart read files from other applications.",
    remediation: "Upgrade Argo CD to 2.1.9, 2.2.4 or later.",
    base_score: 4.0,
    frameworks: &["ArmoBest", "YAML"],
    applies: DEPLOYMENT,
    rules: &["CVE-2022-24348"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

object_control!(ArgoCdDirTraversal, ARGOCD, argocd);

fn argocd_vulnerable(image: &str) -> bool {
    image.contains("argocd:v")
        && image
            .split(":v")
            .nth(1)
            .and_then(triplet)
            .is_some_and(|(major, minor, patch)| {
                major == 1
                    || (major == 2 && minor == 0)
                    || (major == 2 && minor == 1 && patch < 9)
                    || (major == 2 && minor == 2 && patch < 4)
            })
}

fn argocd(obj: &K8sObject, cx: &Context<'_>) -> Outcome {
    vulnerable_images(obj, cx, "CVE-2022-24348", argocd_vulnerable)
}

/// C-0090 CVE-2022-39328-grafana-auth-bypass.
///
/// Deployments whose container (`containers` only) image contains `grafana:` and whose tag
/// (after removing `-ubuntu`, the second `:`-separated part) is `9.2.x` with x < 4 fail; review
/// path `<c>.image`.
pub struct GrafanaAuthBypass;

static GRAFANA: ControlMeta = ControlMeta {
    id: "C-0090",
    name: "CVE-2022-39328-grafana-auth-bypass",
    description: "Grafana 9.2.0 to 9.2.3 lets unauthenticated users reach authenticated API endpoints.",
    remediation: "Upgrade Grafana to 9.2.4 or later.",
    base_score: 9.0,
    frameworks: &[],
    applies: DEPLOYMENT,
    rules: &["CVE-2022-39328"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

object_control!(GrafanaAuthBypass, GRAFANA, grafana);

fn grafana_vulnerable(image: &str) -> bool {
    if !image.contains("grafana:") {
        return false;
    }
    let clean = image.replace("-ubuntu", "");
    clean
        .split(':')
        .nth(1)
        .and_then(triplet)
        .is_some_and(|(major, minor, patch)| major == 9 && minor == 2 && patch < 4)
}

fn grafana(obj: &K8sObject, cx: &Context<'_>) -> Outcome {
    vulnerable_images(obj, cx, "CVE-2022-39328", grafana_vulnerable)
}

/// C-0091 CVE-2022-47633-kyverno-signature-bypass.
///
/// Deployments whose container (`containers` only) image contains `kyverno:` and whose version
/// after `:v` is 1.8.3 or 1.8.4 fail; review path `<c>.image`.
pub struct KyvernoSignatureBypass;

static KYVERNO: ControlMeta = ControlMeta {
    id: "C-0091",
    name: "CVE-2022-47633-kyverno-signature-bypass",
    description: "Kyverno 1.8.3 and 1.8.4 can be tricked into admitting unsigned images.",
    remediation: "Upgrade Kyverno to 1.8.5 or later.",
    base_score: 8.0,
    frameworks: &["ArmoBest"],
    applies: DEPLOYMENT,
    rules: &["CVE-2022-47633"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

object_control!(KyvernoSignatureBypass, KYVERNO, kyverno);

fn kyverno_vulnerable(image: &str) -> bool {
    image.contains("kyverno:")
        && image
            .split(":v")
            .nth(1)
            .and_then(triplet)
            .is_some_and(|(major, minor, patch)| {
                major == 1 && minor == 8 && (3..5).contains(&patch)
            })
}

fn kyverno(obj: &K8sObject, cx: &Context<'_>) -> Outcome {
    vulnerable_images(obj, cx, "CVE-2022-47633", kyverno_vulnerable)
}

/// C-0083 Workloads with Critical vulnerabilities exposed to external traffic.
///
/// Needs image vulnerability scan results (Kubescape's `ImageVulnerabilities` objects): reported
/// skipped/integration. (Quirk 7, the loose Service-to-Pod match, does not arise: the control
/// is not evaluated.)
pub struct CriticalVulnerabilitiesExposed;

static CRITICAL_EXPOSED: ControlMeta = ControlMeta {
    id: "C-0083",
    name: "Workloads with Critical vulnerabilities exposed to external traffic",
    description: "Externally reachable pods running images with critical vulnerabilities are easy targets.",
    remediation: "Patch the image or stop exposing the workload outside the cluster.",
    base_score: 8.0,
    frameworks: &[],
    applies: POD,
    rules: &["exposed-critical-pods"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Integration,
};

integration_control!(CriticalVulnerabilitiesExposed, CRITICAL_EXPOSED);

/// C-0084 Workloads with RCE vulnerabilities exposed to external traffic.
///
/// Needs image vulnerability scan results: reported skipped/integration (quirk 7 does not
/// arise).
pub struct RceVulnerabilitiesExposed;

static RCE_EXPOSED: ControlMeta = ControlMeta {
    id: "C-0084",
    name: "Workloads with RCE vulnerabilities exposed to external traffic",
    description: "Externally reachable pods with remote-code-execution vulnerabilities can be taken over.",
    remediation: "Patch the image or stop exposing the workload outside the cluster.",
    base_score: 8.0,
    frameworks: &[],
    applies: POD,
    rules: &["exposed-rce-pods"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Integration,
};

integration_control!(RceVulnerabilitiesExposed, RCE_EXPOSED);

/// C-0085 Workloads with excessive amount of vulnerabilities.
///
/// Needs image vulnerability scan results (counts of Critical and High findings against
/// `max_critical_vulnerabilities` / `max_high_vulnerabilities`): reported skipped/integration.
pub struct ExcessiveVulnerabilities;

static EXCESSIVE: ControlMeta = ControlMeta {
    id: "C-0085",
    name: "Workloads with excessive amount of vulnerabilities",
    description: "Images with many critical or high vulnerabilities widen the attack surface.",
    remediation: "Update the image and its base to versions with fewer known vulnerabilities.",
    base_score: 6.0,
    frameworks: &[],
    applies: POD,
    rules: &["excessive_amount_of_vulnerabilities_pods"],
    inputs: &["max_critical_vulnerabilities", "max_high_vulnerabilities"],
    configuration_required: true,
    needs: Needs::Integration,
};

integration_control!(ExcessiveVulnerabilities, EXCESSIVE);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_versions_compare_numerically() {
        assert_eq!(kubelet_version("v1.21.2-eks-0389ca3"), Some((1, 21, 2)));
        assert_eq!(kubelet_version("v1.28.3+k3s1"), Some((1, 28, 3)));
        assert_eq!(kubelet_version("1.22"), Some((1, 22, 0)));
        assert_eq!(kubelet_version("vX"), None);
        for v in [
            "v1.19.2",
            "v1.19.14",
            "v1.9.0",
            "v1.20.0",
            "v1.20.10",
            "v1.21.4",
            "v1.21.2-eks-1",
            "v1.22.1",
        ] {
            assert!(kubelet_vulnerable(v), "{v}");
        }
        for v in [
            "v1.19.15", "v1.20.11", "v1.21.5", "v1.21.10", "v1.22.2", "v1.22.10", "v1.30.0",
            "garbage",
        ] {
            assert!(!kubelet_vulnerable(v), "{v}");
        }
    }

    #[test]
    fn nginx_versions() {
        assert!(has_tag("registry.k8s.io/ingress-nginx/controller:v0.48.1"));
        assert!(!has_tag("localhost:5000/ingress-nginx/controller"));
        assert!(nginx_vulnerable_version("ingress-nginx/controller:v0.48.1"));
        assert!(nginx_vulnerable_version("ingress-nginx/controller:v0.49.0"));
        assert!(nginx_vulnerable_version("ingress-nginx/controller:v1.0.0"));
        assert!(!nginx_vulnerable_version(
            "ingress-nginx/controller:v0.49.1"
        ));
        assert!(!nginx_vulnerable_version("ingress-nginx/controller:v1.0.1"));
        assert!(!nginx_vulnerable_version("ingress-nginx/controller:latest"));
    }

    #[test]
    fn app_versions() {
        assert!(argocd_vulnerable("quay.io/argoproj/argocd:v2.1.8"));
        assert!(argocd_vulnerable("argoproj/argocd:v1.8.7"));
        assert!(!argocd_vulnerable("argoproj/argocd:v2.2.4"));
        assert!(!argocd_vulnerable("argoproj/argocd:latest"));
        assert!(grafana_vulnerable("grafana/grafana:9.2.3-ubuntu"));
        assert!(!grafana_vulnerable("grafana/grafana:9.2.4"));
        assert!(!grafana_vulnerable("reg:5000/grafana/grafana:9.2.1"));
        assert!(kyverno_vulnerable("ghcr.io/kyverno/kyverno:v1.8.3"));
        assert!(kyverno_vulnerable("ghcr.io/kyverno/kyverno:v1.8.4"));
        assert!(!kyverno_vulnerable("ghcr.io/kyverno/kyverno:v1.8.5"));
    }
}
