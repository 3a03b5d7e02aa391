//! Watches: one task per watched kind (and one for scan Jobs), all feeding one channel to the
//! state-owning main loop. Metadata only, except for RoleBinding/ClusterRoleBinding whose
//! `roleRef` and `subjects` are needed (of those, only the [`BindingSpec`] is kept), and for
//! scalable kinds, whose `spec` is reduced to a hash at once (scaling bumps their generation,
//! so the generation cannot tell a real change from `kubectl scale`).
//!
//! A failing watch is retried with kube's default backoff and reported; it never stalls the
//! other kinds.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::discovery::ApiResource;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use kubevigil_crds::identity::labels::{MANAGED_BY, MANAGED_BY_VALUE};
use kubevigil_crds::identity::{scalable_kind, spec_hash};
use kubevigil_crds::target::{KindInfo, TargetKey};
use kubevigil_engine::related::{PodFacts, RelatedFacts, RelatedKind, Relation};
use kubevigil_engine::workload::template_path;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::error::watch_status;
use crate::index::BindingSpec;
use crate::jobs::{COMPONENT, COMPONENT_LABEL, JobView, failed_pod, job_view, pod_oom_killed};
use crate::slim::{BindingObject, ScalableObject, TargetMeta, controlling_owner};
use crate::state::{JobEvent, Msg, RelatedEvent, WatchEvent};

/// Longest a binding watch waits for the role watches' initial lists.
pub const ROLES_WAIT: Duration = Duration::from_secs(30);

/// Only what the controller reads of an object's metadata: identity, generation, resource
/// version, labels and the controlling owner (annotations and managed fields are dropped).
pub fn trim_meta(meta: ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        generation: meta.generation,
        resource_version: meta.resource_version,
        labels: meta.labels,
        owner_references: controlling_owner(meta.owner_references),
        ..ObjectMeta::default()
    }
}

/// The target key of an object of `kind`, if it is in a selected namespace.
fn target_key(kind: &Arc<KindInfo>, config: &Config, meta: &ObjectMeta) -> Option<TargetKey> {
    let name = meta.name.clone()?;
    let namespace = if kind.namespaced {
        Some(meta.namespace.clone().filter(|ns| !ns.is_empty())?)
    } else {
        None
    };
    if !config.namespace_selected(namespace.as_deref()) {
        return None;
    }
    Some(TargetKey {
        kind: kind.clone(),
        namespace,
        name,
    })
}

/// An add or modify event as the main loop gets it; `None` when the object is filtered out.
pub fn apply_event(
    kind: &Arc<KindInfo>,
    config: &Config,
    meta: ObjectMeta,
    data: Option<&Value>,
    init: bool,
) -> Option<WatchEvent> {
    let key = target_key(kind, config, &meta)?;
    let binding = kind
        .is_binding()
        .then(|| BindingSpec::from_json(data.unwrap_or(&Value::Null), key.namespace.as_deref()));
    let spec_hash =
        scalable_kind(&kind.group, &kind.kind).then(|| spec_hash(data.unwrap_or(&Value::Null)));
    let pod = pod_facts(kind, &meta, data);
    Some(WatchEvent::Apply {
        key,
        meta: Box::new(trim_meta(meta)),
        binding,
        spec_hash,
        pod,
        init,
    })
}

/// Whether `kind` is a workload kind (a pod spec the engine reads): its watch reads `spec` too,
/// reduced at once to its [`PodFacts`].
pub fn workload_kind(kind: &KindInfo) -> bool {
    matches!(kind.group.as_str(), "" | "apps" | "batch") && template_path(&kind.kind).is_some()
}

/// A workload's pod labels and mounted volume sources, read from its labels and `spec`.
fn pod_facts(kind: &KindInfo, meta: &ObjectMeta, spec: Option<&Value>) -> Option<PodFacts> {
    if !workload_kind(kind) {
        return None;
    }
    let own: Option<serde_json::Map<String, Value>> = meta.labels.as_ref().map(|l| {
        l.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect()
    });
    PodFacts::of_parts(&kind.kind, own.as_ref(), spec.unwrap_or(&Value::Null))
}

/// A delete event (with a binding's last spec) as the main loop gets it.
pub fn delete_event(
    kind: &Arc<KindInfo>,
    config: &Config,
    meta: &ObjectMeta,
    data: Option<&Value>,
) -> Option<WatchEvent> {
    let key = target_key(kind, config, meta)?;
    let binding = kind
        .is_binding()
        .then(|| BindingSpec::from_json(data.unwrap_or(&Value::Null), key.namespace.as_deref()));
    Some(WatchEvent::Delete { key, binding })
}

