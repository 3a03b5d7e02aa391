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
use crate::scope::{Membership, NamespaceView};
use crate::slim::{BindingObject, ScalableObject, TargetMeta, controlling_owner};
use crate::state::{JobEvent, Msg, RelatedEvent, WatchEvent};

/// Longest a binding watch waits for the role watches' initial lists.
pub const ROLES_WAIT: Duration = Duration::from_secs(30);

/// Longest a watch waits for the namespace watch to learn a namespace it has not seen (an object
/// created right after its namespace); after that, the namespace counts as out of scope.
pub const NAMESPACE_WAIT: Duration = Duration::from_secs(30);

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

/// The target key of an object of `kind` and what the scope says of its namespace
/// (cluster-scoped objects are always in scope).
fn scoped_key(
    kind: &Arc<KindInfo>,
    view: &NamespaceView,
    meta: &ObjectMeta,
) -> Option<(TargetKey, Membership)> {
    let name = meta.name.clone()?;
    let namespace = if kind.namespaced {
        Some(meta.namespace.clone().filter(|ns| !ns.is_empty())?)
    } else {
        None
    };
    let membership = namespace
        .as_deref()
        .map_or(Membership::In, |ns| view.membership(ns));
    let key = TargetKey {
        kind: kind.clone(),
        namespace,
        name,
    };
    Some((key, membership))
}

/// An add or modify event as the main loop gets it; `None` when the object is filtered out.
/// Namespaces are decided by their names ([`scoped_apply_event`] takes a namespace view).
pub fn apply_event(
    kind: &Arc<KindInfo>,
    config: &Config,
    meta: ObjectMeta,
    data: Option<&Value>,
    init: bool,
) -> Option<WatchEvent> {
    let view = NamespaceView::static_scope(config.namespace_scope());
    scoped_apply_event(kind, config, &view, meta, data, init)
}

