//! The configuration file a scan Job is given (the controller's): the engine's
//! [`Settings::parse`] reads `controlsConfig` and `exceptions` from it; this edge reads the file
//! and names it in errors.

use std::path::Path;
use std::time::Duration;

use kubevigil_engine::settings::{
    FieldError, PostureEvents, Settings, SettingsError, rescan_after,
};

use super::RunError;

/// Reads the configuration file; without a file, the defaults and no exceptions.
pub fn load(path: Option<&Path>) -> Result<Settings, RunError> {
    match read(path)? {
        Some((shown, text)) => parse(&shown, &text),
        None => Ok(Settings::default()),
    }
}

/// The file's name as errors show it and its text; `None` without a file.
fn read(path: Option<&Path>) -> Result<Option<(String, String)>, RunError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| RunError::ReadConfig {
        path: shown.clone(),
        source,
    })?;
    Ok(Some((shown, text)))
}

/// What a scan Job reads from the configuration file besides the engine's settings.
#[derive(Clone, Debug, Default)]
pub struct JobOptions {
    /// `postureEvents`.
    pub events: PostureEvents,
    /// `continuousScanning.rescanAfter`: a result older than half of it is rewritten even when
    /// its outcome did not change, so its scan time stays within the period.
    pub rescan_after: Option<Duration>,
    /// `openReports.enabled`: write an OpenReports `Report` per result too.
    pub open_reports: bool,
}

/// Reads the [`JobOptions`]; without a file, the defaults.
pub fn load_options(path: Option<&Path>) -> Result<JobOptions, RunError> {
    let Some((shown, text)) = read(path)? else {
        return Ok(JobOptions::default());
    };
    Ok(JobOptions {
        events: PostureEvents::parse(&text).map_err(|e| settings_error(&shown, e))?,
        rescan_after: rescan_after(&text).map_err(|e| settings_error(&shown, e))?,
        open_reports: super::openreports::enabled(&text),
    })
}

fn settings_error(path: &str, e: SettingsError) -> RunError {
    match e {
        SettingsError::Parse(message) => RunError::ParseConfig {
            path: path.to_string(),
            message,
        },
        SettingsError::Field(FieldError { field, message }) => RunError::ConfigField {
            path: path.to_string(),
            field,
            message,
        },
    }
}

/// Parses the text of a configuration file; `path` is only used in error messages.
pub fn parse(path: &str, text: &str) -> Result<Settings, RunError> {
    Settings::parse(text).map_err(|e| settings_error(path, e))
}

#[cfg(test)]
mod tests {
    use kubevigil_engine::ControlInputs;

    use super::*;

    #[test]
    fn no_file_is_the_defaults() {
        let s = load(None).unwrap();
        assert_eq!(s.inputs, ControlInputs::default());
        assert!(s.exceptions.is_empty());
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let e = parse("/etc/kubevigil/config.yaml", "controlsConfig:\n  x: 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/etc/kubevigil/config.yaml"), "{e}");
        assert!(e.contains("`controlsConfig`"), "{e}");
        assert!(e.contains("`x`"), "{e}");

        let e = parse("c.yaml", "exceptions: {a: 1}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.yaml") && e.contains("`exceptions`"), "{e}");

        let e = parse("c.yaml", "controlsConfig: [\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid config file c.yaml"), "{e}");

        let e = parse("c.yaml", "- 1\n").unwrap_err().to_string();
        assert!(e.contains("mapping"), "{e}");

        let e = load(Some(Path::new("/nonexistent/kubevigil.yaml")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/kubevigil.yaml"), "{e}");
    }
}
