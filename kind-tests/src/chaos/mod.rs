//! The chaos scenario (issue 8): a seeded, bounded, repeatable mix of operations on workloads,
//! ServiceAccounts, Roles and RoleBindings, with faults injected at seeded positions (controller
//! kills, a kube-apiserver restart, scan pods killed mid-run, a running scan Job deleted), then
//! SPEC's convergence invariant. `kind-tests/tests/chaos.rs` runs it; `make chaos` runs it for
//! several seeds.
//!
//! - [`plan`]: the seeded plan (pure).
//! - [`invariant`]: expected results from live objects, compared with the listed ones (pure).
//! - [`Driver`]: runs operations with bounded retries (through the API server's restart) and
//!   injects the faults on the local cluster's node: containers are killed through containerd
//!   (`ctr tasks kill -s SIGKILL`, as the runtime ends an OOM-killed or crashed container).

pub mod invariant;
pub mod plan;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use kube::{Api, Client};
use kubevigil_crds::identity::annotations;
use kubevigil_crds::{WorkloadConfigurationScan, WorkloadConfigurationScanSummary};
use tokio::time::Instant;

use self::invariant::{LiveObject, ObservedResult, ResultKind, Scope};
use self::plan::{Action, Fault, KillMode, Kind, Op};
use crate::cluster::StateDir;
use crate::node;
use crate::pipeline::job_finished;
use crate::release::{Release, SCAN_JOB_SELECTOR};
use crate::scenario::{BoxError, Check, Error, wait_for};

/// Label selector of the controller's pods.
pub const CONTROLLER_SELECTOR: &str = "app.kubernetes.io/component=controller";
/// How long one API call may keep failing (the API server's restart included) before the
/// scenario gives up.
pub const RETRY_BOUND: Duration = Duration::from_secs(120);
/// Bound of one attempt of an API call.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a scan-pod or Job fault waits for a scan pod to be running.
const FAULT_WINDOW: Duration = Duration::from_secs(25);

/// Whether an API error is worth retrying: transport errors, timeouts, 429 and 5xx. Other 4xx
/// answers are final.
pub fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        _ => true,
    }
}

fn test_err(ns: &str, msg: impl Into<String>) -> Error {
    Error::Test {
        namespace: ns.to_owned(),
        source: msg.into().into(),
    }
}

/// Counters of the operation driver.
#[derive(Clone, Debug, Default)]
pub struct DriverStats {
    /// Failed attempts that were retried.
    pub retries: usize,
    /// Operations that needed more than one attempt.
    pub ops_retried: usize,
    /// Creates answered AlreadyExists (or deletes answered NotFound) after a retried attempt:
    /// the lost attempt had landed.
    pub landed_before: usize,
    /// The longest an operation took, retries included.
    pub slowest_op: Duration,
}

/// One fault as injected.
#[derive(Clone, Debug)]
pub struct FaultRecord {
    /// Seconds since the start of the operations.
    pub at: f64,
    /// The operation it preceded.
    pub before_op: usize,
    /// The fault.
    pub fault: Fault,
    /// How many were hit (pods killed, Jobs deleted; 1 for the others); 0 when nothing was
    /// running within the fault's window.
    pub hits: usize,
    /// What exactly was done.
    pub detail: String,
}

/// A scan-pod kill running beside the operations ([`Driver::start_scan_pod_kill`]).
pub struct ScanPodKill {
    before_op: usize,
    at: f64,
    task: tokio::task::JoinHandle<(usize, String)>,
}