/// An add or modify event as the main loop gets it, with namespaces decided by `view`: `None`
/// when the object's namespace is out of scope, a delete when the object carries the skip label
/// (so that its results go when the label is added; the main loop ignores the delete of an
/// object it does not know).
pub fn scoped_apply_event(
    kind: &Arc<KindInfo>,
    config: &Config,
    view: &NamespaceView,
    meta: ObjectMeta,
    data: Option<&Value>,
    init: bool,
) -> Option<WatchEvent> {
    let (key, membership) = scoped_key(kind, view, &meta)?;
    if membership != Membership::In {
        return None;
    }
    if config
        .skip_label
        .as_ref()
        .is_some_and(|s| s.skips(meta.labels.as_ref()))
    {
        // No binding spec: a binding the main loop knows is deleted with the spec it has, and
        // one it does not know deletes nothing.
        return Some(WatchEvent::Delete { key, binding: None });
    }
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

/// A delete event (with a binding's last spec) as the main loop gets it. Namespaces are decided
/// by their names ([`scoped_delete_event`] takes a namespace view).
pub fn delete_event(
    kind: &Arc<KindInfo>,
    config: &Config,
    meta: &ObjectMeta,
    data: Option<&Value>,
) -> Option<WatchEvent> {
    let view = NamespaceView::static_scope(config.namespace_scope());
    scoped_delete_event(kind, &view, meta, data)
}

/// A delete event with namespaces decided by `view`. Out of a namespace that is not known to be
/// in scope, the delete still goes to the main loop, without a binding spec: it deletes results
/// only of an object the main loop knows (one whose namespace was in scope until now).
pub fn scoped_delete_event(
    kind: &Arc<KindInfo>,
    view: &NamespaceView,
    meta: &ObjectMeta,
    data: Option<&Value>,
) -> Option<WatchEvent> {
    let (key, membership) = scoped_key(kind, view, meta)?;
    if membership != Membership::In {
        return Some(WatchEvent::Delete { key, binding: None });
    }
    let binding = kind
        .is_binding()
        .then(|| BindingSpec::from_json(data.unwrap_or(&Value::Null), key.namespace.as_deref()));
    Some(WatchEvent::Delete { key, binding })
}

/// The namespace view once `namespace` is known to it: a watch that sees an object in a
/// namespace the namespace watch has not seen yet waits for it (bounded by [`NAMESPACE_WAIT`]).
async fn view_for(
    namespaces: &mut watch::Receiver<Arc<NamespaceView>>,
    namespace: Option<&str>,
) -> Arc<NamespaceView> {
    let current = namespaces.borrow().clone();
    let Some(ns) = namespace else { return current };
    if current.membership(ns) != Membership::Unknown {
        return current;
    }
    let known = tokio::time::timeout(
        NAMESPACE_WAIT,
        namespaces.wait_for(|v| v.membership(ns) != Membership::Unknown),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .map(|view| Arc::clone(&view));
    match known {
        Some(view) => view,
        None => {
            tracing::warn!(
                namespace = ns,
                "the namespace watch has not seen this namespace after {NAMESPACE_WAIT:?}; its objects count as out of scope until the next namespace change"
            );
            namespaces.borrow().clone()
        }
    }
}

/// Watches one kind until the main loop goes away. A binding kind first waits (bounded) until
/// `roles_synced` turns true, so that binding fingerprints include their roles from the start.
/// `namespaces` decides which namespaces are in scope; when its epoch moves (a namespace moved in
/// or out of scope), the watch lists again, so that the main loop deletes the targets it no
/// longer lists and scans the new ones.
pub async fn watch_kind(
    client: Client,
    kind: Arc<KindInfo>,
    config: Arc<Config>,
    tx: mpsc::Sender<Msg>,
    roles_synced: Option<watch::Receiver<bool>>,
    namespaces: watch::Receiver<Arc<NamespaceView>>,
) {
    if let Some(mut rx) = roles_synced
        && tokio::time::timeout(ROLES_WAIT, rx.wait_for(|synced| *synced))
            .await
            .is_err()
    {
        tracing::warn!(kind = %kind.kind, "role watches not synced after {ROLES_WAIT:?}; watching bindings anyway");
    }
    let ar = kind.api_resource();
    let ctx = WatchContext {
        kind,
        config,
        tx,
        namespaces,
    };
    if ctx.kind.is_binding() {
        let api: Api<BindingObject> = Api::all_with(client, &ar);
        run(api, ctx, |o| {
            let spec = o.spec_json();
            (o.metadata, Some(spec))
        })
        .await;
    } else if scalable_kind(&ctx.kind.group, &ctx.kind.kind) || workload_kind(&ctx.kind) {
        // A workload's spec is read for its pod facts (and hashed for a scalable kind).
        let api: Api<ScalableObject> = Api::all_with(client, &ar);
        run(api, ctx, |o| (o.metadata, Some(o.spec))).await;
    } else {
        let api: Api<TargetMeta> = Api::all_with(client, &ar);
        run(api, ctx, |o| (o.metadata, None)).await;
    }
}

/// What a watch of one kind needs besides its API.
struct WatchContext {
    kind: Arc<KindInfo>,
    config: Arc<Config>,
    tx: mpsc::Sender<Msg>,
    namespaces: watch::Receiver<Arc<NamespaceView>>,
}

/// How one watch stream ended.
enum Ended {
    /// The main loop is gone.
    Stop,
    /// The namespace scope changed: list again.
    Rescope,
}

async fn run<K, F>(api: Api<K>, mut ctx: WatchContext, parts: F)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    F: Fn(K) -> (ObjectMeta, Option<Value>),
{
    loop {
        match run_once(api.clone(), &mut ctx, &parts).await {
            Ended::Stop => return,
            Ended::Rescope => {
                tracing::info!(kind = %ctx.kind.kind, "namespace scope changed; listing again");
            }
        }
    }
}

async fn run_once<K, F>(api: Api<K>, ctx: &mut WatchContext, parts: &F) -> Ended
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    F: Fn(K) -> (ObjectMeta, Option<Value>),
{
    let epoch = ctx.namespaces.borrow_and_update().epoch;
    // Cluster-scoped kinds are always in scope; without a sender (no namespace watch), the scope
    // never changes.
    let mut scope_open = ctx.kind.namespaced;
    let stream = watcher::watcher(api, watcher::Config::default().page_size(500)).default_backoff();
    let mut stream = pin!(stream);
    loop {
        let item = tokio::select! {
            item = stream.next() => item,
            changed = ctx.namespaces.changed(), if scope_open => {
                if changed.is_err() {
                    scope_open = false;
                }
                if ctx.namespaces.borrow().epoch != epoch {
                    return Ended::Rescope;
                }
                continue;
            }
        };
        let Some(item) = item else { return Ended::Stop };
        let event = match item {
            Ok(Event::Init) => Some(WatchEvent::Init),
            Ok(Event::InitDone) => Some(WatchEvent::InitDone),
            Ok(Event::InitApply(o)) => {
                let (meta, data) = parts(o);
                let view = view_for(&mut ctx.namespaces, meta.namespace.as_deref()).await;
                scoped_apply_event(&ctx.kind, &ctx.config, &view, meta, data.as_ref(), true)
            }
            Ok(Event::Apply(o)) => {
                let (meta, data) = parts(o);
                let view = view_for(&mut ctx.namespaces, meta.namespace.as_deref()).await;
                scoped_apply_event(&ctx.kind, &ctx.config, &view, meta, data.as_ref(), false)
            }
            Ok(Event::Delete(o)) => {
                let (meta, data) = parts(o);
                let view = ctx.namespaces.borrow().clone();
                scoped_delete_event(&ctx.kind, &view, &meta, data.as_ref())
            }
            Err(e) => Some(WatchEvent::Error(e)),
        };
        if let Some(event) = event {
            let msg = Msg::Watch {
                kind: ctx.kind.clone(),
                event,
            };
            if ctx.tx.send(msg).await.is_err() {
                return Ended::Stop;
            }
        }
        // `view_for` may have seen a new epoch without `changed` reporting it.
        if ctx.kind.namespaced && ctx.namespaces.borrow().epoch != epoch {
            return Ended::Rescope;
        }
    }
}

/// The resource of a related kind for kube's dynamic API.
pub fn related_resource(kind: &RelatedKind) -> ApiResource {
    kubevigil_crds::identity::api_resource(kind.group, kind.version, kind.kind, kind.plural)
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
    fn the_skip_label_turns_an_apply_into_a_delete() {
        let c = Config::parse(
            "t",
            "skipLabel: {key: kubevigil.io/skip, value: \"true\"}\ncontinuousScanning:\n  matchingRules: [{apiGroups: [apps], apiVersions: [v1], resources: [deployments]}]\nscanJob: {image: i, serviceAccountName: sa, batchSize: 5, maxConcurrentJobs: 1, ttlSecondsAfterFinished: 1, activeDeadlineSeconds: 1, backoffLimit: 0}\n",
        )
        .unwrap();
        let deploy = kind("apps", "Deployment", "deployments", true);
        let mut skipped = meta(Some("shop"), "web");
        skipped
            .labels
            .get_or_insert_default()
            .insert("kubevigil.io/skip".into(), "true".into());
        assert!(matches!(
            apply_event(&deploy, &c, skipped.clone(), None, false),
            Some(WatchEvent::Delete { ref key, binding: None }) if key.name == "web"
        ));
        let rb = kind(
            "rbac.authorization.k8s.io",
            "RoleBinding",
            "rolebindings",
            true,
        );
        let data = json!({"roleRef": {"kind": "Role", "name": "r"}, "subjects": []});
        assert!(matches!(
            apply_event(&rb, &c, skipped, Some(&data), true),
            Some(WatchEvent::Delete { binding: None, .. })
        ));
        let mut other = meta(Some("shop"), "web");
        other
            .labels
            .get_or_insert_default()
            .insert("kubevigil.io/skip".into(), "false".into());
        assert!(matches!(
            apply_event(&deploy, &c, other, None, false),
            Some(WatchEvent::Apply { .. })
        ));
    }

    #[test]
    fn namespaces_out_of_a_selector_view_are_filtered_and_their_deletes_carry_no_spec() {
        use crate::scope::{NamespaceScope, NamespaceTable};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
        let c = config("[]", "[]");
        let mut table = NamespaceTable::new(NamespaceScope {
            include: vec!["team-*".into()],
            selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("scan".to_string(), "yes".to_string())])),
                match_expressions: None,
            }),
            ..NamespaceScope::default()
        });
        table.list_started();
        table.applied(
            "team-a",
            &BTreeMap::from([("scan".to_string(), "yes".to_string())]),
        );
        table.applied("team-b", &BTreeMap::new());
        table.list_done();
        let view = table.view();
        let deploy = kind("apps", "Deployment", "deployments", true);
        assert!(
            scoped_apply_event(&deploy, &c, view, meta(Some("team-a"), "x"), None, false).is_some()
        );
        assert!(
            scoped_apply_event(&deploy, &c, view, meta(Some("team-b"), "x"), None, false).is_none()
        );
        assert!(
            scoped_apply_event(&deploy, &c, view, meta(Some("shop"), "x"), None, false).is_none()
        );
        let rb = kind(
            "rbac.authorization.k8s.io",
            "RoleBinding",
            "rolebindings",
            true,
        );
        let data = json!({"roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "User", "name": "u"}]});
        assert!(matches!(
            scoped_delete_event(&rb, view, &meta(Some("team-b"), "b"), Some(&data)),
            Some(WatchEvent::Delete { binding: None, .. })
        ));
        assert!(matches!(
            scoped_delete_event(&rb, view, &meta(Some("team-a"), "b"), Some(&data)),
            Some(WatchEvent::Delete {
                binding: Some(_),
                ..
            })
        ));
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
