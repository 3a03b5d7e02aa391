//! Engine results mapped to the result resources (WorkloadConfigurationScan and its Summary),
//! with the names, labels and annotations of `kubevigil_crds::identity`.

use std::collections::BTreeMap;

use kube::api::ObjectMeta;
use kubevigil_crds::identity::{annotations, short_hash};
use kubevigil_crds::{
    ControlSeverity, ControlStatus, ControlSummary, RelatedObject, RuleStatus, ScannedControl,
    ScannedRule, SeveritySummary, Status, WorkloadConfigurationScan, WorkloadConfigurationScanSpec,
    WorkloadConfigurationScanSummary, WorkloadConfigurationScanSummarySpec,
};

use crate::engine::{ControlResult, Evaluator, Inventory, ResourceResult};

/// The scanner version written into every result; a change makes older results stale.
pub const SCANNER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where and how results are written.
#[derive(Clone, Debug)]
pub struct ReportContext {
    /// Namespace for results of cluster-scoped targets and ClusterRoleBinding triplets.
    pub install_namespace: String,
    /// Cluster name for the `wlid` annotation.
    pub cluster_name: String,
    /// Hash of the control set and its configuration (see [`controls_hash`]).
    pub controls_hash: String,
}

/// A hash of the control IDs and the configuration inputs: results written under a different
/// hash are stale.
pub fn controls_hash(evaluator: &Evaluator<'_>) -> String {
    let mut key = String::new();
    for c in evaluator.controls() {
        key.push_str(c.meta().id);
        key.push(';');
    }
    for (k, v) in evaluator.inputs().iter() {
        key.push_str(&format!("{}:{k}={};", k.len(), v.join("\u{1f}")));
    }
    short_hash(&key)
}

/// The result objects of one resource.
#[derive(Clone, Debug)]
pub struct ResultObjects {
    /// The full scan.
    pub scan: WorkloadConfigurationScan,
    /// Its summary (same name and namespace).
    pub summary: WorkloadConfigurationScanSummary,
}

/// Builds the scan and summary objects for one resource's results.
pub fn build(result: &ResourceResult, inventory: &Inventory, cx: &ReportContext) -> ResultObjects {
    let target = &result.target;
    let mut annotations_map = BTreeMap::new();
    annotations_map.insert(annotations::RESOURCE_ID.to_string(), target.resource_id());
    annotations_map.insert(annotations::WLID.to_string(), target.wlid(&cx.cluster_name));
    annotations_map.insert(
        annotations::SCANNER_VERSION.to_string(),
        SCANNER_VERSION.to_string(),
    );
    annotations_map.insert(
        annotations::CONTROLS_HASH.to_string(),
        cx.controls_hash.clone(),
    );
    let metadata = ObjectMeta {
        name: Some(target.result_name()),
        namespace: Some(target.result_namespace(&cx.install_namespace).to_string()),
        labels: Some(target.labels()),
        annotations: Some(annotations_map),
        ..ObjectMeta::default()
    };

    let mut controls = BTreeMap::new();
    let mut summary_controls = BTreeMap::new();
    let mut severities = SeveritySummary::default();
    let (mut passed, mut failed) = (0u32, 0u32);
    for c in &result.controls {
        let severity = ControlSeverity {
            severity: c.meta.severity(),
            score_factor: c.meta.base_score,
        };
        let status = ControlStatus {
            status: c.status,
            sub_status: c.sub_status,
            info: c.info.clone(),
        };
        match c.status {
            Status::Passed => passed += 1,
            Status::Failed => {
                failed += 1;
                severities.add(c.meta.severity());
            }
            Status::Skipped => {}
        }
        summary_controls.insert(
            c.meta.id.to_string(),
            ControlSummary {
                control_id: c.meta.id.to_string(),
                severity: severity.clone(),
                status: status.clone(),
            },
        );
        controls.insert(
            c.meta.id.to_string(),
            ScannedControl {
                control_id: c.meta.id.to_string(),
                name: c.meta.name.to_string(),
                severity,
                status,
                rules: rules_of(c),
            },
        );
    }
    let related_objects = match target {
        kubevigil_crds::identity::Target::Triplet { .. } => related_of(result, inventory),
        kubevigil_crds::identity::Target::Object(_) => Vec::new(),
    };
    let evaluated = u32::try_from(result.controls.len()).unwrap_or(u32::MAX);
    let scan = WorkloadConfigurationScan {
        metadata: metadata.clone(),
        spec: WorkloadConfigurationScanSpec {
            controls,
            related_objects,
            evaluated_controls: evaluated,
        },
    };
    let decided = passed + failed;
    let score = if decided == 0 {
        100.0
    } else {
        (f64::from(passed) * 10000.0 / f64::from(decided)).round() / 100.0
    };
    let summary = WorkloadConfigurationScanSummary {
        metadata,
        spec: WorkloadConfigurationScanSummarySpec {
            severities,
            controls: summary_controls,
            compliance_score: score,
        },
    };
    ResultObjects { scan, summary }
}

fn rules_of(c: &ControlResult) -> Vec<ScannedRule> {
    c.rules
        .iter()
        .map(|r| ScannedRule {
            name: r.name.to_string(),
            status: RuleStatus {
                status: r.status,
                sub_status: r.sub_status,
            },
            control_configurations: c.configurations.clone(),
            paths: r.paths.clone(),
            related_resources_ids: r.related.clone(),
        })
        .collect()
}

/// The binding and role of a triplet result.
fn related_of(result: &ResourceResult, inventory: &Inventory) -> Vec<RelatedObject> {
    let Some(t) = inventory
        .triplets()
        .iter()
        .find(|t| inventory.triplet_target(t).as_ref() == Some(&result.target))
    else {
        return Vec::new();
    };
    [inventory.binding_of(t), inventory.role_of(t)]
        .into_iter()
        .flatten()
        .map(|o| {
            let r = o.object_ref();
            RelatedObject {
                api_group: r.group.clone(),
                api_version: r.version.clone(),
                kind: o.kind.clone(),
                namespace: o.namespace.clone().unwrap_or_default(),
                name: o.name.clone(),
            }
        })
        .collect()
}