/// The scan-pod kill itself (blocking: it polls `ctr`): (pods killed, what was done).
fn kill_scan_containers(
    dirs: &node::NodeDirs,
    namespace: &str,
    container: &str,
) -> (usize, String) {
    let start = std::time::Instant::now();
    let mut last_error = None;
    while start.elapsed() < FAULT_WINDOW {
        match node::running_pod_containers(dirs, namespace, container) {
            Ok(running) => {
                let mut killed = Vec::new();
                for (id, pid) in running {
                    // It may exit between the listing and the kill: then it is no hit.
                    if let Err(e) = node::kill_container(dirs, &id) {
                        tracing::info!(container = %id, error = %e, "scan container not killed");
                        continue;
                    }
                    let pod = node::container_pod_name(dirs, &id).unwrap_or_else(|| id.clone());
                    killed.push(format!("{pod} (pid {pid})"));
                }
                if !killed.is_empty() {
                    let after = start.elapsed().as_secs_f64();
                    return (
                        killed.len(),
                        format!("{} after {after:.1}s", killed.join(", ")),
                    );
                }
            }
            Err(e) => last_error = Some(e.to_string()),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let why = last_error.map_or_else(String::new, |e| format!(" (last ctr error: {e})"));
    (
        0,
        format!("no scan container was running within {FAULT_WINDOW:?}{why}"),
    )
}

/// Runs the plan's operations and faults against one namespace and one release.
pub struct Driver {
    client: Client,
    namespace: String,
    release: Release,
    state: StateDir,
    /// Counters of the operations.
    pub stats: DriverStats,
    /// The faults as injected.
    pub faults: Vec<FaultRecord>,
    started: Instant,
}

fn api_resource(kind: Kind) -> ApiResource {
    let (group, version, kind, plural) = kind.api();
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// Runs `call` until it succeeds, fails with a final error, or [`RETRY_BOUND`] passes.
/// Returns the value and the number of attempts; a final error comes with its attempt number.
pub async fn retry<T, F, Fut>(
    what: &str,
    mut call: F,
) -> Result<(T, usize), (Result<kube::Error, String>, usize)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let start = Instant::now();
    let mut pause = Duration::from_millis(200);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let last = match tokio::time::timeout(ATTEMPT_TIMEOUT, call()).await {
            Ok(Ok(v)) => return Ok((v, attempts)),
            Ok(Err(e)) if !transient(&e) => return Err((Ok(e), attempts)),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {ATTEMPT_TIMEOUT:?}"),
        };
        if start.elapsed() + pause > RETRY_BOUND {
            return Err((
                Err(format!(
                    "{what}: still failing after {attempts} attempts in {:?}: {last}",
                    start.elapsed()
                )),
                attempts,
            ));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// The first running container of `pod` on the local node: its containerd ID
/// (`containerd://...`) and its host PID, if containerd has a running task for it.
pub fn pod_container(state: &StateDir, pod: &Pod) -> Option<(String, u32)> {
    let id = pod
        .status
        .as_ref()?
        .container_statuses
        .iter()
        .flatten()
        .filter(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
        .find_map(|c| c.container_id.clone())?;
    let pid = node::container_pid(&state.node(), &id)?;
    Some((id, pid))
}

/// SIGKILLs a container through containerd.
fn kill_container(state: &StateDir, id: &str) -> Result<(), String> {
    node::kill_container(&state.node(), id).map_err(|e| e.to_string())
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

impl Driver {
    /// A driver for the test namespace `namespace` and `release`, on the local cluster `state`.
    pub fn new(client: Client, namespace: &str, release: &Release, state: &StateDir) -> Self {
        Driver {
            client,
            namespace: namespace.to_owned(),
            release: release.clone(),
            state: state.clone(),
            stats: DriverStats::default(),
            faults: Vec::new(),
            started: Instant::now(),
        }
    }

    /// Seconds since the driver started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn fail(&self, msg: impl Into<String>) -> Error {
        test_err(&self.namespace, msg)
    }

    /// Runs one operation, retrying through transient failures (bounded).
    pub async fn run_op(&mut self, op: &Op) -> Result<(), Error> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.namespace, &api_resource(op.kind));
        let what = op.to_string();
        let start = Instant::now();
        let outcome = match &op.action {
            Action::Create(body) => {
                let obj: DynamicObject = serde_json::from_value(body.clone())
                    .map_err(|e| self.fail(format!("{what}: bad body: {e}")))?;
                let pp = PostParams::default();
                retry(&what, || api.create(&pp, &obj)).await.map(|(_, n)| n)
            }
            Action::Update { patch, .. } => {
                let (pp, patch) = (PatchParams::default(), Patch::Merge(patch));
                retry(&what, || api.patch(&op.name, &pp, &patch))
                    .await
                    .map(|(_, n)| n)
            }
            Action::Delete => {
                let dp = DeleteParams::background();
                retry(&what, || api.delete(&op.name, &dp))
                    .await
                    .map(|(_, n)| n)
            }
        };
        let attempts = match outcome {
            Ok(n) => n,
            // A retried create or delete whose lost attempt had landed.
            Err((Ok(kube::Error::Api(s)), n))
                if n > 1
                    && ((s.code == 409 && matches!(op.action, Action::Create(_)))
                        || (s.code == 404 && matches!(op.action, Action::Delete))) =>
            {
                self.stats.landed_before += 1;
                n
            }
            Err((Ok(e), n)) => {
                return Err(self.fail(format!("{what} (attempt {n}): {e}")));
            }
            Err((Err(msg), _)) => return Err(self.fail(msg)),
        };
        if attempts > 1 {
            self.stats.ops_retried += 1;
            self.stats.retries += attempts - 1;
        }
        self.stats.slowest_op = self.stats.slowest_op.max(start.elapsed());
        Ok(())
    }

    fn record(&mut self, before_op: usize, fault: Fault, hits: usize, detail: String) {
        let at = self.started.elapsed().as_secs_f64();
        self.push_record(FaultRecord {
            at,
            before_op,
            fault,
            hits,
            detail,
        });
    }

    fn push_record(&mut self, r: FaultRecord) {
        eprintln!(
            "[chaos t+{:6.1}s] before op #{}: {} x{}: {}",
            r.at,
            r.before_op,
            r.fault.label(),
            r.hits,
            r.detail
        );
        self.faults.push(r);
    }

    /// Records the kube-apiserver restart (run concurrently by the caller).
    pub fn record_apiserver_restart(&mut self, before_op: usize, at: f64, detail: String) {
        self.push_record(FaultRecord {
            at,
            before_op,
            fault: Fault::RestartApiserver,
            hits: 1,
            detail,
        });
    }

    async fn pods(&self, namespace: &str, selector: &str) -> Result<Vec<Pod>, Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let lp = ListParams::default().labels(selector);
        retry("listing pods", || api.list(&lp))
            .await
            .map(|(l, _)| l.items)
            .map_err(|(e, _)| {
                self.fail(format!(
                    "listing pods {selector} in {namespace}: {}",
                    e.map_or_else(|m| m, |e| e.to_string())
                ))
            })
    }

    /// Kills the controller (waiting, bounded, for a ready one with a live process first).
    pub async fn kill_controller(&mut self, before_op: usize, mode: KillMode) -> Result<(), Error> {
        let ns = self.release.namespace.clone();
        let found = wait_for(
            Duration::from_secs(180),
            &format!("a ready controller pod in {ns} with a live process"),
            || async {
                let pods = self.pods(&ns, CONTROLLER_SELECTOR).await?;
                let live: Vec<(String, (String, u32))> = pods
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none() && ready(p))
                    .filter_map(|p| {
                        Some((p.metadata.name.clone()?, pod_container(&self.state, p)?))
                    })
                    .collect();
                Ok::<_, BoxError>(match live.first() {
                    Some(x) => Check::Done(x.clone()),
                    None => Check::NotYet(format!(
                        "{} controller pods, none ready with a live process",
                        pods.len()
                    )),
                })
            },
        )
        .await?;
        let (pod, (container, pid)) = found;
        let detail = match mode {
            KillMode::Sigkill => {
                kill_container(&self.state, &container).map_err(|e| {
                    self.fail(format!("killing controller container {container}: {e}"))
                })?;
                format!("SIGKILL through containerd to pod {pod}'s container (pid {pid})")
            }
            KillMode::DeletePod => {
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
                let dp = DeleteParams {
                    grace_period_seconds: Some(0),
                    ..DeleteParams::default()
                };
                retry("deleting the controller pod", || api.delete(&pod, &dp))
                    .await
                    .map_err(|(e, _)| {
                        self.fail(format!(
                            "deleting controller pod {pod}: {}",
                            e.map_or_else(|m| m, |e| e.to_string())
                        ))
                    })?;
                format!("deleted pod {pod} (pid {pid}) with grace period 0")
            }
        };
        self.record(before_op, Fault::KillController(mode), 1, detail);
        Ok(())
    }

    /// Starts a scan-pod kill beside the operations: for up to [`FAULT_WINDOW`] it watches the
    /// node's containerd for running scan containers and SIGKILLs every one it sees in the first
    /// look that finds any. It runs concurrently because a scan lives a second or two: the
    /// operations that go on meanwhile are what start the scans it can hit. `container` is the
    /// scan Job's container name, as the controller's Job builder sets it.
    pub fn start_scan_pod_kill(&self, before_op: usize, container: &'static str) -> ScanPodKill {
        let dirs = self.state.node();
        let namespace = self.release.namespace.clone();
        let at = self.elapsed().as_secs_f64();
        eprintln!(
            "[chaos t+{at:6.1}s] before op #{before_op}: watching for scan pods to kill while the operations go on"
        );
        let task =
            tokio::task::spawn_blocking(move || kill_scan_containers(&dirs, &namespace, container));
        ScanPodKill {
            before_op,
            at,
            task,
        }
    }

    /// Waits for a kill started by [`Driver::start_scan_pod_kill`] and records it.
    pub async fn finish_scan_pod_kill(&mut self, kill: ScanPodKill) -> Result<(), Error> {
        let (hits, detail) = kill
            .task
            .await
            .map_err(|e| self.fail(format!("the scan-pod kill task: {e}")))?;
        self.push_record(FaultRecord {
            at: kill.at,
            before_op: kill.before_op,
            fault: Fault::KillScanPods,
            hits,
            detail,
        });
        Ok(())
    }

    /// Deletes a scan Job that has not finished (waiting up to [`FAULT_WINDOW`] for one): its
    /// pod is starting or running, so the scan it carried is lost and must be redone.
    pub async fn delete_running_job(&mut self, before_op: usize) -> Result<(), Error> {
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &self.release.namespace);
        let deadline = Instant::now() + FAULT_WINDOW;
        let active = loop {
            let lp = ListParams::default().labels(SCAN_JOB_SELECTOR);
            let listed = retry("listing scan Jobs", || jobs.list(&lp))
                .await
                .map_err(|(e, _)| {
                    self.fail(format!(
                        "listing scan Jobs: {}",
                        e.map_or_else(|m| m, |e| e.to_string())
                    ))
                })?
                .0;
            let active = listed
                .items
                .into_iter()
                .find(|j| !job_finished(j) && j.metadata.deletion_timestamp.is_none());
            if active.is_some() || Instant::now() >= deadline {
                break active;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let mut deleted = None;
        if let Some(job) = active {
            let job_name = job.metadata.name.clone().unwrap_or_default();
            let targets = job
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(crate::pipeline::TARGETS_ANNOTATION))
                .map(|t| t.lines().count())
                .unwrap_or_default();
            let pod_phase = self
                .pods(
                    &self.release.namespace,
                    &format!("batch.kubernetes.io/job-name={job_name}"),
                )
                .await?
                .first()
                .and_then(|p| p.status.as_ref()?.phase.clone())
                .unwrap_or_else(|| "not created yet".to_owned());
            let dp = DeleteParams::background();
            match retry("deleting a running scan Job", || {
                jobs.delete(&job_name, &dp)
            })
            .await
            {
                Ok(_) => {
                    deleted = Some(format!(
                        "Job {job_name} ({targets} targets, pod {pod_phase})"
                    ));
                }
                // It finished and the controller deleted it meanwhile: no hit.
                Err((Ok(kube::Error::Api(e)), _)) if e.code == 404 => {}
                Err((e, _)) => {
                    return Err(self.fail(format!(
                        "deleting scan Job {job_name}: {}",
                        e.map_or_else(|m| m, |e| e.to_string())
                    )));
                }
            }
        }
        let hits = usize::from(deleted.is_some());
        let detail =
            deleted.unwrap_or_else(|| format!("no scan Job was active within {FAULT_WINDOW:?}"));
        self.record(before_op, Fault::DeleteRunningJob, hits, detail);
        Ok(())
    }

    /// Injects one fault (all but the API server restart, which the caller runs concurrently).
    pub async fn inject(&mut self, before_op: usize, fault: Fault) -> Result<(), Error> {
        match fault {
            Fault::KillController(mode) => self.kill_controller(before_op, mode).await,
            Fault::DeleteRunningJob => self.delete_running_job(before_op).await,
            Fault::KillScanPods | Fault::RestartApiserver => Err(self.fail(format!(
                "{} runs concurrently with the operations: the caller starts it",
                fault.label()
            ))),
        }
    }

    /// Faults injected, by label, counting hits.
    pub fn fault_counts(&self) -> BTreeMap<&'static str, (usize, usize)> {
        let mut out: BTreeMap<&'static str, (usize, usize)> = BTreeMap::new();
        for f in &self.faults {
            let e = out.entry(f.fault.label()).or_default();
            e.0 += 1;
            e.1 += f.hits;
        }
        out
    }
}

