//! Single fields of a workload: inventory-only kinds, entrypoints, owners, secret storage,
//! deprecated or duplicated fields, selectors and rollout strategy.

use crate::object::Field;
use serde_json::{Map, Value};
use smallvec::SmallVec;

use super::{DEPLOYMENT, POD, WL7, WL7_RC, object_control};
use crate::object::{array, get_path, str_at};
use crate::pod_view::ContainerView;
use crate::selectors::{expression_matches, map_subset};
use crate::workload::Containers;
use crate::{Applies, Context, ControlMeta, Finding, K8sObject, Needs, Outcome};

/// C-0026 Kubernetes CronJob.
///
/// An inventory control (MITRE persistence): every CronJob fails, without paths.
pub struct CronJobs;

static CRONJOBS: ControlMeta = ControlMeta {
    id: "C-0026",
    name: "Kubernetes CronJob",
    description: "CronJobs can be used by attackers to run malicious code periodically in the cluster.",
    remediation: "Review every CronJob and remove those that are not expected.",
    base_score: 1.0,
    frameworks: &["MITRE", "YAML"],
    applies: &[Applies::Kind("CronJob")],
    rules: &["rule-deny-cronjobs"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

object_control!(CronJobs, CRONJOBS, cronjobs);

fn cronjobs(_obj: &K8sObject, _cx: &Context<'_>) -> Outcome {
    Outcome::Failed(vec![Finding::new("rule-deny-cronjobs")])
}

/// C-0062 Sudo in container entrypoint.
///
/// A container (`containers` only, quirk 1: compatible) with a `command[k]` containing `sudo`
/// fails; review path `<c>.command[k]`. `args` are not inspected, as in Kubescape.
pub struct SudoInEntrypoint;

static SUDO: ControlMeta = ControlMeta {
    id: "C-0062",
    name: "Sudo in container entrypoint",
    description: "sudo in a container entrypoint suggests the container runs with more privileges than it needs.",
    remediation: "Remove sudo from the command and run the container as a user with the rights it needs.",
    base_score: 5.0,
    frameworks: &["ArmoBest", "YAML"],
    applies: WL7,
    rules: &["sudo-in-container-entrypoint"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

object_control!(SudoInEntrypoint, SUDO, sudo);

fn sudo(obj: &K8sObject, cx: &Context<'_>) -> Outcome {
    let Some(pod) = cx.pod_spec(obj) else {
        return Outcome::Passed;
    };
    let mut findings = Vec::new();
    for c in pod.containers(Containers::Main.lists()) {
        for (k, arg) in ContainerView::list_of(c.command()).iter().enumerate() {
            if arg.as_str().is_some_and(|s| s.contains("sudo")) {
                findings.push(
                    Finding::new("sudo-in-container-entrypoint")
                        .review(c.path(&format!("command[{k}]"))),
                );
            }
        }
    }
    Outcome::from_findings(findings)
}

/// C-0073 Naked pods.
///
/// A Pod without `metadata.ownerReferences` (not managed by a controller) fails, without
/// paths.
pub struct NakedPods;

static NAKED_PODS: ControlMeta = ControlMeta {
    id: "C-0073",
    name: "Naked pods",
    description: "Pods without a controller are not rescheduled when their node fails.",
    remediation: "Run the pod through a Deployment, StatefulSet, DaemonSet or Job.",
    base_score: 3.0,
    frameworks: &["DevOpsBest", "YAML"],
    applies: POD,
    rules: &["naked-pods"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

object_control!(NakedPods, NAKED_PODS, naked_pods);

fn naked_pods(obj: &K8sObject, _cx: &Context<'_>) -> Outcome {
    match obj.metadata().field("ownerReferences") {
        None | Some(Value::Null) => Outcome::Failed(vec![Finding::new("naked-pods")]),
        Some(_) => Outcome::Passed,
    }
}

/// C-0234 Consider external secret storage.
///
/// A workload none of whose pod volumes sets `csi.volumeAttributes.secretProviderClass` fails
/// (also without volumes), with fix path
/// `<podspec>.volumes[0].csi.volumeAttributes.secretProviderClass` = `YOUR_VALUE`.
pub struct ExternalSecretStorage;

static EXTERNAL_SECRETS: ControlMeta = ControlMeta {
    id: "C-0234",
    name: "Consider external secret storage",
    description: "An external secret store (through the Secrets Store CSI driver) keeps secrets out of etcd and eases rotation.",
    remediation: "Mount secrets through a Secrets Store CSI volume with a SecretProviderClass.",
    base_score: 6.0,
    frameworks: &["cis-eks-t1.7.0", "cis-eks-t1.8.0", "cis-gke-v1.9.0"],
    applies: WL7,
    rules: &["ensure-external-secrets-storage-is-in-use"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

object_control!(ExternalSecretStorage, EXTERNAL_SECRETS, external_secrets);

fn external_secrets(obj: &K8sObject, _cx: &Context<'_>) -> Outcome {
    let Some(path) = crate::workload::pod_spec_path(&obj.kind) else {
        return Outcome::NotApplicable;
    };
    let uses_provider = get_path(&obj.value, path).is_some_and(|spec| {
        array(spec, "volumes").iter().any(|v| {
            get_path(v, "csi.volumeAttributes.secretProviderClass")
                .is_some_and(|c| !c.is_null() && *c != Value::Bool(false))
        })
    });
    if uses_provider {
        Outcome::Passed
    } else {
        Outcome::Failed(vec![
            Finding::new("ensure-external-secrets-storage-is-in-use").fix(
                format!("{path}.volumes[0].csi.volumeAttributes.secretProviderClass"),
                "YOUR_VALUE",
            ),
        ])
    }
}

/// C-0294 Deprecated serviceAccount field.
///
/// Workloads (and ReplicationControllers) whose pod spec sets the deprecated `serviceAccount`:
/// without `serviceAccountName` the workload fails with delete path `<podspec>.serviceAccount`
/// and fix path `<podspec>.serviceAccountName` = the same value; with a different
/// `serviceAccountName` it fails with the delete path only. Equal values pass.
pub struct DeprecatedServiceAccountField;

static DEPRECATED_SA: ControlMeta = ControlMeta {
    id: "C-0294",
    name: "Deprecated serviceAccount field",
    description: "serviceAccount is a deprecated alias of serviceAccountName; conflicting values are confusing and error-prone.",
    remediation: "Use serviceAccountName and remove serviceAccount.",
    base_score: 3.0,
    frameworks: &["DevOpsBest"],
    applies: WL7_RC,
    rules: &["deprecated-service-account-field"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

object_control!(DeprecatedServiceAccountField, DEPRECATED_SA, deprecated_sa);

fn deprecated_sa(obj: &K8sObject, cx: &Context<'_>) -> Outcome {
    let Some(pod) = cx.pod_spec(obj) else {
        return Outcome::Passed;
    };
    let Some(deprecated) = str_at(pod, "serviceAccount").filter(|s| !s.is_empty()) else {
        return Outcome::Passed;
    };
    let rule = "deprecated-service-account-field";
    let delete = format!("{}.serviceAccount", pod.path);
    match str_at(pod, "serviceAccountName").filter(|s| !s.is_empty()) {
        None => Outcome::Failed(vec![Finding::new(rule).delete(delete).fix(
            format!("{}.serviceAccountName", pod.path),
            deprecated.to_string(),
        )]),
        Some(name) if name != deprecated => {
            Outcome::Failed(vec![Finding::new(rule).delete(delete)])
        }
        Some(_) => Outcome::Passed,
    }
}

/// C-0295 Duplicate environment variable.
///
/// In every container, init container and ephemeral container (quirk 1: compatible), each
/// `env[j]` whose name also appears at another index of the same container's `env` fails
/// (one finding per duplicated entry); failed path `<c>.env[j].name`.
pub struct DuplicateEnvVar;

static DUPLICATE_ENV: ControlMeta = ControlMeta {
    id: "C-0295",
    name: "Duplicate environment variable",
    description: "When an environment variable is defined twice only the last value wins, which hides mistakes.",
    remediation: "Keep a single definition of each environment variable per container.",
    base_score: 3.0,
    frameworks: &["DevOpsBest"],
    applies: WL7_RC,
    rules: &["duplicate-env-var"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

object_control!(DuplicateEnvVar, DUPLICATE_ENV, duplicate_env);

fn duplicate_env(obj: &K8sObject, cx: &Context<'_>) -> Outcome {
    let Some(pod) = cx.pod_spec(obj) else {
        return Outcome::Passed;
    };
    let mut findings = Vec::new();
    for c in pod.containers(Containers::All.lists()) {
        // Each entry's name looked up once, not once per pair of entries.
        let names: SmallVec<[Option<&str>; 16]> = ContainerView::list_of(c.env())
            .iter()
            .map(|e| str_at(e, "name"))
            .collect();
        for (j, name) in names.iter().enumerate() {
            let Some(name) = name else {
                continue;
            };
            let duplicated = names
                .iter()
                .enumerate()
                .any(|(k, other)| k != j && *other == Some(*name));
            if duplicated {
                findings.push(
                    Finding::new("duplicate-env-var").failed(c.path(&format!("env[{j}].name"))),
                );
            }
        }
    }
    Outcome::from_findings(findings)
}

/// C-0296 Mismatching selector.
///
/// Controllers with a non-empty selector (`spec.selector` matchLabels/matchExpressions; the
/// ReplicationController's `spec.selector` map; a CronJob's `spec.jobTemplate.spec.selector`)
/// fail when their pod-template labels (none when the template has no metadata) violate it:
/// failed path `...selector.matchLabels` (RC: `spec.selector`) when a matchLabels entry is
/// missing or different, else `...selector.matchExpressions` when an `In`, `NotIn`, `Exists`
/// or `DoesNotExist` expression does not hold.
pub struct MismatchingSelector;

static MISMATCHING_SELECTOR: ControlMeta = ControlMeta {
    id: "C-0296",
    name: "Mismatching selector",
    description: "A controller whose selector does not match its pod template cannot manage its pods.",
    remediation: "Make the selector match the labels of the pod template.",
    base_score: 3.0,
    frameworks: &["DevOpsBest"],
    applies: &[
        Applies::Kind("Deployment"),
        Applies::Kind("ReplicaSet"),
        Applies::Kind("DaemonSet"),
        Applies::Kind("StatefulSet"),
        Applies::Kind("ReplicationController"),
        Applies::Kind("Job"),
        Applies::Kind("CronJob"),
    ],
    rules: &["mismatching-selector"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

object_control!(
    MismatchingSelector,
    MISMATCHING_SELECTOR,
    mismatching_selector
);

fn mismatching_selector(obj: &K8sObject, cx: &Context<'_>) -> Outcome {
    let (selector_path, rc) = match obj.kind.as_str() {
        "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet" | "Job" => {
            ("spec.selector", false)
        }
        "ReplicationController" => ("spec.selector", true),
        "CronJob" => ("spec.jobTemplate.spec.selector", false),
        _ => return Outcome::NotApplicable,
    };
    let selector = get_path(&obj.value, selector_path);
    let (match_labels, expressions): (Option<&Map<String, Value>>, &[Value]) = if rc {
        (selector.and_then(Value::as_object), &[])
    } else {
        (
            selector
                .and_then(|s| s.field("matchLabels"))
                .and_then(Value::as_object),
            selector.map_or(&[], |s| array(s, "matchExpressions")),
        )
    };
    if match_labels.is_none_or(Map::is_empty) && expressions.is_empty() {
        return Outcome::Passed;
    }
    // The pod template's labels (every kind here has a template), from the memo.
    let labels = cx.pod_labels(obj);
    let path = if !map_subset(match_labels, labels) {
        if rc {
            "spec.selector".to_string()
        } else {
            format!("{selector_path}.matchLabels")
        }
    } else if !expressions.iter().all(|e| expression_matches(e, labels)) {
        format!("{selector_path}.matchExpressions")
    } else {
        return Outcome::Passed;
    };
    Outcome::Failed(vec![Finding::new("mismatching-selector").failed(path)])
}

/// C-0305 No rolling update strategy.
///
/// A Deployment whose `spec.strategy.type` is set to something other than `RollingUpdate`
/// fails with review path `spec.strategy.type` and fix path `spec.strategy.type` =
/// `RollingUpdate`. An unset strategy (Kubernetes defaults to `RollingUpdate`) passes.
pub struct NoRollingUpdate;

static NO_ROLLING_UPDATE: ControlMeta = ControlMeta {
    id: "C-0305",
    name: "No rolling update strategy",
    description: "Without a rolling update every rollout stops all pods at once and causes downtime.",
    remediation: "Set spec.strategy.type: RollingUpdate.",
    base_score: 3.0,
    frameworks: &["DevOpsBest"],
    applies: DEPLOYMENT,
    rules: &["no-rolling-update-strategy"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

object_control!(NoRollingUpdate, NO_ROLLING_UPDATE, no_rolling_update);

fn no_rolling_update(obj: &K8sObject, _cx: &Context<'_>) -> Outcome {
    match get_path(&obj.value, "spec.strategy.type").and_then(Value::as_str) {
        Some(t) if t != "RollingUpdate" => Outcome::Failed(vec![
            Finding::new("no-rolling-update-strategy")
                .review("spec.strategy.type")
                .fix("spec.strategy.type", "RollingUpdate"),
        ]),
        _ => Outcome::Passed,
    }
}
