//! Engine results mapped to the result resources (WorkloadConfigurationScan and its Summary),
//! with the names, labels and annotations of `kubevigil_crds::identity`.
//!
//! What [`build`] writes is exactly what is stored in the cluster and what `scan-job scan -o json`
//! prints:
//! - name and namespace from [`Target::result_name`] and [`Target::result_namespace`];
//! - the identity labels of [`Target::labels`];
//! - annotations: resource ID, `wlid`, scanner version, controls hash, fingerprint of the scanned
//!   object(s), and when known the target's UID and the scan time;
//! - an ownerReference to the target when it is a namespaced object whose UID is known (the
//!   result then lives in the same namespace, so garbage collection removes it with the target).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kubevigil_crds::identity::{
    FingerprintInput, Target, annotations, combine_fingerprints, fingerprint_with_labels,
    scalable_kind, spec_hash,
};
use kubevigil_crds::{
    CatalogText, ControlSeverity, ControlStatus, ControlSummary, RelatedObject, RuleStatus,
    ScannedControl, ScannedRule, SeveritySummary, Status, WorkloadConfigurationScan,
    WorkloadConfigurationScanSpec, WorkloadConfigurationScanSummary,
    WorkloadConfigurationScanSummarySpec,
};
use serde_json::Value;

use crate::{ControlResult, Evaluator, Inventory, K8sObject, ResourceResult};

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
    /// Time of the scan (RFC 3339) for the scan-time annotation; left out when `None`.
    pub scan_time: Option<String>,
}

/// The controls hash of an evaluator's controls and inputs ([`crate::settings::controls_hash`]).
pub fn controls_hash(evaluator: &Evaluator<'_>) -> String {
    crate::settings::controls_hash(evaluator.controls(), evaluator.inputs())
}

/// The result objects of one resource.
#[derive(Clone, Debug)]
pub struct ResultObjects {
    /// The full scan.
    pub scan: WorkloadConfigurationScan,
    /// Its summary (same name and namespace).
    pub summary: WorkloadConfigurationScanSummary,
}

/// Compliance score of one target, in percent, rounded to two decimals.
///
/// `passed / (passed + failed) * 100`, where `passed` counts the controls whose status is
/// `passed` (including those passed through a posture exception, sub-status `w/exceptions`) and
/// `failed` those whose status is `failed`. Skipped controls (configuration, integration, manual
/// review) are not counted either way, since nothing was decided. A target with no decided
/// control scores 100.
pub fn compliance_score(passed: u32, failed: u32) -> f64 {
    let decided = u64::from(passed) + u64::from(failed);
    if decided == 0 {
        100.0
    } else {
        // Integer arithmetic up to the rounding, so that e.g. 2/3 gives exactly 66.67.
        let hundredths = (u64::from(passed) * 10_000 * 2 + decided) / (decided * 2);
        hundredths as f64 / 100.0
    }
}

/// Builds the scan and summary objects for one resource's results.
pub fn build(result: &ResourceResult, inventory: &Inventory, cx: &ReportContext) -> ResultObjects {
    build_for(result, scanned_object(result, inventory), inventory, cx)
}

/// [`build`] with the scanned object given (`None` for a triplet): the object the result was
/// evaluated on when the inventory holds only a smaller copy of it
/// ([`crate::Evaluator::evaluate_object_as`]).
pub fn build_for(
    result: &ResourceResult,
    scanned: Option<&K8sObject>,
    inventory: &Inventory,
    cx: &ReportContext,
) -> ResultObjects {
    let fingerprint = result_fingerprint(result, scanned, inventory);
    build_with_fingerprint(result, scanned, inventory, cx, fingerprint)
}

/// [`build`] with the fingerprint annotation given: for a caller that has computed it already
/// (a scan Job stamps every result of a target with the target's fingerprint, which for a
/// binding also covers its role), so that a scalable workload's spec is not hashed twice.
pub fn build_fingerprinted(
    result: &ResourceResult,
    inventory: &Inventory,
    cx: &ReportContext,
    fingerprint: String,
) -> ResultObjects {
    build_with_fingerprint(
        result,
        scanned_object(result, inventory),
        inventory,
        cx,
        Some(fingerprint),
    )
}

