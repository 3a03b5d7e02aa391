//! Posture exception resources as the controller sees them: which targets an exception adds or
//! removes, and when one expires. Pure: the watch edge (`watch_exceptions`, I/O) turns objects
//! into [`ExceptionEvent`]s with the expiry as an [`Instant`]; the state enqueues what comes out.
//!
//! The scan Job decides what an exception does to a result (it reads the exceptions itself);
//! the controller only rescans the targets whose results change:
//! - a new exception: the targets it covers;
//! - a deleted one: the targets it covered;
//! - a changed one: those it covers now and those it covered (only the difference when its
//!   controls are unchanged);
//! - at `expiresAt`: the targets it covers (the scan Job then leaves it out).
//!
//! Targets are known by their kind, name, namespace and labels (fed from the target watches);
//! namespace labels come from the Namespace watch when Namespaces are watched, else a namespace
//! selector sees only `kubernetes.io/metadata.name`, as in the scan Job. The initial list of
//! exceptions rescans nothing (results written before a restart already saw them).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use kubevigil_crds::target::TargetKey;
use kubevigil_engine::exceptions::{Candidate, ExceptionRule};
use serde_json::{Map, Value};

/// Rescans at expiry wait this much past it, so that the scan Job's clock is past it too.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(1);

/// An exception resource's identity: namespace (`None` for the cluster kind) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExceptionKey {
    /// Namespace of a `PostureException`; `None` for a `ClusterPostureException`.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

/// What the exception watches report.
#[derive(Debug)]
pub enum ExceptionEvent {
    /// An exception was listed, added or modified.
    Apply {
        /// Which.
        key: ExceptionKey,
        /// Its rule.
        rule: Box<ExceptionRule>,
        /// When it expires (already past: `now`); `None` when it does not.
        expires: Option<Instant>,
        /// Part of the watch's (re-)list.
        init: bool,
    },
    /// An exception was deleted.
    Delete(ExceptionKey),
}

#[derive(Debug)]
struct Tracked {
    rule: ExceptionRule,
    expires: Option<Instant>,
    expired: bool,
}

/// The exceptions and what the controller knows of its targets' labels.
#[derive(Debug, Default)]
pub struct ExceptionTracker {
    targets: HashMap<TargetKey, Map<String, Value>>,
    namespace_labels: HashMap<String, BTreeMap<String, String>>,
    exceptions: HashMap<ExceptionKey, Tracked>,
}

fn labels_map(labels: Option<&BTreeMap<String, String>>) -> Map<String, Value> {
    labels
        .map(|l| {
            l.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect()
        })
        .unwrap_or_default()
}

impl ExceptionTracker {
    /// A target was listed, added or modified.
    pub fn target_applied(&mut self, key: &TargetKey, labels: Option<&BTreeMap<String, String>>) {
        if key.kind.group.is_empty() && key.kind.kind == "Namespace" {
            self.namespace_labels
                .insert(key.name.clone(), labels.cloned().unwrap_or_default());
        }
        self.targets.insert(key.clone(), labels_map(labels));
    }

    /// A target was deleted.
    pub fn target_deleted(&mut self, key: &TargetKey) {
        self.targets.remove(key);
    }

    /// How many exceptions are tracked (expired ones included).
    pub fn len(&self) -> usize {
        self.exceptions.len()
    }

    /// Whether no exception is tracked.
    pub fn is_empty(&self) -> bool {
        self.exceptions.is_empty()
    }

    fn covered(&self, rule: &ExceptionRule) -> BTreeSet<TargetKey> {
        self.targets
            .iter()
            .filter(|(key, labels)| {
                let c = Candidate {
                    kind: &key.kind.kind,
                    name: &key.name,
                    namespace: key.namespace.as_deref(),
                    labels: Some(labels),
                };
                rule.covers(
                    &c,
                    key.namespace
                        .as_deref()
                        .and_then(|ns| self.namespace_labels.get(ns)),
                )
            })
            .map(|(key, _)| key.clone())
            .collect()
    }

    fn covered_if_active(&self, t: &Tracked) -> BTreeSet<TargetKey> {
        if t.expired {
            BTreeSet::new()
        } else {
            self.covered(&t.rule)
        }
    }

