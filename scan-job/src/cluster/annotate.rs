//! What a scan Job adds to the result objects built by `report`: the target's UID, the
//! fingerprint of what was scanned, the scan time, and an owner reference to the target where
//! Kubernetes allows one. Pure.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kubevigil_crds::identity::{
    annotations, binding_fingerprint, object_fingerprint, object_fingerprint_with_spec,
};

use kubevigil_engine::report::ResultObjects;

/// What was scanned, for the fingerprint annotation.
#[derive(Clone, Copy, Debug)]
pub enum Scanned<'a> {
    /// An object target: its own metadata, and for a scalable kind the hash of its spec without
    /// `replicas` (`kubevigil_crds::identity::spec_hash`).
    Object(&'a ObjectMeta, Option<&'a str>),
    /// A binding target: its metadata and its role's (`None` when the role does not exist).
    Binding {
        /// The binding's metadata.
        binding: &'a ObjectMeta,
        /// The metadata of the role its `roleRef` names.
        role: Option<&'a ObjectMeta>,
    },
}

/// The fingerprint every result of a target carries. For a binding it combines the binding's
/// and its role's, exactly as the controller's event table computes it (so a role change makes
/// the binding's results stale).
pub fn result_fingerprint(scanned: Scanned<'_>) -> String {
    match scanned {
        Scanned::Object(meta, spec) => object_fingerprint_with_spec(meta, spec),
        Scanned::Binding { binding, role } => binding_fingerprint(
            &object_fingerprint(binding),
            role.map(object_fingerprint).as_deref(),
        ),
    }
}

/// The target as an owner of its results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// `apiVersion` of the target.
    pub api_version: String,
    /// Kind of the target.
    pub kind: String,
    /// Name of the target.
    pub name: String,
    /// Namespace of the target; `None` when cluster-scoped.
    pub namespace: Option<String>,
    /// UID of the target.
    pub uid: String,
}

impl Owner {
    /// The owner reference a result in `result_namespace` gets: only a namespaced target in the
    /// same namespace can own it (Kubernetes forbids cross-namespace owners, and a
    /// cluster-scoped owner of a namespaced result is not kubevigil's convention). No
    /// `controller` or `blockOwnerDeletion`: the result must not delay the target's deletion.
    pub fn reference_for(&self, result_namespace: &str) -> Option<OwnerReference> {
        if self.uid.is_empty() || self.namespace.as_deref() != Some(result_namespace) {
            return None;
        }
        Some(OwnerReference {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: None,
            block_owner_deletion: None,
        })
    }
}

/// The annotations and owner every result of one target gets.
#[derive(Clone, Debug)]
pub struct Stamp {
    /// UID of the target (the binding's, for triplet results).
    pub target_uid: String,
    /// See [`result_fingerprint`].
    pub fingerprint: String,
    /// RFC 3339 UTC time of the scan.
    pub scan_time: String,
    /// The target as owner.
    pub owner: Owner,
    /// Hash of a workload's related inputs (`kubevigil_engine::related::inputs_hash`); `None`
    /// for a target that is not a workload.
    pub related_inputs: Option<String>,
}

/// Adds the stamp's annotations and owner reference to a scan and its summary.
pub fn stamp(objects: &mut ResultObjects, stamp: &Stamp) {
    for meta in [&mut objects.scan.metadata, &mut objects.summary.metadata] {
        let annotations_map = meta.annotations.get_or_insert_with(Default::default);
        annotations_map.insert(
            annotations::TARGET_UID.to_string(),
            stamp.target_uid.clone(),
        );
        annotations_map.insert(
            annotations::FINGERPRINT.to_string(),
            stamp.fingerprint.clone(),
        );
        annotations_map.insert(annotations::SCAN_TIME.to_string(), stamp.scan_time.clone());
        if let Some(hash) = &stamp.related_inputs {
            annotations_map.insert(annotations::RELATED_INPUTS.to_string(), hash.clone());
        }
        let owner = meta
            .namespace
            .as_deref()
            .and_then(|ns| stamp.owner.reference_for(ns));
        meta.owner_references = owner.map(|o| vec![o]);
    }
}

/// Adds each result's outcome hash ([`annotations::OUTCOME_HASH`]: the hash of its `spec`), by
/// which the next scan tells from the result's metadata whether its outcome changed.
pub fn stamp_outcome(objects: &mut ResultObjects) {
    let scan = serde_json::to_vec(&objects.scan.spec).unwrap_or_default();
    let summary = serde_json::to_vec(&objects.summary.spec).unwrap_or_default();
    for (meta, spec) in [
        (&mut objects.scan.metadata, scan),
        (&mut objects.summary.metadata, summary),
    ] {
        meta.annotations
            .get_or_insert_with(Default::default)
            .insert(
                annotations::OUTCOME_HASH.to_string(),
                kubevigil_crds::identity::outcome_hash(&spec),
            );
    }
}

