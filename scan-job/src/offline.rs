//! Offline scans (`scan-job scan`): configuration files and manifests in, the result objects
//! that the in-cluster scan would store out.
//!
//! Two steps, so that a bad configuration stops everything before any manifest is read while a
//! bad manifest does not stop the others:
//! 1. [`Scanner::new`] reads `--controls-config` and `--exceptions`, selects the controls
//!    (`--framework`, `--control`) and fails with a [`ConfigError`] naming the file and field.
//! 2. [`Scanner::scan`] evaluates whatever [`manifests::load_paths`] could read and keeps the
//!    load errors next to the results.

use std::path::{Path, PathBuf};

use kubevigil_crds::identity::Target;
use kubevigil_crds::{Severity, SeveritySummary, Status, SubStatus};
use serde_json::Value;

use crate::manifests::{self, LoadError, Loaded};
use kubevigil_engine::catalog;
use kubevigil_engine::exceptions::{self, ExceptionsError};
use kubevigil_engine::inputs::InputsError;
use kubevigil_engine::report::{self, ReportContext, ResultObjects};
use kubevigil_engine::{Control, ControlInputs, Evaluator, Exceptions, Inventory};

/// A configuration problem found before scanning: the scan does not start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A configuration file cannot be read.
    #[error("{path}: cannot read file: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A configuration file is not valid YAML or JSON, or holds several documents.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message, with the document number.
        message: String,
    },
    /// The `--controls-config` file has a wrong value.
    #[error("{path}: {source}")]
    ControlsConfig {
        /// The file.
        path: String,
        /// The bad key and what was found.
        source: InputsError,
    },
    /// The `--exceptions` file has a wrong policy.
    #[error("{path}: {source}")]
    Exceptions {
        /// The file.
        path: String,
        /// The bad policy and field.
        source: ExceptionsError,
    },
    /// `--framework` names no framework of the catalog.
    #[error("unknown framework {name:?}; known frameworks: {}", known.join(", "))]
    UnknownFramework {
        /// The name given.
        name: String,
        /// The frameworks of the catalog.
        known: Vec<String>,
    },
    /// `--control` names no control of the catalog.
    #[error("unknown control {id:?}; `scan-job controls` lists the catalog")]
    UnknownControl {
        /// The ID given.
        id: String,
    },
    /// The `--framework` and `--control` filters leave no control to run.
    #[error("no control is in both the selected frameworks ({}) and --control ({})", frameworks.join(", "), controls.join(", "))]
    NoControls {
        /// The frameworks given.
        frameworks: Vec<String>,
        /// The control IDs given.
        controls: Vec<String>,
    },
    /// `--install-namespace` is not a valid namespace name.
    #[error(
        "invalid install namespace {0:?}: a namespace is a DNS-1123 label (lowercase letters, digits and '-', at most 63)"
    )]
    InstallNamespace(String),
}

/// What an offline scan is asked to do (the `scan` command line, minus output options).
#[derive(Clone, Debug, Default)]
pub struct ScanOptions {
    /// Kubescape `postureControlInputs` overrides (YAML or JSON).
    pub controls_config: Option<PathBuf>,
    /// Kubescape posture exception policies (YAML or JSON list).
    pub exceptions: Option<PathBuf>,
    /// Frameworks to run (union); empty: every control.
    pub frameworks: Vec<String>,
    /// Control IDs to run; empty: every control of the frameworks.
    pub controls: Vec<String>,
    /// Cluster name in the `wlid` annotation.
    pub cluster_name: String,
    /// Namespace of the results of cluster-scoped targets.
    pub install_namespace: String,
    /// Scan time written into the results (RFC 3339); `None` leaves the annotation out.
    pub scan_time: Option<String>,
}

/// A ready-to-run offline scan: the selected controls with their inputs and exceptions.
pub struct Scanner {
    evaluator: Evaluator<'static>,
    context: ReportContext,
    warnings: Vec<String>,
}

