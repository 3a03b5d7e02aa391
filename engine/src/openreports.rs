//! A result mapped to OpenReports (`openreports.io/v1alpha1`, types in
//! `kubevigil_crds::openreports`), for Policy Reporter, its integrations and the Headlamp
//! plugins.
//!
//! - One `Report` per result, beside it: same name, namespace, labels and annotations, and the
//!   same owner reference (so garbage collection removes both with the target). A cluster-scoped
//!   object's result becomes a `ClusterReport` of that name instead, owned by the object when
//!   its UID is known. RBAC triplet results stay namespaced `Report`s beside their result.
//! - `scope` is the target (the subject for a triplet), `source` is `kubevigil`.
//! - One result per evaluated control: `policy` is the control ID, `rule` the rule that failed
//!   (or the control's first rule), `result` pass/fail/skip from the control's status (a pass
//!   through a posture exception is a pass, with the exception in the properties), `severity`
//!   from the control's, and the control's name, sub-status, explanation and failed paths in
//!   `properties`.
//! - `summary` counts pass, fail and skip.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kubevigil_crds::identity::{SubjectKind, Target, annotations};
use kubevigil_crds::openreports::{
    ClusterReport, ObjectReference, Report, ReportBody, ReportResult, ReportSummary, ResultOutcome,
    ResultSeverity, SOURCE, Timestamp,
};
use kubevigil_crds::{RulePath, ScannedControl, Severity, Status, WorkloadConfigurationScan};

/// Most failed paths listed in one result's `failedPaths` property; the rest are counted.
pub const MAX_PATHS: usize = 20;

/// A report for one result: namespaced, or cluster-scoped for a cluster-scoped target.
#[derive(Clone, Debug, PartialEq)]
pub enum OpenReport {
    /// A `Report` in the result's namespace.
    Namespaced(Report),
    /// A `ClusterReport`.
    Cluster(ClusterReport),
}

impl OpenReport {
    /// The report's name.
    pub fn name(&self) -> &str {
        let meta = match self {
            OpenReport::Namespaced(r) => &r.metadata,
            OpenReport::Cluster(r) => &r.metadata,
        };
        meta.name.as_deref().unwrap_or_default()
    }

    /// The report's body.
    pub fn body(&self) -> &ReportBody {
        match self {
            OpenReport::Namespaced(r) => &r.body,
            OpenReport::Cluster(r) => &r.body,
        }
    }
}

/// Whether a target's report is a `ClusterReport` (a cluster-scoped object).
pub fn is_cluster_scoped(target: &Target) -> bool {
    matches!(target, Target::Object(o) if o.namespace.is_none())
}

/// The report of one (stamped) result of `target`, evaluated at `timestamp`.
pub fn build(
    target: &Target,
    scan: &WorkloadConfigurationScan,
    timestamp: Timestamp,
) -> OpenReport {
    let uid = scan
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(annotations::TARGET_UID))
        .filter(|u| !u.is_empty())
        .cloned();
    let scope = scope_of(target, uid.clone());
    let mut summary = ReportSummary::default();
    let mut results = Vec::with_capacity(scan.spec.controls.len());
    for control in scan.spec.controls.values() {
        let outcome = match control.status.status {
            Status::Passed => {
                summary.pass += 1;
                ResultOutcome::Pass
            }
            Status::Failed => {
                summary.fail += 1;
                ResultOutcome::Fail
            }
            Status::Skipped => {
                summary.skip += 1;
                ResultOutcome::Skip
            }
        };
        results.push(result_of(control, outcome, timestamp));
    }
    let body = ReportBody {
        scope: Some(scope),
        source: Some(SOURCE.to_string()),
        summary,
        results,
    };
    let metadata = ObjectMeta {
        name: scan.metadata.name.clone(),
        labels: scan.metadata.labels.clone(),
        annotations: scan.metadata.annotations.clone(),
        ..ObjectMeta::default()
    };
    match target {
        Target::Object(o) if o.namespace.is_none() => {
            let owner_references = uid.map(|uid| {
                vec![OwnerReference {
                    api_version: o.api_version(),
                    kind: o.kind.clone(),
                    name: o.name.clone(),
                    uid,
                    controller: None,
                    block_owner_deletion: None,
                }]
            });
            OpenReport::Cluster(ClusterReport::new(
                ObjectMeta {
                    owner_references,
                    ..metadata
                },
                body,
            ))
        }
        _ => OpenReport::Namespaced(Report::new(
            ObjectMeta {
                namespace: scan.metadata.namespace.clone(),
                owner_references: scan.metadata.owner_references.clone(),
                ..metadata
            },
            body,
        )),
    }
}

