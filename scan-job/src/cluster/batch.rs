//! One Job's batch of targets, start to end: parse, read the targets (one LIST for each group of
//! at least [`LIST_THRESHOLD`] targets of one kind in one namespace, a GET for the others), read
//! the related objects once, build one inventory, then write (or delete) each target's results.
//! The API calls run [`IN_FLIGHT`] at a time: a batch is bound by round trips, not by the
//! engine (BENCHMARKS.md, cluster section).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::{StreamExt as _, stream};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use kube::{Client, Resource};
use kubevigil_crds::identity::{Target, annotations};
use kubevigil_crds::openreports::Report;
use kubevigil_crds::target::TargetKey;
use kubevigil_crds::{
    Severity, Status, WorkloadConfigurationScan, WorkloadConfigurationScanSummary,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use super::annotate::{self, Owner, Scanned, Stamp};
use super::events::{self, ControlOutcome, Regarding};
use super::existing::{self, ExistingResults, ResultKind as Tag, WriteAction, WriteCounts};
use super::objects::{
    ObjectKey, binding_ref, object_key, referenced_roles, resource_id_names_binding, role_key_of,
    role_ref_of, to_engine_object, triplet_selector,
};
use super::plan::{PlanTarget, Read, plan_reads};
use super::settings::JobOptions;
use super::{RunArgs, RunReport, TargetError, TargetOutcome, TargetReport};
use super::{api, exceptions, openreports};
use kubevigil_engine::catalog;
use kubevigil_engine::openreports::{OpenReport, is_cluster_scoped};
use kubevigil_engine::related;
use kubevigil_engine::report::{self, ReportContext};
use kubevigil_engine::settings::{PostureEvents, Settings};
use kubevigil_engine::{Evaluator, Inventory, K8sObject, ResourceResult};

/// A progress line every this many targets, in batches larger than that.
const PROGRESS_EVERY: usize = 10;

/// API calls of one Job in flight at once (GETs, LISTs, applies): enough to hide the round
/// trips of a 50-target batch, few enough not to look like a burst to API priority and fairness.
const IN_FLIGHT: usize = 8;

/// Targets of one kind in one namespace from which one LIST replaces their GETs.
const LIST_THRESHOLD: usize = 8;

/// A target whose live object was read.
struct Live {
    /// The object as read; taken when it joins the inventory.
    object: Option<DynamicObject>,
    /// Its resource, for `apiVersion`/`kind` of objects served without them.
    resource: ApiResource,
    /// Its metadata (fingerprint, owner reference).
    meta: ObjectMeta,
    /// Its index in the inventory.
    index: Option<usize>,
}

enum State {
    /// Parsed, not read yet.
    Pending,
    /// The live object.
    Live(Box<Live>),
    /// The object does not exist.
    Gone,
    /// Finished (failed early).
    Done(TargetOutcome),
}

struct Slot {
    raw: String,
    key: Option<TargetKey>,
    state: State,
}

/// `Deployment shop/web`, `Namespace team-a`.
fn describe(key: &TargetKey) -> String {
    match &key.namespace {
        Some(ns) => format!("{} {ns}/{}", key.kind.kind, key.name),
        None => format!("{} {}", key.kind.kind, key.name),
    }
}

fn dynamic_api(
    client: &Client,
    resource: &ApiResource,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    }
}

/// What posture Events need during a batch (see `events`).
struct EventsCx {
    settings: PostureEvents,
    recorder: kube::runtime::events::Recorder,
}

