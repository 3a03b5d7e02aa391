//! What already exists of a batch's results, and the one decision per result object: create
//! it, replace it, or leave it as it is.
//!
//! A scan Job reads the metadata of the results in each namespace its targets write to: one
//! metadata-only LIST per result kind and namespace (label `app.kubernetes.io/managed-by:
//! kubevigil`), before it writes anything ([`ExistingResults`], read by `batch.rs`). From that
//! metadata alone, [`decide`] picks for each result object:
//! - [`WriteAction::Create`] when it does not exist: one `POST` (the cheapest request for a new
//!   object, BENCHMARKS.md "Requests per result");
//! - [`WriteAction::Skip`] when it exists with the same labels, owner and annotations (the
//!   fingerprint, controls hash, scanner version and outcome hash among them; the scan time
//!   aside) and no other field manager wrote into it: nothing is written;
//! - [`WriteAction::Replace`] otherwise: the authoritative server-side apply with force
//!   (`api::apply`), also when the namespace's LIST failed (an apply is right whether the
//!   object exists or not).
//!
//! [`ExistingResults`] keeps each listed result's labels and annotations, so that other code of
//! the scan Job can compare a result's previous outcome with the new one without reading it
//! again. The decision logic is pure; the LISTs are in `batch.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kubevigil_crds::identity::annotations;

use super::api;

/// The namespaced result kinds a scan Job writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResultKind {
    /// `WorkloadConfigurationScan`.
    Scan,
    /// `WorkloadConfigurationScanSummary`.
    Summary,
    /// OpenReports `Report` (only with `openReports.enabled`): it carries the scan's
    /// annotations, so the same decision applies.
    Report,
}

/// The metadata of one existing result, as its namespace's metadata LIST returned it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExistingResult {
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its annotations (fingerprint, controls hash, scanner version, outcome hash, scan time...).
    pub annotations: BTreeMap<String, String>,
    /// Its owner references.
    pub owner_references: Vec<OwnerReference>,
    /// Whether fields of it are owned by another field manager than the scan Job (a hand
    /// edit), or by the scan Job's own create where its last apply no longer sets them; such a
    /// result is always replaced (see `api::only_own_fields`).
    pub foreign_fields: bool,
}

impl ExistingResult {
    /// The existing result of the metadata `meta`.
    pub fn from_meta(meta: &ObjectMeta) -> Self {
        ExistingResult {
            labels: meta.labels.clone().unwrap_or_default(),
            annotations: meta.annotations.clone().unwrap_or_default(),
            owner_references: meta.owner_references.clone().unwrap_or_default(),
            foreign_fields: api::only_own_fields(meta).is_some(),
        }
    }
}

/// What is known of one result before it is written.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Known<'a> {
    /// Its namespace was listed and it is not there.
    Absent,
    /// Its namespace was listed and this is its metadata.
    Present(&'a ExistingResult),
    /// Its namespace was not listed (the LIST failed): nothing is known.
    Unknown,
}

/// The results that existed in the namespaces a scan Job writes to, read before it writes.
#[derive(Clone, Debug, Default)]
pub struct ExistingResults {
    listed: HashSet<(ResultKind, String)>,
    items: HashMap<(ResultKind, String, String), ExistingResult>,
}

impl ExistingResults {
    /// Records the LIST of `kind` in `namespace`: every result there, by its metadata.
    pub fn insert_listed<'a>(
        &mut self,
        kind: ResultKind,
        namespace: &str,
        items: impl IntoIterator<Item = &'a ObjectMeta>,
    ) {
        self.listed.insert((kind, namespace.to_string()));
        for meta in items {
            if let Some(name) = &meta.name {
                self.items.insert(
                    (kind, namespace.to_string(), name.clone()),
                    ExistingResult::from_meta(meta),
                );
            }
        }
    }

    /// What is known of result `namespace/name` of `kind`.
    pub fn lookup(&self, kind: ResultKind, namespace: &str, name: &str) -> Known<'_> {
        if !self.listed.contains(&(kind, namespace.to_string())) {
            return Known::Unknown;
        }
        match self
            .items
            .get(&(kind, namespace.to_string(), name.to_string()))
        {
            Some(e) => Known::Present(e),
            None => Known::Absent,
        }
    }

    /// The existing result `namespace/name` of `kind`, when its namespace was listed and it
    /// was there.
    pub fn get(&self, kind: ResultKind, namespace: &str, name: &str) -> Option<&ExistingResult> {
        match self.lookup(kind, namespace, name) {
            Known::Present(e) => Some(e),
            Known::Absent | Known::Unknown => None,
        }
    }

    /// Results listed (both kinds).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no result was listed.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// How one result object is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WriteAction {
    /// It does not exist: create it (`POST`; a `409` from a racing Job falls back to an apply).
    Create,
    /// It exists and differs, or nothing is known: server-side apply with force.
    Replace,
    /// It exists with the same outcome: no request.
    Skip,
}