/// One scanned resource: what it is and its result objects.
#[derive(Clone, Debug)]
pub struct ScannedResource {
    /// The object or RBAC triplet.
    pub target: Target,
    /// The WorkloadConfigurationScan and its summary, as they would be stored.
    pub objects: ResultObjects,
}

/// The outcome of an offline scan.
#[derive(Debug, Default)]
pub struct ScanOutcome {
    /// Every scanned resource, objects in input order, then RBAC triplets.
    pub resources: Vec<ScannedResource>,
    /// Inputs that could not be read: the scan is incomplete.
    pub errors: Vec<LoadError>,
    /// Notes about the input that lost nothing (skipped non-Kubernetes documents, duplicates).
    pub warnings: Vec<LoadError>,
}

/// Counts over a whole scan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Resources scanned (objects and RBAC triplets).
    pub resources: usize,
    /// Resources with at least one failed control.
    pub with_failures: usize,
    /// Failed controls per severity, summed over resources.
    pub failed: SeveritySummary,
    /// Skipped controls, summed over resources.
    pub skipped: usize,
    /// Controls that failed but passed through a posture exception.
    pub excepted: usize,
    /// Inputs that could not be read.
    pub unreadable: usize,
}

/// Ordering of severities, Unknown lowest.
pub fn severity_rank(s: Severity) -> u8 {
    match s {
        Severity::Unknown => 0,
        Severity::Low => 1,
        Severity::Medium => 2,
        Severity::High => 3,
        Severity::Critical => 4,
    }
}

/// Reads a YAML or JSON configuration file into one value.
fn read_document(path: &Path) -> Result<Value, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: name.clone(),
        source,
    })?;
    let parse_error = |message: String| ConfigError::Parse {
        path: name.clone(),
        message,
    };
    match manifests::parse_documents(&text) {
        (_, Some(e)) => Err(parse_error(e.to_string())),
        (mut documents, None) if documents.len() <= 1 => Ok(documents.pop().unwrap_or_default()),
        (documents, None) => Err(parse_error(format!(
            "{} documents, expected one",
            documents.len()
        ))),
    }
}

/// The frameworks of a catalog (plus `AllControls`), each once, sorted case-insensitively.
pub fn known_frameworks(controls: &[&dyn Control]) -> Vec<String> {
    let mut known: Vec<String> = vec!["AllControls".into()];
    for c in controls {
        for f in c.meta().frameworks {
            if !known.iter().any(|k| k.eq_ignore_ascii_case(f)) {
                known.push((*f).to_string());
            }
        }
    }
    known.sort_by_key(|k| k.to_ascii_lowercase());
    known
}

/// The controls of `all` in any of `frameworks` (all when empty) and among `ids` (all when
/// empty), in catalog order. Names and IDs are case-insensitive.
pub fn select_controls(
    all: Vec<&'static dyn Control>,
    frameworks: &[String],
    ids: &[String],
) -> Result<Vec<&'static dyn Control>, ConfigError> {
    let known = known_frameworks(&all);
    if let Some(name) = frameworks
        .iter()
        .find(|f| !known.iter().any(|k| k.eq_ignore_ascii_case(f)))
    {
        return Err(ConfigError::UnknownFramework {
            name: name.clone(),
            known,
        });
    }
    if let Some(id) = ids
        .iter()
        .find(|id| !all.iter().any(|c| c.meta().id.eq_ignore_ascii_case(id)))
    {
        return Err(ConfigError::UnknownControl { id: id.clone() });
    }
    let selected: Vec<_> = all
        .into_iter()
        .filter(|c| {
            let m = c.meta();
            (frameworks.is_empty() || frameworks.iter().any(|f| m.in_framework(f)))
                && (ids.is_empty() || ids.iter().any(|id| m.id.eq_ignore_ascii_case(id)))
        })
        .collect();
    if selected.is_empty() {
        return Err(ConfigError::NoControls {
            frameworks: frameworks.to_vec(),
            controls: ids.to_vec(),
        });
    }
    Ok(selected)
}

