//! The process kubelet: makes pods run as local processes so that Deployments, Jobs and a
//! Helm-installed controller behave as on a node.
//!
//! - Registers a Ready [`Node`] and keeps its Ready condition and its Lease in `kube-node-lease`
//!   fresh (every 10 s).
//! - Binds pending pods (no `spec.nodeName`; there is no scheduler) to that node through the
//!   `pods/binding` subresource.
//! - Runs each pod bound to the node (`pod.rs`): the image maps to a local binary ([`image`]), the
//!   environment is computed like a kubelet does ([`mod@env`]), volumes become directories
//!   ([`volumes`]) bind-mounted at their `mountPath` inside a private mount namespace
//!   ([`sandbox`]), so `/var/run/secrets/kubernetes.io/serviceaccount` works and in-cluster
//!   clients authenticate as the pod's real ServiceAccount.
//! - Reports status ([`status`]) and honours `restartPolicy`; on deletion: SIGTERM, grace period
//!   (capped), SIGKILL, then deletes the pod with grace 0.
//! - Keeps each container's stdout and stderr in `<state>/pods/<ns>_<pod>_<uid>/<container>.log`
//!   ([`pod_log`]). There is no kubelet HTTP server, so the API's `pods/log` (and `exec`,
//!   `port-forward`) do not work against this node.
//!
//! Not implemented: probes (a running container is ready), resource limits, `runAsUser` and
//! `readOnlyRootFilesystem` (processes run as root on the host filesystem), native sidecars
//! (init containers with `restartPolicy: Always` run as ordinary init containers), ephemeral
//! containers, image pulls and network isolation (every pod shares the host network; `podIP`
//! is 127.0.0.1, so two pods listening on one port collide).

pub mod env;
pub mod image;
mod pod;
pub mod sandbox;
pub mod status;
pub mod volumes;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

pub use pod::{backoff, entrypoint, pod_dir_name};

use crate::cluster::StateDir;
use image::ImageMap;

/// Field manager of everything the kubelet applies.
const FIELD_MANAGER: &str = "kubevigil-kubelet";
/// How often the Node's Ready condition and Lease are renewed.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// Errors of the kubelet.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A host tool (`unshare`, `mount`) is missing.
    #[error("the local kubelet needs `{0}` (util-linux) in PATH")]
    MissingTool(&'static str),
    /// The kubelet's own executable could not be found (needed for `container-init`).
    #[error("locating the kubelet's own executable: {0}")]
    SelfExe(std::io::Error),
    /// The Node could not be registered.
    #[error("registering node {node}: {source}")]
    RegisterNode {
        /// The node name.
        node: String,
        /// The API error.
        source: kube::Error,
    },
    /// No pod directory exists for the pod.
    #[error("no local log for pod {namespace}/{name} under {dir} (did it run on the local node?)")]
    NoPodLog {
        /// Namespace.
        namespace: String,
        /// Pod name.
        name: String,
        /// The pods directory searched.
        dir: PathBuf,
    },
    /// A log file could not be read.
    #[error("reading {path}: {source}")]
    ReadLog {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Configuration of the kubelet.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// The Node name.
    pub node_name: String,
    /// The cluster state directory (pods live in `<state>/pods`).
    pub state: StateDir,
    /// kube-apiserver's port on 127.0.0.1 (for `KUBERNETES_SERVICE_PORT`).
    pub apiserver_port: u16,
    /// Image → binary.
    pub images: ImageMap,
    /// Upper bound of a pod's termination grace period.
    pub max_grace: Duration,
}

/// What pod tasks share.
pub(crate) struct Ctx {
    pub(crate) client: Client,
    pub(crate) cfg: KubeletConfig,
    pub(crate) unshare: PathBuf,
    pub(crate) mount: PathBuf,
    pub(crate) self_exe: PathBuf,
}

/// Runs the kubelet until `shutdown` resolves; then stops every pod process and returns.
pub async fn run(
    client: Client,
    cfg: KubeletConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let ctx = Arc::new(Ctx {
        unshare: sandbox::which("unshare").ok_or(Error::MissingTool("unshare"))?,
        mount: sandbox::which("mount").ok_or(Error::MissingTool("mount"))?,
        self_exe: std::env::current_exe().map_err(Error::SelfExe)?,
        client,
        cfg,
    });
    register_node(&ctx).await?;
    info!(node = %ctx.cfg.node_name, "node registered");

    let (stop_tx, stop_rx) = watch::channel(false);
    let heartbeat = tokio::spawn(heartbeat_loop(ctx.clone(), stop_rx.clone()));

    let mut pods: HashMap<String, (watch::Sender<pod::Update>, JoinHandle<()>)> = HashMap::new();
    let stream = watcher(
        Api::<Pod>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut listed: Option<Vec<String>> = None;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            event = stream.next() => match event {
                None => break,
                Some(Err(e)) => warn!(error = %e, "pod watch error (retrying)"),
                Some(Ok(watcher::Event::Init)) => listed = Some(Vec::new()),
                Some(Ok(watcher::Event::InitApply(p))) => {
                    if let (Some(seen), Some(uid)) = (listed.as_mut(), p.metadata.uid.clone()) {
                        seen.push(uid);
                    }
                    on_pod(&ctx, &mut pods, p, &stop_rx);
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    // Pods that vanished while the watch was down.
                    if let Some(seen) = listed.take() {
                        pods.retain(|uid, (tx, _)| {
                            let keep = seen.contains(uid);
                            if !keep {
                                tx.send_replace(pod::Update::Gone);
                            }
                            keep
                        });
                    }
                }
                Some(Ok(watcher::Event::Apply(p))) => on_pod(&ctx, &mut pods, p, &stop_rx),
                Some(Ok(watcher::Event::Delete(p))) => {
                    if let Some(uid) = p.metadata.uid.as_deref()
                        && let Some((tx, _)) = pods.remove(uid)
                    {
                        tx.send_replace(pod::Update::Gone);
                    }
                }
            },
        }
        pods.retain(|_, (_, task)| !task.is_finished());
    }

    info!("kubelet shutting down: stopping pod processes");
    stop_tx.send_replace(true);
    let tasks: Vec<JoinHandle<()>> = pods.into_values().map(|(_, task)| task).collect();
    let all = futures::future::join_all(tasks);
    if tokio::time::timeout(Duration::from_secs(20), all)
        .await
        .is_err()
    {
        warn!("some pod tasks did not stop within 20s");
    }
    heartbeat.abort();
    Ok(())
}

