//! WorkloadConfigurationScan: the full result of evaluating every control on one target.
//!
//! The field layout mirrors Kubescape's `spdx.softwarecomposition.kubescape.io/v1beta1`
//! WorkloadConfigurationScan so that people and tools that read Kubescape results find the same
//! fields here.

use std::borrow::Cow;
use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Text that is a constant of the control catalog when the engine writes it (control IDs,
/// control names, rule names) and read text when a result is read back. Borrowing the
/// catalog's text saves a few allocations per control per result (a result lists every
/// control); it serialises, deserialises and has the schema of a plain string.
pub type CatalogText = Cow<'static, str>;

/// The full configuration-scan result of one target (a workload, another scanned object, or an
/// RBAC subject bound to a role by a binding).
///
/// Named after the target (see `kubevigil_crds::identity`); a new scan replaces it completely.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubevigil.io",
    version = "v1beta1",
    kind = "WorkloadConfigurationScan",
    plural = "workloadconfigurationscans",
    shortname = "wcs",
    category = "kubevigil",
    namespaced,
    doc = "Full configuration-scan result of one target: every evaluated control with its rules and paths.",
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".metadata.labels.kubevigil\\.io/workload-kind"}"#,
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".metadata.labels.kubevigil\\.io/workload-name"}"#,
    printcolumn = r#"{"name":"Controls","type":"integer","jsonPath":".spec.evaluatedControls","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadConfigurationScanSpec {
    /// Every evaluated control, keyed by control ID (for example `C-0057`). Each scan replaces
    /// the whole map.
    // Atomic for server-side apply: the API server neither tracks nor merges the map's fields
    // one by one (applies cost less, managedFields stay small), and a control added by hand
    // does not survive the next scan.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-map-type" = "atomic"))]
    pub controls: BTreeMap<CatalogText, ScannedControl>,
    /// The objects that make up an RBAC result besides its subject: the role and the binding.
    /// Empty for ordinary targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related_objects: Vec<RelatedObject>,
    /// How many controls were evaluated on the target (passed, failed or skipped).
    #[serde(default)]
    pub evaluated_controls: u32,
}

/// The outcome of one control on the target.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScannedControl {
    /// Control ID from the Kubescape catalog, for example `C-0057`.
    #[serde(rename = "controlID")]
    pub control_id: CatalogText,
    /// Human-readable control name, for example `Privileged container`.
    pub name: CatalogText,
    /// Severity derived from the control's base score. Also in the summary of the same name;
    /// kept here too, as in Kubescape's kind, so that this object alone says what failed and
    /// how badly (the offline table and exception tooling read it alone).
    pub severity: ControlSeverity,
    /// Merged status of the control's rules on this target, with its explanation (`info`),
    /// which only this kind carries (the summary of the same name has the status without it).
    pub status: ControlStatus,
    /// Per-rule outcomes with the offending paths. Every rule of the control is listed, passed
    /// ones too (as in Kubescape's WorkloadConfigurationScan, whose passed rules carry their
    /// name and status only): a passed rule has no paths and no related resources, since
    /// nothing was found.
    #[serde(default)]
    pub rules: Vec<ScannedRule>,
}

/// A control's severity and the base score it is derived from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControlSeverity {
    /// `Critical` (score >= 9), `High` (>= 7), `Medium` (>= 4), `Low` (>= 1) or `Unknown`.
    pub severity: Severity,
    /// The control's base score (0 to 10), as Kubescape's `scoreFactor`.
    pub score_factor: f64,
}

/// Severity bucket of a control.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Severity {
    /// Base score below 1.
    #[default]
    Unknown,
    /// Base score 1 to below 4.
    Low,
    /// Base score 4 to below 7.
    Medium,
    /// Base score 7 to below 9.
    High,
    /// Base score 9 or more.
    Critical,
}

impl Severity {
    /// Maps a control's base score to its bucket, as Kubescape's `ControlSeverityToInt` does.
    pub fn from_score(score: f64) -> Self {
        if score >= 9.0 {
            Severity::Critical
        } else if score >= 7.0 {
            Severity::High
        } else if score >= 4.0 {
            Severity::Medium
        } else if score >= 1.0 {
            Severity::Low
        } else {
            Severity::Unknown
        }
    }

