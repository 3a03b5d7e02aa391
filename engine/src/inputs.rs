//! Control configuration inputs (Kubescape's `postureControlInputs`), with Kubescape's defaults.

use super::object::type_name;
use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

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

/// The map of inputs. Controls look inputs up by key while evaluating every object (a scan
/// makes some twenty lookups per workload), so it is a hash map with a fast, fixed hasher:
/// a sorted map of the fifty-odd keys cost a dozen string comparisons per lookup. Keys are
/// the configuration's, not an attacker's, so hash flooding is not a concern.
type InputMap = HashMap<String, Vec<String>, foldhash::fast::FixedState>;

/// Control inputs: key to list of strings (numbers are written as strings, as in Kubescape).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlInputs {
    values: InputMap,
    /// What controls derive from the values (see [`ControlInputs::derived`]).
    derived: Derived,
}

/// One derived value, by its type.
type DerivedEntry = (TypeId, Arc<dyn Any + Send + Sync>);

/// Values derived from the inputs, one per type, built on first use. A change of the inputs
/// empties it; a clone starts empty (it is rebuilt on demand); it takes no part in equality.
#[derive(Default)]
struct Derived(Mutex<Vec<DerivedEntry>>);

impl Derived {
    fn entries(&self) -> MutexGuard<'_, Vec<DerivedEntry>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn clear(&mut self) {
        self.0
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl Clone for Derived {
    fn clone(&self) -> Self {
        Derived::default()
    }
}

impl PartialEq for Derived {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Derived {}

impl fmt::Debug for Derived {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Derived({} values)", self.entries().len())
    }
}

fn list(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}

impl Default for ControlInputs {
    /// Kubescape's defaults (regolibrary `default-config-inputs.json`, catalog section 4.1).
    fn default() -> Self {
        let mut v = InputMap::default();
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
        ControlInputs {
            values: v,
            derived: Derived::default(),
        }
    }
}

impl ControlInputs {
    /// Inputs with no value at all (every key empty).
    pub fn empty() -> Self {
        ControlInputs {
            values: InputMap::default(),
            derived: Derived::default(),
        }
    }

    /// The values of a key; empty when unset.
    pub fn get(&self, key: &str) -> &[String] {
        self.values.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Replaces the values of a key.
    pub fn set(&mut self, key: impl Into<String>, values: Vec<String>) {
        self.derived.clear();
        self.values.insert(key.into(), values);
    }

    /// The value of type `T` derived from these inputs: made by `build` on the first call, then
    /// shared. Controls keep what they parse or compile from their inputs here (compiled
    /// patterns, parsed quantities), so that a scan does it once, not once per object. `build`
    /// must depend on nothing but the inputs; one type is one value.
    pub fn derived<T: Any + Send + Sync>(&self, build: impl FnOnce(&Self) -> T) -> Arc<T> {
        let id = TypeId::of::<T>();
        let found = |entries: &[DerivedEntry]| {
            entries
                .iter()
                .find(|(t, _)| *t == id)
                .and_then(|(_, v)| Arc::clone(v).downcast::<T>().ok())
        };
        if let Some(v) = found(&self.derived.entries()) {
            return v;
        }
        // Built without the lock: `build` may derive other values.
        let built = Arc::new(build(self));
        let mut entries = self.derived.entries();
        if let Some(v) = found(&entries) {
            return v;
        }
        entries.push((id, built.clone()));
        built
    }

    /// Every key and its values, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Vec<String>)> {
        let mut all: Vec<_> = self.values.iter().collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all.into_iter()
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
            self.set(key.clone(), out);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;

    use super::*;

    #[test]
    fn iteration_is_sorted_by_key() {
        let mut inputs = ControlInputs::empty();
        for key in ["zeta", "alpha", "mid"] {
            inputs.set(key, vec![key.to_string()]);
        }
        let keys: Vec<&str> = inputs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["alpha", "mid", "zeta"]);
        let defaults = ControlInputs::default();
        let keys: Vec<&String> = defaults.iter().map(|(k, _)| k).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
    }

    #[test]
    fn derived_values_are_built_once_and_rebuilt_after_a_change() {
        struct Count(usize);
        let builds = AtomicUsize::new(0);
        let build = |i: &ControlInputs| {
            builds.fetch_add(1, Ordering::Relaxed);
            Count(i.get("k").len())
        };
        let mut inputs = ControlInputs::empty();
        inputs.set("k", vec!["a".into()]);
        let first = inputs.derived(build);
        let again = inputs.derived(build);
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!((first.0, builds.load(Ordering::Relaxed)), (1, 1));

        let copy = inputs.clone();
        assert_eq!(copy, inputs, "derived values take no part in equality");
        assert_eq!(copy.derived(build).0, 1);
        assert_eq!(builds.load(Ordering::Relaxed), 2, "a clone builds its own");

        inputs.set("k", vec!["a".into(), "b".into()]);
        assert_eq!(
            inputs.derived(build).0,
            2,
            "a change empties the derived values"
        );
        inputs
            .apply_overrides(&json!({"k": ["x", "y", "z"]}))
            .expect("overrides");
        assert_eq!(inputs.derived(build).0, 3, "so do overrides");
        assert_eq!(builds.load(Ordering::Relaxed), 4);
    }
}
