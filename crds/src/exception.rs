//! PostureException and ClusterPostureException: accepted risks, owned by the people who own the
//! workloads. A control that fails on a resource an exception covers is reported as `passed`
//! with sub-status `w/exceptions` and the exception's name, as Kubescape does.
//!
//! The namespaced kind applies to resources of its own namespace only; the cluster kind to
//! resources of every namespace its `namespaceSelector` selects, and to cluster-scoped
//! resources when it has none.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An accepted risk in one namespace: the listed controls are not reported as failed on the
/// resources it selects in this namespace, until `expiresAt`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubevigil.io",
    version = "v1beta1",
    kind = "PostureException",
    plural = "postureexceptions",
    shortname = "pex",
    category = "kubevigil",
    namespaced,
    doc = "An accepted risk in one namespace: the listed controls pass (sub-status w/exceptions) on the selected resources of this namespace until expiresAt.",
    printcolumn = r#"{"name":"Controls","type":"string","jsonPath":".spec.controls"}"#,
    printcolumn = r#"{"name":"Expires","type":"date","jsonPath":".spec.expiresAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PostureExceptionSpec {
    /// The control IDs this exception accepts, for example `C-0017`.
    #[schemars(length(min = 1))]
    pub controls: Vec<String>,
    /// The resources the exception applies to; a resource is covered when any entry selects it.
    #[schemars(length(min = 1))]
    pub resources: Vec<ExceptionResource>,
    /// Why the risk is accepted, for the auditor who reads the result (required, not empty).
    #[schemars(length(min = 1))]
    pub justification: String,
    /// When the exception stops applying (RFC 3339). Its resources are scanned again then.
    /// Without it the exception applies until it is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
}

/// An accepted risk across namespaces (and for cluster-scoped resources): the listed controls
/// are not reported as failed on the resources it selects, until `expiresAt`. Only cluster
/// administrators manage it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubevigil.io",
    version = "v1beta1",
    kind = "ClusterPostureException",
    plural = "clusterpostureexceptions",
    shortname = "cpex",
    category = "kubevigil",
    doc = "An accepted risk across namespaces: the listed controls pass (sub-status w/exceptions) on the selected resources until expiresAt.",
    printcolumn = r#"{"name":"Controls","type":"string","jsonPath":".spec.controls"}"#,
    printcolumn = r#"{"name":"Expires","type":"date","jsonPath":".spec.expiresAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPostureExceptionSpec {
    /// The control IDs this exception accepts, for example `C-0017`.
    #[schemars(length(min = 1))]
    pub controls: Vec<String>,
    /// The resources the exception applies to; a resource is covered when any entry selects it.
    #[schemars(length(min = 1))]
    pub resources: Vec<ExceptionResource>,
    /// The namespaces whose resources are covered (by their labels; `kubernetes.io/metadata.name`
    /// selects by name). Without it: resources of every namespace and cluster-scoped resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Why the risk is accepted, for the auditor who reads the result (required, not empty).
    #[schemars(length(min = 1))]
    pub justification: String,
    /// When the exception stops applying (RFC 3339). Its resources are scanned again then.
    /// Without it the exception applies until it is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
}

/// Which resources an exception covers. Every field given must match; an entry with none
/// covers every resource in the exception's scope.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExceptionResource {
    /// The resource's kind, for example `Deployment` (exact, case-insensitive). Any kind when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The resource's name: exact, or a glob where `*` matches any run of characters and `?`
    /// one character (`web-*`). Any name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A label selector the resource's own labels must match. Any labels when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// Whether `name` matches a glob where `*` matches any run of characters and `?` exactly one.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative wildcard match with backtracking to the last `*`.
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('?') => {
                pi += 1;
                ni += 1;
            }
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(c) if Some(c) == n.get(ni) => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, n, m) in [
            ("web", "web", true),
            ("web", "web-1", false),
            ("web-*", "web-1", true),
            ("web-*", "web-", true),
            ("*", "", true),
            ("*-db", "orders-db", true),
            ("*-db", "orders-db-1", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("", "", true),
            ("", "a", false),
        ] {
            assert_eq!(glob_matches(p, n), m, "{p} {n}");
        }
    }

    #[test]
    fn specs_round_trip_with_camel_case_fields() {
        let yaml = r#"
controls: [C-0017]
resources:
  - kind: Deployment
    name: web-*
    selector: {matchLabels: {app: web}}
justification: read-only root breaks the legacy cache; ticket SEC-12
expiresAt: "2030-01-01T00:00:00Z"
"#;
        let spec: PostureExceptionSpec = serde_norway::from_str(yaml).unwrap();
        assert_eq!(spec.controls, ["C-0017"]);
        assert_eq!(spec.resources[0].name.as_deref(), Some("web-*"));
        assert!(spec.expires_at.is_some());
        let back = serde_json::to_value(&spec).unwrap();
        assert_eq!(back["expiresAt"], "2030-01-01T00:00:00Z");
        assert_eq!(
            back["resources"][0]["selector"]["matchLabels"]["app"],
            "web"
        );
    }
}
