//! Runs a catalog of controls over the resources of an inventory. The engine names no control:
//! it runs whatever catalog it is given.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use kubevigil_crds::identity::Target;
use kubevigil_crds::{Status, SubStatus};

use super::control::{
    Applies, Context, Control, ControlMeta, Finding, FindingPath, Needs, Outcome, Resource,
};
use super::exceptions::{Candidate, Exceptions};
use super::inputs::ControlInputs;
use super::inventory::{Inventory, Triplet};
use super::memo::Memo;
use super::object::K8sObject;

/// The outcome of one rule of a control on one resource, as [`ControlResult::rules`] derives it.
/// It borrows the control result's findings.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleResult<'r> {
    /// Rule name.
    pub name: &'static str,
    /// Status of the rule.
    pub status: Status,
    /// Reason for a pass or skip.
    pub sub_status: Option<SubStatus>,
    /// Paths of the rule's findings, in finding order.
    pub paths: Vec<&'r FindingPath>,
    /// Related resource IDs of the rule's findings, in finding order.
    pub related: Vec<&'r str>,
}

/// The outcome of one control on one resource. It borrows from the [`Evaluator`] that made it
/// (`'e`).
///
/// It keeps the control's findings as the control returned them; the per-rule breakdown that
/// the CRD stores is derived on demand by [`ControlResult::rules`]. Most controls pass, and a
/// passed control's rules are its catalog entry's, so storing them would cost every result an
/// allocation-sized copy for nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct ControlResult<'e> {
    /// The control's catalog entry.
    pub meta: &'static ControlMeta,
    /// Merged status.
    pub status: Status,
    /// Reason for a pass or skip.
    pub sub_status: Option<SubStatus>,
    /// Explanation of a skip or exception (the engine's own explanations are constants, so they
    /// are borrowed rather than allocated for every resource).
    pub info: Option<Cow<'static, str>>,
    /// What the control found: empty unless it failed (or passed with exceptions).
    pub findings: Vec<Finding>,
    /// The configuration inputs the control reads (its [`ControlMeta::inputs`] with their
    /// values). Computed once per control by [`Evaluator::new`] and borrowed by every result of
    /// that control (no copy and no reference count per result).
    pub configurations: &'e BTreeMap<String, Vec<String>>,
}

impl ControlResult<'_> {
    /// One entry per rule of the control: rules with findings get the control's status (failed,
    /// or passed with exceptions) and their paths; the others passed (or share a skip). Rules
    /// are the control's own, in catalog order, then any other rule a finding names, in order
    /// of first appearance; each rule's paths and related objects are those of its findings, in
    /// finding order.
    pub fn rules(&self) -> Vec<RuleResult<'_>> {
        let (empty_status, empty_sub_status) = if self.status == Status::Skipped {
            (self.status, self.sub_status)
        } else {
            (Status::Passed, None)
        };
        let mut out: Vec<RuleResult<'_>> = self
            .meta
            .rules
            .iter()
            .map(|&name| RuleResult {
                name,
                status: empty_status,
                sub_status: empty_sub_status,
                paths: Vec::new(),
                related: Vec::new(),
            })
            .collect();
        for finding in &self.findings {
            let index = match out.iter().position(|r| same_name(r.name, finding.rule)) {
                Some(index) => index,
                None => {
                    out.push(RuleResult {
                        name: finding.rule,
                        status: self.status,
                        sub_status: self.sub_status,
                        paths: Vec::new(),
                        related: Vec::new(),
                    });
                    out.len() - 1
                }
            };
            if let Some(rule) = out.get_mut(index) {
                rule.status = self.status;
                rule.sub_status = self.sub_status;
                rule.paths.extend(finding.paths.iter());
                rule.related
                    .extend(finding.related.iter().map(String::as_str));
            }
        }
        out
    }
}

/// All control results of one resource, borrowing from the [`Evaluator`] that made them.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceResult<'e> {
    /// What was evaluated.
    pub target: Target,
    /// Kind of the object (or of the subject, for a triplet).
    pub kind: String,
    /// Index of the object in the inventory; for a triplet, the binding's index.
    pub object_index: usize,
    /// Results of every applicable control, in catalog order.
    pub controls: Vec<ControlResult<'e>>,
}

/// What [`Evaluator::new`] precomputes for one control, so that the per-resource path does not
/// allocate per control.
struct Prepared {
    /// The control's catalog entry (read once, not through the trait object per resource).
    meta: &'static ControlMeta,
    /// The control's inputs and their values (`controlConfigurations`).
    configurations: BTreeMap<String, Vec<String>>,
    /// `configuration_required` and every input empty: always skipped / configuration.
    missing_configuration: bool,
}

