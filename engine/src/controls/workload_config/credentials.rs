//! Credentials in configuration: sensitive literals in container env and ConfigMaps, Secrets
//! exposed as environment variables.

use crate::object::Field;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
use serde_json::Value;

use super::regex_cache::{CredentialMatchers, credential_matchers};
use super::{WL7, object_control};
use crate::object::str_at;
use crate::pod_view::ContainerView;
use crate::workload::{Containers, PodSpec, applies};
use crate::{Context, ControlMeta, Finding, K8sObject, Needs, Outcome};

const ENV_RULE: &str = "rule-credentials-in-env-var";
const CONFIGMAP_RULE: &str = "rule-credentials-configmap";
const SECRETS_ENV_RULE: &str = "rule-secrets-in-env-var";

const CREDENTIAL_INPUTS: &[&str] = &[
    "sensitiveKeyNames",
    "sensitiveValues",
    "sensitiveKeyNamesAllowed",
    "sensitiveValuesAllowed",
];

/// `rule-credentials-in-env-var`: literal env values of `containers` that look like credentials,
/// and `envFrom.secretRef` of `containers` and `initContainers`.
fn credentials_in_env(obj: &K8sObject, cx: &Context<'_>) -> Vec<Finding> {
    let Some(pod) = cx.pod_spec(obj) else {
        return Vec::new();
    };
    let mut findings = Vec::new();
    let mut compiled: Option<Arc<CredentialMatchers>> = None;
    for c in pod.containers(Containers::Main.lists()) {
        for (j, env) in ContainerView::list_of(c.env()).iter().enumerate() {
            let (Some(name), Some(value)) = (str_at(env, "name"), str_at(env, "value")) else {
                continue;
            };
            if value.is_empty() || value.starts_with('/') {
                continue;
            }
            let m = compiled.get_or_insert_with(|| credential_matchers(cx.inputs, true));
            if !(m.key_names.is_match(name) || m.values.is_match(value)) {
                continue;
            }
            if m.values_allowed.is_match(value) || m.key_names_allowed.is_match(name) {
                continue;
            }
            findings.push(
                Finding::new(ENV_RULE)
                    .delete(c.entry_path("env", j, "name"))
                    .delete(c.entry_path("env", j, "value")),
            );
        }
    }
    secret_env_from(&pod, ENV_RULE, &mut findings);
    findings
}

/// [`credentials_in_env`], computed once per evaluated object for C-0012 and C-0259.
fn shared_credentials_in_env(obj: &K8sObject, cx: &Context<'_>) -> Vec<Finding> {
    cx.shared_findings(obj, ENV_RULE, || credentials_in_env(obj, cx))
        .as_ref()
        .clone()
}

/// Every `envFrom[j].secretRef` of `containers` and `initContainers`: delete path
/// `<c>.envFrom[j].secretRef`.
fn secret_env_from(pod: &PodSpec<'_>, rule: &'static str, findings: &mut Vec<Finding>) {
    for c in pod.containers(Containers::WithInit.lists()) {
        for (j, from) in ContainerView::list_of(c.env_from()).iter().enumerate() {
            if from.field("secretRef").is_some_and(|r| !r.is_null()) {
                findings.push(Finding::new(rule).delete(c.entry_path("envFrom", j, "secretRef")));
            }
        }
    }
}

/// Go's `base64.StdEncoding` (padding required, non-zero trailing bits accepted).
const STD_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// `rule-credentials-configmap`: ConfigMap `data` entries with a sensitive key name, or whose
/// value (or its base64 decoding) matches a sensitive value pattern (case-sensitive).
fn credentials_in_configmap(obj: &K8sObject, cx: &Context<'_>) -> Vec<Finding> {
    let Some(data) = obj.value.field("data").and_then(Value::as_object) else {
        return Vec::new();
    };
    let m = credential_matchers(cx.inputs, false);
    let mut findings = Vec::new();
    for (key, value) in data {
        let Some(value) = value.as_str() else {
            continue;
        };
        if value.is_empty() {
            continue;
        }
        let hit = m.key_names.is_match(key)
            || m.values.is_match(value)
            || STD_LENIENT
                .decode(value)
                .is_ok_and(|bytes| m.values.is_match(&String::from_utf8_lossy(&bytes)));
        if hit && !m.values_allowed.is_match(value) && !m.key_names_allowed.is_match(key) {
            findings.push(Finding::new(CONFIGMAP_RULE).delete(format!("data[{key}]")));
        }
    }
    findings
}

/// C-0012 Applications credentials in configuration files.
///
/// Two rules. `rule-credentials-in-env-var` on workloads: an `env` entry of a container
/// (`containers` only, quirk 1: compatible) with a non-empty literal `value` fails when its
/// name contains (ignoring case) a `sensitiveKeyNames` entry or its value matches a
/// `sensitiveValues` regex (case-insensitive); unless the value matches a
/// `sensitiveValuesAllowed` regex, the name contains a `sensitiveKeyNamesAllowed` entry, or the
/// value starts with `/` (a file path). Delete paths `<c>.env[j].name` and `.value`.
/// `valueFrom` entries have no literal and never match. Any `envFrom[j].secretRef` of a
/// container or init container also fails (delete path `<c>.envFrom[j].secretRef`).
/// `rule-credentials-configmap` on ConfigMaps: a non-empty `data[key]` whose key contains a
/// sensitive key name, or whose value, or its base64 decoding, matches a `sensitiveValues`
/// regex (case-sensitive, as Kubescape), fails with delete path `data[<key>]`, with the same
/// allow-lists. Patterns are user input: they are compiled once per list and cached.
pub struct CredentialsInConfiguration;

