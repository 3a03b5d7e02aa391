//! Posture metrics: what the namespace summaries already read (each WorkloadConfigurationScanSummary
//! of a namespace: its severity counts and its controls' statuses), kept per namespace and
//! exposed on `/metrics` at scrape time by a collector.
//!
//! Series are bounded by namespaces × severities and by controls, never by workloads, unless
//! per-resource series are switched on (`metrics.perResourceSeries` in the chart):
//!
//! | metric | labels | series |
//! |---|---|---|
//! | `kubevigil_posture_failed_controls` | `namespace`, `severity` | namespaces × 5 |
//! | `kubevigil_posture_compliance_score` | `namespace` | namespaces |
//! | `kubevigil_posture_resources` | `namespace` | namespaces |
//! | `kubevigil_posture_control_failed_resources` | `control_id`, `control_name`, `severity` | failing controls |
//! | `kubevigil_posture_resource_failed_controls` (opt-in) | `namespace`, `kind`, `name`, `severity` | results × 5 |
//!
//! The folding ([`NamespacePosture`]) is pure; [`Posture`] is the shared table the summaries
//! write and the collector reads.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use kubevigil_crds::scan::{Severity, Status};
use kubevigil_crds::{SeveritySummary, identity::labels};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::slim::SummaryItem;

/// The five severity buckets, in the order series are written, with their label values.
pub const SEVERITIES: [(Severity, &str); 5] = [
    (Severity::Critical, "critical"),
    (Severity::High, "high"),
    (Severity::Medium, "medium"),
    (Severity::Low, "low"),
    (Severity::Unknown, "unknown"),
];

/// The label value of a severity (`critical`, `high`, ...).
pub fn severity_label(s: Severity) -> &'static str {
    SEVERITIES
        .iter()
        .find(|(x, _)| *x == s)
        .map_or("unknown", |(_, l)| l)
}

fn severity_count(s: &SeveritySummary, severity: Severity) -> u32 {
    match severity {
        Severity::Critical => s.critical,
        Severity::High => s.high,
        Severity::Medium => s.medium,
        Severity::Low => s.low,
        Severity::Unknown => s.unknown,
    }
}

/// One result's posture, for the opt-in per-resource series.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourcePosture {
    /// The target's kind (the result's `kubevigil.io/workload-kind` label; empty when absent).
    pub kind: String,
    /// The target's name (the `kubevigil.io/workload-name` label, else the result's name).
    pub name: String,
    /// Failed controls per severity.
    pub severities: SeveritySummary,
}

/// The posture of one namespace's results.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NamespacePosture {
    /// Results (WorkloadConfigurationScanSummaries) counted.
    pub resources: u32,
    /// Failed controls per severity, summed over the results (the namespace summary's sums).
    pub severities: SeveritySummary,
    /// Control evaluations that passed, over every result.
    pub passed: u64,
    /// Control evaluations that failed, over every result.
    pub failed: u64,
    /// Per control ID: its severity and the number of results that fail it.
    pub failing_controls: BTreeMap<String, (Severity, u32)>,
    /// Each result, by result name.
    pub by_resource: BTreeMap<String, ResourcePosture>,
}

