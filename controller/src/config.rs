//! The controller's configuration file (rendered by the chart into a ConfigMap), parsed and
//! checked once at startup so that a bad value is named before anything runs.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Deserialize;
use serde_json::Value;

use crate::scope::{NamespaceScope, SkipLabel, check_pattern, check_selector};

/// Errors in the configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("failed to read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file does not parse or has a wrongly typed field (the message names the field).
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message, with the field path.
        message: String,
    },
    /// A value is out of range or malformed.
    #[error("invalid config file {path}: field `{field}`: {message}")]
    Value {
        /// The file.
        path: String,
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// One entry of `continuousScanning.matchingRules` (Kubescape's format).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MatchingRule {
    /// API groups (`""` is the core group).
    #[serde(default)]
    pub api_groups: Vec<String>,
    /// API versions.
    pub api_versions: Vec<String>,
    /// Plural resource names (`deployments`).
    pub resources: Vec<String>,
}

/// Which kinds to watch and how often to resync.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContinuousScanning {
    /// The kinds to watch.
    pub matching_rules: Vec<MatchingRule>,
    /// Quiet period that coalesces bursts of events on one target (`2s`).
    #[serde(default = "default_debounce", deserialize_with = "duration")]
    pub debounce: Duration,
    /// How often to look for missed deletes and missing or stale results (`10m`).
    #[serde(default = "default_resync", deserialize_with = "duration")]
    pub resync_period: Duration,
    /// Maximum result age: every target is rescanned at least this often, spread over the
    /// period (`off`, the default, or a duration like `24h`).
    #[serde(default, deserialize_with = "optional_duration")]
    pub rescan_after: Option<Duration>,
}

/// An optional duration field: `off` (or empty) is `None`, else [`parse_duration`].
fn optional_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let value = Option::<String>::deserialize(d)?.unwrap_or_default();
    if value.trim().is_empty() || value.trim() == "off" {
        return Ok(None);
    }
    match parse_duration(&value) {
        Some(d) if !d.is_zero() => Ok(Some(d)),
        _ => Err(serde::de::Error::custom(format!(
            "{value:?} is neither `off` nor a duration like 30m or 24h"
        ))),
    }
}

fn default_debounce() -> Duration {
    Duration::from_secs(2)
}

fn default_resync() -> Duration {
    Duration::from_secs(600)
}

/// A duration field, parsed once with the file ([`parse_duration`]).
fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let value = String::deserialize(d)?;
    parse_duration(&value).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "{value:?} is not a duration like 500ms, 2s, 10m or 1h"
        ))
    })
}

/// How scan Jobs are built.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScanJobConfig {
    /// The scan-job image.
    pub image: String,
    /// Pull policy of the image.
    #[serde(default = "default_pull_policy")]
    pub image_pull_policy: String,
    /// ServiceAccount the scan pods run as.
    pub service_account_name: String,
    /// ConfigMap holding this configuration (mounted by scan pods for controls config and
    /// exceptions).
    #[serde(default)]
    pub config_map_name: Option<String>,
    /// Container resources of the scan pod.
    #[serde(default)]
    pub resources: Value,
    /// Most targets per Job.
    pub batch_size: usize,
    /// Most scan Jobs active at once.
    pub max_concurrent_jobs: usize,
    /// Seconds a finished Job is kept.
    pub ttl_seconds_after_finished: i32,
    /// Seconds a Job may run.
    pub active_deadline_seconds: i64,
    /// Pod retries of one Job.
    pub backoff_limit: i32,
    /// Extra labels for scan Jobs and pods.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_pull_policy() -> String {
    "IfNotPresent".into()
}

/// Leader election settings.
#[derive(Clone, Debug, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaderElection {
    /// Elect a leader through a Lease (needed when replicas > 1).
    #[serde(default)]
    pub enabled: bool,
    /// Name of the Lease in the install namespace.
    #[serde(default)]
    pub lease_name: Option<String>,
}