/// Evaluates a catalog with given inputs and exceptions.
pub struct Evaluator<'c> {
    catalog: Vec<&'c dyn Control>,
    /// One entry per control of `catalog`, same order.
    prepared: Vec<Prepared>,
    /// For each kind, the indexes (in catalog order) of the controls that apply to it.
    /// (Hashed with a fast fixed hasher: looked up once per evaluated object.)
    by_kind: HashMap<&'static str, Vec<usize>, foldhash::fast::FixedState>,
    /// The indexes of the controls that apply to RBAC triplets.
    for_subjects: Vec<usize>,
    inputs: ControlInputs,
    exceptions: Exceptions,
    cloud_provider: Option<String>,
}

impl<'c> Evaluator<'c> {
    /// An evaluator for the given controls.
    pub fn new(
        catalog: Vec<&'c dyn Control>,
        inputs: ControlInputs,
        exceptions: Exceptions,
    ) -> Self {
        let mut by_kind: HashMap<&'static str, Vec<usize>, _> = HashMap::default();
        let mut for_subjects = Vec::new();
        let mut prepared = Vec::with_capacity(catalog.len());
        for (i, control) in catalog.iter().enumerate() {
            let meta = control.meta();
            for applies in meta.applies {
                let list = match applies {
                    Applies::Kind(kind) => by_kind.entry(kind).or_default(),
                    Applies::Subjects => &mut for_subjects,
                };
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
            let configurations = inputs.select(meta.inputs);
            prepared.push(Prepared {
                meta,
                missing_configuration: meta.configuration_required
                    && configurations.values().all(Vec::is_empty),
                configurations,
            });
        }
        Evaluator {
            catalog,
            prepared,
            by_kind,
            for_subjects,
            inputs,
            exceptions,
            cloud_provider: None,
        }
    }

    /// Sets the managed-cloud provider (`eks`, `gke`, `aks`) for controls that depend on it.
    pub fn with_cloud_provider(mut self, provider: Option<String>) -> Self {
        self.cloud_provider = provider;
        self
    }

    /// The controls this evaluator runs.
    pub fn controls(&self) -> &[&'c dyn Control] {
        &self.catalog
    }

    /// Adds exception resources (found among offline input manifests, say); those expired at
    /// `now` are left out.
    pub fn add_exception_rules(
        &mut self,
        rules: Vec<super::exceptions::ExceptionRule>,
        now: k8s_openapi::jiff::Timestamp,
    ) {
        self.exceptions = std::mem::take(&mut self.exceptions).with_resources(rules, now);
    }

    /// The configuration inputs.
    pub fn inputs(&self) -> &ControlInputs {
        &self.inputs
    }

    /// Evaluates every object and triplet that at least one control applies to.
    pub fn evaluate_all(&self, inventory: &Inventory) -> Vec<ResourceResult<'_>> {
        let mut out = Vec::new();
        for index in 0..inventory.objects().len() {
            if let Some(r) = self.evaluate_object(inventory, index) {
                out.push(r);
            }
        }
        for t in inventory.triplets() {
            if let Some(r) = self.evaluate_triplet(inventory, t) {
                out.push(r);
            }
        }
        out
    }