/// (group, version, kind, plural, namespaced) of the chart's default watched kinds.
const WATCHED_RESOURCES: &[(&str, &str, &str, &str, bool)] = &[
    ("apps", "v1", "Deployment", "deployments", true),
    ("apps", "v1", "StatefulSet", "statefulsets", true),
    ("apps", "v1", "DaemonSet", "daemonsets", true),
    ("apps", "v1", "ReplicaSet", "replicasets", true),
    ("batch", "v1", "Job", "jobs", true),
    ("batch", "v1", "CronJob", "cronjobs", true),
    ("", "v1", "Pod", "pods", true),
    (
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        true,
    ),
    ("", "v1", "ServiceAccount", "serviceaccounts", true),
    ("", "v1", "Namespace", "namespaces", false),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
    ),
];

/// The related kinds the invariant reads (the engine's table's watched kinds that the local
/// cluster serves; the optional CRDs are not installed there).
const RELATED_RESOURCES: &[(&str, &str, &str, &str, bool)] = &[
    ("", "v1", "Service", "services", true),
    ("", "v1", "ConfigMap", "configmaps", true),
    (
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
    ),
    (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
    ),
    ("networking.k8s.io", "v1", "Ingress", "ingresses", true),
];

/// Lists every object of the watched kinds and of the related kinds in `scope` (namespaced
/// kinds in its namespaces, cluster-scoped kinds everywhere).
pub async fn list_live(client: &Client, scope: &Scope) -> Result<Vec<LiveObject>, BoxError> {
    let mut out = Vec::new();
    for (group, version, kind, plural, namespaced) in
        WATCHED_RESOURCES.iter().chain(RELATED_RESOURCES)
    {
        let ar =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let apis: Vec<Api<DynamicObject>> = if *namespaced {
            scope
                .namespaces
                .iter()
                .map(|ns| Api::namespaced_with(client.clone(), ns, &ar))
                .collect()
        } else {
            vec![Api::all_with(client.clone(), &ar)]
        };
        for api in apis {
            for o in api.list(&ListParams::default()).await?.items {
                out.push(LiveObject {
                    group: (*group).to_owned(),
                    version: (*version).to_owned(),
                    kind: (*kind).to_owned(),
                    meta: o.metadata,
                    data: o.data,
                });
            }
        }
    }
    Ok(out)
}