/// Scans every target of the batch; never fails as a whole.
pub(super) async fn scan(
    client: Client,
    args: &RunArgs,
    settings: Settings,
    options: JobOptions,
) -> RunReport {
    let mut slots = parse_targets(&args.targets);
    let namespaces = slots
        .iter()
        .filter_map(|s| s.key.as_ref()?.namespace.clone())
        .collect();
    let exceptions = match exceptions::read(&client, settings.exceptions, &namespaces).await {
        Ok(e) => e,
        Err(e) => return fail_all(slots, &e.to_string()),
    };
    let evaluator = Evaluator::new(catalog::all(), settings.inputs, exceptions);
    let open_reports = options.open_reports;
    let cx = ReportContext {
        install_namespace: args.install_namespace.clone(),
        cluster_name: args.cluster_name.clone(),
        controls_hash: report::controls_hash(&evaluator),
        // `annotate` stamps the scan time (and the live fingerprint and owner) on each result.
        scan_time: None,
    };

    get_targets(&client, &mut slots).await;
    // The results that exist already are listed while the related objects are read.
    let result_namespaces = result_namespaces(&slots, &cx.install_namespace);
    let (related, existing) = futures::join!(
        read_related(&client, &mut slots),
        read_existing(&client, &result_namespaces, open_reports)
    );
    let inventory = build_inventory(&mut slots, related);
    debug!(objects = inventory.objects().len(), "inventory built");

    let events_cx = EventsCx {
        settings: options.events,
        recorder: events::recorder(client.clone()),
    };
    let events_cx = &events_cx;

    let total = slots.len();
    let scan_time = annotate::now_rfc3339();
    let mut reports = Vec::with_capacity(total);
    // Each target's evaluation is CPU work on this task; its applies and deletes overlap with
    // the next targets' (results in command-line order).
    let client = &client;
    let (inventory, evaluator, cx, scan_time) = (&inventory, &evaluator, &cx, &scan_time);
    let writes = &Writes {
        keep_since: options
            .rescan_after
            .map(|period| annotate::rfc3339_before(period / 2)),
        ..Writes::default()
    };
    let existing = &existing;
    let mut outcomes = stream::iter(slots.into_iter().map(|slot| async move {
        let outcome = match (slot.state, &slot.key) {
            (State::Done(outcome), _) => outcome,
            (State::Gone, Some(key)) => {
                match delete_results(client, key, &cx.install_namespace, open_reports).await {
                    Ok(deleted) => {
                        info!(
                            "{} is gone: deleted {deleted} result objects",
                            describe(key)
                        );
                        TargetOutcome::Deleted { deleted }
                    }
                    Err(e) => TargetOutcome::Failed(e),
                }
            }
            (State::Live(live), Some(key)) => match live.index {
                Some(index) => {
                    let scan = TargetScan {
                        inventory,
                        evaluator,
                        cx,
                        scan_time,
                        existing,
                        writes,
                        events_cx,
                        open_reports,
                    };
                    write_target(client, &scan, index, key, &live.meta).await
                }
                None => TargetOutcome::Failed(TargetError::Convert {
                    target: describe(key),
                    message: "not in the inventory".into(),
                }),
            },
            // Cannot happen: a slot without a key is Done from parsing on, and every parsed
            // target was read above.
            (State::Pending | State::Gone | State::Live(_), _) => {
                TargetOutcome::Failed(TargetError::Convert {
                    target: slot.raw.clone(),
                    message: "target was never read".into(),
                })
            }
        };
        if let TargetOutcome::Failed(e) = &outcome {
            warn!(scan_target = %slot.raw, "{e}");
        }
        TargetReport {
            target: slot.raw,
            outcome,
        }
    }))
    .buffered(IN_FLIGHT);
    while let Some(report) = outcomes.next().await {
        let done = reports.len();
        reports.push(report);
        if total > PROGRESS_EVERY && ((done + 1) % PROGRESS_EVERY == 0 || done + 1 == total) {
            info!("progress: {}/{total} targets done", done + 1);
        }
    }
    let w = writes.counts();
    info!(
        "results: {} created, {} replaced, {} unchanged (not written); {} write requests",
        w.created, w.replaced, w.unchanged, w.requests
    );
    RunReport { targets: reports }
}

/// The write decision's one setting and the write counts of a Job, shared by its concurrent
/// targets.
#[derive(Default)]
struct Writes {
    /// Results scanned before this time are rewritten even when unchanged (`rescanAfter`).
    keep_since: Option<String>,
    created: AtomicUsize,
    replaced: AtomicUsize,
    unchanged: AtomicUsize,
    requests: AtomicUsize,
}

impl Writes {
    fn counts(&self) -> WriteCounts {
        WriteCounts {
            created: self.created.load(Ordering::Relaxed),
            replaced: self.replaced.load(Ordering::Relaxed),
            unchanged: self.unchanged.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }
}

/// What every target of a Job shares when it is evaluated and written.
struct TargetScan<'a> {
    inventory: &'a Inventory,
    evaluator: &'a Evaluator<'a>,
    cx: &'a ReportContext,
    scan_time: &'a str,
    existing: &'a ExistingResults,
    writes: &'a Writes,
    events_cx: &'a EventsCx,
    /// Whether each result's OpenReports `Report` is written too.
    open_reports: bool,
}

/// The namespaces the live targets' results are written to, each once, sorted (a binding's
/// triplet results go to the same namespace as its own result).
fn result_namespaces(slots: &[Slot], install_namespace: &str) -> Vec<String> {
    let set: std::collections::BTreeSet<String> = slots
        .iter()
        .filter(|s| matches!(s.state, State::Live(_)))
        .filter_map(|s| s.key.as_ref())
        .map(|k| k.target().result_namespace(install_namespace).to_string())
        .collect();
    set.into_iter().collect()
}

/// Lists the metadata of the results in `namespaces` (one LIST per kind and namespace,
/// [`IN_FLIGHT`] at a time). A failed LIST leaves its namespace unknown: its results are then
/// applied, which is right whether they exist or not.
async fn read_existing(
    client: &Client,
    namespaces: &[String],
    open_reports: bool,
) -> ExistingResults {
    let selector = format!(
        "{}={}",
        kubevigil_crds::identity::labels::MANAGED_BY,
        kubevigil_crds::identity::labels::MANAGED_BY_VALUE
    );
    let selector = selector.as_str();
    let tags: &[Tag] = if open_reports {
        &[Tag::Scan, Tag::Summary, Tag::Report]
    } else {
        &[Tag::Scan, Tag::Summary]
    };
    let lists = namespaces.iter().flat_map(|ns| {
        tags.iter().map(move |&tag| async move {
            let metas = match tag {
                Tag::Scan => list_result_meta::<WorkloadConfigurationScan>(client, ns, selector)
                    .await
                    .map_err(|e| (WorkloadConfigurationScan::kind(&()).to_string(), e)),
                Tag::Summary => {
                    list_result_meta::<WorkloadConfigurationScanSummary>(client, ns, selector)
                        .await
                        .map_err(|e| (WorkloadConfigurationScanSummary::kind(&()).to_string(), e))
                }
                Tag::Report => list_result_meta::<Report>(client, ns, selector)
                    .await
                    .map_err(|e| (Report::kind(&()).to_string(), e)),
            };
            (tag, ns, metas)
        })
    });
    let mut out = ExistingResults::default();
    let mut done = stream::iter(lists).buffer_unordered(IN_FLIGHT);
    while let Some((tag, ns, metas)) = done.next().await {
        match metas {
            Ok(metas) => out.insert_listed(tag, ns, metas.iter()),
            Err((kind, e)) => warn!(
                "failed to list the existing {kind} results in namespace {ns}: {e}; applying them instead"
            ),
        }
    }
    debug!(results = out.len(), "existing results listed");
    out
}