    /// Evaluates one object; `None` when no control applies to its kind.
    pub fn evaluate_object(
        &self,
        inventory: &Inventory,
        index: usize,
    ) -> Option<ResourceResult<'_>> {
        let obj = inventory.get(index)?;
        self.evaluate_object_as(inventory, index, obj)
    }

    /// Evaluates `obj` as the object at `index` of the inventory; `None` when no control applies
    /// to its kind. The inventory may hold a smaller copy of it there (what other objects'
    /// controls read, [`crate::workload::related_copy`]): the controls see `obj` itself, and the
    /// result names `index`.
    pub fn evaluate_object_as(
        &self,
        inventory: &Inventory,
        index: usize,
        obj: &K8sObject,
    ) -> Option<ResourceResult<'_>> {
        let indexes = self.by_kind.get(obj.kind.as_str())?;
        let memo = Memo::for_object(obj);
        let cx = self.context(inventory, Some(&memo));
        let mut controls = Vec::with_capacity(indexes.len());
        controls.extend(indexes.iter().filter_map(|&i| {
            self.run(
                i,
                Resource::Object(obj),
                &cx,
                &Candidate {
                    kind: &obj.kind,
                    name: &obj.name,
                    namespace: obj.namespace.as_deref(),
                    labels: obj.labels(),
                },
            )
        }));
        (!controls.is_empty()).then(|| ResourceResult {
            target: Target::Object(obj.object_ref()),
            kind: obj.kind.clone(),
            object_index: index,
            controls,
        })
    }

    /// Evaluates one RBAC triplet; `None` when no control applies to subjects.
    pub fn evaluate_triplet(
        &self,
        inventory: &Inventory,
        t: &Triplet,
    ) -> Option<ResourceResult<'_>> {
        if self.for_subjects.is_empty() {
            return None;
        }
        let target = inventory.triplet_target(t)?;
        let cx = self.context(inventory, None);
        let kind = t.subject.kind.as_str();
        let mut controls = Vec::with_capacity(self.for_subjects.len());
        controls.extend(self.for_subjects.iter().filter_map(|&i| {
            self.run(
                i,
                Resource::Triplet(t),
                &cx,
                &Candidate {
                    kind,
                    name: &t.subject.name,
                    namespace: t.subject.namespace.as_deref(),
                    labels: None,
                },
            )
        }));
        (!controls.is_empty()).then(|| ResourceResult {
            target,
            kind: kind.to_string(),
            object_index: t.binding,
            controls,
        })
    }

    fn context<'a>(&'a self, inventory: &'a Inventory, memo: Option<&'a Memo<'a>>) -> Context<'a> {
        Context {
            inventory,
            inputs: &self.inputs,
            cloud_provider: self.cloud_provider.as_deref(),
            memo,
        }
    }

    /// Runs the control at `index` of the catalog on one resource.
    fn run(
        &self,
        index: usize,
        resource: Resource<'_>,
        cx: &Context<'_>,
        candidate: &Candidate<'_>,
    ) -> Option<ControlResult<'_>> {
        let (control, prepared) = (*self.catalog.get(index)?, self.prepared.get(index)?);
        let meta = prepared.meta;
        let configurations = &prepared.configurations;
        let skip = |sub_status: SubStatus, info: &'static str| ControlResult {
            meta,
            status: Status::Skipped,
            sub_status: Some(sub_status),
            info: Some(Cow::Borrowed(info)),
            findings: Vec::new(),
            configurations,
        };
        match meta.needs {
            Needs::Integration => {
                return Some(skip(
                    SubStatus::Integration,
                    "Control needs data from outside the cluster's objects",
                ));
            }
            Needs::ManualReview => {
                return Some(skip(
                    SubStatus::ManualReview,
                    "Control needs a manual review",
                ));
            }
            Needs::Nothing => {}
        }
        let outcome = control.evaluate(resource, cx);
        if matches!(outcome, Outcome::NotApplicable) {
            return None;
        }
        if prepared.missing_configuration {
            return Some(skip(
                SubStatus::Configuration,
                "Control configurations are empty",
            ));
        }
        Some(match outcome {
            Outcome::NotApplicable | Outcome::Passed => ControlResult {
                meta,
                status: Status::Passed,
                sub_status: None,
                info: None,
                findings: Vec::new(),
                configurations,
            },
            Outcome::Skipped { sub_status, info } => ControlResult {
                info: Some(Cow::Owned(info)),
                ..skip(sub_status, "")
            },
            Outcome::Failed(findings) => match self.exceptions.find(meta.id, candidate) {
                Some(exception) => ControlResult {
                    meta,
                    status: Status::Passed,
                    sub_status: Some(SubStatus::WithExceptions),
                    info: Some(Cow::Owned(format!("excepted by {exception}"))),
                    findings,
                    configurations,
                },
                None => ControlResult {
                    meta,
                    status: Status::Failed,
                    sub_status: None,
                    info: None,
                    findings,
                    configurations,
                },
            },
        })
    }
}

