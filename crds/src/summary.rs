//! The two summary kinds: per target (WorkloadConfigurationScanSummary) and per namespace
//! (ConfigurationScanSummary).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::scan::{CatalogText, ControlSeverity, ControlStatus, Severity};

/// Counts of failed controls per severity bucket.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeveritySummary {
    /// Failed controls with severity Critical.
    pub critical: u32,
    /// Failed controls with severity High.
    pub high: u32,
    /// Failed controls with severity Medium.
    pub medium: u32,
    /// Failed controls with severity Low.
    pub low: u32,
    /// Failed controls with severity Unknown.
    pub unknown: u32,
}

impl SeveritySummary {
    /// Counts one more failed control of the given severity.
    pub fn add(&mut self, severity: Severity) {
        match severity {
            Severity::Critical => self.critical += 1,
            Severity::High => self.high += 1,
            Severity::Medium => self.medium += 1,
            Severity::Low => self.low += 1,
            Severity::Unknown => self.unknown += 1,
        }
    }

    /// Adds another summary's counts to this one (namespace sums).
    pub fn merge(&mut self, other: &SeveritySummary) {
        self.critical += other.critical;
        self.high += other.high;
        self.medium += other.medium;
        self.low += other.low;
        self.unknown += other.unknown;
    }

    /// Total number of failed controls.
    pub fn total(&self) -> u32 {
        self.critical + self.high + self.medium + self.low + self.unknown
    }
}

/// The short form of a WorkloadConfigurationScan: severity counts and each control's status.
///
/// Same name and namespace as the WorkloadConfigurationScan it summarises.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubevigil.io",
    version = "v1beta1",
    kind = "WorkloadConfigurationScanSummary",
    plural = "workloadconfigurationscansummaries",
    shortname = "wcss",
    category = "kubevigil",
    namespaced,
    doc = "Summary of one target's configuration scan: failed controls per severity and each control's status.",
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".metadata.labels.kubevigil\\.io/workload-kind"}"#,
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".metadata.labels.kubevigil\\.io/workload-name"}"#,
    printcolumn = r#"{"name":"Critical","type":"integer","jsonPath":".spec.severities.critical"}"#,
    printcolumn = r#"{"name":"High","type":"integer","jsonPath":".spec.severities.high"}"#,
    printcolumn = r#"{"name":"Medium","type":"integer","jsonPath":".spec.severities.medium"}"#,
    printcolumn = r#"{"name":"Low","type":"integer","jsonPath":".spec.severities.low"}"#,
    printcolumn = r#"{"name":"Score","type":"number","jsonPath":".spec.complianceScore"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadConfigurationScanSummarySpec {
    /// Failed controls per severity (one count per failed control).
    pub severities: SeveritySummary,
    /// Every evaluated control's status, keyed by control ID. Each scan replaces the whole map.
    // Atomic for server-side apply, like WorkloadConfigurationScanSpec::controls.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-map-type" = "atomic"))]
    pub controls: BTreeMap<CatalogText, ControlSummary>,
    /// Compliance score in percent: passed controls over passed plus failed controls.
    /// Skipped controls are not counted; 100 when nothing was decided.
    #[serde(default)]
    pub compliance_score: f64,
}

/// One control in a summary.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControlSummary {
    /// Control ID, for example `C-0057`.
    #[serde(rename = "controlID")]
    pub control_id: CatalogText,
    /// Severity derived from the control's base score.
    pub severity: ControlSeverity,
    /// Status of the control on the target: `status` and `subStatus`. The explanation of a skip
    /// or exception (`info`) is not repeated here; it is in the WorkloadConfigurationScan of the
    /// same name.
    pub status: ControlStatus,
}

/// The sums of one namespace's WorkloadConfigurationScanSummaries.
///
/// Cluster-scoped and named after the namespace. Unlike Kubescape's (computed on read), this is a
/// stored object that the controller keeps current, so it can be watched.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubevigil.io",
    version = "v1beta1",
    kind = "ConfigurationScanSummary",
    plural = "configurationscansummaries",
    shortname = "css",
    category = "kubevigil",
    doc = "Sums of one namespace's workload scan summaries; named after the namespace.",
    printcolumn = r#"{"name":"Workloads","type":"integer","jsonPath":".spec.workloads"}"#,
    printcolumn = r#"{"name":"Critical","type":"integer","jsonPath":".spec.severities.critical"}"#,
    printcolumn = r#"{"name":"High","type":"integer","jsonPath":".spec.severities.high"}"#,
    printcolumn = r#"{"name":"Medium","type":"integer","jsonPath":".spec.severities.medium"}"#,
    printcolumn = r#"{"name":"Low","type":"integer","jsonPath":".spec.severities.low"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationScanSummarySpec {
    /// Sum of the severity counts of the namespace's summaries.
    pub severities: SeveritySummary,
    /// Number of summaries counted.
    #[serde(default)]
    pub workloads: u32,
    /// The summaries that were summed.
    #[serde(default)]
    pub summary_ref: Vec<SummaryRef>,
}

/// A reference to one WorkloadConfigurationScanSummary.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct SummaryRef {
    /// Always `WorkloadConfigurationScanSummary`.
    pub kind: String,
    /// Namespace of the summary.
    pub namespace: String,
    /// Name of the summary.
    pub name: String,
}