/// How to write a result whose new metadata is `new`, given what is known of it. With
/// `keep_since` (an RFC 3339 UTC time of the same form as the scan times, which therefore
/// compare as strings), a result whose outcome did not change is still rewritten when it was
/// scanned before that time (`rescanAfter`: the scan time must stay within the period).
pub fn decide(existing: Known<'_>, new: &ObjectMeta, keep_since: Option<&str>) -> WriteAction {
    match existing {
        Known::Unknown => WriteAction::Replace,
        Known::Absent => WriteAction::Create,
        Known::Present(e)
            if !e.foreign_fields && same_outcome(e, new) && !too_old(e, keep_since) =>
        {
            WriteAction::Skip
        }
        Known::Present(_) => WriteAction::Replace,
    }
}

/// Whether the existing result's scan time is before `keep_since` (or missing, when a limit
/// is set).
fn too_old(existing: &ExistingResult, keep_since: Option<&str>) -> bool {
    let Some(limit) = keep_since else {
        return false;
    };
    existing
        .annotations
        .get(annotations::SCAN_TIME)
        .is_none_or(|t| t.as_str() < limit)
}

/// Whether the existing result says what the new one says: same labels and owner references,
/// and the same annotations apart from the scan time. The annotations hold the fingerprint, the
/// scanner version, the controls hash and the hash of the spec; a new result without an outcome
/// hash never counts as the same.
fn same_outcome(existing: &ExistingResult, new: &ObjectMeta) -> bool {
    let empty = BTreeMap::new();
    let new_annotations = new.annotations.as_ref().unwrap_or(&empty);
    if !new_annotations.contains_key(annotations::OUTCOME_HASH) {
        return false;
    }
    let without_time = |m: &BTreeMap<String, String>| {
        m.iter()
            .filter(|(k, _)| k.as_str() != annotations::SCAN_TIME)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    existing.labels == *new.labels.as_ref().unwrap_or(&empty)
        && existing.owner_references.as_slice() == new.owner_references.as_deref().unwrap_or(&[])
        && without_time(&existing.annotations) == without_time(new_annotations)
}

/// Requests by write action, for the Job's log line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteCounts {
    /// Results created (`POST`).
    pub created: usize,
    /// Results replaced (server-side apply).
    pub replaced: usize,
    /// Results left as they were.
    pub unchanged: usize,
    /// Write requests sent (creates, applies, and the fallbacks: an apply after a `409` create,
    /// a `PUT` after an apply over a hand edit).
    pub requests: usize,
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    use super::*;

    fn meta(fp: &str, outcome: &str, time: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some("deployment-web".into()),
            namespace: Some("shop".into()),
            labels: Some(BTreeMap::from([(
                "kubevigil.io/workload-name".into(),
                "web".into(),
            )])),
            annotations: Some(BTreeMap::from([
                (annotations::FINGERPRINT.into(), fp.into()),
                (annotations::CONTROLS_HASH.into(), "c1".into()),
                (annotations::OUTCOME_HASH.into(), outcome.into()),
                (annotations::SCAN_TIME.into(), time.into()),
            ])),
            ..ObjectMeta::default()
        }
    }

    fn listed(existing: &ObjectMeta) -> ExistingResults {
        let mut r = ExistingResults::default();
        r.insert_listed(ResultKind::Scan, "shop", [existing]);
        r.insert_listed(ResultKind::Summary, "shop", []);
        r
    }

    #[test]
    fn absent_results_are_created_unknown_ones_applied() {
        let r = listed(&meta("f1", "o1", "t1"));
        let new = meta("f1", "o1", "t2");
        assert_eq!(
            decide(
                r.lookup(ResultKind::Summary, "shop", "deployment-web"),
                &new,
                None
            ),
            WriteAction::Create
        );
        assert_eq!(
            decide(
                r.lookup(ResultKind::Scan, "other", "deployment-web"),
                &new,
                None
            ),
            WriteAction::Replace
        );
        assert_eq!(r.lookup(ResultKind::Scan, "shop", "x"), Known::Absent);
        assert_eq!(r.len(), 1);
        assert!(r.get(ResultKind::Scan, "shop", "deployment-web").is_some());
    }

    #[test]
    fn an_unchanged_outcome_is_not_written_whatever_the_scan_time() {
        let r = listed(&meta("f1", "o1", "t1"));
        let known = r.lookup(ResultKind::Scan, "shop", "deployment-web");
        assert_eq!(
            decide(known, &meta("f1", "o1", "t2"), None),
            WriteAction::Skip
        );
        // Another fingerprint, outcome or controls hash: replaced.
        assert_eq!(
            decide(known, &meta("f2", "o1", "t2"), None),
            WriteAction::Replace
        );
        assert_eq!(
            decide(known, &meta("f1", "o2", "t2"), None),
            WriteAction::Replace
        );
        let mut other_controls = meta("f1", "o1", "t2");
        other_controls
            .annotations
            .as_mut()
            .unwrap()
            .insert(annotations::CONTROLS_HASH.into(), "c2".into());
        assert_eq!(decide(known, &other_controls, None), WriteAction::Replace);
        // A label or an owner that differs: replaced.
        let mut relabelled = meta("f1", "o1", "t2");
        relabelled
            .labels
            .as_mut()
            .unwrap()
            .insert("x".into(), "y".into());
        assert_eq!(decide(known, &relabelled, None), WriteAction::Replace);
        let mut owned = meta("f1", "o1", "t2");
        owned.owner_references = Some(vec![OwnerReference {
            uid: "u".into(),
            ..OwnerReference::default()
        }]);
        assert_eq!(decide(known, &owned, None), WriteAction::Replace);
        // An annotation the old result lacks (an older scanner): replaced.
        let mut more = meta("f1", "o1", "t2");
        more.annotations
            .as_mut()
            .unwrap()
            .insert(annotations::WLID.into(), "w".into());
        assert_eq!(decide(known, &more, None), WriteAction::Replace);
        // A new result without an outcome hash is never taken for the same.
        let mut no_hash = meta("f1", "o1", "t2");
        no_hash
            .annotations
            .as_mut()
            .unwrap()
            .remove(annotations::OUTCOME_HASH);
        let mut old_no_hash = meta("f1", "o1", "t1");
        old_no_hash
            .annotations
            .as_mut()
            .unwrap()
            .remove(annotations::OUTCOME_HASH);
        let r2 = listed(&old_no_hash);
        assert_eq!(
            decide(
                r2.lookup(ResultKind::Scan, "shop", "deployment-web"),
                &no_hash,
                None
            ),
            WriteAction::Replace
        );
    }

    #[test]
    fn a_hand_edited_result_is_replaced_even_when_the_outcome_is_the_same() {
        let mut edited = meta("f1", "o1", "t1");
        edited.managed_fields = Some(vec![
            ManagedFieldsEntry {
                manager: Some(api::FIELD_MANAGER.into()),
                operation: Some("Apply".into()),
                ..ManagedFieldsEntry::default()
            },
            ManagedFieldsEntry {
                manager: Some("kubectl-edit".into()),
                operation: Some("Update".into()),
                ..ManagedFieldsEntry::default()
            },
        ]);
        let r = listed(&edited);
        assert!(
            r.get(ResultKind::Scan, "shop", "deployment-web")
                .unwrap()
                .foreign_fields
        );
        assert_eq!(
            decide(
                r.lookup(ResultKind::Scan, "shop", "deployment-web"),
                &meta("f1", "o1", "t2"),
                None
            ),
            WriteAction::Replace
        );
    }

    #[test]
    fn with_rescan_after_an_unchanged_result_scanned_too_long_ago_is_rewritten() {
        let r = listed(&meta("f1", "o1", "2026-01-01T00:00:00Z"));
        let known = r.lookup(ResultKind::Scan, "shop", "deployment-web");
        let new = meta("f1", "o1", "2026-01-02T00:00:00Z");
        assert_eq!(
            decide(known, &new, Some("2026-01-01T12:00:00Z")),
            WriteAction::Replace
        );
        assert_eq!(
            decide(known, &new, Some("2025-12-31T12:00:00Z")),
            WriteAction::Skip
        );
    }
}