fn build_with_fingerprint(
    result: &ResourceResult,
    scanned: Option<&K8sObject>,
    inventory: &Inventory,
    cx: &ReportContext,
    fingerprint: Option<String>,
) -> ResultObjects {
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
    if let Some(fp) = fingerprint {
        annotations_map.insert(annotations::FINGERPRINT.to_string(), fp);
    }
    if let Some(time) = &cx.scan_time {
        annotations_map.insert(annotations::SCAN_TIME.to_string(), time.clone());
    }
    let uid = scanned.and_then(uid_of);
    if let Some(uid) = uid {
        annotations_map.insert(annotations::TARGET_UID.to_string(), uid.to_string());
    }
    let owner_references = match (target, scanned, uid) {
        (Target::Object(o), Some(obj), Some(uid)) if o.namespace.is_some() => {
            Some(vec![OwnerReference {
                api_version: o.api_version(),
                kind: obj.kind.clone(),
                name: obj.name.clone(),
                uid: uid.to_string(),
                controller: None,
                block_owner_deletion: None,
            }])
        }
        _ => None,
    };
    let metadata = ObjectMeta {
        name: Some(target.result_name()),
        namespace: Some(target.result_namespace(&cx.install_namespace).to_string()),
        labels: Some(target.labels()),
        annotations: Some(annotations_map),
        owner_references,
        ..ObjectMeta::default()
    };

    // Both maps are built at once from vectors rather than by inserting one entry at a time:
    // `BTreeMap::from_iter` sorts (one pass when the controls come in ID order, as the catalog
    // lists them) and fills the nodes in order, where each insert would search the tree with a
    // string comparison per level. For equal keys both keep the last value.
    let mut controls = Vec::with_capacity(result.controls.len());
    let mut summary_controls = Vec::with_capacity(result.controls.len());
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
            info: c.info.as_deref().map(str::to_string),
        };
        match c.status {
            Status::Passed => passed += 1,
            Status::Failed => {
                failed += 1;
                severities.add(c.meta.severity());
            }
            Status::Skipped => {}
        }
        // Catalog constants, borrowed: no allocation per control for its ID and name.
        let id = CatalogText::Borrowed(c.meta.id);
        // The summary's status is the short form: the explanation (`info`) is only in the
        // WorkloadConfigurationScan of the same name (see `ControlSummary::status`).
        summary_controls.push((
            id.clone(),
            ControlSummary {
                control_id: id.clone(),
                severity: severity.clone(),
                status: ControlStatus {
                    status: c.status,
                    sub_status: c.sub_status,
                    info: None,
                },
            },
        ));
        controls.push((
            id.clone(),
            ScannedControl {
                control_id: id,
                name: CatalogText::Borrowed(c.meta.name),
                severity,
                status,
                rules: rules_of(c),
            },
        ));
    }
    let controls: BTreeMap<CatalogText, ScannedControl> = controls.into_iter().collect();
    let summary_controls: BTreeMap<CatalogText, ControlSummary> =
        summary_controls.into_iter().collect();
    let related_objects = match target {
        Target::Triplet { .. } => related_of(result, inventory),
        Target::Object(_) => Vec::new(),
    };
    let evaluated = u32::try_from(result.controls.len()).unwrap_or(u32::MAX);
    let mut scan = WorkloadConfigurationScan {
        metadata: metadata.clone(),
        spec: WorkloadConfigurationScanSpec {
            controls,
            related_objects,
            evaluated_controls: evaluated,
        },
    };
    fit_size(&mut scan);
    let summary = WorkloadConfigurationScanSummary {
        metadata,
        spec: WorkloadConfigurationScanSummarySpec {
            severities,
            controls: summary_controls,
            compliance_score: compliance_score(passed, failed),
        },
    };
    ResultObjects { scan, summary }
}

/// The most a WorkloadConfigurationScan may weigh as JSON. etcd refuses objects over 1.5 MiB
/// (and the API server its requests over 3 MiB); a margin leaves room for metadata the server
/// adds (managed fields).
pub const MAX_SCAN_BYTES: usize = 1024 * 1024;

