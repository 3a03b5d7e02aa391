//! OpenReports output (opt-in: the configuration file's `openReports.enabled`): a `Report` (or
//! `ClusterReport`) written beside each result by the same apply, and deleted with it. The
//! mapping is the engine's (`kubevigil_engine::openreports`); this edge only writes and deletes.

use kube::api::Api;
use kube::{Client, Resource as _};
use kubevigil_crds::WorkloadConfigurationScan;
use kubevigil_crds::identity::{Target, annotations};
use kubevigil_crds::openreports::ClusterReport;
use kubevigil_engine::openreports::{self, OpenReport};

use super::TargetError;
use super::api;

/// Key of the switch in the configuration file: `openReports: {enabled: true}`.
pub const CONFIG_KEY: &str = "openReports";

/// Whether the configuration file's text turns OpenReports output on. Anything but
/// `openReports.enabled: true` (including a file that does not parse, which the settings parser
/// reports) is off.
pub fn enabled(config_text: &str) -> bool {
    serde_norway::from_str::<serde_json::Value>(config_text)
        .ok()
        .and_then(|v| v.get(CONFIG_KEY)?.get("enabled")?.as_bool())
        .unwrap_or(false)
}

/// The report of one stamped result.
pub fn report_of(target: &Target, scan: &WorkloadConfigurationScan) -> OpenReport {
    let time = scan
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(annotations::SCAN_TIME))
        .map(|t| openreports::timestamp_of(t))
        .unwrap_or_default();
    openreports::build(target, scan, time)
}

/// Applies the ClusterReport of a cluster-scoped target (few: they are not listed first).
pub async fn apply_cluster(client: &Client, report: &ClusterReport) -> Result<(), TargetError> {
    let name = report.metadata.name.clone().unwrap_or_default();
    let api: Api<ClusterReport> = Api::all(client.clone());
    api::apply(&api, &name, report, &format!("apply ClusterReport {name}"))
        .await
        .map_err(|source| apply_error("ClusterReport", name, source))
}

/// A failed report write; an unserved kind says how to install the OpenReports CRDs.
pub fn apply_error(kind: &str, object: String, source: kube::Error) -> TargetError {
    if api::is_unserved_resource(&source) {
        TargetError::Apply {
            kind: format!(
                "{kind} (openreports.io/v1alpha1 is not served: install the OpenReports CRDs, or turn openReports.enabled off)"
            ),
            object,
            source,
        }
    } else {
        TargetError::Apply {
            kind: kind.to_string(),
            object,
            source,
        }
    }
}

/// Deletes the ClusterReport of a cluster-scoped target (its namespaced `Report`s go with the
/// other result kinds); `Ok(true)` when one existed.
pub async fn delete_cluster_report(client: &Client, target: &Target) -> Result<bool, TargetError> {
    if !openreports::is_cluster_scoped(target) {
        return Ok(false);
    }
    let name = target.result_name();
    let api: Api<ClusterReport> = Api::all(client.clone());
    let kind = ClusterReport::kind(&()).to_string();
    api::delete(&api, &name, &format!("delete {kind} {name}"))
        .await
        .map_err(|source| TargetError::Delete {
            kind,
            object: name,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch() {
        assert!(enabled("openReports:\n  enabled: true\n"));
        for off in [
            "",
            "openReports: {enabled: false}",
            "openReports: {}",
            "openReports: true",
            "a: [",
        ] {
            assert!(!enabled(off), "{off}");
        }
    }
}
