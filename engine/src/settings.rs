//! The scanner's part of the chart's configuration file: `controlsConfig` (control-input
//! overrides) and `exceptions` (posture exceptions), parsed in one place for the controller
//! (which checks them at startup and hashes them) and for scan Jobs (which apply them). Every
//! other key of the file is someone else's and ignored here.

use serde_json::Value;

use crate::object::type_name;
use crate::{ControlInputs, Exceptions, catalog};

/// Key of the control-input overrides in the configuration file.
pub const CONTROLS_CONFIG: &str = "controlsConfig";
/// Key of the posture exceptions in the configuration file.
pub const EXCEPTIONS: &str = "exceptions";

/// Control inputs and exceptions, as configured.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Kubescape's default inputs with the configured overrides applied.
    pub inputs: ControlInputs,
    /// The configured posture exceptions.
    pub exceptions: Exceptions,
}

/// A malformed section; the caller names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {message}")]
pub struct FieldError {
    /// [`CONTROLS_CONFIG`], [`EXCEPTIONS`] or another section's key path.
    pub field: &'static str,
    /// What is wrong, naming the key inside the section.
    pub message: String,
}

/// What is wrong with a configuration file's text; the caller names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// The text is not YAML, or not a mapping at the top level.
    #[error("{0}")]
    Parse(String),
    /// A section is malformed.
    #[error(transparent)]
    Field(#[from] FieldError),
}

impl Settings {
    /// Parses the text of a whole configuration file (YAML; empty means the defaults).
    pub fn parse(text: &str) -> Result<Self, SettingsError> {
        if text.trim().is_empty() {
            return Ok(Settings::default());
        }
        let doc: Value =
            serde_norway::from_str(text).map_err(|e| SettingsError::Parse(e.to_string()))?;
        match &doc {
            Value::Null => Ok(Settings::default()),
            Value::Object(root) => Ok(Settings::from_sections(
                root.get(CONTROLS_CONFIG).unwrap_or(&Value::Null),
                root.get(EXCEPTIONS).unwrap_or(&Value::Null),
            )?),
            other => Err(SettingsError::Parse(format!(
                "expected a mapping at the top level, found {}",
                type_name(other)
            ))),
        }
    }

    /// The settings from the two sections as values (`null` when absent).
    pub fn from_sections(controls_config: &Value, exceptions: &Value) -> Result<Self, FieldError> {
        let mut inputs = ControlInputs::default();
        if !controls_config.is_null() {
            inputs
                .apply_overrides(controls_config)
                .map_err(|e| FieldError {
                    field: CONTROLS_CONFIG,
                    message: e.to_string(),
                })?;
        }
        let exceptions = if exceptions.is_null() {
            Exceptions::none()
        } else {
            Exceptions::from_value(exceptions).map_err(|e| FieldError {
                field: EXCEPTIONS,
                message: e.to_string(),
            })?
        };
        Ok(Settings { inputs, exceptions })
    }

    /// The controls hash that results scanned with these settings carry.
    pub fn controls_hash(&self) -> String {
        controls_hash(&catalog::all(), &self.inputs)
    }
}

/// A hash of the control IDs and the configuration inputs: results written under a different
/// hash are stale. Exceptions are not part of it (they change a result's status, not what was
/// checked).
pub fn controls_hash(controls: &[&dyn crate::Control], inputs: &ControlInputs) -> String {
    let mut key = String::new();
    for c in controls {
        key.push_str(c.meta().id);
        key.push(';');
    }
    for (k, v) in inputs.iter() {
        key.push_str(&format!("{}:{k}={};", k.len(), v.join("\u{1f}")));
    }
    kubevigil_crds::identity::short_hash(&key)
}

/// Key of the posture Events settings in the configuration file.
pub const POSTURE_EVENTS: &str = "postureEvents";

/// When scan Jobs raise `PostureRegressed` and `PostureImproved` Events on a target
/// (`postureEvents` in the configuration file; the chart's `postureEvents` values).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostureEvents {
    /// Whether scan Jobs raise posture Events at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The lowest severity of a control whose change raises an Event (`High`: High and
    /// Critical controls).
    #[serde(default = "default_threshold")]
    pub severity_threshold: kubevigil_crds::Severity,
    /// Whether a target's first result raises `PostureRegressed` for its failed controls
    /// (off: installing on a cluster raises no Events).
    #[serde(default)]
    pub on_first_result: bool,
}

fn default_true() -> bool {
    true
}

fn default_threshold() -> kubevigil_crds::Severity {
    kubevigil_crds::Severity::High
}

impl Default for PostureEvents {
    fn default() -> Self {
        PostureEvents {
            enabled: true,
            severity_threshold: default_threshold(),
            on_first_result: false,
        }
    }
}