fn json_len(scan: &WorkloadConfigurationScan) -> usize {
    /// Counts bytes without keeping them.
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, scan) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// An upper bound of [`json_len`] from the number of paths, cheap enough to run on every
/// result: a path's strings at six bytes per byte (JSON's worst escape) plus room for its keys,
/// and a fixed allowance per control for everything else. Only a result over
/// [`MAX_SCAN_BYTES`] by this bound is serialised to be measured.
fn json_len_bound(scan: &WorkloadConfigurationScan) -> usize {
    const PER_CONTROL: usize = 4096;
    const PER_PATH: usize = 128;
    let mut bound = 64 * 1024;
    for c in scan.spec.controls.values() {
        bound += PER_CONTROL + 6 * (c.name.len() + c.status.info.as_ref().map_or(0, String::len));
        for rule in &c.rules {
            bound += 6 * rule
                .related_resources_ids
                .iter()
                .map(String::len)
                .sum::<usize>();
            for p in &rule.paths {
                let text = [
                    &p.failed_path,
                    &p.review_path,
                    &p.delete_path,
                    &p.fix_path,
                    &p.fix_path_value,
                    &p.resource_id,
                ]
                .iter()
                .map(|s| s.as_ref().map_or(0, String::len))
                .sum::<usize>();
                bound += PER_PATH + 6 * text;
            }
        }
    }
    bound
}

/// Keeps a scan under [`MAX_SCAN_BYTES`]: a huge workload (hundreds of containers, each failing
/// several controls) would otherwise produce a result the API server refuses, and its result
/// would be lost. The statuses stay exact; only the lists of paths of each rule are cut, longest
/// first in rounds (halving the number kept), and each control that lost paths says so in its
/// `status.info`.
pub fn fit_size(scan: &mut WorkloadConfigurationScan) {
    if json_len_bound(scan) <= MAX_SCAN_BYTES || json_len(scan) <= MAX_SCAN_BYTES {
        return;
    }
    let longest = scan
        .spec
        .controls
        .values()
        .flat_map(|c| c.rules.iter().map(|r| r.paths.len()))
        .max()
        .unwrap_or(0);
    let mut keep = longest;
    while keep > 0 && json_len(scan) > MAX_SCAN_BYTES {
        keep /= 2;
        for control in scan.spec.controls.values_mut() {
            let mut cut = 0usize;
            for rule in &mut control.rules {
                if rule.paths.len() > keep {
                    cut += rule.paths.len() - keep;
                    rule.paths.truncate(keep);
                }
            }
            if cut > 0 {
                let note = format!(
                    "paths truncated to {keep} per rule to keep the result under the API server's size limit"
                );
                let info = control.status.info.get_or_insert_with(String::new);
                if !info.contains("paths truncated") {
                    if !info.is_empty() {
                        info.push_str("; ");
                    }
                    info.push_str(&note);
                } else if let Some(at) = info.find("paths truncated") {
                    info.replace_range(at.., &note);
                }
            }
        }
    }
}

/// The object a result is about: the target object itself (`None` for a triplet).
fn scanned_object<'a>(result: &ResourceResult, inventory: &'a Inventory) -> Option<&'a K8sObject> {
    match result.target {
        Target::Object(_) => inventory.get(result.object_index),
        Target::Triplet { .. } => None,
    }
}

fn uid_of(obj: &K8sObject) -> Option<&str> {
    obj.metadata()
        .get("uid")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
}

/// The fingerprint of one object, from its metadata (see `kubevigil_crds::identity::fingerprint`):
/// UID, `generation` when the object has one (else `resourceVersion`), labels and controlling
/// owner. Fields missing from a manifest count as empty.
pub fn object_fingerprint(obj: &K8sObject) -> String {
    let meta = obj.metadata();
    // The labels borrowed from the object, in key order (as a `BTreeMap` of copies would hold
    // them, which is what the fingerprint is defined over).
    let mut labels: Vec<(&str, &str)> = obj
        .labels()
        .map(|l| {
            l.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v)))
                .collect()
        })
        .unwrap_or_default();
    if !labels.is_sorted_by(|a, b| a.0 < b.0) {
        labels.sort_unstable_by(|a, b| a.0.cmp(b.0));
    }
    let controller_uid = meta
        .get("ownerReferences")
        .and_then(Value::as_array)
        .and_then(|owners| {
            owners
                .iter()
                .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        })
        .and_then(|o| o.get("uid"))
        .and_then(Value::as_str);
    fingerprint_with_labels(
        &FingerprintInput {
            uid: uid_of(obj).unwrap_or(""),
            generation: meta.get("generation").and_then(Value::as_i64),
            resource_version: meta
                .get("resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or(""),
            labels: None,
            controller_uid,
            spec: spec_hash_of(obj).as_deref(),
        },
        labels.into_iter(),
    )
}

