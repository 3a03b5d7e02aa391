//! Workloads mounting Secrets, PersistentVolumeClaims and ConfigMaps that exist in the scan.

use crate::object::Field;
use serde_json::Value;

use super::{WL7, in_namespace_of, indexed, object};
use crate::object::{array, get_path};
use crate::{Context, Control, ControlMeta, Finding, Needs, Outcome, Resource};

/// Which volume source a control looks for.
struct Source {
    /// Rule name.
    rule: &'static str,
    /// Kind of the object the volume refers to.
    kind: &'static str,
    /// Path, in a volume, of the referenced object's name (`secret.secretName`).
    name_path: &'static str,
}

/// Fails a workload when a volume of its pod spec refers to an object of `source.kind` present in
/// its namespace and a container (`containers` only, as in Kubescape) mounts that volume: one
/// finding per object with delete paths `<podspec>.containers[j].volumeMounts[k]` for every
/// mount, related object: the Secret/PVC/ConfigMap.
fn mounted_source(resource: Resource<'_>, cx: &Context<'_>, source: &Source) -> Outcome {
    let Some(wl) = object(resource) else {
        return Outcome::NotApplicable;
    };
    let Some(pod) = cx.pod_spec(wl) else {
        return Outcome::Passed;
    };
    if in_namespace_of(cx, source.kind, wl).next().is_none() {
        // Nothing of that kind to refer to: no need to read the volumes.
        return Outcome::Passed;
    }
    let mut findings = Vec::new();
    for volume in array(pod, "volumes") {
        let Some(target) = get_path(volume, source.name_path).and_then(Value::as_str) else {
            continue;
        };
        let Some(volume_name) = volume.field("name").and_then(Value::as_str) else {
            continue;
        };
        let Some(obj) = in_namespace_of(cx, source.kind, wl).find(|o| o.name == target) else {
            continue;
        };
        let mut finding: Option<Finding> = None;
        for (j, container) in indexed(pod.spec, "containers") {
            for (k, mount) in indexed(container, "volumeMounts") {
                if mount.field("name").and_then(Value::as_str) == Some(volume_name) {
                    let path = format!("{}.containers[{j}].volumeMounts[{k}]", pod.path);
                    finding = Some(
                        finding
                            .unwrap_or_else(|| Finding::new(source.rule))
                            .delete(path),
                    );
                }
            }
        }
        if let Some(f) = finding {
            findings.push(f.related(obj.resource_id()));
        }
    }
    Outcome::from_findings(findings)
}

const SECRET: Source = Source {
    rule: "workload-mounted-secrets",
    kind: "Secret",
    name_path: "secret.secretName",
};

/// C-0255 Workload with secret access: a `secret` volume names a Secret present in the
/// workload's namespace and a container mounts it. Delete paths
/// `<podspec>.containers[j].volumeMounts[k]`, related Secret.
///
/// Compatible with Kubescape: only `containers` are inspected (quirk 1) and projected volumes are
/// not followed.
pub struct SecretAccess;

static SECRET_ACCESS: ControlMeta = ControlMeta {
    id: "C-0255",
    name: "Workload with secret access",
    description: "Workloads that mount Secrets expose them to whoever compromises the \
                  container.",
    remediation: "Mount only the Secrets the workload needs, read-only, and prefer short-lived \
                  credentials.",
    base_score: 8.0,
    frameworks: &["security"],
    applies: WL7,
    rules: &[SECRET.rule],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for SecretAccess {
    fn meta(&self) -> &'static ControlMeta {
        &SECRET_ACCESS
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        mounted_source(resource, cx, &SECRET)
    }
}

const PVC: Source = Source {
    rule: "workload-mounted-pvc",
    kind: "PersistentVolumeClaim",
    name_path: "persistentVolumeClaim.claimName",
};

/// C-0257 Workload with PVC access: a `persistentVolumeClaim` volume names a
/// PersistentVolumeClaim present in the workload's namespace and a container mounts it. Delete
/// paths `<podspec>.containers[j].volumeMounts[k]`, related PVC.
///
/// Decision: corrected (quirk 8), PersistentVolumeClaims are read. Kubescape's rule does not list
/// them among its inputs, so a real Kubescape scan never fails this control; only its fixtures
/// do. Otherwise compatible (`containers` only).
pub struct PvcAccess;

static PVC_ACCESS: ControlMeta = ControlMeta {
    id: "C-0257",
    name: "Workload with PVC access",
    description: "Workloads that mount persistent volumes can read and alter data that outlives \
                  them.",
    remediation: "Mount only the volumes the workload needs, read-only where possible.",
    base_score: 4.0,
    frameworks: &["WorkloadScan", "security"],
    applies: WL7,
    rules: &[PVC.rule],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for PvcAccess {
    fn meta(&self) -> &'static ControlMeta {
        &PVC_ACCESS
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        mounted_source(resource, cx, &PVC)
    }
}

const CONFIG_MAP: Source = Source {
    rule: "workload-mounted-configmap",
    kind: "ConfigMap",
    name_path: "configMap.name",
};

/// C-0258 Workload with ConfigMap access: a `configMap` volume names a ConfigMap present in the
/// workload's namespace and a container mounts it. Delete paths
/// `<podspec>.containers[j].volumeMounts[k]`, related ConfigMap.
///
/// Compatible with Kubescape (`containers` only, projected volumes not followed).
pub struct ConfigMapAccess;

static CONFIG_MAP_ACCESS: ControlMeta = ControlMeta {
    id: "C-0258",
    name: "Workload with ConfigMap access",
    description: "Workloads that mount ConfigMaps can read configuration that may hold \
                  sensitive data.",
    remediation: "Mount only the ConfigMaps the workload needs and keep secrets out of them.",
    base_score: 5.0,
    frameworks: &["security"],
    applies: WL7,
    rules: &[CONFIG_MAP.rule],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for ConfigMapAccess {
    fn meta(&self) -> &'static ControlMeta {
        &CONFIG_MAP_ACCESS
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        mounted_source(resource, cx, &CONFIG_MAP)
    }
}
