//! Slim object types for watches and lists: they deserialize only the metadata the controller
//! reads and skip the rest while parsing (`managedFields` alone is often most of an object's
//! metadata), so that list pages and watch events never build trees the controller drops.
//!
//! Each type is a kube [`Resource`] for any kind (its dynamic type is an [`ApiResource`]), so
//! that `kube::runtime::watcher` and `Api::list` work with it directly.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use kube::core::DynamicResourceScope;
use kube::discovery::ApiResource;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// The metadata fields the controller reads; everything else is skipped while parsing.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetaFields {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    generation: Option<i64>,
    resource_version: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    owner_references: Option<Vec<OwnerReference>>,
}

impl MetaFields {
    fn into_meta(self, keep_annotations: bool) -> ObjectMeta {
        ObjectMeta {
            name: self.name,
            namespace: self.namespace,
            uid: self.uid,
            generation: self.generation,
            resource_version: self.resource_version,
            labels: self.labels,
            annotations: self.annotations.filter(|_| keep_annotations),
            owner_references: controlling_owner(self.owner_references),
            ..ObjectMeta::default()
        }
    }
}

/// Only the controlling owner reference, if any (the one the fingerprint and the owner rules
/// read).
pub fn controlling_owner(refs: Option<Vec<OwnerReference>>) -> Option<Vec<OwnerReference>> {
    refs.map(|refs| {
        refs.into_iter()
            .filter(|o| o.controller == Some(true))
            .collect::<Vec<_>>()
    })
    .filter(|refs| !refs.is_empty())
}

/// Deserializes metadata for a watched target: identity, generation, resource version, labels
/// and the controlling owner reference.
fn target_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    Ok(MetaFields::deserialize(d)?.into_meta(false))
}

/// Deserializes metadata for a result: identity, labels and annotations.
fn result_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let mut meta = MetaFields::deserialize(d)?.into_meta(true);
    meta.owner_references = None;
    Ok(meta)
}

macro_rules! dynamic_resource {
    ($t:ty, $metadata_api:expr) => {
        impl Resource for $t {
            type DynamicType = ApiResource;
            type Scope = DynamicResourceScope;

            fn kind(dt: &ApiResource) -> Cow<'_, str> {
                dt.kind.as_str().into()
            }

            fn group(dt: &ApiResource) -> Cow<'_, str> {
                dt.group.as_str().into()
            }

            fn version(dt: &ApiResource) -> Cow<'_, str> {
                dt.version.as_str().into()
            }

            fn api_version(dt: &ApiResource) -> Cow<'_, str> {
                dt.api_version.as_str().into()
            }

            fn plural(dt: &ApiResource) -> Cow<'_, str> {
                dt.plural.as_str().into()
            }

            fn metadata_api() -> bool {
                $metadata_api
            }

            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }

            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

/// A watched target, through metadata-only requests.
#[derive(Clone, Debug, Deserialize)]
pub struct TargetMeta {
    /// The metadata the controller reads.
    #[serde(deserialize_with = "target_meta")]
    pub metadata: ObjectMeta,
}

dynamic_resource!(TargetMeta, true);

/// A watched object of a scalable kind (Deployment, StatefulSet, ReplicaSet,
/// ReplicationController): metadata plus `spec`, which the watch reduces to a hash at once.
#[derive(Clone, Debug, Deserialize)]
pub struct ScalableObject {
    /// The metadata the controller reads.
    #[serde(deserialize_with = "target_meta")]
    pub metadata: ObjectMeta,
    /// `spec`, only to be hashed (status is not even deserialized).
    #[serde(default)]
    pub spec: Value,
}

dynamic_resource!(ScalableObject, false);

/// A watched RoleBinding or ClusterRoleBinding: metadata plus `roleRef` and `subjects`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BindingObject {
    /// The metadata the controller reads.
    #[serde(deserialize_with = "target_meta")]
    pub metadata: ObjectMeta,
    /// `roleRef`.
    #[serde(default)]
    pub role_ref: Value,
    /// `subjects`.
    #[serde(default)]
    pub subjects: Value,
}

impl BindingObject {
    /// `roleRef` and `subjects` as one JSON object (what `BindingSpec::from_json` reads).
    pub fn spec_json(&self) -> Value {
        serde_json::json!({"roleRef": self.role_ref, "subjects": self.subjects})
    }
}

dynamic_resource!(BindingObject, false);

/// A listed result (scan, summary or namespace summary), through metadata-only requests.
#[derive(Clone, Debug, Deserialize)]
pub struct ResultMeta {
    /// Name, namespace, labels and annotations.
    #[serde(deserialize_with = "result_meta")]
    pub metadata: ObjectMeta,
}

dynamic_resource!(ResultMeta, true);

/// A listed WorkloadConfigurationScanSummary: its name and severity counts only (its control
/// map and managed fields are skipped while parsing). Listed through kube's `DeserializeGuard`,
/// so that a malformed one is reported instead of failing the list.
#[derive(Clone, Debug, Deserialize)]
pub struct SummaryItem {
    /// Name and namespace.
    #[serde(deserialize_with = "result_meta")]
    pub metadata: ObjectMeta,
    /// The severities (a missing `spec` counts as zero).
    #[serde(default)]
    pub spec: SummarySeverities,
}