static CREDENTIALS: ControlMeta = ControlMeta {
    id: "C-0012",
    name: "Applications credentials in configuration files",
    description: "Credentials in pod specs or ConfigMaps are readable by anyone who can read those objects.",
    remediation: "Keep credentials in Secrets (mounted as files) or an external secret store, not in env literals or ConfigMaps.",
    base_score: 8.0,
    frameworks: &[
        "NSA",
        "MITRE",
        "ArmoBest",
        "SOC2",
        "ClusterScan",
        "WorkloadScan",
        "security",
        "YAML",
    ],
    applies: &applies::<8>(WL7, &["ConfigMap"]),
    rules: &[ENV_RULE, CONFIGMAP_RULE],
    inputs: CREDENTIAL_INPUTS,
    configuration_required: true,
    needs: Needs::Nothing,
};

object_control!(CredentialsInConfiguration, CREDENTIALS, credentials);

fn credentials(obj: &K8sObject, cx: &Context<'_>) -> Outcome {
    if obj.kind == "ConfigMap" {
        Outcome::from_findings(credentials_in_configmap(obj, cx))
    } else {
        Outcome::from_findings(shared_credentials_in_env(obj, cx))
    }
}

/// C-0259 Workload with credential access.
///
/// The workload part of C-0012 (`rule-credentials-in-env-var`, the same function): sensitive
/// literal env values of `containers` (quirk 1: compatible) and `envFrom.secretRef` of
/// containers and init containers.
pub struct CredentialAccess;

static CREDENTIAL_ACCESS: ControlMeta = ControlMeta {
    id: "C-0259",
    name: "Workload with credential access",
    description: "Workloads holding credentials in their environment leak them to anyone who can read the spec or exec into the pod.",
    remediation: "Mount credentials from Secrets as files or use an external secret store.",
    base_score: 8.0,
    frameworks: &["security"],
    applies: WL7,
    rules: &[ENV_RULE],
    inputs: CREDENTIAL_INPUTS,
    configuration_required: false,
    needs: Needs::Nothing,
};

object_control!(CredentialAccess, CREDENTIAL_ACCESS, credential_access);

fn credential_access(obj: &K8sObject, cx: &Context<'_>) -> Outcome {
    Outcome::from_findings(shared_credentials_in_env(obj, cx))
}

/// C-0207 Prefer using secrets as files over secrets as environment variables.
///
/// Containers and init containers (quirk 1: compatible): each `env[j].valueFrom.secretKeyRef`
/// fails with delete path `<c>.env[j].name`, each `envFrom[j].secretRef` with delete path
/// `<c>.envFrom[j].secretRef`.
pub struct SecretsInEnv;

static SECRETS_IN_ENV: ControlMeta = ControlMeta {
    id: "C-0207",
    name: "Prefer using secrets as files over secrets as environment variables",
    description: "Secrets in environment variables end up in logs, crash dumps and child processes.",
    remediation: "Mount Secrets as files instead of exposing them as environment variables.",
    base_score: 4.0,
    frameworks: &[
        "WorkloadScan",
        "cis-aks-t1.2.0",
        "cis-aks-t1.8.0",
        "cis-eks-t1.7.0",
        "cis-eks-t1.8.0",
        "cis-gke-v1.9.0",
        "cis-v1.10.0",
        "cis-v1.12.0",
    ],
    applies: WL7,
    rules: &[SECRETS_ENV_RULE],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

object_control!(SecretsInEnv, SECRETS_IN_ENV, secrets_in_env);

fn secrets_in_env(obj: &K8sObject, cx: &Context<'_>) -> Outcome {
    let Some(pod) = cx.pod_spec(obj) else {
        return Outcome::Passed;
    };
    let mut findings = Vec::new();
    for c in pod.containers(Containers::WithInit.lists()) {
        for (j, env) in ContainerView::list_of(c.env()).iter().enumerate() {
            let secret_ref = env
                .field("valueFrom")
                .and_then(|v| v.field("secretKeyRef"))
                .is_some_and(|r| !r.is_null());
            if secret_ref {
                findings
                    .push(Finding::new(SECRETS_ENV_RULE).delete(c.entry_path("env", j, "name")));
            }
        }
    }
    secret_env_from(&pod, SECRETS_ENV_RULE, &mut findings);
    Outcome::from_findings(findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_base64() {
        assert_eq!(
            STD_LENIENT.decode("cGFzc3dvcmQ=").ok(),
            Some(b"password".to_vec())
        );
        assert!(STD_LENIENT.decode("cGFzc3dvcmQ").is_err());
        assert!(STD_LENIENT.decode("not base64!").is_err());
    }
}