fn is_namespace_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl Scanner {
    /// Reads the configuration files and selects the controls of [`catalog::all`].
    pub fn new(options: &ScanOptions) -> Result<Self, ConfigError> {
        if !is_namespace_name(&options.install_namespace) {
            return Err(ConfigError::InstallNamespace(
                options.install_namespace.clone(),
            ));
        }
        let all = catalog::all();
        let mut warnings = Vec::new();
        let mut inputs = ControlInputs::default();
        if let Some(path) = &options.controls_config {
            let doc = read_document(path)?;
            inputs
                .apply_overrides(&doc)
                .map_err(|source| ConfigError::ControlsConfig {
                    path: path.display().to_string(),
                    source,
                })?;
            let defaults = ControlInputs::default();
            for (key, _) in inputs.iter() {
                let known = defaults.iter().any(|(k, _)| k == key)
                    || all.iter().any(|c| c.meta().inputs.contains(&key.as_str()));
                if !known {
                    warnings.push(format!(
                        "{}: `{key}` is not an input of any control; it is ignored",
                        path.display()
                    ));
                }
            }
        }
        let exceptions = match &options.exceptions {
            Some(path) => Exceptions::from_value(&read_document(path)?).map_err(|source| {
                ConfigError::Exceptions {
                    path: path.display().to_string(),
                    source,
                }
            })?,
            None => Exceptions::none(),
        };
        let controls = select_controls(all, &options.frameworks, &options.controls)?;
        let evaluator = Evaluator::new(controls, inputs, exceptions);
        let context = ReportContext {
            install_namespace: options.install_namespace.clone(),
            cluster_name: options.cluster_name.clone(),
            controls_hash: report::controls_hash(&evaluator),
            scan_time: options.scan_time.clone(),
        };
        Ok(Scanner {
            evaluator,
            context,
            warnings,
        })
    }

    /// Notes about the configuration that do not stop the scan (unknown input keys).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Applies the PostureExceptions and ClusterPostureExceptions among the loaded manifests
    /// to every object of the input (before or after them), as they would apply once in a
    /// cluster; a malformed one is an input error, added to `loaded.errors`. Exceptions are
    /// not workloads, so an index ([`manifests::index_paths`]) holds them whole.
    pub fn apply_manifest_exceptions(&mut self, loaded: &mut Loaded) {
        let mut rules = Vec::new();
        for o in &loaded.objects {
            match exceptions::rule_of_manifest(o) {
                Some(Ok(rule)) => rules.push(rule),
                Some(Err(message)) => loaded.errors.push(LoadError {
                    path: format!("{} {}", o.kind, o.name),
                    message,
                }),
                None => {}
            }
        }
        if !rules.is_empty() {
            self.evaluator
                .add_exception_rules(rules, k8s_openapi::jiff::Timestamp::now());
        }
    }

    /// Evaluates the loaded manifests, with the exceptions among them
    /// ([`Scanner::apply_manifest_exceptions`]).
    pub fn scan(&mut self, mut loaded: Loaded) -> ScanOutcome {
        self.apply_manifest_exceptions(&mut loaded);
        let Loaded {
            objects,
            errors,
            warnings,
            ..
        } = loaded;
        let inventory = Inventory::new(objects);
        let resources = self
            .evaluator
            .evaluate_all(&inventory)
            .into_iter()
            .map(|r| ScannedResource {
                objects: report::build(&r, &inventory, &self.context),
                target: r.target,
            })
            .collect();
        ScanOutcome {
            resources,
            errors,
            warnings,
        }
    }

    /// Loads the manifests under `paths` and evaluates them.
    pub fn scan_paths(&mut self, paths: &[PathBuf]) -> ScanOutcome {
        self.scan(manifests::load_paths(paths))
    }

    /// Evaluates what [`manifests::index_paths`] read, one object at a time, and hands each
    /// result to `emit` (objects in input order, then RBAC triplets, as [`Scanner::scan`]); `emit`
    /// returns `false` to stop. Only the index (every object, workloads as their related copy)
    /// and one full object with its results are in memory at a time.
    pub fn stream(&self, mut indexed: Loaded, emit: &mut dyn FnMut(ScannedResource) -> bool) {
        let inventory = Inventory::new(std::mem::take(&mut indexed.objects));
        let mut go = true;
        indexed.for_each_object(inventory.objects(), &mut |index, obj| {
            if let Some(r) = self.evaluator.evaluate_object_as(&inventory, index, obj) {
                go = emit(ScannedResource {
                    objects: report::build_for(&r, Some(obj), &inventory, &self.context),
                    target: r.target,
                });
            }
            go
        });
        if !go {
            return;
        }
        for t in inventory.triplets() {
            if let Some(r) = self.evaluator.evaluate_triplet(&inventory, t) {
                let resource = ScannedResource {
                    objects: report::build(&r, &inventory, &self.context),
                    target: r.target,
                };
                if !emit(resource) {
                    return;
                }
            }
        }
    }
}