/// Watches one kind until the main loop goes away. A binding kind first waits (bounded) until
/// `roles_synced` turns true, so that binding fingerprints include their roles from the start.
pub async fn watch_kind(
    client: Client,
    kind: Arc<KindInfo>,
    config: Arc<Config>,
    tx: mpsc::Sender<Msg>,
    roles_synced: Option<watch::Receiver<bool>>,
) {
    if let Some(mut rx) = roles_synced
        && tokio::time::timeout(ROLES_WAIT, rx.wait_for(|synced| *synced))
            .await
            .is_err()
    {
        tracing::warn!(kind = %kind.kind, "role watches not synced after {ROLES_WAIT:?}; watching bindings anyway");
    }
    let ar = kind.api_resource();
    if kind.is_binding() {
        let api: Api<BindingObject> = Api::all_with(client, &ar);
        run(api, kind, config, tx, |o| {
            let spec = o.spec_json();
            (o.metadata, Some(spec))
        })
        .await;
    } else if scalable_kind(&kind.group, &kind.kind) || workload_kind(&kind) {
        // A workload's spec is read for its pod facts (and hashed for a scalable kind).
        let api: Api<ScalableObject> = Api::all_with(client, &ar);
        run(api, kind, config, tx, |o| (o.metadata, Some(o.spec))).await;
    } else {
        let api: Api<TargetMeta> = Api::all_with(client, &ar);
        run(api, kind, config, tx, |o| (o.metadata, None)).await;
    }
}

async fn run<K, F>(
    api: Api<K>,
    kind: Arc<KindInfo>,
    config: Arc<Config>,
    tx: mpsc::Sender<Msg>,
    parts: F,
) where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    F: Fn(K) -> (ObjectMeta, Option<Value>),
{
    let stream = watcher::watcher(api, watcher::Config::default().page_size(500)).default_backoff();
    let mut stream = pin!(stream);
    while let Some(item) = stream.next().await {
        let event = match item {
            Ok(Event::Init) => Some(WatchEvent::Init),
            Ok(Event::InitDone) => Some(WatchEvent::InitDone),
            Ok(Event::InitApply(o)) => {
                let (meta, data) = parts(o);
                apply_event(&kind, &config, meta, data.as_ref(), true)
            }
            Ok(Event::Apply(o)) => {
                let (meta, data) = parts(o);
                apply_event(&kind, &config, meta, data.as_ref(), false)
            }
            Ok(Event::Delete(o)) => {
                let (meta, data) = parts(o);
                delete_event(&kind, &config, &meta, data.as_ref())
            }
            Err(e) => Some(WatchEvent::Error(e)),
        };
        if let Some(event) = event {
            let msg = Msg::Watch {
                kind: kind.clone(),
                event,
            };
            if tx.send(msg).await.is_err() {
                return;
            }
        }
    }
}

/// The resource of a related kind for kube's dynamic API.
pub fn related_resource(kind: &RelatedKind) -> ApiResource {
    ApiResource {
        group: kind.group.to_string(),
        version: kind.version.to_string(),
        api_version: kubevigil_crds::identity::join_api_version(kind.group, kind.version),
        kind: kind.kind.to_string(),
        plural: kind.plural.to_string(),
    }
}

/// Whether a related kind's relation reads its `spec` (a selector or backends); the others are
/// watched through metadata-only requests.
fn related_needs_spec(kind: &RelatedKind) -> bool {
    matches!(
        kind.relation,
        Relation::PodSelector | Relation::ServiceSelector | Relation::Backends
    )
}

/// A related object's facts, if it is in a selected namespace (or cluster-scoped).
pub fn related_facts(
    kind: &'static RelatedKind,
    config: &Config,
    meta: &ObjectMeta,
    spec: &Value,
) -> Option<RelatedFacts> {
    let name = meta.name.as_deref()?;
    let namespace = if kind.namespaced {
        let ns = meta.namespace.as_deref().filter(|ns| !ns.is_empty())?;
        if !config.namespace_selected(Some(ns)) {
            return None;
        }
        Some(ns)
    } else {
        None
    };
    let rv = meta.resource_version.as_deref().unwrap_or_default();
    Some(RelatedFacts::of(kind, namespace, name, rv, spec))
}

