//! Resolves `continuousScanning.matchingRules` against API discovery. A kind that does not exist
//! or cannot be discovered is reported and retried in the background; it never blocks the others.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBuilder};
use kube::Client;
use kube::core::GroupVersion;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use kubevigil_crds::target::KindInfo;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::error::status_code;
use crate::state::Msg;

/// One configured resource: `(group, version, resource)` from a matching rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KindSpec {
    /// API group (empty for core).
    pub group: String,
    /// API version.
    pub version: String,
    /// Plural resource name.
    pub resource: String,
}

impl KindSpec {
    /// The spec a discovered kind was resolved from.
    pub fn of(kind: &KindInfo) -> Self {
        KindSpec {
            group: kind.group.clone(),
            version: kind.version.clone(),
            resource: kind.plural.clone(),
        }
    }

    /// `group/version` or `version`.
    pub fn api_version(&self) -> String {
        kubevigil_crds::identity::join_api_version(&self.group, &self.version)
    }
}

/// `widgets.example.com/v1`, `pods/v1`.
impl fmt::Display for KindSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}/{}", self.resource, self.version)
        } else {
            write!(f, "{}.{}/{}", self.resource, self.group, self.version)
        }
    }
}

/// Why a kind could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The group, version or resource does not exist.
    NotFound(String),
    /// Discovery (or listing) is not allowed.
    Forbidden(String),
    /// Any other error (network, server).
    Error(String),
}

impl Failure {
    /// The message.
    pub fn message(&self) -> &str {
        match self {
            Failure::NotFound(m) | Failure::Forbidden(m) | Failure::Error(m) => m,
        }
    }

    fn not_found(spec: &KindSpec) -> Self {
        Failure::NotFound(format!("resource {spec} not found in API discovery"))
    }

    /// Classifies a discovery error for `spec`.
    pub fn from_error(spec: &KindSpec, e: &kube::Error) -> Self {
        match status_code(e) {
            Some(404) => Failure::not_found(spec),
            Some(403) => {
                Failure::Forbidden(format!("discovery of resource {spec} is forbidden: {e}"))
            }
            _ => Failure::Error(format!("discovery of resource {spec} failed: {e}")),
        }
    }
}

/// Every configured resource, deduplicated and sorted (an empty `apiGroups` is the core group).
pub fn specs(config: &Config) -> Vec<KindSpec> {
    let mut out = BTreeSet::new();
    for rule in &config.continuous_scanning.matching_rules {
        let groups: Vec<&str> = if rule.api_groups.is_empty() {
            vec![""]
        } else {
            rule.api_groups.iter().map(String::as_str).collect()
        };
        for group in groups {
            for version in &rule.api_versions {
                for resource in &rule.resources {
                    out.insert(KindSpec {
                        group: group.to_string(),
                        version: version.clone(),
                        resource: resource.clone(),
                    });
                }
            }
        }
    }
    out.into_iter().collect()
}

/// Picks `spec` out of a group-version's discovered resources. Subresources never match.
pub fn pick(resources: &[(ApiResource, ApiCapabilities)], spec: &KindSpec) -> Option<KindInfo> {
    resources
        .iter()
        .find(|(ar, _)| ar.plural == spec.resource && !spec.resource.contains('/'))
        .map(|(ar, caps)| KindInfo {
            group: spec.group.clone(),
            version: spec.version.clone(),
            kind: ar.kind.clone(),
            plural: ar.plural.clone(),
            namespaced: caps.scope == Scope::Namespaced,
        })
}

/// Resolves several specs, one discovery request per group-version.
pub async fn resolve_all(
    client: &Client,
    specs: &[KindSpec],
) -> Vec<(KindSpec, Result<KindInfo, Failure>)> {
    let mut by_gv: BTreeMap<(String, String), Vec<&KindSpec>> = BTreeMap::new();
    for s in specs {
        by_gv
            .entry((s.group.clone(), s.version.clone()))
            .or_default()
            .push(s);
    }
    let mut out = Vec::with_capacity(specs.len());
    for ((group, version), group_specs) in by_gv {
        let gv = GroupVersion::gv(&group, &version);
        let query = tokio::time::timeout(
            Duration::from_secs(30),
            kube::discovery::pinned_group(client, &gv),
        )
        .await;
        for spec in group_specs {
            let resolved = match &query {
                Ok(Ok(api_group)) => pick(&api_group.versioned_resources(&version), spec)
                    .ok_or_else(|| Failure::not_found(spec)),
                Ok(Err(e)) => Err(Failure::from_error(spec, e)),
                Err(_) => Err(Failure::Error(format!(
                    "discovery of resource {spec} timed out"
                ))),
            };
            out.push((spec.clone(), resolved));
        }
    }
    out
}