async fn list_result_meta<K: ResultKind>(
    client: &Client,
    namespace: &str,
    selector: &str,
) -> Result<Vec<ObjectMeta>, kube::Error> {
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let what = format!("list {} in {namespace}", K::plural(&()));
    let items = api::list_metadata_all(&api, Some(selector), &what).await?;
    Ok(items.into_iter().map(|m| m.metadata).collect())
}

/// Every target failed for the same reason (the Job's posture exceptions could not be read).
fn fail_all(slots: Vec<Slot>, message: &str) -> RunReport {
    let targets = slots
        .into_iter()
        .map(|slot| {
            let outcome = match slot.state {
                State::Done(outcome) => outcome,
                _ => TargetOutcome::Failed(TargetError::Exceptions(message.to_string())),
            };
            TargetReport {
                target: slot.raw,
                outcome,
            }
        })
        .collect();
    RunReport { targets }
}

/// Parses the targets, once each; Secrets are refused.
fn parse_targets(raw: &[String]) -> Vec<Slot> {
    let mut seen = HashSet::new();
    let mut slots = Vec::with_capacity(raw.len());
    for r in raw {
        if !seen.insert(r.as_str()) {
            debug!(scan_target = %r, "duplicate target ignored");
            continue;
        }
        let (key, state) = match TargetKey::parse(r) {
            Ok(key) if key.kind.group.is_empty() && key.kind.kind == "Secret" => {
                let e = TargetError::Secret {
                    target: describe(&key),
                };
                (Some(key), State::Done(TargetOutcome::Failed(e)))
            }
            Ok(key) => (Some(key), State::Pending),
            Err(e) => (None, State::Done(TargetOutcome::Failed(e.into()))),
        };
        slots.push(Slot {
            raw: r.clone(),
            key,
            state,
        });
    }
    slots
}

/// How the live objects of a batch are read: one LIST per (resource, namespace) that holds at
/// least [`LIST_THRESHOLD`] targets, a GET for each other target. Pure: slot indexes in.
#[derive(Debug, PartialEq, Eq)]
enum TargetRead {
    /// One LIST of the slots' kind in their namespace (cluster-wide for cluster-scoped kinds).
    List {
        /// The slots it reads.
        slots: Vec<usize>,
    },
    /// A GET of one slot.
    Get(usize),
}

fn plan_target_reads(keys: &[(usize, &TargetKey)]) -> Vec<TargetRead> {
    let mut groups: BTreeMap<(String, Option<&str>), Vec<usize>> = BTreeMap::new();
    for (i, key) in keys {
        groups
            .entry((
                key.kind.api_version() + "/" + &key.kind.plural,
                key.namespace.as_deref(),
            ))
            .or_default()
            .push(*i);
    }
    let mut reads = Vec::new();
    for slots in groups.into_values() {
        // Groups are per namespace (namespaced kinds) or cluster-wide (cluster-scoped kinds), so
        // a LIST never reads another namespace's objects.
        if slots.len() >= LIST_THRESHOLD {
            reads.push(TargetRead::List { slots });
        } else {
            reads.extend(slots.into_iter().map(TargetRead::Get));
        }
    }
    reads
}

fn live_state(object: DynamicObject, resource: ApiResource) -> State {
    State::Live(Box::new(Live {
        meta: object.metadata.clone(),
        object: Some(object),
        resource,
        index: None,
    }))
}