/// The current time as RFC 3339 UTC with second precision (`2026-01-31T12:00:00Z`).
pub fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The time `age` ago, in the form of [`now_rfc3339`] (so the two compare as strings).
pub fn rfc3339_before(age: std::time::Duration) -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    let age = k8s_openapi::jiff::SignedDuration::try_from(age).unwrap_or_default();
    now.checked_sub(age)
        .unwrap_or(now)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kubevigil_crds::{WorkloadConfigurationScan, WorkloadConfigurationScanSummary};

    use super::*;

    fn meta(uid: &str, generation: Option<i64>, rv: &str) -> ObjectMeta {
        ObjectMeta {
            uid: Some(uid.into()),
            generation,
            resource_version: Some(rv.into()),
            labels: Some(BTreeMap::from([("app".into(), "web".into())])),
            ..ObjectMeta::default()
        }
    }

    fn owner(namespace: Option<&str>) -> Owner {
        Owner {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "web".into(),
            namespace: namespace.map(str::to_string),
            uid: "u-1".into(),
        }
    }

    #[test]
    fn owner_only_in_the_targets_own_namespace() {
        let r = owner(Some("shop")).reference_for("shop").unwrap();
        assert_eq!(
            r,
            OwnerReference {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: "web".into(),
                uid: "u-1".into(),
                controller: None,
                block_owner_deletion: None,
            }
        );
        // Cluster-scoped target, result in the install namespace.
        assert_eq!(owner(None).reference_for("kubevigil"), None);
        // A ClusterRoleBinding's triplets live in the install namespace: no owner either.
        assert_eq!(owner(Some("shop")).reference_for("kubevigil"), None);
        let mut no_uid = owner(Some("shop"));
        no_uid.uid.clear();
        assert_eq!(no_uid.reference_for("shop"), None);
    }

    #[test]
    fn binding_fingerprint_matches_the_controllers_formula() {
        let b = meta("b", None, "10");
        let r = meta("r", None, "20");
        assert_eq!(
            result_fingerprint(Scanned::Binding {
                binding: &b,
                role: Some(&r)
            }),
            binding_fingerprint(&object_fingerprint(&b), Some(&object_fingerprint(&r)))
        );
        assert_eq!(
            result_fingerprint(Scanned::Binding {
                binding: &b,
                role: None
            }),
            binding_fingerprint(&object_fingerprint(&b), None)
        );
        let d = meta("d", Some(3), "99");
        assert_eq!(
            result_fingerprint(Scanned::Object(&d, None)),
            object_fingerprint(&d)
        );
        // A role change changes the binding's fingerprint.
        let r2 = meta("r", None, "21");
        assert_ne!(
            result_fingerprint(Scanned::Binding {
                binding: &b,
                role: Some(&r)
            }),
            result_fingerprint(Scanned::Binding {
                binding: &b,
                role: Some(&r2)
            })
        );
    }

    #[test]
    fn stamps_scan_and_summary() {
        let base = ObjectMeta {
            name: Some("deployment-web".into()),
            namespace: Some("shop".into()),
            annotations: Some(BTreeMap::from([(
                annotations::WLID.to_string(),
                "wlid://x".to_string(),
            )])),
            ..ObjectMeta::default()
        };
        let mut objects = ResultObjects {
            scan: WorkloadConfigurationScan {
                metadata: base.clone(),
                spec: Default::default(),
            },
            summary: WorkloadConfigurationScanSummary {
                metadata: base,
                spec: Default::default(),
            },
        };
        let s = Stamp {
            target_uid: "u-1".into(),
            fingerprint: "fp".into(),
            scan_time: "2026-01-01T00:00:00Z".into(),
            owner: owner(Some("shop")),
            related_inputs: Some("rel".into()),
        };
        stamp(&mut objects, &s);
        for m in [&objects.scan.metadata, &objects.summary.metadata] {
            let a = m.annotations.as_ref().unwrap();
            assert_eq!(a[annotations::TARGET_UID], "u-1");
            assert_eq!(a[annotations::FINGERPRINT], "fp");
            assert_eq!(a[annotations::SCAN_TIME], "2026-01-01T00:00:00Z");
            assert_eq!(a[annotations::WLID], "wlid://x");
            assert_eq!(a[annotations::RELATED_INPUTS], "rel");
            assert_eq!(m.owner_references.as_ref().unwrap()[0].uid, "u-1");
        }

        // The same stamp in another namespace sets no owner.
        objects.scan.metadata.namespace = Some("kubevigil".into());
        stamp(&mut objects, &s);
        assert_eq!(objects.scan.metadata.owner_references, None);
    }

    #[test]
    fn scan_time_is_rfc3339_utc() {
        let t = now_rfc3339();
        assert_eq!(t.len(), "2026-01-01T00:00:00Z".len(), "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
        assert!(t.parse::<k8s_openapi::jiff::Timestamp>().is_ok(), "{t}");
    }
}