/// Retries the discovery of one kind with exponential backoff (5 s up to 5 min, with jitter)
/// until it resolves, reporting every outcome to the main loop.
pub async fn retry_until_found(client: Client, spec: KindSpec, tx: mpsc::Sender<Msg>) {
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(5))
        .with_max_delay(Duration::from_secs(300))
        .with_jitter()
        .without_max_times()
        .build();
    loop {
        let delay = delays.next().unwrap_or(Duration::from_secs(300));
        tokio::time::sleep(delay).await;
        let mut resolved = resolve_all(&client, std::slice::from_ref(&spec)).await;
        let msg = match resolved.pop() {
            Some((spec, Ok(info))) => Msg::KindFound(spec, info),
            Some((spec, Err(failure))) => Msg::KindFailed(spec, failure),
            None => continue,
        };
        let found = matches!(msg, Msg::KindFound(..));
        if tx.send(msg).await.is_err() || found {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rules: &str) -> Config {
        Config::parse(
            "t",
            &format!(
                "continuousScanning:\n  matchingRules: {rules}\nscanJob: {{image: i, serviceAccountName: sa, batchSize: 5, maxConcurrentJobs: 1, ttlSecondsAfterFinished: 1, activeDeadlineSeconds: 1, backoffLimit: 0}}\n"
            ),
        )
        .unwrap()
    }

    #[test]
    fn specs_expand_and_dedupe() {
        let c = config(
            r#"[{apiGroups: [apps], apiVersions: [v1], resources: [deployments, statefulsets]}, {apiVersions: [v1], resources: [pods]}, {apiGroups: [""], apiVersions: [v1], resources: [pods]}]"#,
        );
        let s: Vec<String> = specs(&c).iter().map(ToString::to_string).collect();
        assert_eq!(
            s,
            vec!["pods/v1", "deployments.apps/v1", "statefulsets.apps/v1"]
        );
    }

    #[test]
    fn pick_matches_plural_and_scope() {
        let gvk = kube::core::GroupVersionKind::gvk("apps", "v1", "Deployment");
        let ar = ApiResource::from_gvk_with_plural(&gvk, "deployments");
        let caps = ApiCapabilities {
            scope: Scope::Namespaced,
            subresources: vec![],
            operations: vec!["list".into(), "watch".into()],
        };
        let spec = KindSpec {
            group: "apps".into(),
            version: "v1".into(),
            resource: "deployments".into(),
        };
        let info = pick(&[(ar, caps)], &spec).unwrap();
        assert_eq!(info.kind, "Deployment");
        assert!(info.namespaced);
        assert_eq!(KindSpec::of(&info), spec);
        assert!(pick(&[], &spec).is_none());
        let widgets = KindSpec {
            group: "example.com".into(),
            version: "v1".into(),
            resource: "widgets".into(),
        };
        assert_eq!(
            Failure::not_found(&widgets).message(),
            "resource widgets.example.com/v1 not found in API discovery"
        );
    }

    /// Issue 8: a matchingRules entry for a kind that does not exist is not a config error (the
    /// chart may be installed before a CRD); it resolves to `NotFound` with a message naming it,
    /// while the other kinds of the same group-version resolve.
    #[test]
    fn a_rule_for_a_kind_that_does_not_exist_fails_alone() {
        let c = config(
            r#"[{apiGroups: [apps], apiVersions: [v1], resources: [deployments, frobnicators]}, {apiGroups: [nope.example.com], apiVersions: [v9], resources: [widgets]}]"#,
        );
        let all = specs(&c);
        assert_eq!(all.len(), 3, "{all:?}");
        let gvk = kube::core::GroupVersionKind::gvk("apps", "v1", "Deployment");
        let discovered = [(
            ApiResource::from_gvk_with_plural(&gvk, "deployments"),
            ApiCapabilities {
                scope: Scope::Namespaced,
                subresources: vec![],
                operations: vec!["list".into(), "watch".into()],
            },
        )];
        let resolved: Vec<(String, Result<String, Failure>)> = all
            .iter()
            .filter(|s| s.group == "apps")
            .map(|s| {
                (
                    s.to_string(),
                    pick(&discovered, s)
                        .map(|k| k.kind)
                        .ok_or_else(|| Failure::not_found(s)),
                )
            })
            .collect();
        assert_eq!(
            resolved,
            vec![
                (
                    "deployments.apps/v1".to_string(),
                    Ok("Deployment".to_string())
                ),
                (
                    "frobnicators.apps/v1".to_string(),
                    Err(Failure::NotFound(
                        "resource frobnicators.apps/v1 not found in API discovery".into()
                    ))
                ),
            ]
        );
        // A group that does not exist at all: discovery answers 404, classified as NotFound.
        let widgets = all.iter().find(|s| s.resource == "widgets").unwrap();
        let e = kube::Error::Api(Box::new(
            kube::core::Status::failure(
                "the server could not find the requested resource",
                "NotFound",
            )
            .with_code(404),
        ));
        assert!(
            matches!(Failure::from_error(widgets, &e), Failure::NotFound(m) if m.contains("widgets.nope.example.com/v9")),
            "{:?}",
            Failure::from_error(widgets, &e)
        );
    }

    /// A malformed matchingRules entry is a startup error naming the field.
    #[test]
    fn malformed_rules_are_named() {
        let parse = |rules: &str| {
            Config::parse(
                "config.yaml",
                &format!(
                    "continuousScanning:\n  matchingRules: {rules}\nscanJob: {{image: i, serviceAccountName: sa, batchSize: 5, maxConcurrentJobs: 1, ttlSecondsAfterFinished: 1, activeDeadlineSeconds: 1, backoffLimit: 0}}\n"
                ),
            )
            .unwrap_err()
            .to_string()
        };
        let e = parse("[{apiGroups: [apps], apiVersions: [v1], resources: deployments}]");
        assert!(
            e.contains("config.yaml")
                && e.contains("continuousScanning.matchingRules[0].resources"),
            "{e}"
        );
        let e = parse("[{apiGroups: [apps], apiVersion: [v1], resources: [deployments]}]");
        assert!(e.contains("apiVersion"), "{e}");
        let e = parse("[{apiGroups: [apps], apiVersions: [], resources: [deployments]}]");
        assert!(e.contains("continuousScanning.matchingRules[0]"), "{e}");
        let e = parse("[]");
        assert!(e.contains("continuousScanning.matchingRules"), "{e}");
    }
}