/// Reads every parsed target: big same-namespace groups with one LIST, the rest with GETs,
/// [`IN_FLIGHT`] calls at a time.
async fn get_targets(client: &Client, slots: &mut [Slot]) {
    let keys: Vec<(usize, &TargetKey)> = slots
        .iter()
        .enumerate()
        .filter_map(|(i, slot)| match (&slot.key, &slot.state) {
            (Some(key), State::Pending) => Some((i, key)),
            _ => None,
        })
        .collect();
    let reads = plan_target_reads(&keys);
    let results: Vec<Vec<(usize, State)>> = stream::iter(reads.into_iter().map(|read| {
        let keys = &keys;
        async move {
            let key_of = |i: usize| keys.iter().find(|(j, _)| *j == i).map(|(_, k)| *k);
            match read {
                TargetRead::Get(i) => {
                    let Some(key) = key_of(i) else {
                        return Vec::new();
                    };
                    let resource = key.kind.api_resource();
                    let api = dynamic_api(client, &resource, key.namespace.as_deref());
                    let what = format!("get {}", describe(key));
                    let state = match api::get_opt(&api, &key.name, &what).await {
                        Ok(Some(object)) => live_state(object, resource),
                        Ok(None) => State::Gone,
                        Err(source) => State::Done(TargetOutcome::Failed(TargetError::Get {
                            target: describe(key),
                            source,
                        })),
                    };
                    vec![(i, state)]
                }
                TargetRead::List { slots } => {
                    let Some(first) = slots.first().and_then(|&i| key_of(i)) else {
                        return Vec::new();
                    };
                    let resource = first.kind.api_resource();
                    let api = dynamic_api(client, &resource, first.namespace.as_deref());
                    let scope = first
                        .namespace
                        .as_deref()
                        .map_or_else(|| "cluster-wide".to_string(), |ns| format!("in {ns}"));
                    let what = format!("list {} {scope}", resource.plural);
                    match api::list_all(&api, None, &what).await {
                        Ok(items) => {
                            let mut by_name: std::collections::HashMap<String, DynamicObject> =
                                items
                                    .into_iter()
                                    .filter_map(|o| Some((o.metadata.name.clone()?, o)))
                                    .collect();
                            slots
                                .iter()
                                .filter_map(|&i| {
                                    let key = key_of(i)?;
                                    Some(match by_name.remove(&key.name) {
                                        Some(o) => (i, live_state(o, resource.clone())),
                                        None => (i, State::Gone),
                                    })
                                })
                                .collect()
                        }
                        Err(e) => {
                            warn!("{what} failed: {e}");
                            let message = e.to_string();
                            slots
                                .iter()
                                .filter_map(|&i| {
                                    let key = key_of(i)?;
                                    Some((
                                        i,
                                        State::Done(TargetOutcome::Failed(TargetError::List {
                                            kind: key.kind.kind.clone(),
                                            scope: scope.clone(),
                                            message: message.clone(),
                                        })),
                                    ))
                                })
                                .collect()
                        }
                    }
                }
            }
        }
    }))
    .buffer_unordered(IN_FLIGHT)
    .collect()
    .await;
    for (i, state) in results.into_iter().flatten() {
        if let Some(slot) = slots.get_mut(i) {
            slot.state = state;
        }
    }
}

/// Reads the related objects the live targets need, each (kind, namespace) once. A failed
/// required read fails the targets that need it, except 403 (warned once per kind, then the
/// scan goes on without that kind); optional kinds that are not installed or not readable
/// are skipped.
async fn read_related(client: &Client, slots: &mut [Slot]) -> Vec<(K8sObject, ApiResource)> {
    let live: Vec<usize> = (0..slots.len())
        .filter(|&i| matches!(slots[i].state, State::Live(_)))
        .collect();
    let reads: Vec<Read> = {
        let targets: Vec<PlanTarget<'_>> = live
            .iter()
            .filter_map(|&i| {
                let slot = &slots[i];
                let (Some(key), State::Live(l)) = (&slot.key, &slot.state) else {
                    return None;
                };
                let role_ref_kind = l
                    .object
                    .as_ref()
                    .and_then(|o| o.data.get("roleRef"))
                    .and_then(|r| r.get("kind"))
                    .and_then(serde_json::Value::as_str);
                Some(PlanTarget {
                    kind: &key.kind,
                    namespace: key.namespace.as_deref(),
                    name: &key.name,
                    role_ref_kind,
                })
            })
            .collect();
        plan_reads(&targets)
    };

    let mut out = Vec::new();
    let mut forbidden_warned: HashSet<&'static str> = HashSet::new();
    // The LISTs run concurrently; their results are taken in plan order.
    let mut listed = stream::iter(reads.into_iter().map(|read| async move {
        let resource = super::plan::api_resource(read.kind);
        let api = dynamic_api(client, &resource, read.namespace.as_deref());
        let scope = match &read.namespace {
            Some(ns) => format!("in namespace {ns}"),
            None => "cluster-wide".to_string(),
        };
        let what = format!("list {} {scope}", read.kind.plural);
        let result = api::list_all(&api, None, &what).await;
        (read, resource, scope, what, result)
    }))
    .buffered(IN_FLIGHT);
    while let Some((read, resource, scope, what, result)) = listed.next().await {
        match result {
            Ok(items) => {
                debug!("{what}: {} objects", items.len());
                for item in items {
                    match to_engine_object(item, &resource) {
                        Ok(o) => out.push((o, resource.clone())),
                        Err(e) => warn!("{what}: skipping an unreadable object: {e}"),
                    }
                }
            }
            Err(e) => {
                let code = api::status_code(&e);
                if read.kind.optional && matches!(code, Some(403 | 404)) {
                    debug!(
                        "{what}: skipped ({} not installed or not readable): {e}",
                        read.kind.kind
                    );
                } else if code == Some(403) {
                    if forbidden_warned.insert(read.kind.kind) {
                        warn!(
                            "{what}: forbidden; scanning without {} objects (grant the scan-job ServiceAccount list on {}): {e}",
                            read.kind.kind, read.kind.plural
                        );
                    }
                } else {
                    warn!("{what} failed: {e}");
                    let message = e.to_string();
                    for t in &read.needed_by {
                        let Some(slot) = live.get(*t).and_then(|&i| slots.get_mut(i)) else {
                            continue;
                        };
                        if matches!(slot.state, State::Live(_)) {
                            slot.state = State::Done(TargetOutcome::Failed(TargetError::List {
                                kind: read.kind.kind.to_string(),
                                scope: scope.clone(),
                                message: message.clone(),
                            }));
                        }
                    }
                }
            }
        }
    }
    out
}

