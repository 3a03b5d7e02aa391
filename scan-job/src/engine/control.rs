//! What a control is: its metadata and an evaluation that returns a status with paths.

use std::rc::Rc;

use kubevigil_crds::{RulePath, Severity, SubStatus};

use super::inputs::ControlInputs;
use super::inventory::{Inventory, Triplet};
use super::memo::Memo;
use super::object::K8sObject;
use super::workload::{PodSpec, pod_spec};

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

    /// Whether the control evaluates objects of `kind`.
    pub fn applies_to_kind(&self, kind: &str) -> bool {
        self.applies
            .iter()
            .any(|a| matches!(a, Applies::Kind(k) if *k == kind))
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

/// One failure found by a rule, with its paths.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Finding {
    /// The rule that found it (one of [`ControlMeta::rules`]).
    pub rule: &'static str,
    /// Paths on the resource (and on related objects, with `resource_id` set).
    pub paths: Vec<RulePath>,
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
        self.paths.push(RulePath {
            failed_path: Some(path.into()),
            ..RulePath::default()
        });
        self
    }

    /// Adds a path to review (reported as both `reviewPath` and `failedPath`).
    pub fn review(mut self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.paths.push(RulePath {
            failed_path: Some(path.clone()),
            review_path: Some(path),
            ..RulePath::default()
        });
        self
    }

    /// Adds a path whose removal fixes the finding (`deletePath` and `failedPath`).
    pub fn delete(mut self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.paths.push(RulePath {
            failed_path: Some(path.clone()),
            delete_path: Some(path),
            ..RulePath::default()
        });
        self
    }

    /// Adds a field to set, with its value.
    pub fn fix(mut self, path: impl Into<String>, value: impl Into<String>) -> Self {
        self.paths.push(RulePath {
            fix_path: Some(path.into()),
            fix_path_value: Some(value.into()),
            ..RulePath::default()
        });
        self
    }

    /// Records a related object (its resource ID) that took part in the finding.
    pub fn related(mut self, resource_id: impl Into<String>) -> Self {
        self.related.push(resource_id.into());
        self
    }

    /// Adds a path on a related object.
    pub fn related_path(mut self, resource_id: &str, mut path: RulePath) -> Self {
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