fn scope_of(target: &Target, uid: Option<String>) -> ObjectReference {
    match target {
        Target::Object(o) => ObjectReference {
            api_version: Some(o.api_version()),
            kind: Some(o.kind.clone()),
            name: Some(o.name.clone()),
            namespace: o.namespace.clone(),
            uid,
        },
        Target::Triplet { subject, .. } => ObjectReference {
            api_version: Some(
                match subject.kind {
                    SubjectKind::ServiceAccount => "v1",
                    _ => "rbac.authorization.k8s.io/v1",
                }
                .to_string(),
            ),
            kind: Some(subject.kind.as_str().to_string()),
            name: Some(subject.name.clone()),
            namespace: subject.namespace.clone(),
            uid: None,
        },
    }
}

fn severity_of(s: Severity) -> ResultSeverity {
    match s {
        Severity::Critical => ResultSeverity::Critical,
        Severity::High => ResultSeverity::High,
        Severity::Medium => ResultSeverity::Medium,
        Severity::Low => ResultSeverity::Low,
        Severity::Unknown => ResultSeverity::Info,
    }
}

/// One path as text: `spec.x`, or `spec.x=value` for a fix path.
fn path_text(p: &RulePath) -> Option<String> {
    if let Some(fix) = &p.fix_path {
        return Some(match &p.fix_path_value {
            Some(v) => format!("{fix}={v}"),
            None => fix.clone(),
        });
    }
    p.review_path
        .clone()
        .or_else(|| p.delete_path.clone())
        .or_else(|| p.failed_path.clone())
}

fn result_of(
    control: &ScannedControl,
    outcome: ResultOutcome,
    timestamp: Timestamp,
) -> ReportResult {
    let decided = control
        .rules
        .iter()
        .find(|r| !r.paths.is_empty())
        .or_else(|| control.rules.first());
    let mut properties = BTreeMap::new();
    properties.insert("controlID".to_string(), control.control_id.to_string());
    properties.insert("controlName".to_string(), control.name.to_string());
    properties.insert(
        "scoreFactor".to_string(),
        control.severity.score_factor.to_string(),
    );
    if let Some(sub) = control.status.sub_status {
        // Kubescape's spelling (`w/exceptions`), through the CRD's own serialization.
        if let Ok(serde_json::Value::String(s)) = serde_json::to_value(sub) {
            properties.insert("subStatus".to_string(), s);
        }
    }
    if let Some(info) = &control.status.info {
        if let Some(exception) = info.strip_prefix("excepted by ") {
            properties.insert("exception".to_string(), exception.to_string());
        }
        properties.insert("info".to_string(), info.clone());
    }
    let paths: Vec<String> = control
        .rules
        .iter()
        .flat_map(|r| r.paths.iter().filter_map(path_text))
        .collect();
    if !paths.is_empty() {
        let mut shown = paths.iter().take(MAX_PATHS).cloned().collect::<Vec<_>>();
        if paths.len() > MAX_PATHS {
            shown.push(format!("... ({} more)", paths.len() - MAX_PATHS));
        }
        properties.insert("failedPaths".to_string(), shown.join("\n"));
    }
    let message = match &control.status.info {
        Some(info) => format!("{}: {info}", control.name),
        None => control.name.to_string(),
    };
    ReportResult {
        policy: control.control_id.to_string(),
        rule: decided.map(|r| r.name.to_string()),
        result: Some(outcome),
        severity: Some(severity_of(control.severity.severity)),
        source: Some(SOURCE.to_string()),
        message: Some(message),
        category: Some("Configuration scan".to_string()),
        scored: Some(true),
        timestamp: Some(timestamp),
        properties,
    }
}