    /// The name as shown in results and accepted on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "Unknown",
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
            Severity::Critical => "Critical",
        }
    }
}

/// Merged status of a control on one target, with the reason when not simply passed/failed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControlStatus {
    /// `passed`, `failed` or `skipped`.
    pub status: Status,
    /// Why a control passed or was skipped: `w/exceptions`, `irrelevant`, `configuration`,
    /// `integration`, `requires review` or `manual review`. Empty for a plain pass or fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_status: Option<SubStatus>,
    /// Free text explaining a skip, for example `Control configurations are empty`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<String>,
}

/// Status of a rule or control on one target.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The target complies (possibly thanks to an exception; see the sub-status).
    #[default]
    Passed,
    /// The target violates the control.
    Failed,
    /// The control could not be decided (missing configuration or outside data).
    Skipped,
}

/// Reason attached to a status, with Kubescape's spelling.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum SubStatus {
    /// Failed, but a posture exception covers it.
    #[serde(rename = "w/exceptions")]
    WithExceptions,
    /// Nothing in the scan matched what the control inspects.
    #[serde(rename = "irrelevant")]
    Irrelevant,
    /// The control needs configuration inputs and none were given.
    #[serde(rename = "configuration")]
    Configuration,
    /// The control needs data from outside the cluster objects (vulnerability scans, cloud APIs,
    /// image signatures).
    #[serde(rename = "integration")]
    Integration,
    /// A failure that a person must review.
    #[serde(rename = "requires review")]
    RequiresReview,
    /// The control can only be checked by hand.
    #[serde(rename = "manual review")]
    ManualReview,
}

/// The outcome of one rule of a control.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScannedRule {
    /// Rule name from the Kubescape regolibrary, for example `rule-privilege-escalation`.
    pub name: CatalogText,
    /// Status of this rule on the target.
    pub status: RuleStatus,
    /// Not written by kubevigil (always empty; kept so that results written by earlier
    /// versions, which copied the control inputs here, stay valid). Kubescape copies the control
    /// inputs the rule read into every rule of every result; they are the same for every
    /// result of a scan, so kubevigil leaves them out: the `kubevigil.io/controls-hash`
    /// annotation names the controls and inputs a result was computed with, and the inputs
    /// themselves are the chart's `controlsConfig` (`scan-job controls -o json` lists each
    /// control's input names).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub control_configurations: BTreeMap<String, Vec<String>>,
    /// Offending or remediating paths, in Kubescape's path syntax
    /// (`spec.template.spec.containers[0].securityContext.privileged`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<RulePath>,
    /// Kubescape-style IDs (`<group>/<version>/<namespace>/<kind>/<name>`) of the other objects
    /// that took part in the finding (a Service exposing the workload, its ServiceAccount...).
    #[serde(
        default,
        rename = "relatedResourcesIDs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub related_resources_ids: Vec<String>,
}

/// Status of a rule, with an optional reason.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleStatus {
    /// `passed`, `failed` or `skipped`.
    pub status: Status,
    /// Reason for a pass or skip, as on the control status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_status: Option<SubStatus>,
}

/// One path of a finding. Exactly one of the path fields is set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RulePath {
    /// Legacy offending path; Kubescape keeps it equal to the review or delete path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_path: Option<String>,
    /// A field whose value is wrong or suspicious and needs a human look.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_path: Option<String>,
    /// A field or list entry whose removal fixes the finding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_path: Option<String>,
    /// A field to set (usually missing today) to fix the finding; see `fixPathValue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix_path: Option<String>,
    /// The value to set at `fixPath`; `YOUR_VALUE` when only the user can choose it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix_path_value: Option<String>,
    /// The object the path belongs to, when it is a related object rather than the target.
    #[serde(
        default,
        rename = "resourceID",
        skip_serializing_if = "Option::is_none"
    )]
    pub resource_id: Option<String>,
}

/// An object that is part of an RBAC result: the role or the binding of the triplet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RelatedObject {
    /// API group of the object (`rbac.authorization.k8s.io`).
    #[serde(default)]
    pub api_group: String,
    /// API version of the object (`v1`).
    #[serde(default)]
    pub api_version: String,
    /// Kind: `Role`, `ClusterRole`, `RoleBinding` or `ClusterRoleBinding`.
    pub kind: String,
    /// Namespace; empty for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name of the object.
    pub name: String,
}