/// One inventory for the whole batch: the targets first (as read), then the related objects,
/// each object once; Roles and ClusterRoles only when a binding references them.
fn build_inventory(slots: &mut [Slot], related: Vec<(K8sObject, ApiResource)>) -> Inventory {
    let mut objects: Vec<K8sObject> = Vec::new();
    let mut seen: HashSet<ObjectKey> = HashSet::new();
    for slot in slots.iter_mut() {
        let State::Live(live) = &mut slot.state else {
            continue;
        };
        let Some(object) = live.object.take() else {
            continue;
        };
        let converted = to_engine_object(object, &live.resource);
        match converted {
            Ok(o) => {
                let key = object_key(&o);
                if seen.insert(key) {
                    live.index = Some(objects.len());
                    objects.push(o);
                } else {
                    // The same object named twice (another version of one kind).
                    live.index = objects.iter().position(|x| object_key(x) == object_key(&o));
                }
            }
            Err(message) => {
                let target = slot.key.as_ref().map(describe).unwrap_or_default();
                slot.state = State::Done(TargetOutcome::Failed(TargetError::Convert {
                    target,
                    message,
                }));
            }
        }
    }
    let referenced = referenced_roles(objects.iter().chain(related.iter().map(|(o, _)| o)));
    for (o, _) in related {
        if role_key_of(&o).is_some_and(|role| !referenced.contains(&role)) {
            continue;
        }
        if seen.insert(object_key(&o)) {
            objects.push(o);
        }
    }
    Inventory::new(objects)
}

fn empty_result(target: Target, kind: &str, object_index: usize) -> ResourceResult<'static> {
    ResourceResult {
        target,
        kind: kind.to_string(),
        object_index,
        controls: Vec::new(),
    }
}

/// The metadata of the role a binding references, if that role was read.
fn role_meta(inventory: &Inventory, binding: &K8sObject) -> Option<ObjectMeta> {
    let wanted = role_ref_of(binding)?;
    let role = inventory
        .objects()
        .iter()
        .find(|o| role_key_of(o).as_ref() == Some(&wanted))?;
    serde_json::from_value(role.metadata().clone()).ok()
}

/// The hash of a workload's related inputs: the watched related objects of the inventory
/// (its namespace's and the cluster-wide ones) that the engine's relations relate it to, hashed
/// as the controller hashes its watch caches. `None` for a target that is not a workload.
fn related_inputs(inventory: &Inventory, obj: &K8sObject) -> Option<String> {
    // The workload kinds of the core, apps and batch groups, as the controller reads them.
    if !matches!(obj.group(), "" | "apps" | "batch") {
        return None;
    }
    let pod = related::PodFacts::of_object(&obj.kind, &obj.value)?;
    let namespace = obj.namespace_or_default();
    let facts: Vec<related::RelatedFacts> = related::watched_kinds()
        .flat_map(|k| {
            let objects: Vec<&K8sObject> = if k.namespaced {
                inventory.of_kind_in(k.kind, namespace).collect()
            } else {
                inventory.of_kind(k.kind).collect()
            };
            objects
                .into_iter()
                .filter(move |o| o.group() == k.group)
                .map(move |o| related::RelatedFacts::of_object(k, &o.value))
        })
        .collect();
    let candidates: Vec<&related::RelatedFacts> = facts.iter().collect();
    Some(related::inputs_hash(related::related_to(
        &pod,
        namespace,
        &candidates,
    )))
}