/// Lists the scans and summaries in the scope's namespaces and its install namespace.
pub async fn list_results(client: &Client, scope: &Scope) -> Result<Vec<ObservedResult>, BoxError> {
    let mut namespaces = scope.namespaces.clone();
    namespaces.insert(scope.install_namespace.clone());
    let mut out = Vec::new();
    for ns in &namespaces {
        let scans: Api<WorkloadConfigurationScan> = Api::namespaced(client.clone(), ns);
        let summaries: Api<WorkloadConfigurationScanSummary> = Api::namespaced(client.clone(), ns);
        let lp = ListParams::default();
        let metas = [
            (
                ResultKind::Scan,
                scans
                    .list_metadata(&lp)
                    .await?
                    .items
                    .into_iter()
                    .map(|i| i.metadata)
                    .collect::<Vec<_>>(),
            ),
            (
                ResultKind::Summary,
                summaries
                    .list_metadata(&lp)
                    .await?
                    .items
                    .into_iter()
                    .map(|i| i.metadata)
                    .collect(),
            ),
        ];
        for (kind, items) in metas {
            for m in items {
                out.push(ObservedResult {
                    kind,
                    namespace: ns.clone(),
                    name: m.name.clone().unwrap_or_default(),
                    fingerprint: m
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(annotations::FINGERPRINT))
                        .cloned(),
                    related_inputs: m
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(annotations::RELATED_INPUTS))
                        .cloned(),
                    labels: m.labels.unwrap_or_default(),
                });
            }
        }
    }
    Ok(out)
}

/// One check of the invariant against the cluster.
pub async fn check_invariant(
    client: &Client,
    scope: &Scope,
) -> Result<invariant::Report, BoxError> {
    let live = list_live(client, scope).await?;
    let results = list_results(client, scope).await?;
    let expectation = invariant::expected_results(&live, scope);
    Ok(invariant::check(&expectation, &results, scope))
}
