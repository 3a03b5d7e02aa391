//! Control configuration inputs (Kubescape's `postureControlInputs`), with Kubescape's defaults.

use super::object::type_name;
use std::collections::BTreeMap;

use serde_json::Value;

/// Errors reading a controls-config file.
#[derive(Debug, thiserror::Error)]
pub enum InputsError {
    /// The document does not parse.
    #[error("controls config is not valid YAML/JSON: {0}")]
    Parse(String),
    /// A key's value is not a list of strings (numbers are accepted and turned into strings).
    #[error("controls config: `{key}` must be a list of strings, found {found}")]
    NotAStringList {
        /// The offending key.
        key: String,
        /// What was found instead.
        found: String,
    },
}

/// Control inputs: key to list of strings (numbers are written as strings, as in Kubescape).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlInputs {
    values: BTreeMap<String, Vec<String>>,
}

fn list(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}

impl Default for ControlInputs {
    /// Kubescape's defaults (regolibrary `default-config-inputs.json`, catalog section 4.1).
    fn default() -> Self {
        let mut v = BTreeMap::new();
        for key in [
            "imageRepositoryAllowList",
            "imageDigestExemptRepositories",
            "floatingImageTags",
            "trustedCosignPublicKeys",
            "publicRegistries",
            "untrustedRegistries",
            "sensitiveKeyNamesAllowed",
            "sensitiveValuesAllowed",
            "memory_request_max",
            "memory_limit_max",
            "cpu_request_max",
            "cpu_limit_max",
            "sandbox_cpu_limit_max",
            "sandbox_memory_limit_max",
        ] {
            v.insert(key.to_string(), Vec::new());
        }
        for key in [
            "memory_request_min",
            "memory_limit_min",
            "cpu_request_min",
            "cpu_limit_min",
        ] {
            v.insert(key.to_string(), list(&["0"]));
        }
        v.insert(
            "insecureCapabilities".into(),
            list(&[
                "SETPCAP",
                "NET_ADMIN",
                "NET_RAW",
                "SYS_MODULE",
                "SYS_RAWIO",
                "SYS_PTRACE",
                "SYS_ADMIN",
                "SYS_BOOT",
                "MAC_OVERRIDE",
                "MAC_ADMIN",
                "PERFMON",
                "ALL",
                "BPF",
            ]),
        );
        v.insert(
            "sensitiveInterfaces".into(),
            list(&[
                "nifi",
                "argo-server",
                "weave-scope-app",
                "kubeflow",
                "kubernetes-dashboard",
                "jenkins",
                "prometheus-deployment",
                "ollama",
                "vllm",
                "kserve",
                "triton-inference-server",
                "ray-dashboard",
                "ray-head",
                "mlflow",
                "jupyterhub",
                "seldon",
                "bentoml",
            ]),
        );
        v.insert(
            "servicesNames".into(),
            list(&[
                "nifi-service",
                "argo-server",
                "minio",
                "postgres",
                "workflow-controller-metrics",
                "weave-scope-app",
                "kubernetes-dashboard",
            ]),
        );
        v.insert("max_critical_vulnerabilities".into(), list(&["5"]));
        v.insert("max_high_vulnerabilities".into(), list(&["10"]));
        v.insert(
            "sensitiveKeyNames".into(),
            list(&[
                "aws_secret_access_key",
                "azure_batchai_storage_key",
                "azure_batch_key",
                "secret",
                "key",
                "password",
                "pwd",
                "token",
                "jwt",
                "bearer",
                "credential",
            ]),
        );
        v.insert(
            "sensitiveValues".into(),
            list(&[
                r"BEGIN \w+ PRIVATE KEY",
                "PRIVATE KEY",
                "eyJhbGciO",
                "JWT",
                "Bearer",
                "_key_",
                "_secret_",
                "AKIA[0-9A-Z]{16}",
                "ghp_[0-9A-Za-z]{36}",
                r"AIza[0-9A-Za-z\-_]{35}",
                "xox[baprs]-[0-9A-Za-z]{10,48}",
            ]),
        );
        v.insert(
            "wlKnownNames".into(),
            list(&[
                "coredns",
                "kube-proxy",
                "event-exporter-gke",
                "kube-dns",
                "17-default-backend",
                "metrics-server",
                "ca-audit",
                "ca-dashboard-aggregator",
                "ca-notification-server",
                "ca-ocimage",
                "ca-oracle",
                "ca-posture",
                "ca-rbac",
                "ca-vuln-scan",
                "ca-webhook",
                "ca-websocket",
                "clair-clair",
            ]),
        );
        v.insert(
            "recommendedLabels".into(),
            list(&["app", "tier", "phase", "version", "owner", "env"]),
        );
        v.insert(
            "k8sRecommendedLabels".into(),
            list(&[
                "app.kubernetes.io/name",
                "app.kubernetes.io/instance",
                "app.kubernetes.io/version",
                "app.kubernetes.io/component",
                "app.kubernetes.io/part-of",
                "app.kubernetes.io/managed-by",
                "app.kubernetes.io/created-by",
            ]),
        );
        v.insert("hardenedSandboxRuntimeClasses".into(), list(&["gvisor"]));
        ControlInputs { values: v }
    }
}

impl ControlInputs {
    /// Inputs with no value at all (every key empty).
    pub fn empty() -> Self {
        ControlInputs {
            values: BTreeMap::new(),
        }
    }

    /// The values of a key; empty when unset.
    pub fn get(&self, key: &str) -> &[String] {
        self.values.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Replaces the values of a key.
    pub fn set(&mut self, key: impl Into<String>, values: Vec<String>) {
        self.values.insert(key.into(), values);
    }

    /// Every key and its values, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Vec<String>)> {
        self.values.iter()
    }

    /// The inputs restricted to `keys` (what a rule result records as `controlConfigurations`).
    pub fn select(&self, keys: &[&str]) -> BTreeMap<String, Vec<String>> {
        keys.iter()
            .map(|k| ((*k).to_string(), self.get(k).to_vec()))
            .collect()
    }

    /// Applies overrides from a controls-config document, key by key.
    ///
    /// Accepts Kubescape's file shape (`{settings: {postureControlInputs: {...}}}`) or a plain
    /// mapping of keys to lists. Values must be lists of strings; numbers become strings.
    pub fn apply_overrides(&mut self, doc: &Value) -> Result<(), InputsError> {
        let map = doc
            .pointer("/settings/postureControlInputs")
            .or_else(|| doc.get("postureControlInputs"))
            .unwrap_or(doc);
        let Some(map) = map.as_object() else {
            return Err(InputsError::Parse(
                "expected a mapping of control-input keys to lists of strings".into(),
            ));
        };
        for (key, value) in map {
            let items = value
                .as_array()
                .ok_or_else(|| InputsError::NotAStringList {
                    key: key.clone(),
                    found: type_name(value).into(),
                })?;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    Value::Number(n) => out.push(n.to_string()),
                    other => {
                        return Err(InputsError::NotAStringList {
                            key: key.clone(),
                            found: format!("a list containing {}", type_name(other)),
                        });
                    }
                }
            }
            self.values.insert(key.clone(), out);
        }
        Ok(())
    }
}