/// Rule names are `&'static str` constants, so the names of one rule are usually the same
/// pointer: compare lengths and pointers before the bytes (C-0211 alone has 15 rules and a
/// finding per rule and container).
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && (std::ptr::eq(a.as_ptr(), b.as_ptr()) || a == b)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::object::K8sObject;

    /// Fails with a finding of its first rule when the object's name starts with `bad`.
    struct Probe(&'static ControlMeta);

    impl Control for Probe {
        fn meta(&self) -> &'static ControlMeta {
            self.0
        }

        fn evaluate(&self, resource: Resource<'_>, _cx: &Context<'_>) -> Outcome {
            match resource {
                Resource::Object(o) if o.name.starts_with("bad") => {
                    Outcome::Failed(vec![Finding::new(self.0.rules[0]).delete("spec.x")])
                }
                Resource::Object(_) => Outcome::Passed,
                Resource::Triplet(_) => Outcome::NotApplicable,
            }
        }
    }

    const fn meta(
        id: &'static str,
        applies: &'static [Applies],
        inputs: &'static [&'static str],
        configuration_required: bool,
    ) -> ControlMeta {
        ControlMeta {
            id,
            name: "probe",
            description: "",
            remediation: "",
            base_score: 5.0,
            frameworks: &[],
            applies,
            rules: &["rule-a", "rule-b"],
            inputs,
            configuration_required,
            needs: Needs::Nothing,
        }
    }

    static TWICE: ControlMeta = meta(
        "C-1",
        &[Applies::Kind("Pod"), Applies::Kind("Pod")],
        &["k"],
        false,
    );
    static NEEDS_CONFIG: ControlMeta = meta("C-2", &[Applies::Kind("Pod")], &["empty"], true);
    static OTHER_KIND: ControlMeta = meta("C-3", &[Applies::Kind("Service")], &[], false);

    fn inventory() -> Inventory {
        let pod = |name: &str| {
            K8sObject::from_value(json!({"kind": "Pod", "metadata": {"name": name}})).expect("pod")
        };
        Inventory::new(vec![pod("good"), pod("bad"), {
            K8sObject::from_value(json!({"kind": "ConfigMap", "metadata": {"name": "c"}}))
                .expect("configmap")
        }])
    }

    fn evaluator(exceptions: Exceptions) -> Evaluator<'static> {
        let catalog: Vec<&'static dyn Control> = vec![
            Box::leak(Box::new(Probe(&TWICE))),
            Box::leak(Box::new(Probe(&NEEDS_CONFIG))),
            Box::leak(Box::new(Probe(&OTHER_KIND))),
        ];
        let mut inputs = ControlInputs::empty();
        inputs.set("k", vec!["v".into()]);
        Evaluator::new(catalog, inputs, exceptions)
    }

    #[test]
    fn dispatch_configurations_and_rules() {
        let inv = inventory();
        let ev = evaluator(Exceptions::none());
        assert!(
            ev.evaluate_object(&inv, 2).is_none(),
            "no control for ConfigMap"
        );

        let good = ev.evaluate_object(&inv, 0).expect("pod result");
        let ids: Vec<&str> = good.controls.iter().map(|c| c.meta.id).collect();
        assert_eq!(
            ids,
            ["C-1", "C-2"],
            "each applicable control once, in catalog order"
        );
        let c1 = &good.controls[0];
        assert_eq!(c1.status, Status::Passed);
        assert_eq!(
            *c1.configurations,
            BTreeMap::from([("k".to_string(), vec!["v".to_string()])])
        );
        assert!(c1.rules().iter().all(|r| r.status == Status::Passed));
        assert_eq!(c1.rules().len(), 2);
        let c2 = &good.controls[1];
        assert_eq!(c2.status, Status::Skipped);
        assert_eq!(c2.sub_status, Some(SubStatus::Configuration));
        assert!(
            c2.rules()
                .iter()
                .all(|r| r.status == Status::Skipped && r.sub_status == c2.sub_status)
        );

        let bad = ev.evaluate_object(&inv, 1).expect("pod result");
        let c1 = &bad.controls[0];
        assert_eq!(c1.status, Status::Failed);
        assert_eq!(c1.rules()[0].status, Status::Failed);
        assert_eq!(c1.rules()[0].paths.len(), 1);
        assert_eq!(c1.rules()[1].status, Status::Passed);
        assert!(
            std::ptr::eq(c1.configurations, good.controls[0].configurations),
            "configurations are computed once per control"
        );
    }

    #[test]
    fn exceptions_pass_failures() {
        let exceptions = Exceptions::from_value(&json!([{
            "name": "p",
            "resources": [{"attributes": {"kind": "Pod", "name": "bad"}}],
            "posturePolicies": [{"controlID": "C-1"}]
        }]))
        .expect("exceptions");
        let inv = inventory();
        let ev = evaluator(exceptions);
        let bad = ev.evaluate_object(&inv, 1).expect("pod result");
        let c1 = &bad.controls[0];
        assert_eq!(c1.status, Status::Passed);
        assert_eq!(c1.sub_status, Some(SubStatus::WithExceptions));
        assert_eq!(c1.rules()[0].status, Status::Passed);
        assert_eq!(c1.rules()[0].sub_status, Some(SubStatus::WithExceptions));
        assert_eq!(c1.rules()[0].paths.len(), 1);
    }
}
