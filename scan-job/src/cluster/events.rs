//! Posture Events: a scan that newly fails controls at or above the configured severity raises
//! one Warning `PostureRegressed` on the target; controls that failed and now pass raise one
//! Normal `PostureImproved`. A rescan with the same outcome raises nothing, and a target's
//! first result raises nothing unless `postureEvents.onFirstResult` asks for it.
//!
//! Why here: the scan Job is the one place that has the new result and the previous one at the
//! moment the outcome changes. The previous outcome is the `kubevigil.io/failed-controls`
//! annotation of the target's WorkloadConfigurationScanSummary (the failed control IDs), which
//! the Job's metadata-only list of existing results (`existing`) already holds: no extra read.
//! The controller only sees namespace sums, which cannot tell which target changed.
//!
//! [`compare`] is pure; the batch takes the previous outcomes from `existing`; [`publish`] writes the
//! Event (events.k8s.io/v1, reporting controller `kubevigil`, regarding the target).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kubevigil_crds::Severity;
use kubevigil_engine::settings::PostureEvents;
use tracing::warn;

/// The annotation of a WorkloadConfigurationScanSummary listing its failed control IDs
/// (sorted, comma-separated): the previous outcome the next scan compares with.
pub const FAILED_CONTROLS: &str = "kubevigil.io/failed-controls";

/// The `reportingController` of posture Events.
pub const REPORTING_CONTROLLER: &str = "kubevigil";

/// Reason of the Warning Event for newly failed controls.
pub const REGRESSED: &str = "PostureRegressed";
/// Reason of the Normal Event for controls that failed and now pass.
pub const IMPROVED: &str = "PostureImproved";

/// One control's outcome in the new result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlOutcome {
    /// Control ID (`C-0057`).
    pub id: String,
    /// Control name.
    pub name: String,
    /// The control's severity.
    pub severity: Severity,
    /// Whether it failed (`false`: passed; skipped controls are not listed).
    pub failed: bool,
}

/// An Event to raise on the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSpec {
    /// Warning for a regression, Normal for an improvement.
    pub warning: bool,
    /// [`REGRESSED`] or [`IMPROVED`].
    pub reason: &'static str,
    /// `2 controls newly failed: C-0057 Privileged container (Critical), ...`.
    pub note: String,
}

/// The annotation value for a result's failed control IDs.
pub fn failed_annotation<'a>(failed: impl IntoIterator<Item = &'a str>) -> String {
    let ids: BTreeSet<&str> = failed.into_iter().collect();
    ids.into_iter().collect::<Vec<_>>().join(",")
}

/// Reads the annotation value back (`None` for a result that has none: written before
/// kubevigil kept it, so its outcome is unknown).
pub fn parse_failed(annotations: Option<&BTreeMap<String, String>>) -> Option<BTreeSet<String>> {
    let value = annotations?.get(FAILED_CONTROLS)?;
    Some(
        value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    )
}

fn list(controls: &[&ControlOutcome]) -> String {
    controls
        .iter()
        .map(|c| format!("{} {} ({})", c.id, c.name, c.severity.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 control".into()
    } else {
        format!("{n} controls")
    }
}

/// The Events a new result raises, from the previous failed control IDs (`None`: no previous
/// result, or one without the annotation), the new outcomes and the settings. At most one
/// `PostureRegressed` and one `PostureImproved`.
pub fn compare(
    previous: Option<&BTreeSet<String>>,
    outcomes: &[ControlOutcome],
    settings: &PostureEvents,
) -> Vec<EventSpec> {
    if !settings.enabled {
        return Vec::new();
    }
    let mut seen = BTreeSet::new();
    let mut outcomes: Vec<&ControlOutcome> = outcomes
        .iter()
        .filter(|c| settings.counts(c.severity))
        .filter(|c| seen.insert((c.id.as_str(), c.failed)))
        .collect();
    outcomes.sort_by(|a, b| a.id.cmp(&b.id));
    let mut events = Vec::new();
    let Some(previous) = previous else {
        if settings.on_first_result {
            let failed: Vec<&ControlOutcome> =
                outcomes.iter().copied().filter(|c| c.failed).collect();
            if !failed.is_empty() {
                events.push(EventSpec {
                    warning: true,
                    reason: REGRESSED,
                    note: format!(
                        "first scan: {} failed: {}",
                        count(failed.len()),
                        list(&failed)
                    ),
                });
            }
        }
        return events;
    };
    let still_failed: BTreeSet<&str> = outcomes
        .iter()
        .filter(|c| c.failed)
        .map(|c| c.id.as_str())
        .collect();
    let newly: Vec<&ControlOutcome> = outcomes
        .iter()
        .copied()
        .filter(|c| c.failed && !previous.contains(&c.id))
        .collect();
    let fixed: Vec<&ControlOutcome> = outcomes
        .iter()
        .copied()
        .filter(|c| !c.failed && previous.contains(&c.id) && !still_failed.contains(c.id.as_str()))
        .collect();
    if !newly.is_empty() {
        events.push(EventSpec {
            warning: true,
            reason: REGRESSED,
            note: format!("{} newly failed: {}", count(newly.len()), list(&newly)),
        });
    }
    if !fixed.is_empty() {
        events.push(EventSpec {
            warning: false,
            reason: IMPROVED,
            note: format!(
                "{} failed before and now pass: {}",
                count(fixed.len()),
                list(&fixed)
            ),
        });
    }
    events
}

/// The target an Event is about.
#[derive(Clone, Debug)]
pub struct Regarding {
    /// `apps/v1`.
    pub api_version: String,
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace (`None` for a cluster-scoped target: its Events go to `default`).
    pub namespace: Option<String>,
    /// UID.
    pub uid: String,
}

/// The recorder of posture Events (`reportingInstance`: this pod's name).
pub fn recorder(client: Client) -> Recorder {
    let instance = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty());
    Recorder::new(
        client,
        Reporter {
            controller: REPORTING_CONTROLLER.to_string(),
            instance,
        },
    )
}