/// Controller process settings.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ControllerSettings {
    /// Log filter (`info`, `debug`, or a tracing filter).
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// Sustained API requests per second (client-side limit).
    #[serde(default = "default_qps")]
    pub kube_api_qps: u32,
    /// Burst of API requests above the sustained rate.
    #[serde(default = "default_burst")]
    pub kube_api_burst: u32,
    /// Port of `/metrics`, `/livez` and `/readyz`.
    #[serde(default = "default_metrics_port")]
    pub metrics_port: u16,
    /// Leader election.
    #[serde(default)]
    pub leader_election: LeaderElection,
    /// Whether `/metrics` has per-resource posture series
    /// (`kubevigil_posture_resource_failed_controls`, one series per result and severity).
    #[serde(default)]
    pub per_resource_metrics: bool,
}

fn default_log_level() -> String {
    "info".into()
}
fn default_qps() -> u32 {
    20
}
fn default_burst() -> u32 {
    40
}
fn default_metrics_port() -> u16 {
    8080
}

/// OpenReports output (`openReports`): scan Jobs write a Report beside each result; the
/// controller deletes them with the results.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenReports {
    /// Write OpenReports `Report`s and `ClusterReport`s.
    #[serde(default)]
    pub enabled: bool,
}

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Cluster name, for the results' `wlid` annotation.
    #[serde(default)]
    pub cluster_name: String,
    /// Install namespace (Jobs and results of cluster-scoped targets live there).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Only namespaces matching one of these glob patterns are scanned (empty: all).
    /// Cluster-scoped kinds are not affected.
    #[serde(default)]
    pub include_namespaces: Vec<String>,
    /// Namespaces matching one of these glob patterns are never scanned.
    #[serde(default)]
    pub exclude_namespaces: Vec<String>,
    /// Only namespaces whose labels this selector selects are scanned (unset or empty: all).
    #[serde(default)]
    pub namespace_selector: Option<LabelSelector>,
    /// Objects carrying this label are not scanned (unset: none are skipped).
    #[serde(default)]
    pub skip_label: Option<SkipLabel>,
    /// Watches and timing.
    pub continuous_scanning: ContinuousScanning,
    /// Scan Jobs.
    pub scan_job: ScanJobConfig,
    /// Controller process settings.
    #[serde(default = "default_controller")]
    pub controller: ControllerSettings,
    /// Overrides of control inputs (passed to scan Jobs).
    #[serde(default)]
    pub controls_config: Value,
    /// Posture exceptions (passed to scan Jobs).
    #[serde(default)]
    pub exceptions: Value,
    /// When scan Jobs raise posture Events (checked here, applied by scan Jobs).
    #[serde(default)]
    pub posture_events: kubevigil_engine::settings::PostureEvents,
    /// OpenReports output.
    #[serde(default)]
    pub open_reports: OpenReports,
}

fn default_controller() -> ControllerSettings {
    ControllerSettings {
        log_level: default_log_level(),
        kube_api_qps: default_qps(),
        kube_api_burst: default_burst(),
        metrics_port: default_metrics_port(),
        leader_election: LeaderElection::default(),
        per_resource_metrics: false,
    }
}