    /// An exception event; the targets to rescan.
    pub fn handle(&mut self, event: ExceptionEvent, now: Instant) -> BTreeSet<TargetKey> {
        match event {
            ExceptionEvent::Apply {
                key,
                rule,
                expires,
                init,
            } => {
                let new = Tracked {
                    rule: *rule,
                    expires,
                    expired: expires.is_some_and(|t| t <= now),
                };
                let after = self.covered_if_active(&new);
                let before = self.exceptions.get(&key).map(|old| {
                    let same_controls = old.rule.controls == new.rule.controls;
                    (self.covered_if_active(old), same_controls)
                });
                self.exceptions.insert(key, new);
                if init && before.is_none() {
                    return BTreeSet::new();
                }
                match before {
                    None => after,
                    Some((before, true)) => before.symmetric_difference(&after).cloned().collect(),
                    Some((before, false)) => before.union(&after).cloned().collect(),
                }
            }
            ExceptionEvent::Delete(key) => match self.exceptions.remove(&key) {
                Some(old) => self.covered_if_active(&old),
                None => BTreeSet::new(),
            },
        }
    }

    /// Exceptions whose expiry (plus [`EXPIRY_MARGIN`]) has come: the targets they covered.
    pub fn expire_due(&mut self, now: Instant) -> BTreeSet<TargetKey> {
        let due: Vec<ExceptionKey> = self
            .exceptions
            .iter()
            .filter(|(_, t)| !t.expired && t.expires.is_some_and(|e| e + EXPIRY_MARGIN <= now))
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = BTreeSet::new();
        for key in due {
            if let Some(t) = self.exceptions.get(&key) {
                out.extend(self.covered(&t.rule));
                tracing::info!(exception = %t.rule.display, "posture exception expired; rescanning its targets");
            }
            if let Some(t) = self.exceptions.get_mut(&key) {
                t.expired = true;
            }
        }
        out
    }