/// Writes one Event on the target; a failure is logged (the results are written already).
pub async fn publish(recorder: &Recorder, target: &Regarding, event: &EventSpec) {
    let reference = ObjectReference {
        api_version: Some(target.api_version.clone()),
        kind: Some(target.kind.clone()),
        name: Some(target.name.clone()),
        namespace: target.namespace.clone(),
        uid: Some(target.uid.clone()).filter(|u| !u.is_empty()),
        ..ObjectReference::default()
    };
    let ev = Event {
        type_: if event.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: event.reason.to_string(),
        note: Some(event.note.clone()),
        action: "Scan".to_string(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, &reference).await {
        warn!(
            error = %e,
            "failed to create the {} Event on {} {}",
            event.reason,
            target.kind,
            target.name
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, severity: Severity, failed: bool) -> ControlOutcome {
        ControlOutcome {
            id: id.into(),
            name: format!("name of {id}"),
            severity,
            failed,
        }
    }

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_newly_failed_critical_control_is_a_regression() {
        let settings = PostureEvents::default();
        let new = [
            c("C-0057", Severity::Critical, true),
            c("C-0013", Severity::High, false),
            c("C-0017", Severity::Low, true),
        ];
        let events = compare(Some(&set(&["C-0017"])), &new, &settings);
        assert_eq!(
            events,
            vec![EventSpec {
                warning: true,
                reason: REGRESSED,
                note: "1 control newly failed: C-0057 name of C-0057 (Critical)".into()
            }]
        );
    }

    #[test]
    fn no_change_no_event_and_below_threshold_ignored() {
        let settings = PostureEvents::default();
        let new = [
            c("C-0057", Severity::Critical, true),
            c("C-0017", Severity::Medium, true),
        ];
        assert!(compare(Some(&set(&["C-0057", "C-0017"])), &new, &settings).is_empty());
        // A Medium control newly failing is below the default threshold.
        assert!(compare(Some(&set(&["C-0057"])), &new, &settings).is_empty());
        let medium = PostureEvents {
            severity_threshold: Severity::Medium,
            ..PostureEvents::default()
        };
        assert_eq!(compare(Some(&set(&["C-0057"])), &new, &medium).len(), 1);
    }

    #[test]
    fn fixed_controls_are_an_improvement() {
        let settings = PostureEvents::default();
        let new = [
            c("C-0057", Severity::Critical, false),
            c("C-0046", Severity::High, false),
            c("C-0013", Severity::High, true),
        ];
        let events = compare(Some(&set(&["C-0057", "C-0046"])), &new, &settings);
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0].reason, REGRESSED);
        assert!(events[0].note.contains("C-0013"), "{events:?}");
        assert_eq!(events[1].reason, IMPROVED);
        assert!(!events[1].warning);
        assert_eq!(
            events[1].note,
            "2 controls failed before and now pass: C-0046 name of C-0046 (High), C-0057 name of C-0057 (Critical)"
        );
    }

    #[test]
    fn a_control_failing_in_another_result_of_the_target_is_not_fixed() {
        // A binding's results: the control passes for one subject and fails for another.
        let new = [
            c("C-0035", Severity::High, false),
            c("C-0035", Severity::High, true),
        ];
        assert!(compare(Some(&set(&["C-0035"])), &new, &PostureEvents::default()).is_empty());
    }

    #[test]
    fn first_result_only_when_asked_and_never_when_disabled() {
        let new = [c("C-0057", Severity::Critical, true)];
        assert!(compare(None, &new, &PostureEvents::default()).is_empty());
        let first = PostureEvents {
            on_first_result: true,
            ..PostureEvents::default()
        };
        let events = compare(None, &new, &first);
        assert_eq!(events.len(), 1);
        assert!(
            events[0]
                .note
                .starts_with("first scan: 1 control failed: C-0057")
        );
        let off = PostureEvents {
            enabled: false,
            on_first_result: true,
            ..PostureEvents::default()
        };
        assert!(compare(None, &new, &off).is_empty());
        assert!(compare(Some(&set(&[])), &new, &off).is_empty());
    }

    #[test]
    fn annotation_round_trip() {
        let value = failed_annotation(["C-0057", "C-0013", "C-0057"]);
        assert_eq!(value, "C-0013,C-0057");
        let annotations = BTreeMap::from([(FAILED_CONTROLS.to_string(), value)]);
        assert_eq!(
            parse_failed(Some(&annotations)),
            Some(set(&["C-0013", "C-0057"]))
        );
        let empty = BTreeMap::from([(FAILED_CONTROLS.to_string(), String::new())]);
        assert_eq!(parse_failed(Some(&empty)), Some(set(&[])));
        assert_eq!(parse_failed(Some(&BTreeMap::new())), None);
        assert_eq!(parse_failed(None), None);
    }
}