/// Evaluates one live target, stamps and writes its results.
async fn write_target(
    client: &Client,
    scan: &TargetScan<'_>,
    index: usize,
    key: &TargetKey,
    meta: &ObjectMeta,
) -> TargetOutcome {
    let TargetScan {
        inventory,
        evaluator,
        cx,
        scan_time,
        existing,
        writes,
        events_cx,
        open_reports,
    } = *scan;
    let Some(obj) = inventory.get(index) else {
        return TargetOutcome::Failed(TargetError::Convert {
            target: describe(key),
            message: "not in the inventory".into(),
        });
    };
    let mut results = vec![
        evaluator
            .evaluate_object(inventory, index)
            .unwrap_or_else(|| empty_result(Target::Object(obj.object_ref()), &obj.kind, index)),
    ];
    let role = key
        .kind
        .is_binding()
        .then(|| role_meta(inventory, obj))
        .flatten();
    let spec = kubevigil_engine::report::spec_hash_of(obj);
    let scanned = if key.kind.is_binding() {
        for t in inventory.triplets().iter().filter(|t| t.binding == index) {
            let result = evaluator.evaluate_triplet(inventory, t).or_else(|| {
                inventory
                    .triplet_target(t)
                    .map(|target| empty_result(target, t.subject.kind.as_str(), index))
            });
            if let Some(r) = result {
                // A subject listed twice in a binding has one result.
                if !results.iter().any(|x| x.target == r.target) {
                    results.push(r);
                }
            }
        }
        Scanned::Binding {
            binding: meta,
            role: role.as_ref(),
        }
    } else {
        Scanned::Object(meta, spec.as_deref())
    };
    let stamp = Stamp {
        target_uid: meta.uid.clone().unwrap_or_default(),
        fingerprint: annotate::result_fingerprint(scanned),
        scan_time: scan_time.to_string(),
        owner: Owner {
            api_version: key.kind.api_version(),
            kind: key.kind.kind.clone(),
            name: key.name.clone(),
            namespace: key.namespace.clone(),
            uid: meta.uid.clone().unwrap_or_default(),
        },
        related_inputs: related_inputs(inventory, obj),
    };

    let mut failed = [0usize; 5];
    // Posture Events: the previous failed controls (of all the target's results; `None` when
    // the target's own result is new or has no outcome annotation) and the new outcomes.
    let mut previous: Option<std::collections::BTreeSet<String>> = None;
    let mut outcomes: Vec<ControlOutcome> = Vec::new();
    for (i, r) in results.iter().enumerate() {
        // One walk over the controls: the severity counts, the failed-controls annotation and,
        // with posture Events on, the outcomes to compare.
        let mut failed_ids: Vec<&str> = Vec::new();
        for c in r.controls.iter().filter(|c| c.status != Status::Skipped) {
            let is_failed = c.status == Status::Failed;
            if is_failed {
                failed[severity_rank(c.meta.severity())] += 1;
                failed_ids.push(c.meta.id);
            }
            if events_cx.settings.enabled {
                outcomes.push(ControlOutcome {
                    id: c.meta.id.to_string(),
                    name: c.meta.name.to_string(),
                    severity: c.meta.severity(),
                    failed: is_failed,
                });
            }
        }
        let mut objects = report::build_fingerprinted(r, inventory, cx, stamp.fingerprint.clone());
        annotate::stamp(&mut objects, &stamp);
        objects
            .summary
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(
                events::FAILED_CONTROLS.to_string(),
                events::failed_annotation(failed_ids),
            );
        if events_cx.settings.enabled {
            let ns = objects
                .summary
                .metadata
                .namespace
                .as_deref()
                .unwrap_or_default();
            let name = objects.summary.metadata.name.as_deref().unwrap_or_default();
            // The summary's annotations as listed before the batch (`None`: a new result).
            let before = existing
                .get(Tag::Summary, ns, name)
                .and_then(|e| events::parse_failed(Some(&e.annotations)));
            match (i, before) {
                (0, before) => previous = before,
                (_, Some(before)) => {
                    if let Some(p) = previous.as_mut() {
                        p.extend(before);
                    }
                }
                (_, None) => {}
            }
        }
        annotate::stamp_outcome(&mut objects);
        let (scan, summary) = futures::join!(
            write_result(client, existing, writes, &objects.scan),
            write_result(client, existing, writes, &objects.summary)
        );
        if let Err(e) = scan.and(summary) {
            return TargetOutcome::Failed(e);
        }
        if open_reports {
            let written = match openreports::report_of(&r.target, &objects.scan) {
                OpenReport::Namespaced(report) => {
                    write_result(client, existing, writes, &report).await
                }
                OpenReport::Cluster(report) => openreports::apply_cluster(client, &report).await,
            };
            if let Err(e) = written {
                return TargetOutcome::Failed(e);
            }
        }
    }
    if events_cx.settings.enabled {
        let regarding = Regarding {
            api_version: key.kind.api_version(),
            kind: key.kind.kind.clone(),
            name: key.name.clone(),
            namespace: key.namespace.clone(),
            uid: meta.uid.clone().unwrap_or_default(),
        };
        for event in events::compare(previous.as_ref(), &outcomes, &events_cx.settings) {
            info!("{} {}: {}", event.reason, describe(key), event.note);
            events::publish(&events_cx.recorder, &regarding, &event).await;
        }
    }
    let failed_controls: usize = failed.iter().sum();
    let subjects = if key.kind.is_binding() {
        format!(", {} subject results", results.len() - 1)
    } else {
        String::new()
    };
    info!(
        "scanned {}: {}{subjects}",
        describe(key),
        failed_summary(&failed)
    );
    TargetOutcome::Written {
        results: results.len(),
        failed_controls,
    }
}

const SEVERITIES: [Severity; 5] = [
    Severity::Critical,
    Severity::High,
    Severity::Medium,
    Severity::Low,
    Severity::Unknown,
];

fn severity_rank(s: Severity) -> usize {
    SEVERITIES.iter().position(|x| *x == s).unwrap_or(4)
}

/// `2 failed controls (1 High, 1 Medium)`, `1 failed control (1 Critical)`, `0 failed controls`.
fn failed_summary(by_severity: &[usize; 5]) -> String {
    let total: usize = by_severity.iter().sum();
    let noun = if total == 1 { "control" } else { "controls" };
    let parts: Vec<String> = SEVERITIES
        .iter()
        .zip(by_severity)
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| format!("{n} {}", s.as_str()))
        .collect();
    if parts.is_empty() {
        format!("{total} failed {noun}")
    } else {
        format!("{total} failed {noun} ({})", parts.join(", "))
    }
}

trait ResultKind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
{
    /// The kind in [`ExistingResults`].
    const TAG: Tag;
}

impl ResultKind for WorkloadConfigurationScan {
    const TAG: Tag = Tag::Scan;
}
impl ResultKind for WorkloadConfigurationScanSummary {
    const TAG: Tag = Tag::Summary;
}
impl ResultKind for Report {
    const TAG: Tag = Tag::Report;
}