/// Seconds and nanoseconds of an RFC 3339 time (the scan-time annotation); the epoch when it
/// does not parse.
pub fn timestamp_of(rfc3339: &str) -> Timestamp {
    rfc3339
        .parse::<k8s_openapi::jiff::Timestamp>()
        .map(|t| Timestamp {
            seconds: t.as_second(),
            nanos: t.subsec_nanosecond(),
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use kubevigil_crds::identity::ObjectRef;
    use kubevigil_crds::{ControlSeverity, ControlStatus, RuleStatus, ScannedRule, SubStatus};

    use super::*;

    fn control(id: &str, status: Status, sub: Option<SubStatus>, paths: usize) -> ScannedControl {
        ScannedControl {
            control_id: id.to_string().into(),
            name: format!("control {id}").into(),
            severity: ControlSeverity {
                severity: Severity::High,
                score_factor: 7.0,
            },
            status: ControlStatus {
                status,
                sub_status: sub,
                info: (sub == Some(SubStatus::WithExceptions))
                    .then(|| "excepted by PostureException shop/legacy".to_string()),
            },
            rules: vec![
                ScannedRule {
                    name: "rule-a".into(),
                    ..ScannedRule::default()
                },
                ScannedRule {
                    name: "rule-b".into(),
                    status: RuleStatus {
                        status,
                        sub_status: sub,
                    },
                    paths: (0..paths)
                        .map(|i| RulePath {
                            fix_path: Some(format!("spec.containers[{i}].x")),
                            fix_path_value: Some("true".into()),
                            ..RulePath::default()
                        })
                        .collect(),
                    ..ScannedRule::default()
                },
            ],
        }
    }

    fn scan(namespace: &str, controls: Vec<ScannedControl>) -> WorkloadConfigurationScan {
        let mut s = WorkloadConfigurationScan::new("deployment-web", Default::default());
        s.metadata.namespace = Some(namespace.into());
        s.metadata.labels =
            Some([("kubevigil.io/workload-kind".into(), "Deployment".into())].into());
        s.metadata.annotations = Some([(annotations::TARGET_UID.into(), "u-1".into())].into());
        s.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "web".into(),
            uid: "u-1".into(),
            ..OwnerReference::default()
        }]);
        for c in controls {
            s.spec.controls.insert(c.control_id.clone(), c);
        }
        s
    }

    fn deployment(ns: Option<&str>) -> Target {
        Target::Object(ObjectRef {
            group: if ns.is_some() { "apps" } else { "" }.into(),
            version: "v1".into(),
            kind: if ns.is_some() {
                "Deployment"
            } else {
                "Namespace"
            }
            .into(),
            namespace: ns.map(str::to_string),
            name: "web".into(),
        })
    }

    #[test]
    fn one_result_per_control_with_counts_paths_and_exceptions() {
        let s = scan(
            "shop",
            vec![
                control("C-0017", Status::Passed, Some(SubStatus::WithExceptions), 1),
                control("C-0016", Status::Failed, None, MAX_PATHS + 3),
                control("C-0001", Status::Passed, None, 0),
                control("C-0002", Status::Skipped, Some(SubStatus::Configuration), 0),
            ],
        );
        let t = timestamp_of("2026-01-31T12:00:00Z");
        let OpenReport::Namespaced(r) = build(&deployment(Some("shop")), &s, t) else {
            panic!("a namespaced target gets a Report");
        };
        assert_eq!(r.metadata.name.as_deref(), Some("deployment-web"));
        assert_eq!(r.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(r.metadata.owner_references, s.metadata.owner_references);
        assert_eq!(r.metadata.labels, s.metadata.labels);
        let b = &r.body;
        assert_eq!(
            b.summary,
            ReportSummary {
                pass: 2,
                fail: 1,
                skip: 1,
                ..ReportSummary::default()
            }
        );
        let scope = b.scope.as_ref().unwrap();
        assert_eq!(scope.kind.as_deref(), Some("Deployment"));
        assert_eq!(scope.api_version.as_deref(), Some("apps/v1"));
        assert_eq!(scope.uid.as_deref(), Some("u-1"));
        assert_eq!(b.source.as_deref(), Some("kubevigil"));
        assert_eq!(b.results.len(), 4);
        let by = |id: &str| b.results.iter().find(|r| r.policy == id).unwrap();
        let failed = by("C-0016");
        assert_eq!(failed.result, Some(ResultOutcome::Fail));
        assert_eq!(failed.severity, Some(ResultSeverity::High));
        assert_eq!(failed.rule.as_deref(), Some("rule-b"));
        assert_eq!(failed.timestamp, Some(t));
        assert_eq!(t.seconds, 1_769_860_800);
        let paths = &failed.properties["failedPaths"];
        assert!(paths.starts_with("spec.containers[0].x=true\n"), "{paths}");
        assert!(paths.ends_with("... (3 more)"), "{paths}");
        let excepted = by("C-0017");
        assert_eq!(excepted.result, Some(ResultOutcome::Pass));
        assert_eq!(excepted.properties["subStatus"], "w/exceptions");
        assert_eq!(
            excepted.properties["exception"],
            "PostureException shop/legacy"
        );
        assert_eq!(by("C-0001").rule.as_deref(), Some("rule-a"));
        assert_eq!(by("C-0002").result, Some(ResultOutcome::Skip));
        assert_eq!(by("C-0002").properties["subStatus"], "configuration");
    }

    #[test]
    fn cluster_scoped_targets_get_a_cluster_report_owned_by_the_target() {
        let target = deployment(None);
        assert!(is_cluster_scoped(&target));
        let s = scan(
            "kubevigil",
            vec![control("C-0001", Status::Passed, None, 0)],
        );
        let OpenReport::Cluster(r) = build(&target, &s, Timestamp::default()) else {
            panic!("a cluster-scoped target gets a ClusterReport");
        };
        assert_eq!(r.metadata.namespace, None);
        let owner = &r.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Namespace", "u-1")
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["kind"], "ClusterReport");
        assert_eq!(v["scope"]["kind"], "Namespace");
        assert!(v["scope"].get("namespace").is_none());
    }
}