/// Routes one pod event: bind it, or hand it to its pod task.
fn on_pod(
    ctx: &Arc<Ctx>,
    pods: &mut HashMap<String, (watch::Sender<pod::Update>, JoinHandle<()>)>,
    p: Pod,
    stop: &watch::Receiver<bool>,
) {
    let Some(uid) = p.metadata.uid.clone() else {
        return;
    };
    let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
    match node.as_deref() {
        None | Some("") => {
            let gated = p
                .spec
                .as_ref()
                .and_then(|s| s.scheduling_gates.as_ref())
                .is_some_and(|g| !g.is_empty());
            if !gated && !pod::is_deleting(&p) && !pod::is_terminal(&p) {
                tokio::spawn(bind(ctx.clone(), p));
            }
        }
        Some(n) if n == ctx.cfg.node_name => {
            if let Some((tx, task)) = pods.get(&uid)
                && !task.is_finished()
            {
                tx.send_replace(pod::Update::Pod(Box::new(p)));
                return;
            }
            // A new pod, or one whose task finished (finalized) but which still exists: a fresh
            // task finalizes it again or idles until it is deleted.
            let (tx, rx) = watch::channel(pod::Update::Pod(Box::new(p.clone())));
            let task = tokio::spawn(pod::run(ctx.clone(), p, rx, stop.clone()));
            pods.insert(uid, (tx, task));
        }
        Some(_) => {}
    }
}

/// How long a pending pod's binding is retried. The real scheduler never gives up on a pod; this
/// bound only has to outlast an API server outage (the chaos scenario restarts kube-apiserver for
/// about 25 s, and a pod created just before that used to stay Pending forever after 5 quick
/// tries, with the controller waiting on its Job).
const BIND_RETRY_BOUND: Duration = Duration::from_secs(120);