impl Totals {
    /// Counts one more scanned resource.
    pub fn add(&mut self, r: &ScannedResource) {
        let spec = &r.objects.summary.spec;
        self.resources += 1;
        self.failed.merge(&spec.severities);
        if spec.severities.total() > 0 {
            self.with_failures += 1;
        }
        for c in spec.controls.values() {
            match (c.status.status, c.status.sub_status) {
                (Status::Skipped, _) => self.skipped += 1,
                (Status::Passed, Some(SubStatus::WithExceptions)) => self.excepted += 1,
                _ => {}
            }
        }
    }
}

impl ScannedResource {
    /// Whether a control failed on it with severity `threshold` or higher.
    pub fn reaches(&self, threshold: Severity) -> bool {
        let min = severity_rank(threshold);
        self.objects
            .summary
            .spec
            .controls
            .values()
            .any(|c| c.status.status == Status::Failed && severity_rank(c.severity.severity) >= min)
    }
}

impl ScanOutcome {
    /// Counts over the whole scan.
    pub fn totals(&self) -> Totals {
        let mut t = Totals {
            unreadable: self.errors.len(),
            ..Totals::default()
        };
        for r in &self.resources {
            t.add(r);
        }
        t
    }

    /// Whether any resource has a failed control of severity `threshold` or higher.
    pub fn reaches(&self, threshold: Severity) -> bool {
        self.resources.iter().any(|r| r.reaches(threshold))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frameworks_are_checked_against_the_catalog() {
        let all = catalog::all();
        let known = known_frameworks(&all);
        assert!(known.iter().any(|k| k == "AllControls"));
        let err = select_controls(all.clone(), &["nope".into()], &[]).err();
        match err {
            Some(ConfigError::UnknownFramework { name, known: k }) => {
                assert_eq!(name, "nope");
                assert_eq!(k, known);
            }
            other => panic!("{other:?}"),
        }
        let every = select_controls(all.clone(), &["allcontrols".into()], &[]).ok();
        assert_eq!(every.map(|v| v.len()), Some(all.len()));
        assert!(matches!(
            select_controls(all, &[], &["C-9999".into()]),
            Err(ConfigError::UnknownControl { .. })
        ));
    }

    #[test]
    fn namespace_names() {
        assert!(is_namespace_name("kubevigil"));
        assert!(is_namespace_name("a-1"));
        assert!(!is_namespace_name(""));
        assert!(!is_namespace_name("Kube"));
        assert!(!is_namespace_name("-a"));
        assert!(!is_namespace_name(&"a".repeat(64)));
    }
}
