//! OpenReports (`openreports.io/v1alpha1`): `Report` and `ClusterReport`, the standard policy
//! report API that Policy Reporter, its UI and integrations, and the Headlamp plugins read.
//!
//! These types are ours to write, not the API's owner: the CRDs come from the OpenReports
//! project (Go module `github.com/openreports/reports-api`), and the fields here are those of its
//! v0.2.1 schema (`config/crd/openreports.io_reports.yaml`). The report body sits at the top
//! level of the object, not under `spec`, so the types implement [`kube::Resource`] by hand.
//! kubevigil's CRD generator never emits them.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{ClusterResourceScope, NamespaceResourceScope};
use serde::{Deserialize, Serialize};

/// API group of OpenReports.
pub const GROUP: &str = "openreports.io";
/// API version of OpenReports that kubevigil writes.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of OpenReports objects.
pub const API_VERSION: &str = "openreports.io/v1alpha1";
/// The `source` of every report and result kubevigil writes.
pub const SOURCE: &str = "kubevigil";

/// The body shared by `Report` and `ClusterReport`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReportBody {
    /// The object the report is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ObjectReference>,
    /// The tool that wrote the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Counts of results by outcome.
    #[serde(default)]
    pub summary: ReportSummary,
    /// One result per evaluated check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<ReportResult>,
}

/// The object a report is about (OpenReports' `scope`, a core `ObjectReference`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    /// `apiVersion` of the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind of the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name of the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Namespace of the object; absent for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// UID of the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// Counts of results by outcome.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReportSummary {
    /// Results that passed.
    #[serde(default)]
    pub pass: u32,
    /// Results that failed.
    #[serde(default)]
    pub fail: u32,
    /// Results that warn (kubevigil writes none).
    #[serde(default)]
    pub warn: u32,
    /// Results that errored (kubevigil writes none).
    #[serde(default)]
    pub error: u32,
    /// Results that were skipped.
    #[serde(default)]
    pub skip: u32,
}

/// Outcome of one result.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ResultOutcome {
    /// Compliant (possibly through a posture exception).
    Pass,
    /// Not compliant.
    Fail,
    /// Not decided.
    Skip,
}

/// Severity of one result.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ResultSeverity {
    /// Base score 9 or more.
    Critical,
    /// Base score 7 to below 9.
    High,
    /// Base score 4 to below 7.
    Medium,
    /// Base score 1 to below 4.
    Low,
    /// Base score below 1.
    Info,
}

/// A timestamp as OpenReports stores it (a protobuf `Timestamp`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    pub seconds: i64,
    /// Nanoseconds within the second.
    pub nanos: i32,
}

/// One evaluated check.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReportResult {
    /// The policy: kubevigil's control ID (`C-0017`).
    pub policy: String,
    /// The rule that decided the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// pass, fail or skip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ResultOutcome>,
    /// The control's severity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<ResultSeverity>,
    /// The tool that evaluated it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The control's name and an explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A category for grouping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Whether the result counts towards a score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scored: Option<bool>,
    /// When it was evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    /// Extra facts, as strings (control name, failed paths, sub-status, exception).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

/// An OpenReports `Report`: one namespaced object's results.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `openreports.io/v1alpha1`.
    pub api_version: String,
    /// `Report`.
    pub kind: String,
    /// Standard object metadata.
    pub metadata: ObjectMeta,
    /// The report.
    #[serde(flatten)]
    pub body: ReportBody,
}

/// An OpenReports `ClusterReport`: one cluster-scoped object's results.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterReport {
    /// `openreports.io/v1alpha1`.
    pub api_version: String,
    /// `ClusterReport`.
    pub kind: String,
    /// Standard object metadata.
    pub metadata: ObjectMeta,
    /// The report.
    #[serde(flatten)]
    pub body: ReportBody,
}

impl Report {
    /// A Report with its type fields set.
    pub fn new(metadata: ObjectMeta, body: ReportBody) -> Self {
        Report {
            api_version: API_VERSION.into(),
            kind: "Report".into(),
            metadata,
            body,
        }
    }
}

impl ClusterReport {
    /// A ClusterReport with its type fields set.
    pub fn new(metadata: ObjectMeta, body: ReportBody) -> Self {
        ClusterReport {
            api_version: API_VERSION.into(),
            kind: "ClusterReport".into(),
            metadata,
            body,
        }
    }
}

macro_rules! resource {
    ($ty:ty, $kind:literal, $plural:literal, $scope:ty) => {
        impl kube::Resource for $ty {
            type DynamicType = ();
            type Scope = $scope;

            fn kind(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($kind)
            }

            fn group(_: &()) -> Cow<'_, str> {
                Cow::Borrowed(GROUP)
            }

            fn version(_: &()) -> Cow<'_, str> {
                Cow::Borrowed(VERSION)
            }

            fn api_version(_: &()) -> Cow<'_, str> {
                Cow::Borrowed(API_VERSION)
            }

            fn plural(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($plural)
            }

            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }

            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

resource!(Report, "Report", "reports", NamespaceResourceScope);
resource!(
    ClusterReport,
    "ClusterReport",
    "clusterreports",
    ClusterResourceScope
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_at_the_top_level() {
        let r = Report::new(
            ObjectMeta {
                name: Some("deployment-web".into()),
                ..ObjectMeta::default()
            },
            ReportBody {
                source: Some(SOURCE.into()),
                summary: ReportSummary {
                    pass: 2,
                    fail: 1,
                    ..ReportSummary::default()
                },
                ..ReportBody::default()
            },
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["apiVersion"], "openreports.io/v1alpha1");
        assert_eq!(v["kind"], "Report");
        assert_eq!(v["summary"]["fail"], 1);
        assert_eq!(v["source"], "kubevigil");
        assert!(v.get("body").is_none() && v.get("spec").is_none());
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
        assert_eq!(
            <ClusterReport as kube::Resource>::plural(&()),
            "clusterreports"
        );
    }
}
