//! The part of the controller's configuration file that a scan Job reads: `controlsConfig`
//! (control-input overrides) and `exceptions` (posture exceptions). Every other key belongs to
//! the controller and is ignored here.

use crate::engine::object::type_name;
use std::path::Path;

use serde_json::Value;

use super::RunError;
use crate::engine::{ControlInputs, Exceptions};

/// Control inputs and exceptions, as configured.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Kubescape's default inputs with the configured overrides applied.
    pub inputs: ControlInputs,
    /// The configured posture exceptions.
    pub exceptions: Exceptions,
}

/// Key of the control-input overrides in the configuration file.
const CONTROLS_CONFIG: &str = "controlsConfig";
/// Key of the posture exceptions in the configuration file.
const EXCEPTIONS: &str = "exceptions";

impl Settings {
    /// Reads the configuration file; without a file, the defaults and no exceptions.
    pub fn load(path: Option<&Path>) -> Result<Self, RunError> {
        let Some(path) = path else {
            return Ok(Settings::default());
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RunError::ReadConfig {
            path: shown.clone(),
            source,
        })?;
        Settings::parse(&shown, &text)
    }

    /// Parses the text of a configuration file; `path` is only used in error messages.
    pub fn parse(path: &str, text: &str) -> Result<Self, RunError> {
        let doc: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_norway::from_str(text).map_err(|e| RunError::ParseConfig {
                path: path.to_string(),
                message: e.to_string(),
            })?
        };
        let field_error = |field: &'static str, message: String| RunError::ConfigField {
            path: path.to_string(),
            field,
            message,
        };
        let root = match &doc {
            Value::Null => return Ok(Settings::default()),
            Value::Object(map) => map,
            other => {
                return Err(RunError::ParseConfig {
                    path: path.to_string(),
                    message: format!(
                        "expected a mapping at the top level, found {}",
                        type_name(other)
                    ),
                });
            }
        };
        let mut inputs = ControlInputs::default();
        match root.get(CONTROLS_CONFIG) {
            None | Some(Value::Null) => {}
            Some(v) => inputs
                .apply_overrides(v)
                .map_err(|e| field_error(CONTROLS_CONFIG, e.to_string()))?,
        }
        let exceptions = match root.get(EXCEPTIONS) {
            None | Some(Value::Null) => Exceptions::none(),
            Some(v) => {
                Exceptions::from_value(v).map_err(|e| field_error(EXCEPTIONS, e.to_string()))?
            }
        };
        Ok(Settings { inputs, exceptions })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHART_SHAPE: &str = r#"
clusterName: kind
namespace: kubevigil
continuousScanning: {matchingRules: []}
scanJob: {image: x, serviceAccountName: y, batchSize: 50}
controlsConfig:
  insecureCapabilities: ["SYS_ADMIN", "NET_ADMIN"]
  cpu_limit_max: [2]
exceptions:
  - name: allow-monitoring
    policyType: postureExceptionPolicy
    resources:
      - attributes: {kind: Deployment, namespace: monitoring}
    posturePolicies:
      - controlID: C-0057
"#;

    #[test]
    fn reads_controls_config_and_exceptions_and_ignores_the_rest() {
        let s = Settings::parse("config.yaml", CHART_SHAPE).unwrap();
        assert_eq!(
            s.inputs.get("insecureCapabilities"),
            ["SYS_ADMIN", "NET_ADMIN"]
        );
        assert_eq!(s.inputs.get("cpu_limit_max"), ["2"]);
        // Keys not overridden keep Kubescape's defaults.
        assert_eq!(
            s.inputs.get("memory_request_min"),
            ControlInputs::default().get("memory_request_min")
        );
        assert!(!s.exceptions.is_empty());
    }

    #[test]
    fn empty_or_missing_sections_are_defaults() {
        for text in [
            "",
            "controlsConfig: {}\nexceptions: []\n",
            "controlsConfig:\n",
            "a: 1",
        ] {
            let s = Settings::parse("c.yaml", text).unwrap();
            assert_eq!(s.inputs, ControlInputs::default());
            assert!(s.exceptions.is_empty());
        }
        let s = Settings::load(None).unwrap();
        assert_eq!(s.inputs, ControlInputs::default());
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let e = Settings::parse("/etc/kubevigil/config.yaml", "controlsConfig:\n  x: 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/etc/kubevigil/config.yaml"), "{e}");
        assert!(e.contains("`controlsConfig`"), "{e}");
        assert!(e.contains("`x`"), "{e}");

        let e = Settings::parse("c.yaml", "exceptions: {a: 1}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.yaml") && e.contains("`exceptions`"), "{e}");

        let e = Settings::parse("c.yaml", "controlsConfig: [\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid config file c.yaml"), "{e}");

        let e = Settings::parse("c.yaml", "- 1\n").unwrap_err().to_string();
        assert!(e.contains("mapping"), "{e}");

        let e = Settings::load(Some(Path::new("/nonexistent/kubevigil.yaml")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/kubevigil.yaml"), "{e}");
    }
}