/// Watches one related kind (metadata, and the `spec` its relation reads) until the main loop
/// goes away; each object is reduced at once to its [`RelatedFacts`]. An optional kind that is
/// not installed (404) or not readable (403) ends the watch with [`RelatedEvent::Missing`].
pub async fn watch_related(
    client: Client,
    kind: &'static RelatedKind,
    config: Arc<Config>,
    tx: mpsc::Sender<Msg>,
) {
    let ar = related_resource(kind);
    if related_needs_spec(kind) {
        let api: Api<ScalableObject> = Api::all_with(client, &ar);
        run_related(api, kind, config, tx, |o| (o.metadata, o.spec)).await;
    } else {
        let api: Api<TargetMeta> = Api::all_with(client, &ar);
        run_related(api, kind, config, tx, |o| (o.metadata, Value::Null)).await;
    }
}

async fn run_related<K, F>(
    api: Api<K>,
    kind: &'static RelatedKind,
    config: Arc<Config>,
    tx: mpsc::Sender<Msg>,
    parts: F,
) where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    F: Fn(K) -> (ObjectMeta, Value),
{
    let stream = watcher::watcher(api, watcher::Config::default().page_size(500)).default_backoff();
    let mut stream = pin!(stream);
    while let Some(item) = stream.next().await {
        let event = match item {
            Ok(Event::Init) => Some(RelatedEvent::Init),
            Ok(Event::InitDone) => Some(RelatedEvent::InitDone),
            Ok(Event::InitApply(o) | Event::Apply(o)) => {
                let (meta, spec) = parts(o);
                related_facts(kind, &config, &meta, &spec).map(RelatedEvent::Apply)
            }
            Ok(Event::Delete(o)) => {
                let (meta, spec) = parts(o);
                related_facts(kind, &config, &meta, &spec).map(RelatedEvent::Delete)
            }
            Err(e) => {
                let status = watch_status(&e);
                if kind.optional && matches!(status, Some(403 | 404)) {
                    tracing::info!(kind = kind.kind, error = %e, "related kind not installed or not readable; not watched");
                    Some(RelatedEvent::Missing)
                } else {
                    tracing::warn!(kind = kind.kind, error = %e, "related-object watch failed; retrying with backoff");
                    None
                }
            }
        };
        if let Some(event) = event {
            let end = matches!(event, RelatedEvent::Missing);
            if tx.send(Msg::Related { kind, event }).await.is_err() || end {
                return;
            }
        }
    }
}

/// The label selector of kubevigil's scan Jobs.
pub fn scan_job_selector() -> String {
    format!("{COMPONENT_LABEL}={COMPONENT},{MANAGED_BY}={MANAGED_BY_VALUE}")
}

/// The view of a Job; for one that failed by its pod failure policy, whether the failed pod was
/// OOMKilled (read from the pod: the Job does not say why its container got SIGKILL).
async fn view_with_failure(pods: &Api<k8s_openapi::api::core::v1::Pod>, job: &Job) -> JobView {
    let mut view = job_view(job);
    if view.finished == Some(false)
        && let Some(pod) = failed_pod(job)
    {
        match pods.get_opt(&pod).await {
            Ok(Some(p)) => view.oom_killed = pod_oom_killed(&p),
            Ok(None) => {
                tracing::warn!(job = %view.name, pod, "the failed scan pod is gone; its failure is treated as transient")
            }
            Err(e) => {
                tracing::warn!(job = %view.name, pod, error = %e, "could not read the failed scan pod; its failure is treated as transient")
            }
        }
    }
    view
}

