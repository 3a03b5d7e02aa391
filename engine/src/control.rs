//! What a control is: its metadata and an evaluation that returns a status with paths.

use std::borrow::Cow;
use std::rc::Rc;

use kubevigil_crds::{RulePath, Severity, SubStatus};
use serde_json::{Map, Value};

use super::inputs::ControlInputs;
use super::inventory::{Inventory, Triplet};
use super::memo::Memo;
use super::object::K8sObject;
use super::workload::{PodSpec, pod_labels, pod_spec};

/// What a control evaluates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applies {
    /// Objects of this kind (`Deployment`, `ServiceAccount`, `RoleBinding`...).
    Kind(&'static str),
    /// RBAC (subject, role, binding) triplets.
    Subjects,
}

/// Why a control cannot be evaluated from Kubernetes objects alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// Nothing: the objects suffice.
    Nothing,
    /// Data from outside the cluster's objects (vulnerability scans, cloud APIs, image
    /// signatures): always reported `skipped` / `integration`.
    Integration,
    /// A manual check: always reported `skipped` / `manual review`.
    ManualReview,
}

/// A control's catalog entry.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ControlMeta {
    /// Kubescape control ID, `C-0057`.
    pub id: &'static str,
    /// Kubescape control name.
    pub name: &'static str,
    /// What the control checks and why it matters.
    pub description: &'static str,
    /// How to fix a failure.
    pub remediation: &'static str,
    /// Base score 0..10; severity derives from it.
    pub base_score: f64,
    /// Frameworks that include the control (Kubescape names: `NSA`, `MITRE`, `ArmoBest`...).
    /// Every control is also in `AllControls`.
    pub frameworks: &'static [&'static str],
    /// The kinds (or triplets) the control evaluates and reports on.
    pub applies: &'static [Applies],
    /// The regolibrary rules the control consists of; findings name one of them.
    pub rules: &'static [&'static str],
    /// The configuration inputs (`postureControlInputs` keys) the control reads.
    pub inputs: &'static [&'static str],
    /// Kubescape's `actionRequired: configuration`: when every input is empty the control is
    /// reported `skipped` / `configuration`, whatever the objects say.
    pub configuration_required: bool,
    /// Whether the control can be decided from objects at all.
    pub needs: Needs,
}

impl ControlMeta {
    /// Severity from the base score.
    pub fn severity(&self) -> Severity {
        Severity::from_score(self.base_score)
    }

    /// Whether the control evaluates RBAC triplets.
    pub fn applies_to_subjects(&self) -> bool {
        self.applies.contains(&Applies::Subjects)
    }

    /// Whether the control is part of a framework (case-insensitive; `AllControls` has all).
    pub fn in_framework(&self, framework: &str) -> bool {
        framework.eq_ignore_ascii_case("allcontrols")
            || self
                .frameworks
                .iter()
                .any(|f| f.eq_ignore_ascii_case(framework))
    }
}

/// The thing being evaluated.
#[derive(Clone, Copy, Debug)]
pub enum Resource<'a> {
    /// One object.
    Object(&'a K8sObject),
    /// One RBAC triplet.
    Triplet(&'a Triplet),
}

/// What a control sees besides the resource itself.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// Every object of the scan (for controls that relate objects).
    pub inventory: &'a Inventory,
    /// Configuration inputs (Kubescape defaults unless overridden).
    pub inputs: &'a ControlInputs,
    /// Managed-cloud provider of the cluster (`eks`, `gke`, `aks`), when known.
    pub cloud_provider: Option<&'a str>,
    /// What the controls of the evaluated object share (its pod spec, findings of shared rules),
    /// so that the catalog does the common work once per object. `None` outside the evaluator.
    pub memo: Option<&'a Memo<'a>>,
}

impl<'a> Context<'a> {
    /// A context without a per-object memo (evaluating a control directly, in tests).
    pub fn new(inventory: &'a Inventory, inputs: &'a ControlInputs) -> Self {
        Context {
            inventory,
            inputs,
            cloud_provider: None,
            memo: None,
        }
    }

    /// The pod spec of a workload (see [`pod_spec`]), looked up once per evaluated object.
    pub fn pod_spec<'s>(&'s self, obj: &'s K8sObject) -> Option<PodSpec<'s>> {
        match self.memo {
            Some(memo) => memo.pod_spec(obj),
            None => pod_spec(obj),
        }
    }