impl Config {
    /// Parses a configuration document and checks its values. `path` is only for messages.
    pub fn parse(path: &str, text: &str) -> Result<Self, ConfigError> {
        let de = serde_norway::Deserializer::from_str(text);
        let config: Config =
            serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Parse {
                path: path.to_string(),
                message: format!("field `{}`: {}", e.path(), e.inner()),
            })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Reads and parses the configuration file.
    pub fn load(path: &str) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_string(),
            source,
        })?;
        Self::parse(path, &text)
    }

    fn validate(&self, path: &str) -> Result<(), ConfigError> {
        let bad = |field: &str, message: String| ConfigError::Value {
            path: path.to_string(),
            field: field.to_string(),
            message,
        };
        if self.continuous_scanning.matching_rules.is_empty() {
            return Err(bad(
                "continuousScanning.matchingRules",
                "at least one rule is needed".into(),
            ));
        }
        for (i, rule) in self.continuous_scanning.matching_rules.iter().enumerate() {
            if rule.api_versions.is_empty() || rule.resources.is_empty() {
                return Err(bad(
                    &format!("continuousScanning.matchingRules[{i}]"),
                    "apiVersions and resources must not be empty".into(),
                ));
            }
        }
        self.check_rbac_kinds()
            .map_err(|m| bad("continuousScanning.matchingRules", m))?;
        let sj = &self.scan_job;
        if !(1..=500).contains(&sj.batch_size) {
            return Err(bad(
                "scanJob.batchSize",
                format!("{} is not in 1..=500", sj.batch_size),
            ));
        }
        if !(1..=100).contains(&sj.max_concurrent_jobs) {
            return Err(bad(
                "scanJob.maxConcurrentJobs",
                format!("{} is not in 1..=100", sj.max_concurrent_jobs),
            ));
        }
        if sj.image.is_empty() {
            return Err(bad("scanJob.image", "must not be empty".into()));
        }
        self.validate_scope(path)
    }

    fn validate_scope(&self, path: &str) -> Result<(), ConfigError> {
        let bad = |field: String, message: String| ConfigError::Value {
            path: path.to_string(),
            field,
            message,
        };
        for (field, patterns) in [
            ("includeNamespaces", &self.include_namespaces),
            ("excludeNamespaces", &self.exclude_namespaces),
        ] {
            for (i, p) in patterns.iter().enumerate() {
                check_pattern(p).map_err(|m| bad(format!("{field}[{i}]"), m))?;
            }
        }
        if let Some(selector) = &self.namespace_selector {
            check_selector(selector).map_err(|m| bad("namespaceSelector".into(), m))?;
        }
        if let Some(skip) = &self.skip_label
            && skip.key.is_empty()
        {
            return Err(bad(
                "skipLabel.key".into(),
                "must not be empty (leave skipLabel out to skip nothing)".into(),
            ));
        }
        Ok(())
    }

    /// The namespace scope: patterns and selector (an empty selector counts as none).
    pub fn namespace_scope(&self) -> NamespaceScope {
        let selector = self.namespace_selector.clone().filter(|s| {
            s.match_labels.as_ref().is_some_and(|m| !m.is_empty())
                || s.match_expressions.as_ref().is_some_and(|m| !m.is_empty())
        });
        NamespaceScope {
            include: self.include_namespaces.clone(),
            exclude: self.exclude_namespaces.clone(),
            selector,
        }
    }

    /// RBAC results depend on the bound role: watching bindings without roles would leave the
    /// controller unable to tell when a result is current (and rescan it at every resync).
    fn check_rbac_kinds(&self) -> Result<(), String> {
        const RBAC: &str = "rbac.authorization.k8s.io";
        let watched = |resource: &str| {
            self.continuous_scanning.matching_rules.iter().any(|r| {
                r.api_groups.iter().any(|g| g == RBAC) && r.resources.iter().any(|x| x == resource)
            })
        };
        let bindings = watched("rolebindings") || watched("clusterrolebindings");
        let missing: Vec<&str> = ["roles", "clusterroles"]
            .into_iter()
            .filter(|r| !watched(r))
            .collect();
        if bindings && !missing.is_empty() {
            return Err(format!(
                "RoleBindings or ClusterRoleBindings are watched but not {}: RBAC results depend on \
                 the bound roles, add them to the rule for {RBAC}",
                missing.join(" and ")
            ));
        }
        Ok(())
    }

    /// Whether objects in `namespace` are scanned, by its name alone (`includeNamespaces` and
    /// `excludeNamespaces` patterns; the namespace selector is decided by
    /// [`crate::scope::NamespaceView`]). Cluster-scoped objects (`None`) always are.
    pub fn namespace_selected(&self, namespace: Option<&str>) -> bool {
        let Some(ns) = namespace else { return true };
        self.namespace_scope().name_selected(ns)
    }
}

pub use kubevigil_crds::duration::parse_duration;

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
clusterName: demo
namespace: kubevigil
includeNamespaces: []
excludeNamespaces: [kube-system]
continuousScanning:
  matchingRules:
  - {apiGroups: [apps], apiVersions: [v1], resources: [deployments]}
  debounce: 2s
  resyncPeriod: 10m
scanJob:
  image: ghcr.io/kubevigil/scan-job:0.1.0
  imagePullPolicy: IfNotPresent
  serviceAccountName: kubevigil-scan-job
  resources: {}
  batchSize: 50
  maxConcurrentJobs: 5
  ttlSecondsAfterFinished: 300
  activeDeadlineSeconds: 300
  backoffLimit: 2