    /// When the next exception expires (with the margin).
    pub fn next_expiry(&self) -> Option<Instant> {
        self.exceptions
            .values()
            .filter(|t| !t.expired)
            .filter_map(|t| t.expires)
            .min()
            .map(|t| t + EXPIRY_MARGIN)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kubevigil_crds::ExceptionResource;
    use kubevigil_crds::target::KindInfo;

    use super::*;

    fn key(kind: &str, ns: Option<&str>, name: &str) -> TargetKey {
        TargetKey {
            kind: Arc::new(KindInfo {
                group: if kind == "Namespace" { "" } else { "apps" }.into(),
                version: "v1".into(),
                kind: kind.into(),
                plural: format!("{}s", kind.to_lowercase()),
                namespaced: ns.is_some(),
            }),
            namespace: ns.map(str::to_string),
            name: name.into(),
        }
    }

    fn rule(controls: &[&str], kind: &str, name: &str, app: Option<&str>) -> ExceptionRule {
        ExceptionRule {
            display: "PostureException shop/x".into(),
            namespace: Some("shop".into()),
            controls: controls.iter().map(|c| c.to_string()).collect(),
            resources: vec![ExceptionResource {
                kind: Some(kind.into()),
                name: Some(name.into()),
                selector: app.map(|a| {
                    serde_json::from_value(serde_json::json!({"matchLabels": {"app": a}})).unwrap()
                }),
            }],
            namespace_selector: None,
            expires_at: None,
        }
    }

    fn apply(rule: ExceptionRule, expires: Option<Instant>, init: bool) -> ExceptionEvent {
        ExceptionEvent::Apply {
            key: ExceptionKey {
                namespace: Some("shop".into()),
                name: "x".into(),
            },
            rule: Box::new(rule),
            expires,
            init,
        }
    }

    fn tracker() -> ExceptionTracker {
        let mut t = ExceptionTracker::default();
        let web: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        let api: BTreeMap<String, String> = [("app".to_string(), "api".to_string())].into();
        t.target_applied(&key("Deployment", Some("shop"), "web"), Some(&web));
        t.target_applied(&key("Deployment", Some("shop"), "web-2"), Some(&api));
        t.target_applied(&key("Deployment", Some("other"), "web"), Some(&web));
        t.target_applied(&key("StatefulSet", Some("shop"), "web"), Some(&web));
        t
    }

    fn names(keys: &BTreeSet<TargetKey>) -> Vec<String> {
        keys.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn add_change_and_delete_rescan_exactly_the_targets_added_or_removed() {
        let now = Instant::now();
        let mut t = tracker();
        let web = key("Deployment", Some("shop"), "web");
        let web2 = key("Deployment", Some("shop"), "web-2");
        let added = t.handle(
            apply(rule(&["C-0017"], "Deployment", "web", None), None, false),
            now,
        );
        assert_eq!(added, [web.clone()].into(), "{:?}", names(&added));
        // Widened by a glob: only the new target.
        let widened = t.handle(
            apply(rule(&["C-0017"], "Deployment", "web*", None), None, false),
            now,
        );
        assert_eq!(widened, [web2.clone()].into());
        // Narrowed by labels: only the one it no longer covers.
        let narrowed = t.handle(
            apply(
                rule(&["C-0017"], "Deployment", "web*", Some("web")),
                None,
                false,
            ),
            now,
        );
        assert_eq!(narrowed, [web2].into());
        // Same targets, another control: all of them.
        let controls = t.handle(
            apply(
                rule(&["C-0016"], "Deployment", "web*", Some("web")),
                None,
                false,
            ),
            now,
        );
        assert_eq!(controls, [web.clone()].into());
        // Unchanged: nothing.
        let same = t.handle(
            apply(
                rule(&["C-0016"], "Deployment", "web*", Some("web")),
                None,
                false,
            ),
            now,
        );
        assert!(same.is_empty());
        let gone = t.handle(
            ExceptionEvent::Delete(ExceptionKey {
                namespace: Some("shop".into()),
                name: "x".into(),
            }),
            now,
        );
        assert_eq!(gone, [web].into());
        assert!(t.is_empty());
    }

    #[test]
    fn the_initial_list_rescans_nothing() {
        let mut t = tracker();
        let listed = t.handle(
            apply(rule(&["C-0017"], "Deployment", "web", None), None, true),
            Instant::now(),
        );
        assert!(listed.is_empty());
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn expiry_rescans_its_targets_once() {
        let now = Instant::now();
        let mut t = tracker();
        let at = now + Duration::from_secs(30);
        let added = t.handle(
            apply(
                rule(&["C-0017"], "Deployment", "web", None),
                Some(at),
                false,
            ),
            now,
        );
        assert_eq!(added.len(), 1);
        assert_eq!(t.next_expiry(), Some(at + EXPIRY_MARGIN));
        assert!(t.expire_due(at).is_empty(), "the margin is kept");
        let expired = t.expire_due(at + EXPIRY_MARGIN);
        assert_eq!(expired, [key("Deployment", Some("shop"), "web")].into());
        assert!(t.expire_due(at + Duration::from_secs(60)).is_empty());
        assert_eq!(t.next_expiry(), None);
        // Deleting an expired exception changes no result.
        assert!(
            t.handle(
                ExceptionEvent::Delete(ExceptionKey {
                    namespace: Some("shop".into()),
                    name: "x".into()
                }),
                now
            )
            .is_empty()
        );
        // Created already expired: nothing to rescan.
        let past = t.handle(
            apply(
                rule(&["C-0017"], "Deployment", "web", None),
                Some(now),
                false,
            ),
            now,
        );
        assert!(past.is_empty());
    }

    #[test]
    fn deleted_targets_are_forgotten_and_namespace_labels_kept() {
        let mut t = tracker();
        t.target_deleted(&key("Deployment", Some("shop"), "web"));
        let labels: BTreeMap<String, String> = [("team".to_string(), "a".to_string())].into();
        t.target_applied(&key("Namespace", None, "shop"), Some(&labels));
        assert_eq!(t.namespace_labels["shop"], labels);
        let added = t.handle(
            apply(rule(&["C-0017"], "Deployment", "web", None), None, false),
            Instant::now(),
        );
        assert!(added.is_empty());
    }
}