impl NamespacePosture {
    /// Adds one readable summary.
    pub fn add(&mut self, item: &SummaryItem) {
        let name = item.metadata.name.clone().unwrap_or_default();
        self.resources += 1;
        self.severities.merge(&item.spec.severities);
        for (id, control) in &item.spec.controls {
            match control.status.status {
                Status::Passed => self.passed += 1,
                Status::Failed => {
                    self.failed += 1;
                    let entry = self
                        .failing_controls
                        .entry(id.clone())
                        .or_insert((control.severity.severity, 0));
                    entry.1 += 1;
                }
                Status::Skipped => {}
            }
        }
        let label = |key: &str| {
            item.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(key))
                .cloned()
        };
        self.by_resource.insert(
            name.clone(),
            ResourcePosture {
                kind: label(labels::KIND).unwrap_or_default(),
                name: label(labels::NAME).unwrap_or(name),
                severities: item.spec.severities,
            },
        );
    }

    /// Adds a summary that could not be read: a resource with results, nothing else known.
    pub fn add_unreadable(&mut self) {
        self.resources += 1;
    }

    /// The compliance score in percent: passed control evaluations over passed plus failed,
    /// over every result of the namespace; 100 when nothing was decided.
    pub fn compliance_score(&self) -> f64 {
        let decided = self.passed + self.failed;
        if decided == 0 {
            100.0
        } else {
            // Counts stay far below 2^52: exact as f64.
            #[allow(clippy::cast_precision_loss)]
            let score = self.passed as f64 * 100.0 / decided as f64;
            score
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespaceSeverity {
    namespace: String,
    severity: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespaceOnly {
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControlLabels {
    control_id: String,
    control_name: String,
    severity: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceSeverity {
    namespace: String,
    kind: String,
    name: String,
    severity: &'static str,
}

/// The posture of every namespace with results, written by the namespace summaries and read
/// at each scrape.
#[derive(Debug, Default)]
pub struct Posture {
    namespaces: Mutex<BTreeMap<String, NamespacePosture>>,
    per_resource: AtomicBool,
}

impl Posture {
    /// Replaces the posture of `namespace`.
    pub fn set(&self, namespace: &str, posture: NamespacePosture) {
        self.lock().insert(namespace.to_string(), posture);
    }

    /// Forgets `namespace` (it has no results left): its series disappear.
    pub fn remove(&self, namespace: &str) {
        self.lock().remove(namespace);
    }

    /// Turns the per-resource series on or off.
    pub fn set_per_resource(&self, on: bool) {
        self.per_resource.store(on, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, NamespacePosture>> {
        self.namespaces.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The name of a control from the catalog (empty for an ID the catalog does not know).
fn control_name(id: &str) -> String {
    kubevigil_engine::catalog::all()
        .into_iter()
        .find(|c| c.meta().id == id)
        .map(|c| c.meta().name.to_string())
        .unwrap_or_default()
}

fn encode_family<S, M>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    family: &Family<S, M>,
) -> Result<(), std::fmt::Error>
where
    S: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug,
    M: EncodeMetric + prometheus_client::metrics::TypedMetric,
    Family<S, M>: EncodeMetric,
{
    let metric = encoder.encode_descriptor(name, help, None, family.metric_type())?;
    family.encode(metric)
}

impl Collector for Posture {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let failed: Family<NamespaceSeverity, Gauge> = Family::default();
        let score: Family<NamespaceOnly, Gauge<f64, std::sync::atomic::AtomicU64>> =
            Family::default();
        let resources: Family<NamespaceOnly, Gauge> = Family::default();
        let controls: Family<ControlLabels, Gauge> = Family::default();
        let per_resource: Family<ResourceSeverity, Gauge> = Family::default();
        let with_resources = self.per_resource.load(Ordering::Relaxed);
        {
            let namespaces = self.lock();
            let mut by_control: BTreeMap<&str, (Severity, u32)> = BTreeMap::new();
            for (ns, p) in namespaces.iter() {
                for (severity, label) in SEVERITIES {
                    failed
                        .get_or_create(&NamespaceSeverity {
                            namespace: ns.clone(),
                            severity: label,
                        })
                        .set(i64::from(severity_count(&p.severities, severity)));
                }
                let only = NamespaceOnly {
                    namespace: ns.clone(),
                };
                score.get_or_create(&only).set(p.compliance_score());
                resources.get_or_create(&only).set(i64::from(p.resources));
                for (id, (severity, n)) in &p.failing_controls {
                    let e = by_control.entry(id).or_insert((*severity, 0));
                    e.1 += n;
                }
                if with_resources {
                    for r in p.by_resource.values() {
                        for (severity, label) in SEVERITIES {
                            per_resource
                                .get_or_create(&ResourceSeverity {
                                    namespace: ns.clone(),
                                    kind: r.kind.clone(),
                                    name: r.name.clone(),
                                    severity: label,
                                })
                                .set(i64::from(severity_count(&r.severities, severity)));
                        }
                    }
                }
            }
            for (id, (severity, n)) in by_control {
                controls
                    .get_or_create(&ControlLabels {
                        control_id: id.to_string(),
                        control_name: control_name(id),
                        severity: severity_label(severity),
                    })
                    .set(i64::from(n));
            }
        }
        encode_family(
            &mut encoder,
            "kubevigil_posture_failed_controls",
            "Failed controls by namespace and severity, summed over the namespace's results (the ConfigurationScanSummary's counts)",
            &failed,
        )?;
        encode_family(
            &mut encoder,
            "kubevigil_posture_compliance_score",
            "Compliance score of the namespace in percent: passed control evaluations over passed plus failed, over all its results",
            &score,
        )?;
        encode_family(
            &mut encoder,
            "kubevigil_posture_resources",
            "Resources (targets) with results in the namespace",
            &resources,
        )?;
        encode_family(
            &mut encoder,
            "kubevigil_posture_control_failed_resources",
            "Resources failing each control, over every namespace, with the control's severity",
            &controls,
        )?;
        if with_resources {
            encode_family(
                &mut encoder,
                "kubevigil_posture_resource_failed_controls",
                "Failed controls of one resource by severity (opt-in: metrics.perResourceSeries)",
                &per_resource,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;
    use serde_json::json;

    use super::*;

    fn item(name: &str, controls: serde_json::Value, critical: u32, high: u32) -> SummaryItem {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop",
                         "labels": {"kubevigil.io/workload-kind": "Deployment",
                                    "kubevigil.io/workload-name": name.trim_start_matches("deployment-")}},
            "spec": {"severities": {"critical": critical, "high": high, "medium": 0, "low": 0, "unknown": 0},
                     "controls": controls}
        }))
        .unwrap()
    }

    fn control(severity: &str, status: &str) -> serde_json::Value {
        json!({"controlID": "x", "severity": {"severity": severity, "scoreFactor": 9.0},
               "status": {"status": status}})
    }

    fn sample() -> NamespacePosture {
        let mut p = NamespacePosture::default();
        p.add(&item(
            "deployment-web",
            json!({"C-0057": control("Critical", "failed"), "C-0013": control("High", "failed"),
                   "C-0017": control("Low", "passed"), "C-0001": control("Low", "skipped")}),
            1,
            1,
        ));
        p.add(&item(
            "deployment-api",
            json!({"C-0057": control("Critical", "failed"), "C-0013": control("High", "passed")}),
            1,
            0,
        ));
        p.add_unreadable();
        p
    }

    #[test]
    fn folds_a_namespace() {
        let p = sample();
        assert_eq!(p.resources, 3);
        assert_eq!(p.severities.critical, 2);
        assert_eq!(p.severities.high, 1);
        assert_eq!((p.passed, p.failed), (2, 3));
        assert!((p.compliance_score() - 40.0).abs() < 1e-9);
        assert_eq!(p.failing_controls["C-0057"], (Severity::Critical, 2));
        assert_eq!(p.failing_controls["C-0013"], (Severity::High, 1));
        assert_eq!(p.by_resource["deployment-web"].name, "web");
        assert_eq!(NamespacePosture::default().compliance_score(), 100.0);
    }

    fn scrape(posture: std::sync::Arc<Posture>) -> String {
        let mut r = Registry::default();
        r.register_collector(Box::new(posture));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        out
    }

    #[test]
    fn series_are_bounded_by_namespaces_and_controls() {
        let posture = std::sync::Arc::new(Posture::default());
        posture.set("shop", sample());
        posture.set("blog", sample());
        let out = scrape(posture.clone());
        assert!(
            out.contains("# TYPE kubevigil_posture_failed_controls gauge"),
            "{out}"
        );
        assert!(
            out.contains("# HELP kubevigil_posture_compliance_score"),
            "{out}"
        );
        assert!(
            out.contains(
                "kubevigil_posture_failed_controls{namespace=\"shop\",severity=\"critical\"} 2"
            ),
            "{out}"
        );
        assert!(
            out.contains("kubevigil_posture_resources{namespace=\"blog\"} 3"),
            "{out}"
        );
        assert!(
            out.contains("kubevigil_posture_compliance_score{namespace=\"shop\"} 40.0"),
            "{out}"
        );
        // Summed over namespaces, one series per control.
        assert!(
            out.contains("kubevigil_posture_control_failed_resources{control_id=\"C-0057\",control_name=\"Privileged container\",severity=\"critical\"} 4"),
            "{out}"
        );
        let series = out.lines().filter(|l| !l.starts_with('#')).count();
        // 2 namespaces × (5 severities + score + resources) + 2 failing controls.
        assert_eq!(series, 2 * 7 + 2, "{out}");
        assert!(!out.contains("kubevigil_posture_resource_failed_controls"));

        posture.set_per_resource(true);
        let out = scrape(posture.clone());
        assert!(
            out.contains("kubevigil_posture_resource_failed_controls{namespace=\"shop\",kind=\"Deployment\",name=\"web\",severity=\"critical\"} 1"),
            "{out}"
        );
        posture.remove("blog");
        posture.set_per_resource(false);
        let out = scrape(posture);
        assert!(!out.contains("namespace=\"blog\""), "{out}");
    }
}