/// The spec hash of a scalable kind (see `kubevigil_crds::identity::scalable_kind`).
pub fn spec_hash_of(obj: &K8sObject) -> Option<String> {
    scalable_kind(obj.group(), &obj.kind)
        .then(|| spec_hash(obj.value.get("spec").unwrap_or(&Value::Null)))
}

/// The fingerprint of what a result covers: the object, or for a triplet the binding's and the
/// role's fingerprints combined (in that order).
fn result_fingerprint(
    result: &ResourceResult,
    scanned: Option<&K8sObject>,
    inventory: &Inventory,
) -> Option<String> {
    match &result.target {
        Target::Object(_) => scanned.map(object_fingerprint),
        Target::Triplet { .. } => {
            let t = triplet_of(result, inventory)?;
            let binding = object_fingerprint(inventory.binding_of(t)?);
            let role = object_fingerprint(inventory.role_of(t)?);
            Some(combine_fingerprints(&[&binding, &role]))
        }
    }
}

/// The rules of a control's result: the entries of [`ControlResult::rules`], built in one pass
/// straight into the result type (no intermediate list of borrowed paths per control).
fn rules_of(c: &ControlResult) -> Vec<ScannedRule> {
    let (empty_status, empty_sub_status) = if c.status == Status::Skipped {
        (c.status, c.sub_status)
    } else {
        (Status::Passed, None)
    };
    let rule = |name: &'static str, status: Status, sub_status| ScannedRule {
        name: CatalogText::Borrowed(name),
        status: RuleStatus { status, sub_status },
        // Not written: the inputs are the same for every result of a scan and are named by
        // the controls-hash annotation (see `ScannedRule::control_configurations`).
        control_configurations: BTreeMap::new(),
        paths: Vec::new(),
        related_resources_ids: Vec::new(),
    };
    let mut out: Vec<ScannedRule> = Vec::with_capacity(c.meta.rules.len());
    out.extend(
        c.meta
            .rules
            .iter()
            .map(|&name| rule(name, empty_status, empty_sub_status)),
    );
    for finding in &c.findings {
        let index = match out
            .iter()
            .position(|r| crate::evaluate::same_name(&r.name, finding.rule))
        {
            Some(index) => index,
            None => {
                out.push(rule(finding.rule, c.status, c.sub_status));
                out.len() - 1
            }
        };
        if let Some(r) = out.get_mut(index) {
            r.status = RuleStatus {
                status: c.status,
                sub_status: c.sub_status,
            };
            r.paths
                .extend(finding.paths.iter().map(|p| p.to_rule_path()));
            r.related_resources_ids
                .extend(finding.related.iter().cloned());
        }
    }
    out
}

/// The inventory's triplet a result was computed for (its binding is `object_index`).
fn triplet_of<'a>(result: &ResourceResult, inventory: &'a Inventory) -> Option<&'a crate::Triplet> {
    inventory
        .triplets()
        .iter()
        .filter(|t| t.binding == result.object_index)
        .find(|t| inventory.triplet_target(t).as_ref() == Some(&result.target))
}

/// The binding and role of a triplet result.
fn related_of(result: &ResourceResult, inventory: &Inventory) -> Vec<RelatedObject> {
    let Some(t) = triplet_of(result, inventory) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compliance_score_is_passed_over_decided() {
        assert_eq!(compliance_score(0, 0), 100.0);
        assert_eq!(compliance_score(3, 0), 100.0);
        assert_eq!(compliance_score(0, 4), 0.0);
        assert_eq!(compliance_score(1, 1), 50.0);
        assert_eq!(compliance_score(2, 1), 66.67);
        assert_eq!(compliance_score(1, 2), 33.33);
        assert_eq!(compliance_score(1, 7), 12.5);
        assert_eq!(compliance_score(u32::MAX, u32::MAX), 50.0);
    }
}