    /// The labels of a workload's pods (see [`pod_labels`]), looked up once per evaluated object.
    pub fn pod_labels(&self, obj: &'a K8sObject) -> Option<&'a Map<String, Value>> {
        match self.memo {
            Some(memo) => memo.pod_labels(obj),
            None => pod_labels(obj),
        }
    }

    /// The findings of a rule that several controls run on `obj`, computed once per evaluated
    /// object (see [`Memo::findings`]); without a memo, computed every time.
    pub fn shared_findings(
        &self,
        obj: &K8sObject,
        rule: &'static str,
        compute: impl FnOnce() -> Vec<Finding>,
    ) -> Rc<Vec<Finding>> {
        match self.memo {
            Some(memo) => memo.findings(obj, rule, compute),
            None => Rc::new(compute()),
        }
    }
}

/// What a [`FindingPath`] is, that is, which fields of the CRD's `RulePath` carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// `failedPath` only (legacy paths).
    Failed,
    /// `reviewPath`, and `failedPath` too when `also_failed` (Kubescape repeats most review
    /// paths there).
    Review {
        /// Whether the path is repeated as `failedPath`.
        also_failed: bool,
    },
    /// `deletePath`, and `failedPath` too when `also_failed`.
    Delete {
        /// Whether the path is repeated as `failedPath`.
        also_failed: bool,
    },
    /// `fixPath`, with the value to set (`fixPathValue`). Most values are constants, so they
    /// are borrowed rather than allocated for every finding.
    Fix(Cow<'static, str>),
}

/// One path of a finding as the engine keeps it: the path once, with what kind of path it is.
/// [`FindingPath::to_rule_path`] expands it into the CRD's `RulePath` (where a review or delete
/// path is usually written twice). Keeping one string per path instead of two, and constant fix
/// values unallocated, is what makes failing controls cheap to evaluate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FindingPath {
    /// The dotted path (`spec.template.spec.containers[0].securityContext.privileged`).
    pub path: String,
    /// Which `RulePath` fields carry it.
    pub kind: PathKind,
    /// The related object the path belongs to; `None` for the evaluated resource itself.
    pub resource_id: Option<String>,
}

impl FindingPath {
    /// A path on the evaluated resource.
    pub fn new(path: impl Into<String>, kind: PathKind) -> Self {
        FindingPath {
            path: path.into(),
            kind,
            resource_id: None,
        }
    }

    /// The CRD form of the path.
    pub fn to_rule_path(&self) -> RulePath {
        let path = Some(self.path.clone());
        let mut out = match &self.kind {
            PathKind::Failed => RulePath {
                failed_path: path,
                ..RulePath::default()
            },
            PathKind::Review { also_failed } => RulePath {
                failed_path: also_failed.then(|| self.path.clone()),
                review_path: path,
                ..RulePath::default()
            },
            PathKind::Delete { also_failed } => RulePath {
                failed_path: also_failed.then(|| self.path.clone()),
                delete_path: path,
                ..RulePath::default()
            },
            PathKind::Fix(value) => RulePath {
                fix_path: path,
                fix_path_value: Some(value.to_string()),
                ..RulePath::default()
            },
        };
        out.resource_id.clone_from(&self.resource_id);
        out
    }
}

/// One failure found by a rule, with its paths.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Finding {
    /// The rule that found it (one of [`ControlMeta::rules`]).
    pub rule: &'static str,
    /// Paths on the resource (and on related objects, with `resource_id` set).
    pub paths: Vec<FindingPath>,
    /// Resource IDs of related objects that took part.
    pub related: Vec<String>,
}

impl Finding {
    /// An empty finding of `rule`; add paths with the builder methods.
    pub fn new(rule: &'static str) -> Self {
        Finding {
            rule,
            ..Finding::default()
        }
    }

    /// Adds a path that is only reported as failed (legacy `failedPaths`).
    pub fn failed(mut self, path: impl Into<String>) -> Self {
        self.paths.push(FindingPath::new(path, PathKind::Failed));
        self
    }

    /// Adds a path to review (reported as both `reviewPath` and `failedPath`).
    pub fn review(mut self, path: impl Into<String>) -> Self {
        self.paths.push(FindingPath::new(
            path,
            PathKind::Review { also_failed: true },
        ));
        self
    }

    /// Adds a path whose removal fixes the finding (`deletePath` and `failedPath`).
    pub fn delete(mut self, path: impl Into<String>) -> Self {
        self.paths.push(FindingPath::new(
            path,
            PathKind::Delete { also_failed: true },
        ));
        self
    }

    /// Adds a field to set, with its value.
    pub fn fix(mut self, path: impl Into<String>, value: impl Into<Cow<'static, str>>) -> Self {
        self.paths
            .push(FindingPath::new(path, PathKind::Fix(value.into())));
        self
    }

    /// Records a related object (its resource ID) that took part in the finding.
    pub fn related(mut self, resource_id: impl Into<String>) -> Self {
        self.related.push(resource_id.into());
        self
    }

    /// Adds a path on a related object.
    pub fn related_path(mut self, resource_id: &str, mut path: FindingPath) -> Self {
        path.resource_id = Some(resource_id.to_string());
        self.paths.push(path);
        self
    }
}

/// The result of a control on one resource.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The control does not look at this resource (not counted in scores).
    NotApplicable,
    /// The resource complies.
    Passed,
    /// The resource violates the control; at least one finding.
    Failed(Vec<Finding>),
    /// The control could not decide.
    Skipped {
        /// Why.
        sub_status: SubStatus,
        /// Explanation shown to users.
        info: String,
    },
}

impl Outcome {
    /// `Failed` when there are findings, else `Passed`.
    pub fn from_findings(findings: Vec<Finding>) -> Self {
        if findings.is_empty() {
            Outcome::Passed
        } else {
            Outcome::Failed(findings)
        }
    }
}

/// One security control: metadata plus evaluation. Implementations are pure: no I/O.
pub trait Control: Send + Sync {
    /// The catalog entry.
    fn meta(&self) -> &'static ControlMeta;

    /// Evaluates the control on one resource. Only called for resources that
    /// [`ControlMeta::applies`] names, and never for `Needs::Integration`/`ManualReview`.
    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome;
}