impl PostureEvents {
    /// Reads `postureEvents` from the text of a whole configuration file (absent: defaults).
    pub fn parse(text: &str) -> Result<Self, SettingsError> {
        if text.trim().is_empty() {
            return Ok(PostureEvents::default());
        }
        let doc: Value =
            serde_norway::from_str(text).map_err(|e| SettingsError::Parse(e.to_string()))?;
        match doc.get(POSTURE_EVENTS) {
            None | Some(Value::Null) => Ok(PostureEvents::default()),
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
                SettingsError::Field(FieldError {
                    field: POSTURE_EVENTS,
                    message: e.to_string(),
                })
            }),
        }
    }

    /// Whether a control of `severity` is at or above the threshold.
    pub fn counts(&self, severity: kubevigil_crds::Severity) -> bool {
        severity_rank(severity) >= severity_rank(self.severity_threshold)
    }
}

/// Reads `continuousScanning.rescanAfter` from the text of a whole configuration file: the
/// maximum result age (`None`: `off` or absent). A scan Job needs it to refresh the scan time
/// of a result whose outcome did not change, so that "scanned within the period" holds.
pub fn rescan_after(text: &str) -> Result<Option<std::time::Duration>, SettingsError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let doc: Value =
        serde_norway::from_str(text).map_err(|e| SettingsError::Parse(e.to_string()))?;
    let value = match doc
        .get("continuousScanning")
        .and_then(|c| c.get("rescanAfter"))
    {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(other) => other.to_string(),
    };
    if value.is_empty() || value == "off" {
        return Ok(None);
    }
    kubevigil_crds::duration::parse_duration(&value)
        .map(Some)
        .ok_or_else(|| {
            SettingsError::Field(FieldError {
                field: "continuousScanning.rescanAfter",
                message: format!("{value:?} is neither `off` nor a duration like `24h`"),
            })
        })
}

/// Unknown 0, Low 1, Medium 2, High 3, Critical 4.
pub fn severity_rank(severity: kubevigil_crds::Severity) -> u8 {
    use kubevigil_crds::Severity as S;
    match severity {
        S::Unknown => 0,
        S::Low => 1,
        S::Medium => 2,
        S::High => 3,
        S::Critical => 4,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn posture_events_settings() {
        let d = PostureEvents::parse(CHART_SHAPE).unwrap();
        assert_eq!(d, PostureEvents::default());
        assert!(d.enabled && !d.on_first_result);
        assert!(d.counts(kubevigil_crds::Severity::Critical));
        assert!(d.counts(kubevigil_crds::Severity::High));
        assert!(!d.counts(kubevigil_crds::Severity::Medium));
        let s = PostureEvents::parse(
            "postureEvents: {enabled: false, severityThreshold: Critical, onFirstResult: true}",
        )
        .unwrap();
        assert!(!s.enabled && s.on_first_result);
        assert!(!s.counts(kubevigil_crds::Severity::High));
        let e = PostureEvents::parse("postureEvents: {severityThreshold: Severe}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`postureEvents`") && e.contains("Severe"), "{e}");
    }

    use super::*;

    #[test]
    fn rescan_after_is_off_absent_or_a_duration() {
        assert_eq!(rescan_after("").unwrap(), None);
        assert_eq!(rescan_after("clusterName: x\n").unwrap(), None);
        let doc = |v: &str| format!("continuousScanning:\n  rescanAfter: {v}\n");
        assert_eq!(rescan_after(&doc("off")).unwrap(), None);
        assert_eq!(
            rescan_after(&doc("24h")).unwrap(),
            Some(std::time::Duration::from_secs(86_400))
        );
        let e = rescan_after(&doc("soon")).unwrap_err();
        assert!(
            matches!(&e, SettingsError::Field(f) if f.field == "continuousScanning.rescanAfter"),
            "{e:?}"
        );
    }

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
        let s = Settings::parse(CHART_SHAPE).unwrap();
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
        assert_ne!(s.controls_hash(), Settings::default().controls_hash());
    }

    #[test]
    fn empty_or_missing_sections_are_defaults() {
        for text in [
            "",
            "controlsConfig: {}\nexceptions: []\n",
            "controlsConfig:\n",
            "a: 1",
        ] {
            let s = Settings::parse(text).unwrap();
            assert_eq!(s.inputs, ControlInputs::default());
            assert!(s.exceptions.is_empty());
        }
    }

    #[test]
    fn errors_name_the_field() {
        let e = Settings::parse("controlsConfig:\n  x: 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("field `controlsConfig`"), "{e}");
        assert!(e.contains("`x`"), "{e}");

        let e = Settings::parse("exceptions: {a: 1}\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("field `exceptions`"), "{e}");

        assert!(matches!(
            Settings::parse("controlsConfig: [\n"),
            Err(SettingsError::Parse(_))
        ));
        let e = Settings::parse("- 1\n").unwrap_err().to_string();
        assert!(e.contains("mapping"), "{e}");
    }
}