/// Binds a pending pod to this node, retrying transient errors (capped exponential backoff) for
/// up to [`BIND_RETRY_BOUND`].
async fn bind(ctx: Arc<Ctx>, p: Pod) {
    let ns = p.metadata.namespace.clone().unwrap_or_default();
    let name = p.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": { "name": name, "namespace": ns, "uid": p.metadata.uid },
        "target": { "apiVersion": "v1", "kind": "Node", "name": ctx.cfg.node_name },
    });
    let start = std::time::Instant::now();
    for attempt in 0u32.. {
        match api
            .create_subresource::<_, serde_json::Value>(
                "binding",
                &name,
                &PostParams::default(),
                &binding,
            )
            .await
        {
            Ok(_) => {
                debug!(pod = %format!("{ns}/{name}"), "bound");
                return;
            }
            // Already bound (a second event for the same pod) or already gone.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => return,
            Err(e) => {
                let pause = Duration::from_millis(200 << attempt.min(5));
                if start.elapsed() + pause > BIND_RETRY_BOUND {
                    warn!(pod = %format!("{ns}/{name}"), error = %e, attempt, "binding pod: giving up");
                    return;
                }
                warn!(pod = %format!("{ns}/{name}"), error = %e, attempt, "binding pod; retrying");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn node_status(ctx: &Ctx) -> serde_json::Value {
    let now = serde_json::to_value(Time(Timestamp::now())).unwrap_or_default();
    let resources = json!({
        "cpu": env::NODE_CPU,
        "memory": env::NODE_MEMORY,
        "ephemeral-storage": env::NODE_EPHEMERAL_STORAGE,
        "pods": env::NODE_PODS,
    });
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": type_, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        })
    };
    json!({
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubevigil process kubelet is posting ready status"),
            ],
            "addresses": [
                { "type": "InternalIP", "address": env::LOOPBACK },
                { "type": "Hostname", "address": ctx.cfg.node_name },
            ],
            "nodeInfo": {
                "architecture": arch(),
                "operatingSystem": "linux",
                "osImage": "kubevigil local processes",
                "kernelVersion": "",
                "kubeletVersion": "v1.35.4",
                "kubeProxyVersion": "",
                "containerRuntimeVersion": "local://0.1.0",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        }
    })
}

async fn register_node(ctx: &Ctx) -> Result<(), Error> {
    let name = ctx.cfg.node_name.clone();
    let err = |source| Error::RegisterNode {
        node: name.clone(),
        source,
    };
    let api: Api<Node> = Api::all(ctx.client.clone());
    let labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname", name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", arch()),
        ("node.kubernetes.io/instance-type", "kubevigil-local"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(err(e)),
    }
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(node_status(ctx)),
    )
    .await
    .map_err(err)?;
    renew_lease(ctx).await.map_err(err)?;
    Ok(())
}

async fn renew_lease(ctx: &Ctx) -> Result<(), kube::Error> {
    let name = &ctx.cfg.node_name;
    let node: Api<Node> = Api::all(ctx.client.clone());
    let uid = node.get(name).await?.metadata.uid;
    let api: Api<Lease> = Api::namespaced(ctx.client.clone(), "kube-node-lease");
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": "kube-node-lease",
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "Node", "name": name, "uid": uid,
            }],
        },
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": 40,
            "renewTime": serde_json::to_value(MicroTime(Timestamp::now())).unwrap_or_default(),
        },
    });
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(lease),
    )
    .await?;
    Ok(())
}

async fn heartbeat_loop(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let api: Api<Node> = Api::all(ctx.client.clone());
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(HEARTBEAT) => {}
        }
        let patched = api
            .patch_status(
                &ctx.cfg.node_name,
                &PatchParams::default(),
                &Patch::Merge(node_status(&ctx)),
            )
            .await;
        if let Err(e) = patched {
            warn!(error = %e, "node heartbeat");
            // The node may have been deleted; register it again.
            if let Err(e) = register_node(&ctx).await {
                warn!(error = %e, "re-registering the node");
            }
        }
        if let Err(e) = renew_lease(&ctx).await {
            warn!(error = %e, "renewing the node lease");
        }
    }
}

/// The local log of pod `namespace/name` (every container, stdout and stderr interleaved), from
/// the newest pod directory with that name. Each container's log is preceded by a
/// `==> <container> <==` line when the pod has more than one.
pub fn pod_log(state: &StateDir, namespace: &str, name: &str) -> Result<String, Error> {
    let pods = state.pods();
    let prefix = format!("{namespace}_{name}_");
    let newest = std::fs::read_dir(&pods)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok());
    let Some(dir) = newest else {
        return Err(Error::NoPodLog {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            dir: pods,
        });
    };
    read_logs(&dir.path())
}

fn read_logs(dir: &Path) -> Result<String, Error> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| Error::ReadLog {
            path: dir.to_path_buf(),
            source,
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    let many = logs.len() > 1;
    let mut out = String::new();
    for path in logs {
        let text = std::fs::read(&path).map_err(|source| Error::ReadLog {
            path: path.clone(),
            source,
        })?;
        if many {
            let container = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push_str(&format!("==> {container} <==\n"));
        }
        out.push_str(&String::from_utf8_lossy(&text));
    }
    Ok(out)
}
