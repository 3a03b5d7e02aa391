//! Recommended labels on workloads and their pod templates.

use crate::object::Field;
use serde_json::{Map, Value};

use super::{WL7, object_control};
use crate::object::get_path;
use crate::workload::template_path;
use crate::{Context, ControlMeta, Finding, K8sObject, Needs, Outcome};

/// Whether `metadata` (of the object or of its pod template) carries one of `wanted`.
fn has_label(metadata: Option<&Value>, wanted: &[String]) -> bool {
    let labels: Option<&Map<String, Value>> = metadata
        .and_then(|m| m.field("labels"))
        .and_then(Value::as_object);
    // One pass over the (few) labels rather than a lookup per wanted key.
    labels.is_some_and(|l| {
        l.iter()
            .any(|(k, v)| *v != Value::Bool(false) && wanted.iter().any(|w| w == k))
    })
}

/// The label-usage rules: the object's own labels and, for controllers, the pod template's
/// labels must each contain one of the configured labels. Each side that does not gets a fix
/// path `<prefix>metadata.labels[<first configured label>]` = `YOUR_VALUE` (`YOUR_LABEL` when
/// the list is empty). A controller without a pod template is not evaluated by Kubescape and
/// passes.
fn label_usage(obj: &K8sObject, rule: &'static str, wanted: &[String]) -> Outcome {
    let Some(template) = template_path(&obj.kind) else {
        return Outcome::NotApplicable;
    };
    let own_ok = has_label(obj.value.field("metadata"), wanted);
    let template_ok = if template.is_empty() {
        true
    } else {
        match get_path(&obj.value, template) {
            Some(t) => has_label(t.field("metadata"), wanted),
            None => return Outcome::Passed,
        }
    };
    if own_ok && template_ok {
        return Outcome::Passed;
    }
    let label = wanted.first().map_or("YOUR_LABEL", String::as_str);
    let mut finding = Finding::new(rule);
    if !own_ok {
        finding = finding.fix(format!("metadata.labels[{label}]"), "YOUR_VALUE");
    }
    if !template_ok {
        finding = finding.fix(format!("{template}.metadata.labels[{label}]"), "YOUR_VALUE");
    }
    Outcome::Failed(vec![finding])
}

/// C-0076 Label usage for resources.
///
/// A workload passes only when its own labels, and for controllers its pod template's labels,
/// each contain at least one `recommendedLabels` key; fix paths on the side(s) that do not.
pub struct LabelUsage;

static LABEL_USAGE: ControlMeta = ControlMeta {
    id: "C-0076",
    name: "Label usage for resources",
    description: "Without labels such as app, tier or owner, resources are hard to select, audit and attribute.",
    remediation: "Add at least one of the recommended labels to the workload and its pod template.",
    base_score: 2.0,
    frameworks: &["DevOpsBest", "YAML"],
    applies: WL7,
    rules: &["label-usage-for-resources"],
    inputs: &["recommendedLabels"],
    configuration_required: true,
    needs: Needs::Nothing,
};

object_control!(LabelUsage, LABEL_USAGE, label_usage_for_resources);

fn label_usage_for_resources(obj: &K8sObject, cx: &Context<'_>) -> Outcome {
    label_usage(
        obj,
        "label-usage-for-resources",
        cx.inputs.get("recommendedLabels"),
    )
}

/// C-0077 K8s common labels usage.
///
/// As C-0076 with the `k8sRecommendedLabels` keys (`app.kubernetes.io/name`, ...).
pub struct K8sCommonLabels;

static K8S_COMMON_LABELS: ControlMeta = ControlMeta {
    id: "C-0077",
    name: "K8s common labels usage",
    description: "The app.kubernetes.io labels let tools and people identify what a resource belongs to.",
    remediation: "Add at least one of the app.kubernetes.io recommended labels to the workload and its pod template.",
    base_score: 2.0,
    frameworks: &["DevOpsBest", "YAML"],
    applies: WL7,
    rules: &["k8s-common-labels-usage"],
    inputs: &["k8sRecommendedLabels"],
    configuration_required: true,
    needs: Needs::Nothing,
};

object_control!(K8sCommonLabels, K8S_COMMON_LABELS, k8s_common_labels);

fn k8s_common_labels(obj: &K8sObject, cx: &Context<'_>) -> Outcome {
    label_usage(
        obj,
        "k8s-common-labels-usage",
        cx.inputs.get("k8sRecommendedLabels"),
    )
}