controller: {logLevel: info, kubeApiQps: 20, kubeApiBurst: 40, metricsPort: 8080, leaderElection: {enabled: false, leaseName: kubevigil}}
controlsConfig: {}
exceptions: []
"#;

    #[test]
    fn parses_the_chart_shape() {
        let c = Config::parse("config.yaml", GOOD).unwrap();
        assert_eq!(c.scan_job.batch_size, 50);
        assert_eq!(c.continuous_scanning.debounce, Duration::from_secs(2));
        assert_eq!(
            c.continuous_scanning.resync_period,
            Duration::from_secs(600)
        );
        assert!(!c.namespace_selected(Some("kube-system")));
        assert!(c.namespace_selected(None));
    }

    #[test]
    fn bad_fields_are_named() {
        let e = Config::parse("c.yaml", &GOOD.replace("batchSize: 50", "batchSize: lots"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("scanJob.batchSize"), "{e}");
        let e = Config::parse("c.yaml", &GOOD.replace("debounce: 2s", "debounce: soon"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("continuousScanning.debounce"), "{e}");
        let e = Config::parse("c.yaml", &GOOD.replace("batchSize: 50", "batchSize: 0"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("scanJob.batchSize") && e.contains("1..=500"),
            "{e}"
        );
        let e = Config::parse("c.yaml", &GOOD.replace("clusterName", "clusterNmae"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("clusterNmae"), "{e}");
    }

    #[test]
    fn scope_fields() {
        let c = Config::parse(
            "c.yaml",
            &GOOD.replace(
                "includeNamespaces: []",
                "includeNamespaces: [team-*]\nnamespaceSelector: {matchLabels: {scan: \"yes\"}}\n\
                 skipLabel: {key: kubevigil.io/skip, value: \"true\"}",
            ),
        )
        .unwrap();
        assert!(c.namespace_selected(Some("team-a")));
        assert!(!c.namespace_selected(Some("shop")));
        assert!(c.namespace_scope().needs_labels());
        assert_eq!(
            c.skip_label.as_ref().map(|s| s.key.as_str()),
            Some("kubevigil.io/skip")
        );
        let e = Config::parse(
            "c.yaml",
            &GOOD.replace("includeNamespaces: []", "includeNamespaces: [Team_A]"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("includeNamespaces[0]"), "{e}");
        let e = Config::parse(
            "c.yaml",
            &GOOD.replace(
                "includeNamespaces: []",
                "namespaceSelector: {matchExpressions: [{key: a, operator: Has}]}",
            ),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("namespaceSelector") && e.contains("unknown operator"),
            "{e}"
        );
        let empty = Config::parse(
            "c.yaml",
            &GOOD.replace("includeNamespaces: []", "namespaceSelector: {}"),
        )
        .unwrap();
        assert!(!empty.namespace_scope().needs_labels());
    }

    #[test]
    fn bindings_need_their_roles_watched() {
        let rule = |resources: &str| {
            GOOD.replace(
                "resources: [deployments]}",
                &format!(
                    "resources: [deployments]}}\n  - {{apiGroups: [rbac.authorization.k8s.io], \
                     apiVersions: [v1], resources: [{resources}]}}"
                ),
            )
        };
        let all = rule("roles, clusterroles, rolebindings, clusterrolebindings");
        assert!(Config::parse("c.yaml", &all).is_ok());
        let no_roles = rule("rolebindings, clusterrolebindings");
        let e = Config::parse("c.yaml", &no_roles).unwrap_err().to_string();
        assert!(
            e.contains("continuousScanning.matchingRules") && e.contains("roles and clusterroles"),
            "{e}"
        );
    }

    #[test]
    fn rescan_after_is_off_or_a_duration() {
        let c = Config::parse("c.yaml", GOOD).unwrap();
        assert_eq!(c.continuous_scanning.rescan_after, None);
        let with = |v: &str| {
            GOOD.replace(
                "resyncPeriod: 10m",
                &format!("resyncPeriod: 10m\n  rescanAfter: {v}"),
            )
        };
        let off = Config::parse("c.yaml", &with("off")).unwrap();
        assert_eq!(off.continuous_scanning.rescan_after, None);
        let day = Config::parse("c.yaml", &with("24h")).unwrap();
        assert_eq!(
            day.continuous_scanning.rescan_after,
            Some(Duration::from_secs(86_400))
        );
        let e = Config::parse("c.yaml", &with("sometimes"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("rescanAfter") && e.contains("neither `off`"),
            "{e}"
        );
        assert!(Config::parse("c.yaml", &with("0s")).is_err());
    }
}