/// Watches the scan Jobs in the install namespace until the main loop goes away.
pub async fn watch_jobs(client: Client, namespace: String, tx: mpsc::Sender<Msg>) {
    let pods = Api::namespaced(client.clone(), &namespace);
    let api: Api<Job> = Api::namespaced(client, &namespace);
    let cfg = watcher::Config::default().labels(&scan_job_selector());
    let stream = watcher::watcher(api, cfg).default_backoff();
    let mut stream = pin!(stream);
    while let Some(item) = stream.next().await {
        let event = match item {
            Ok(Event::Init) => JobEvent::Init,
            Ok(Event::InitDone) => JobEvent::InitDone,
            Ok(Event::InitApply(j) | Event::Apply(j)) => {
                JobEvent::Apply(view_with_failure(&pods, &j).await)
            }
            Ok(Event::Delete(j)) => JobEvent::Delete(job_view(&j)),
            Err(e) => JobEvent::Error(e),
        };
        if tx.send(Msg::Jobs(event)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, OwnerReference};
    use serde_json::json;

    use super::*;

    fn config(include: &str, exclude: &str) -> Config {
        Config::parse(
            "t",
            &format!(
                "includeNamespaces: {include}\nexcludeNamespaces: {exclude}\ncontinuousScanning:\n  matchingRules: [{{apiGroups: [apps], apiVersions: [v1], resources: [deployments]}}]\nscanJob: {{image: i, serviceAccountName: sa, batchSize: 5, maxConcurrentJobs: 1, ttlSecondsAfterFinished: 1, activeDeadlineSeconds: 1, backoffLimit: 0}}\n"
            ),
        )
        .unwrap()
    }

    fn kind(group: &str, k: &str, plural: &str, namespaced: bool) -> Arc<KindInfo> {
        Arc::new(KindInfo {
            group: group.into(),
            version: "v1".into(),
            kind: k.into(),
            plural: plural.into(),
            namespaced,
        })
    }

    fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
        ObjectMeta {
            namespace: ns.map(str::to_string),
            name: Some(name.into()),
            uid: Some("u".into()),
            generation: Some(2),
            resource_version: Some("9".into()),
            labels: Some(BTreeMap::from([("a".to_string(), "b".to_string())])),
            annotations: Some(BTreeMap::from([("big".to_string(), "x".repeat(1000))])),
            managed_fields: Some(vec![ManagedFieldsEntry::default()]),
            owner_references: Some(vec![
                OwnerReference {
                    kind: "ReplicaSet".into(),
                    name: "rs".into(),
                    controller: Some(true),
                    ..OwnerReference::default()
                },
                OwnerReference {
                    kind: "Other".into(),
                    name: "o".into(),
                    ..OwnerReference::default()
                },
            ]),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn trimming_keeps_the_fingerprint() {
        let m = meta(Some("shop"), "web");
        let t = trim_meta(m.clone());
        assert!(t.annotations.is_none() && t.managed_fields.is_none());
        assert_eq!(t.owner_references.as_ref().map(Vec::len), Some(1));
        assert_eq!(
            kubevigil_crds::identity::object_fingerprint(&m),
            kubevigil_crds::identity::object_fingerprint(&t)
        );
    }

    #[test]
    fn namespaces_are_filtered_except_for_cluster_scoped_kinds() {
        let c = config("[]", "[kube-system]");
        let deploy = kind("apps", "Deployment", "deployments", true);
        assert!(apply_event(&deploy, &c, meta(Some("kube-system"), "x"), None, false).is_none());
        let ev = apply_event(&deploy, &c, meta(Some("shop"), "web"), None, true);
        assert!(matches!(
            ev,
            Some(WatchEvent::Apply { ref key, init: true, binding: None, .. })
                if key.to_string() == "apps/v1/deployments/Deployment/shop/web"
        ));
        let ns_kind = kind("", "Namespace", "namespaces", false);
        assert!(apply_event(&ns_kind, &c, meta(None, "kube-system"), None, false).is_some());
        let only = config("[shop]", "[]");
        assert!(apply_event(&deploy, &only, meta(Some("other"), "x"), None, false).is_none());
        assert!(delete_event(&deploy, &only, &meta(Some("shop"), "x"), None).is_some());
    }

    #[test]
    fn bindings_keep_their_spec_on_delete() {
        let c = config("[]", "[]");
        let rb = kind(
            "rbac.authorization.k8s.io",
            "RoleBinding",
            "rolebindings",
            true,
        );
        let data = json!({"roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "ServiceAccount", "name": "sa"}]});
        let ev = delete_event(&rb, &c, &meta(Some("ci"), "b"), Some(&data));
        match ev {
            Some(WatchEvent::Delete {
                binding: Some(spec),
                ..
            }) => {
                assert_eq!(spec.role_name, "r");
                assert_eq!(spec.subjects[0].namespace.as_deref(), Some("ci"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn selector_and_resources() {
        assert_eq!(
            scan_job_selector(),
            "app.kubernetes.io/component=scan-job,app.kubernetes.io/managed-by=kubevigil"
        );
        let ar = kind("", "Pod", "pods", true).api_resource();
        assert_eq!(ar.api_version, "v1");
    }
}