/// The part of a summary's spec that namespace sums and posture metrics need.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SummarySeverities {
    /// Failed controls per severity.
    #[serde(default)]
    pub severities: kubevigil_crds::SeveritySummary,
    /// Each control's severity and status (its other fields are skipped while parsing).
    #[serde(default)]
    pub controls: BTreeMap<String, ControlBrief>,
}

/// A control of a summary: its severity and status only.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ControlBrief {
    /// The control's severity.
    #[serde(default)]
    pub severity: SeverityBrief,
    /// The control's status on the target.
    #[serde(default)]
    pub status: StatusBrief,
}

/// `severity.severity` of a summary's control.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct SeverityBrief {
    /// The severity bucket.
    #[serde(default)]
    pub severity: kubevigil_crds::scan::Severity,
}

/// `status.status` of a summary's control.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct StatusBrief {
    /// Passed, failed or skipped.
    #[serde(default)]
    pub status: kubevigil_crds::scan::Status,
}

dynamic_resource!(SummaryItem, false);

#[cfg(test)]
mod tests {
    use kube::core::DeserializeGuard;
    use serde_json::json;

    use super::*;

    fn metadata() -> Value {
        json!({
            "name": "web", "namespace": "shop", "uid": "u1", "generation": 3,
            "resourceVersion": "42", "labels": {"app": "web"},
            "annotations": {"kubevigil.io/fingerprint": "f"},
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "u0", "controller": true},
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "u2"}
            ],
            "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:spec": {"f:replicas": {}}}}],
            "creationTimestamp": "2026-01-01T00:00:00Z"
        })
    }

    #[test]
    fn targets_keep_what_the_fingerprint_reads() {
        let full: ObjectMeta = serde_json::from_value(metadata()).unwrap();
        let slim: TargetMeta = serde_json::from_value(json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": metadata()
        }))
        .unwrap();
        assert!(slim.metadata.managed_fields.is_none());
        assert!(slim.metadata.annotations.is_none());
        assert_eq!(
            slim.metadata.owner_references.as_ref().map(Vec::len),
            Some(1)
        );
        assert_eq!(
            kubevigil_crds::identity::object_fingerprint(&full),
            kubevigil_crds::identity::object_fingerprint(&slim.metadata)
        );
    }

    #[test]
    fn bindings_keep_role_ref_and_subjects() {
        let b: BindingObject = serde_json::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": metadata(),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "sa"}]
        }))
        .unwrap();
        let spec = crate::index::BindingSpec::from_json(&b.spec_json(), Some("shop"));
        assert_eq!(spec.role_name, "r");
        assert_eq!(spec.subjects.len(), 1);
        assert!(!BindingObject::metadata_api() && TargetMeta::metadata_api());
    }

    #[test]
    fn malformed_summaries_are_told_apart_not_counted_as_zero() {
        let ok: DeserializeGuard<SummaryItem> = serde_json::from_value(json!({
            "metadata": metadata(),
            "spec": {"severities": {"critical": 2, "high": 1, "medium": 0, "low": 0, "unknown": 0},
                     "controls": {"C-0057": {"controlID": "C-0057"}}}
        }))
        .unwrap();
        assert_eq!(ok.0.unwrap().spec.severities.critical, 2);
        for spec in [json!({"severities": "bad"}), json!(7)] {
            let bad: DeserializeGuard<SummaryItem> =
                serde_json::from_value(json!({"metadata": metadata(), "spec": spec})).unwrap();
            let bad = bad.0.unwrap_err();
            assert_eq!(bad.metadata.name.as_deref(), Some("web"), "{bad}");
        }
        let missing: SummaryItem = serde_json::from_value(json!({"metadata": metadata()})).unwrap();
        assert_eq!(missing.spec.severities.total(), 0);
    }

    #[test]
    fn a_malformed_summary_in_a_list_page_is_skipped_not_fatal() {
        let page: kube::api::ObjectList<DeserializeGuard<SummaryItem>> =
            serde_json::from_value(json!({
                "apiVersion": "spdx.softwarecomposition.kubescape.io/v1beta1",
                "kind": "WorkloadConfigurationScanSummaryList",
                "metadata": {},
                "items": [
                    {"metadata": metadata(), "spec": {"severities": {"critical": 0, "high": 1, "medium": 0, "low": 0, "unknown": 0}}},
                    {"metadata": {"name": "bad", "namespace": "shop"}, "spec": {"severities": []}}
                ]
            }))
            .unwrap();
        let read: Vec<bool> = page.items.iter().map(|i| i.0.is_ok()).collect();
        assert_eq!(read, vec![true, false]);
    }

    #[test]
    fn results_keep_labels_and_annotations() {
        let r: ResultMeta = serde_json::from_value(json!({"metadata": metadata()})).unwrap();
        assert_eq!(
            r.metadata.annotations.unwrap()["kubevigil.io/fingerprint"],
            "f"
        );
        assert!(r.metadata.owner_references.is_none());
        assert!(r.metadata.managed_fields.is_none());
    }
}