/// Writes one result as [`existing::decide`] says: creates it, replaces it, or leaves it.
async fn write_result<K: ResultKind>(
    client: &Client,
    existing: &ExistingResults,
    writes: &Writes,
    obj: &K,
) -> Result<(), TargetError> {
    let namespace = obj.meta().namespace.as_deref().unwrap_or_default();
    let name = obj.meta().name.as_deref().unwrap_or_default();
    let known = existing.lookup(K::TAG, namespace, name);
    match existing::decide(known, obj.meta(), writes.keep_since.as_deref()) {
        WriteAction::Skip => {
            writes.unchanged.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        WriteAction::Create => {
            writes.requests.fetch_add(1, Ordering::Relaxed);
            if create_result(client, obj).await? {
                writes.created.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            // Created by another Job since the LIST: replace it.
            debug!(
                "{} {namespace}/{name} exists already; applying it",
                K::kind(&())
            );
            writes.requests.fetch_add(1, Ordering::Relaxed);
            writes.replaced.fetch_add(1, Ordering::Relaxed);
            apply_result(client, obj).await
        }
        WriteAction::Replace => {
            writes.requests.fetch_add(1, Ordering::Relaxed);
            writes.replaced.fetch_add(1, Ordering::Relaxed);
            apply_result(client, obj).await
        }
    }
}

/// The API, kind and `namespace/name` of a result, as a write request and its error name them.
fn result_api<K: ResultKind>(client: &Client, obj: &K) -> (Api<K>, String, String, String) {
    let namespace = obj.meta().namespace.clone().unwrap_or_default();
    let name = obj.meta().name.clone().unwrap_or_default();
    let kind = K::kind(&()).to_string();
    let object = ns_name(&namespace, &name);
    (
        Api::namespaced(client.clone(), &namespace),
        kind,
        name,
        object,
    )
}

/// A failed result write: a Report's has its own explanation (the OpenReports CRDs are not the
/// chart's), a missing CRD is its own error (the chart is not installed), anything else is the
/// request's own error, built by `failed`.
fn write_error(
    tag: Tag,
    kind: String,
    object: String,
    source: kube::Error,
    failed: fn(String, String, kube::Error) -> TargetError,
) -> TargetError {
    if tag == Tag::Report {
        openreports::apply_error(&kind, object, source)
    } else if api::is_unserved_resource(&source) {
        TargetError::MissingCrd { kind, object }
    } else {
        failed(kind, object, source)
    }
}

/// Creates one result; `Ok(false)` when it exists already.
async fn create_result<K: ResultKind>(client: &Client, obj: &K) -> Result<bool, TargetError> {
    let (api, kind, _, object) = result_api(client, obj);
    api::create(&api, obj, &format!("create {kind} {object}"))
        .await
        .map_err(|source| {
            write_error(K::TAG, kind, object, source, |kind, object, source| {
                TargetError::Create {
                    kind,
                    object,
                    source,
                }
            })
        })
}

fn ns_name(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

async fn apply_result<K: ResultKind>(client: &Client, obj: &K) -> Result<(), TargetError> {
    let (api, kind, name, object) = result_api(client, obj);
    api::apply(&api, &name, obj, &format!("apply {kind} {object}"))
        .await
        .map_err(|source| {
            write_error(K::TAG, kind, object, source, |kind, object, source| {
                TargetError::Apply {
                    kind,
                    object,
                    source,
                }
            })
        })
}

async fn delete_result<K: ResultKind>(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<bool, TargetError> {
    let kind = K::kind(&()).to_string();
    let object = ns_name(namespace, name);
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api::delete(&api, name, &format!("delete {kind} {object}"))
        .await
        .map_err(|source| TargetError::Delete {
            kind,
            object,
            source,
        })
}

/// Deletes the triplet results of a deleted binding: those labelled with its name whose
/// resource ID names it.
async fn delete_triplet_results<K: ResultKind>(
    client: &Client,
    key: &TargetKey,
    install_namespace: &str,
) -> Result<usize, TargetError> {
    let Some(binding) = binding_ref(key) else {
        return Ok(0);
    };
    let namespace = binding
        .namespace
        .clone()
        .unwrap_or_else(|| install_namespace.to_string());
    let kind = K::kind(&()).to_string();
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    let selector = triplet_selector(&binding);
    let what = format!("list {kind} of {}", describe(key));
    let items = api::list_metadata_all(&api, Some(&selector), &what)
        .await
        .map_err(|source| TargetError::ListResults {
            kind: kind.clone(),
            binding: describe(key),
            namespace: namespace.clone(),
            source,
        })?;
    let mut deleted = 0;
    for item in items {
        let names_binding = item
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(annotations::RESOURCE_ID))
            .is_some_and(|id| resource_id_names_binding(id, &binding));
        let Some(name) = item.metadata.name.as_deref().filter(|_| names_binding) else {
            continue;
        };
        if delete_result::<K>(client, &namespace, name).await? {
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Deletes the results of a target that no longer exists (404 is fine); for a binding, also
/// the results of its triplets.
async fn delete_results(
    client: &Client,
    key: &TargetKey,
    install_namespace: &str,
    open_reports: bool,
) -> Result<usize, TargetError> {
    let target = key.target();
    let namespace = target.result_namespace(install_namespace).to_string();
    let name = target.result_name();
    let mut deleted = 0;
    if delete_result::<WorkloadConfigurationScan>(client, &namespace, &name).await? {
        deleted += 1;
    }
    if delete_result::<WorkloadConfigurationScanSummary>(client, &namespace, &name).await? {
        deleted += 1;
    }
    if key.kind.is_binding() {
        deleted +=
            delete_triplet_results::<WorkloadConfigurationScan>(client, key, install_namespace)
                .await?;
        deleted += delete_triplet_results::<WorkloadConfigurationScanSummary>(
            client,
            key,
            install_namespace,
        )
        .await?;
    }
    if open_reports {
        if is_cluster_scoped(&target) {
            deleted += usize::from(openreports::delete_cluster_report(client, &target).await?);
        } else if delete_result::<Report>(client, &namespace, &name).await? {
            deleted += 1;
        }
        if key.kind.is_binding() {
            deleted += delete_triplet_results::<Report>(client, key, install_namespace).await?;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_control_summaries() {
        assert_eq!(
            failed_summary(&[0, 1, 1, 0, 0]),
            "2 failed controls (1 High, 1 Medium)"
        );
        assert_eq!(
            failed_summary(&[1, 0, 0, 0, 0]),
            "1 failed control (1 Critical)"
        );
        assert_eq!(failed_summary(&[0; 5]), "0 failed controls");
        assert_eq!(severity_rank(Severity::Unknown), 4);
    }

    #[test]
    fn big_same_namespace_groups_are_listed_the_rest_fetched() {
        let mut raw: Vec<String> = (0..LIST_THRESHOLD)
            .map(|i| format!("apps/v1/deployments/Deployment/shop/w{i}"))
            .collect();
        raw.push("apps/v1/deployments/Deployment/other/w0".into());
        raw.push("apps/v1/statefulsets/StatefulSet/shop/db".into());
        raw.push("/v1/namespaces/Namespace//shop".into());
        let keys: Vec<TargetKey> = raw.iter().map(|r| TargetKey::parse(r).unwrap()).collect();
        let indexed: Vec<(usize, &TargetKey)> = keys.iter().enumerate().collect();
        let reads = plan_target_reads(&indexed);
        let n = LIST_THRESHOLD;
        assert!(reads.contains(&TargetRead::List {
            slots: (0..n).collect()
        }));
        for single in [n, n + 1, n + 2] {
            assert!(
                reads.contains(&TargetRead::Get(single)),
                "{single}: {reads:?}"
            );
        }
        assert_eq!(reads.len(), 4);
        // Below the threshold, GETs only.
        let few: Vec<(usize, &TargetKey)> = indexed[..LIST_THRESHOLD - 1].to_vec();
        assert!(
            plan_target_reads(&few)
                .iter()
                .all(|r| matches!(r, TargetRead::Get(_)))
        );
    }

    #[test]
    fn targets_are_parsed_once_and_secrets_refused() {
        let slots = parse_targets(&[
            "apps/v1/deployments/Deployment/shop/web".into(),
            "apps/v1/deployments/Deployment/shop/web".into(),
            "/v1/secrets/Secret/shop/token".into(),
            "nonsense".into(),
        ]);
        assert_eq!(slots.len(), 3);
        assert!(matches!(slots[0].state, State::Pending));
        let State::Done(TargetOutcome::Failed(e)) = &slots[1].state else {
            panic!("secret accepted");
        };
        assert_eq!(
            e.to_string(),
            "refusing to read Secret shop/token: kubevigil never reads Secrets"
        );
        assert!(matches!(
            slots[2].state,
            State::Done(TargetOutcome::Failed(TargetError::Parse(_)))
        ));
    }

    #[test]
    fn inventory_keeps_targets_first_and_drops_unreferenced_roles() {
        let ar = |kind: &str| ApiResource {
            group: "rbac.authorization.k8s.io".into(),
            version: "v1".into(),
            api_version: "rbac.authorization.k8s.io/v1".into(),
            kind: kind.into(),
            plural: String::new(),
        };
        let obj = |v: serde_json::Value| K8sObject::from_value(v).unwrap();
        let key =
            TargetKey::parse("rbac.authorization.k8s.io/v1/rolebindings/RoleBinding/ci/b").unwrap();
        let binding: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "b", "namespace": "ci", "uid": "u"},
            "roleRef": {"kind": "ClusterRole", "name": "edit"},
            "subjects": [{"kind": "ServiceAccount", "name": "bot"}]
        }))
        .unwrap();
        let mut slots = vec![Slot {
            raw: key.to_string(),
            state: State::Live(Box::new(Live {
                meta: binding.metadata.clone(),
                object: Some(binding),
                resource: key.kind.api_resource(),
                index: None,
            })),
            key: Some(key),
        }];
        let related = vec![
            (
                obj(
                    serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRole", "metadata": {"name": "edit", "uid": "r"}}),
                ),
                ar("ClusterRole"),
            ),
            (
                obj(
                    serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRole", "metadata": {"name": "unused"}}),
                ),
                ar("ClusterRole"),
            ),
            // The target again, as a list would return it.
            (
                obj(
                    serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding", "metadata": {"name": "b", "namespace": "ci"}}),
                ),
                ar("RoleBinding"),
            ),
        ];
        let inv = build_inventory(&mut slots, related);
        let names: Vec<&str> = inv.objects().iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["b", "edit"]);
        let State::Live(live) = &slots[0].state else {
            panic!("not live");
        };
        assert_eq!(live.index, Some(0));
        assert_eq!(inv.triplets().len(), 1);
        let role = role_meta(&inv, &inv.objects()[0]).unwrap();
        assert_eq!(role.uid.as_deref(), Some("r"));
    }
}
