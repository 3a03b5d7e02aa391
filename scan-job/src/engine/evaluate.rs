//! Runs a catalog of controls over the resources of an inventory. The engine names no control:
//! it runs whatever catalog it is given.

use std::collections::BTreeMap;

use kubevigil_crds::identity::Target;
use kubevigil_crds::{RulePath, Status, SubStatus};

use super::control::{Context, Control, ControlMeta, Finding, Needs, Outcome, Resource};
use super::exceptions::Exceptions;
use super::inputs::ControlInputs;
use super::inventory::{Inventory, Triplet};

/// The outcome of one rule of a control on one resource.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleResult {
    /// Rule name.
    pub name: &'static str,
    /// Status of the rule.
    pub status: Status,
    /// Reason for a pass or skip.
    pub sub_status: Option<SubStatus>,
    /// Paths of the rule's findings.
    pub paths: Vec<RulePath>,
    /// Related resource IDs of the rule's findings.
    pub related: Vec<String>,
}

/// The outcome of one control on one resource.
#[derive(Clone, Debug, PartialEq)]
pub struct ControlResult {
    /// The control's catalog entry.
    pub meta: &'static ControlMeta,
    /// Merged status.
    pub status: Status,
    /// Reason for a pass or skip.
    pub sub_status: Option<SubStatus>,
    /// Explanation of a skip or exception.
    pub info: Option<String>,
    /// Per-rule results.
    pub rules: Vec<RuleResult>,
    /// The configuration inputs the control read.
    pub configurations: BTreeMap<String, Vec<String>>,
}

/// All control results of one resource.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceResult {
    /// What was evaluated.
    pub target: Target,
    /// Kind of the object (or of the subject, for a triplet).
    pub kind: String,
    /// Index of the object in the inventory; for a triplet, the binding's index.
    pub object_index: usize,
    /// Results of every applicable control, in catalog order.
    pub controls: Vec<ControlResult>,
}

/// Evaluates a catalog with given inputs and exceptions.
pub struct Evaluator<'c> {
    catalog: Vec<&'c dyn Control>,
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
        Evaluator {
            catalog,
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

    /// The configuration inputs.
    pub fn inputs(&self) -> &ControlInputs {
        &self.inputs
    }

    /// Evaluates every object and triplet that at least one control applies to.
    pub fn evaluate_all(&self, inventory: &Inventory) -> Vec<ResourceResult> {
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
    pub fn evaluate_object(&self, inventory: &Inventory, index: usize) -> Option<ResourceResult> {
        let obj = inventory.get(index)?;
        let cx = self.context(inventory);
        let controls: Vec<ControlResult> = self
            .catalog
            .iter()
            .filter(|c| c.meta().applies_to_kind(&obj.kind))
            .filter_map(|c| {
                let name = obj.name.as_str();
                self.run(
                    *c,
                    Resource::Object(obj),
                    &cx,
                    &obj.kind,
                    name,
                    obj.namespace.as_deref(),
                )
            })
            .collect();
        (!controls.is_empty()).then(|| ResourceResult {
            target: Target::Object(obj.object_ref()),
            kind: obj.kind.clone(),
            object_index: index,
            controls,
        })
    }

    /// Evaluates one RBAC triplet; `None` when no control applies to subjects.
    pub fn evaluate_triplet(&self, inventory: &Inventory, t: &Triplet) -> Option<ResourceResult> {
        let target = inventory.triplet_target(t)?;
        let cx = self.context(inventory);
        let kind = t.subject.kind.as_str();
        let controls: Vec<ControlResult> = self
            .catalog
            .iter()
            .filter(|c| c.meta().applies_to_subjects())
            .filter_map(|c| {
                self.run(
                    *c,
                    Resource::Triplet(t),
                    &cx,
                    kind,
                    &t.subject.name,
                    t.subject.namespace.as_deref(),
                )
            })
            .collect();
        (!controls.is_empty()).then(|| ResourceResult {
            target,
            kind: kind.to_string(),
            object_index: t.binding,
            controls,
        })
    }

    fn context<'a>(&'a self, inventory: &'a Inventory) -> Context<'a> {
        Context {
            inventory,
            inputs: &self.inputs,
            cloud_provider: self.cloud_provider.as_deref(),
        }
    }

    fn run(
        &self,
        control: &dyn Control,
        resource: Resource<'_>,
        cx: &Context<'_>,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
    ) -> Option<ControlResult> {
        let meta = control.meta();
        let configurations = self.inputs.select(meta.inputs);
        let skip = |sub_status: SubStatus, info: &str| ControlResult {
            meta,
            status: Status::Skipped,
            sub_status: Some(sub_status),
            info: Some(info.to_string()),
            rules: rule_results(meta, &[], Status::Skipped, Some(sub_status)),
            configurations: configurations.clone(),
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
        if meta.configuration_required && configurations.values().all(Vec::is_empty) {
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
                rules: rule_results(meta, &[], Status::Passed, None),
                configurations,
            },
            Outcome::Skipped { sub_status, info } => ControlResult {
                info: Some(info),
                ..skip(sub_status, "")
            },
            Outcome::Failed(findings) => {
                match self.exceptions.find(meta.id, kind, name, namespace) {
                    Some(policy) => ControlResult {
                        meta,
                        status: Status::Passed,
                        sub_status: Some(SubStatus::WithExceptions),
                        info: Some(format!("excepted by posture exception policy {policy:?}")),
                        rules: rule_results(
                            meta,
                            &findings,
                            Status::Passed,
                            Some(SubStatus::WithExceptions),
                        ),
                        configurations,
                    },
                    None => ControlResult {
                        meta,
                        status: Status::Failed,
                        sub_status: None,
                        info: None,
                        rules: rule_results(meta, &findings, Status::Failed, None),
                        configurations,
                    },
                }
            }
        })
    }
}

/// One entry per rule of the control: rules with findings get `status` (failed, or passed with
/// exceptions) and their paths; the others passed (or share a skip).
fn rule_results(
    meta: &'static ControlMeta,
    findings: &[Finding],
    status: Status,
    sub_status: Option<SubStatus>,
) -> Vec<RuleResult> {
    let mut names: Vec<&'static str> = meta.rules.to_vec();
    for f in findings {
        if !names.contains(&f.rule) {
            names.push(f.rule);
        }
    }
    names
        .into_iter()
        .map(|name| {
            let mine: Vec<&Finding> = findings.iter().filter(|f| f.rule == name).collect();
            let (status, sub_status) = if mine.is_empty() && status != Status::Skipped {
                (Status::Passed, None)
            } else {
                (status, sub_status)
            };
            RuleResult {
                name,
                status,
                sub_status,
                paths: mine.iter().flat_map(|f| f.paths.iter().cloned()).collect(),
                related: mine
                    .iter()
                    .flat_map(|f| f.related.iter().cloned())
                    .collect(),
            }
        })
        .collect()
}
