//! The local real cluster: etcd, kube-apiserver, kube-controller-manager and kube-scheduler, and a
//! real node — containerd and runc running kubevigil's own images, the CNI bridge, kubelet and
//! kube-proxy ([`crate::node`]). The Kubernetes components come from one Go multi-call binary
//! (`kind-tests/controlplane/`); each runs as its own background process.
//!
//! Everything lives in one state directory (`${KUBEVIGIL_CLUSTER_DIR:-$HOME/.cache/kubevigil/cluster}`):
//!
//! | path | what |
//! | --- | --- |
//! | `kubeconfig` | admin kubeconfig (client certificate, `O=system:masters`) |
//! | `cluster.json` | ports and the PIDs of the four processes, read by `down` and `status` |
//! | `lock` | `flock`ed by `up` and `down`, so two test binaries never boot two clusters |
//! | `logs/<process>.log` | stdout and stderr of each process |
//! | `pki/` | the CA, certificates and keys ([`crate::certs`]) |
//! | `etcd/` | etcd's data (removed by `down`) |
//! | `node/` | the node: containerd, CNI, kubelet, kube-proxy ([`crate::node`]) |
//!
//! The control plane's ports are on 127.0.0.1 and picked free at `up`; pods reach the API server
//! on the bridge address (see [`crate::node`]). One node runs on a machine at a time (the bridge,
//! kube-proxy's chains and the cgroup root are machine-wide): `up` refuses to boot a second
//! cluster while another state directory's node runs.

use std::fmt;
use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::certs;
use crate::node::{self, NodeDirs, NodeFiles, NodePorts, host, images};
use crate::procs;

/// Name of the Node that the kubelet registers.
pub const NODE_NAME: &str = "kubevigil-local";
/// Which state directory's node runs on this machine (written by `up`, removed by `down`).
pub const NODE_MARKER: &str = "/run/kubevigil-local-node";
/// Environment variable naming the state directory.
pub const STATE_DIR_ENV: &str = "KUBEVIGIL_CLUSTER_DIR";
/// Environment variable naming a prebuilt `controlplane` binary (skips `build.sh`).
pub const CONTROLPLANE_ENV: &str = "KUBEVIGIL_CONTROLPLANE_BIN";

/// How long `up` waits for etcd to accept connections.
const ETCD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `up` waits for kube-apiserver's `/readyz`.
const APISERVER_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `up` waits for the controllers and the kubelet's Node.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Grace period for each control-plane process at `down` before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(20);
/// How long `down` waits for the kubelet to stop every pod (containers, sandboxes, networks).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(90);
/// The processes of a booted cluster, in start order.
const PROCESSES: &[&str] = &[
    "etcd",
    "apiserver",
    "forward",
    "controller-manager",
    "scheduler",
    "containerd",
    "kubelet",
    "proxy",
];

/// The controllers kube-controller-manager runs (names as the 1.35 binary spells them).
pub const CONTROLLERS: &[&str] = &[
    "job-controller",
    "cronjob-controller",
    "ttl-after-finished-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "namespace-controller",
    "root-ca-certificate-publisher-controller",
    "deployment-controller",
    "replicaset-controller",
    "replicationcontroller-controller",
    "statefulset-controller",
    "daemonset-controller",
    "clusterrole-aggregation-controller",
    "endpoints-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    // Removes the kubelet's `not-ready` taint once the node is Ready (no taint-eviction
    // controller runs, so nothing is ever evicted), and collects orphaned pods.
    "node-lifecycle-controller",
    "pod-garbage-collector-controller",
];

/// Errors of the local control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neither `KUBEVIGIL_CLUSTER_DIR` nor `HOME` is set.
    #[error("cannot choose a state directory: set {STATE_DIR_ENV} or HOME")]
    NoStateDir,
    /// A file or directory operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Generating the PKI failed.
    #[error("generating the cluster PKI: {0}")]
    Pki(#[from] certs::Error),
    /// `kind-tests/controlplane/build.sh` failed or printed no path.
    #[error("building the control-plane binary with `{command}`: {detail}")]
    BuildControlPlane {
        /// The command that was run.
        command: String,
        /// Exit status, stderr or what was missing.
        detail: String,
    },
    /// No free loopback port could be found.
    #[error("picking a free port on 127.0.0.1: {0}")]
    NoFreePort(std::io::Error),
    /// A process could not be started.
    #[error("starting {name} ({program}): {source}")]
    Spawn {
        /// Which component.
        name: &'static str,
        /// The program.
        program: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A process exited while `up` waited for it.
    #[error("{name} exited with {status} during startup; last lines of {log}:\n{tail}")]
    Exited {
        /// Which component.
        name: &'static str,
        /// Its exit status.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// Something did not become ready in time.
    #[error("timed out after {waited:?} waiting for {what}; last observation: {last}")]
    NotReady {
        /// What was awaited.
        what: &'static str,
        /// How long.
        waited: Duration,
        /// The last error or state seen.
        last: String,
    },
    /// The kubeconfig could not be loaded.
    #[error("loading kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The kubeconfig file.
        path: PathBuf,
        /// The error.
        source: kube::config::KubeconfigError,
    },
    /// A kube client could not be built.
    #[error("building a client for {path}: {source}")]
    Client {
        /// The kubeconfig file.
        path: PathBuf,
        /// The error.
        source: kube::Error,
    },
    /// `cluster.json` is unreadable.
    #[error("parsing the state file {path}: {source}")]
    StateFile {
        /// The state file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// A process survived SIGKILL.
    #[error("{name} (pid {pid}) is still running after SIGKILL")]
    Stuck {
        /// Which process.
        name: String,
        /// Its PID.
        pid: u32,
    },
    /// A recorded process is needed but the state file does not name it (or no cluster is up).
    #[error("no running {name} is recorded in {path}: {detail}")]
    NotRecorded {
        /// Which component.
        name: &'static str,
        /// The state file.
        path: PathBuf,
        /// What was found instead.
        detail: String,
    },
    /// Another state directory's node runs on this machine.
    #[error(
        "another local cluster's node runs on this machine ({other}); stop it first \
         (KUBEVIGIL_CLUSTER_DIR={other} bash scripts/cluster.sh down)"
    )]
    OtherNode {
        /// Its state directory.
        other: String,
    },
    /// Preparing or restoring the host (bridge, routes, iptables, cgroups) failed.
    #[error("preparing the host for the node: {0}")]
    Host(String),
    /// Building or importing kubevigil's images failed.
    #[error(transparent)]
    Images(#[from] images::Error),
    /// `down` stopped everything but the host is not as it was.
    #[error("the cluster stopped, but it left behind:\n  {}", .0.join("\n  "))]
    Leftovers(Vec<String>),
    /// A port still accepts connections after its process stopped.
    #[error("port 127.0.0.1:{port} of {name} still accepts connections after stopping it")]
    PortStillOpen {
        /// Which component.
        name: &'static str,
        /// The port.
        port: u16,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The repository root (where `scripts/` and `kind-tests/` are), as of compile time.
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The state directory and the files in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// A state directory at `root` (made absolute).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let root = std::path::absolute(&root).unwrap_or(root);
        Self { root }
    }

    /// `${KUBEVIGIL_CLUSTER_DIR:-$HOME/.cache/kubevigil/cluster}`.
    pub fn from_env() -> Result<Self, Error> {
        if let Some(dir) = std::env::var_os(STATE_DIR_ENV).filter(|d| !d.is_empty()) {
            return Ok(Self::new(dir));
        }
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .ok_or(Error::NoStateDir)?;
        Ok(Self::new(
            PathBuf::from(home).join(".cache/kubevigil/cluster"),
        ))
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.root.join("kubeconfig")
    }
    /// The PKI directory.
    pub fn pki(&self) -> PathBuf {
        self.root.join("pki")
    }
    /// The directory of process logs.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// The log file of one process.
    pub fn log(&self, name: &str) -> PathBuf {
        self.logs().join(format!("{name}.log"))
    }
    /// The node's directories.
    pub fn node(&self) -> NodeDirs {
        NodeDirs::new(&self.root)
    }
    /// etcd's data directory.
    pub fn etcd_data(&self) -> PathBuf {
        self.root.join("etcd")
    }
    /// `cluster.json`: ports and PIDs.
    pub fn state_file(&self) -> PathBuf {
        self.root.join("cluster.json")
    }
    /// The lock file.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("lock")
    }
}

/// One background process of the cluster.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessRecord {
    /// One of [`PROCESSES`].
    pub name: String,
    /// Its PID (also its process group).
    pub pid: u32,
    /// A string its command line contains, checked before signalling (guards against PID reuse).
    pub marker: String,
    /// The program it runs (absent in state files written before restarts were supported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<PathBuf>,
    /// Its arguments, so that it can be restarted exactly as it was started
    /// ([`restart_apiserver`]); empty in older state files, where `/proc/<pid>/cmdline` is read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

/// What `up` records in `cluster.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterState {
    /// kube-apiserver's HTTPS port on 127.0.0.1.
    pub apiserver_port: u16,
    /// etcd's client port.
    pub etcd_port: u16,
    /// etcd's peer port.
    pub etcd_peer_port: u16,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// The node's ports.
    #[serde(default)]
    pub node_ports: NodePorts,
    /// The images imported into the node.
    #[serde(default)]
    pub images: Vec<images::ImageArchive>,
    /// The processes, in start order.
    pub processes: Vec<ProcessRecord>,
}

impl ClusterState {
    fn ports(&self) -> [(&'static str, u16); 3] {
        [
            ("apiserver", self.apiserver_port),
            ("etcd", self.etcd_port),
            ("etcd peer", self.etcd_peer_port),
        ]
    }
}

fn read_state(dir: &StateDir) -> Result<Option<ClusterState>, Error> {
    let path = dir.state_file();
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| Error::StateFile { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("reading", &path)(e)),
    }
}

fn write_state(dir: &StateDir, state: &ClusterState) -> Result<(), Error> {
    let path = dir.state_file();
    let json = serde_json::to_vec_pretty(state).map_err(|source| Error::StateFile {
        path: path.clone(),
        source,
    })?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json).map_err(io_err("writing", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err("renaming", &path))
}

/// An exclusive `flock` on the state directory, held by `up` and `down`.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Blocks (without blocking the runtime) until the lock is ours.
    pub async fn acquire(dir: &StateDir) -> Result<Self, Error> {
        std::fs::create_dir_all(dir.root()).map_err(io_err("creating", dir.root()))?;
        let path = dir.lock_file();
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("opening", &path))?;
        let locked = tokio::task::spawn_blocking(move || file.lock().map(|()| file)).await;
        match locked {
            Ok(Ok(file)) => Ok(Self { _file: file }),
            Ok(Err(e)) => Err(io_err("locking", &path)(e)),
            Err(join) => Err(io_err("locking", &path)(std::io::Error::other(join))),
        }
    }
}

/// A kube client for `kubeconfig` (its current context).
pub async fn client_for(kubeconfig: &Path) -> Result<Client, Error> {
    let kc = Kubeconfig::read_from(kubeconfig).map_err(|source| Error::Kubeconfig {
        path: kubeconfig.to_path_buf(),
        source,
    })?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|source| Error::Kubeconfig {
            path: kubeconfig.to_path_buf(),
            source,
        })?;
    Client::try_from(config).map_err(|source| Error::Client {
        path: kubeconfig.to_path_buf(),
        source,
    })
}

/// The `controlplane` binary: `$KUBEVIGIL_CONTROLPLANE_BIN`, else whatever
/// `kind-tests/controlplane/build.sh` prints (it builds on a cache miss, which takes minutes).
pub async fn controlplane_binary() -> Result<PathBuf, Error> {
    if let Some(bin) = std::env::var_os(CONTROLPLANE_ENV).filter(|b| !b.is_empty()) {
        return Ok(PathBuf::from(bin));
    }
    let script = repo_root().join("kind-tests/controlplane/build.sh");
    let command = format!("bash {}", script.display());
    info!(%command, "locating the control-plane binary (builds it on a cache miss)");
    let output = tokio::process::Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await
        .map_err(|e| Error::BuildControlPlane {
            command: command.clone(),
            detail: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(Error::BuildControlPlane {
            command,
            detail: format!("{} (its stderr is above)", output.status),
        });
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let path = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .ok_or_else(|| Error::BuildControlPlane {
            command: command.clone(),
            detail: format!("it printed no existing binary path (stdout: {stdout:?})"),
        })?;
    Ok(path)
}

/// The environment variable with extra kube-apiserver flags (whitespace separated), read when
/// the cluster boots.
pub const APISERVER_EXTRA_ARGS_ENV: &str = "KUBEVIGIL_APISERVER_EXTRA_ARGS";

/// The extra kube-apiserver flags from [`APISERVER_EXTRA_ARGS_ENV`].
pub fn apiserver_extra_args() -> Vec<String> {
    std::env::var(APISERVER_EXTRA_ARGS_ENV)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Options of [`up`].
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The state directory.
    pub state: StateDir,
    /// The `controlplane` binary; `None` runs [`controlplane_binary`].
    pub controlplane: Option<PathBuf>,
    /// The `local-cluster` binary, started as `local-cluster forward ...`.
    pub local_cluster_exe: PathBuf,
}

/// Boots the cluster (or reuses it when it is already up and ready) and returns the kubeconfig
/// path. Builds kubevigil's images (cached) and imports them into the node either way, so that a
/// reused cluster runs the current code. Holds the state lock throughout.
pub async fn up(opts: &UpOptions) -> Result<PathBuf, Error> {
    let dir = &opts.state;
    let _lock = StateLock::acquire(dir).await?;
    claim_node(dir)?;
    let archives = images::build(&repo_root(), images::NODE_IMAGES).await?;
    if let Some(mut state) = read_state(dir)? {
        match check_up(&state).await {
            Ok(()) => {
                info!(kubeconfig = %state.kubeconfig.display(), "cluster is already up; reusing it");
                images::import(&dir.node(), &archives)?;
                state.images = archives;
                write_state(dir, &state)?;
                return Ok(state.kubeconfig);
            }
            Err(why) => {
                warn!(%why, "a previous cluster is recorded but not healthy; stopping it");
                stop(dir, &state).await?;
            }
        }
    } else {
        // No record, but a crashed run may have left a node behind: clean up before booting.
        stop(dir, &ClusterState::default()).await?;
    }
    fresh_dirs(dir)?;
    let controlplane = match &opts.controlplane {
        Some(bin) => bin.clone(),
        None => controlplane_binary().await?,
    };
    info!(controlplane = %controlplane.display(), state = %dir.root().display(), "booting the local cluster");
    let pki = certs::generate(&dir.pki(), NODE_NAME)?;
    let port = || procs::free_port().map_err(Error::NoFreePort);
    let mut boot = Boot {
        dir,
        state: ClusterState {
            apiserver_port: port()?,
            etcd_port: port()?,
            etcd_peer_port: port()?,
            kubeconfig: dir.kubeconfig(),
            node_ports: NodePorts {
                kubelet: port()?,
                kubelet_healthz: port()?,
                proxy_healthz: port()?,
                proxy_metrics: port()?,
            },
            images: archives,
            processes: Vec::new(),
        },
        children: Vec::new(),
    };
    match boot.run(&controlplane, &pki, opts).await {
        Ok(()) => Ok(boot.state.kubeconfig),
        Err(e) => {
            warn!(error = %e, "boot failed; stopping what was started");
            if let Err(stop_err) = stop(dir, &boot.state).await {
                warn!(error = %stop_err, "stopping after a failed boot");
            }
            Err(e)
        }
    }
}

/// Records that this state directory's node runs on the machine, unless another one does.
fn claim_node(dir: &StateDir) -> Result<(), Error> {
    let me = dir.root().display().to_string();
    if let Ok(other) = std::fs::read_to_string(NODE_MARKER) {
        let other = other.trim().to_owned();
        if other != me && !other.is_empty() {
            let other_dir = StateDir::new(&other);
            let alive = read_state(&other_dir).ok().flatten().is_some_and(|s| {
                s.processes
                    .iter()
                    .any(|p| procs::is_alive_with(p.pid, &p.marker))
            });
            if alive {
                return Err(Error::OtherNode { other });
            }
        }
    }
    std::fs::write(NODE_MARKER, format!("{me}\n"))
        .map_err(io_err("writing", Path::new(NODE_MARKER)))
}

fn fresh_dirs(dir: &StateDir) -> Result<(), Error> {
    let node = dir.node();
    for sub in [
        dir.etcd_data(),
        dir.pki(),
        dir.logs(),
        node.root().to_path_buf(),
    ] {
        if sub.exists() {
            std::fs::remove_dir_all(&sub).map_err(io_err("removing", &sub))?;
        }
        std::fs::create_dir_all(&sub).map_err(io_err("creating", &sub))?;
    }
    for file in [dir.kubeconfig(), dir.state_file()] {
        if file.exists() {
            std::fs::remove_file(&file).map_err(io_err("removing", &file))?;
        }
    }
    use std::os::unix::fs::PermissionsExt as _;
    let etcd = dir.etcd_data();
    std::fs::set_permissions(&etcd, std::fs::Permissions::from_mode(0o700))
        .map_err(io_err("restricting", &etcd))
}

/// Writes the admin kubeconfig (certificate files referenced by absolute path).
fn write_kubeconfig(path: &Path, port: u16, pki: &certs::PkiPaths) -> Result<(), Error> {
    let q = |p: &Path| serde_json::Value::String(p.display().to_string()).to_string();
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kubevigil-local\n  cluster:\n    \
         server: https://127.0.0.1:{port}\n    certificate-authority: {ca}\nusers:\n- name: {user}\n  \
         user:\n    client-certificate: {cert}\n    client-key: {key}\ncontexts:\n- name: \
         kubevigil-local\n  context:\n    cluster: kubevigil-local\n    user: {user}\n    \
         namespace: default\ncurrent-context: kubevigil-local\n",
        ca = q(&pki.ca_cert),
        cert = q(&pki.admin_cert),
        key = q(&pki.admin_key),
        user = certs::ADMIN_USER,
    );
    std::fs::write(path, text).map_err(io_err("writing", path))
}

/// The last `lines` lines of a log file.
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Starts `program args` in its own process group, with stdout and stderr appended to the log of
/// `name` in the state directory.
fn spawn_logged(
    dir: &StateDir,
    name: &'static str,
    program: &Path,
    args: &[String],
) -> Result<Child, Error> {
    use std::os::unix::process::CommandExt as _;
    let log_path = dir.log(name);
    let log = File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io_err("opening", &log_path))?;
    let log2 = log.try_clone().map_err(io_err("duplicating", &log_path))?;
    info!(name, log = %log_path.display(), "starting");
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .current_dir(dir.root())
        // Its own process group: a Ctrl-C on the terminal of `up` does not reach it, and
        // `down` can signal the whole group.
        .process_group(0)
        .spawn()
        .map_err(|source| Error::Spawn {
            name,
            program: program.to_path_buf(),
            source,
        })
}

struct Boot<'a> {
    dir: &'a StateDir,
    state: ClusterState,
    children: Vec<(&'static str, Child)>,
}

impl Boot<'_> {
    async fn run(
        &mut self,
        controlplane: &Path,
        pki: &certs::PkiPaths,
        opts: &UpOptions,
    ) -> Result<(), Error> {
        let st = self.state.clone();
        let node_dirs = self.dir.node();
        // The host before the node changes it: `down` restores it, the clean-stop check compares.
        let snapshot = host::HostSnapshot::take();
        let snapshot_json =
            serde_json::to_vec_pretty(&snapshot).map_err(|source| Error::StateFile {
                path: node_dirs.host_snapshot(),
                source,
            })?;
        std::fs::write(node_dirs.host_snapshot(), snapshot_json)
            .map_err(io_err("writing", &node_dirs.host_snapshot()))?;
        host::setup_network().map_err(|e| Error::Host(e.to_string()))?;
        host::create_cgroup_root()
            .map_err(|e| Error::Host(format!("creating the pods' cgroup root: {e}")))?;

        let etcd_args = vec![
            "etcd".to_owned(),
            "--name=kubevigil-local".to_owned(),
            format!("--data-dir={}", self.dir.etcd_data().display()),
            format!("--listen-client-urls=http://127.0.0.1:{}", st.etcd_port),
            format!("--listen-peer-urls=http://127.0.0.1:{}", st.etcd_peer_port),
            "--unsafe-no-fsync".to_owned(),
            "--log-level=warn".to_owned(),
        ];
        self.spawn("etcd", controlplane, &etcd_args)?;
        let etcd_port = st.etcd_port;
        self.wait("etcd to accept connections", ETCD_TIMEOUT, || async move {
            Ok(procs::port_open(etcd_port))
        })
        .await?;

        write_kubeconfig(&st.kubeconfig, st.apiserver_port, pki)?;
        let p = |path: &Path| path.display().to_string();
        let mut apiserver_args = vec![
            "apiserver".to_owned(),
            format!("--etcd-servers=http://127.0.0.1:{}", st.etcd_port),
            "--bind-address=127.0.0.1".to_owned(),
            // Pods reach it here (through `forward`); the `kubernetes` Service's endpoint.
            format!("--advertise-address={}", node::net::BRIDGE_IP),
            format!("--secure-port={}", st.apiserver_port),
            format!("--cert-dir={}", p(&self.dir.pki())),
            format!("--tls-cert-file={}", p(&pki.serving_cert)),
            format!("--tls-private-key-file={}", p(&pki.serving_key)),
            format!("--client-ca-file={}", p(&pki.ca_cert)),
            format!("--kubelet-client-certificate={}", p(&pki.admin_cert)),
            format!("--kubelet-client-key={}", p(&pki.admin_key)),
            format!("--kubelet-certificate-authority={}", p(&pki.ca_cert)),
            "--kubelet-preferred-address-types=InternalIP".to_owned(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
            format!("--service-account-key-file={}", p(&pki.sa_pub)),
            format!("--service-account-signing-key-file={}", p(&pki.sa_key)),
            "--authorization-mode=Node,RBAC".to_owned(),
            format!("--service-cluster-ip-range={}", node::net::SERVICE_RANGE),
            "--allow-privileged=true".to_owned(),
            // Fewer moving parts on a 2-core machine; nothing here needs APF.
            "--enable-priority-and-fairness=false".to_owned(),
            "--profiling=false".to_owned(),
        ];
        // Extra flags for fault scenarios, e.g. `--max-requests-inflight=2` to make the API
        // server answer 429 under load (issue 8's API-pressure scenario); later flags win.
        apiserver_args.extend(apiserver_extra_args());
        self.spawn("apiserver", controlplane, &apiserver_args)?;
        let forward_args = vec![
            format!("--state-dir={}", p(self.dir.root())),
            "forward".to_owned(),
            format!("--listen={}:{}", node::net::BRIDGE_IP, st.apiserver_port),
            format!("--to=127.0.0.1:{}", st.apiserver_port),
        ];
        self.spawn("forward", &opts.local_cluster_exe, &forward_args)?;
        let kubeconfig = st.kubeconfig.clone();
        let client = client_for(&kubeconfig).await?;
        let c = client.clone();
        self.wait("kube-apiserver /readyz", APISERVER_TIMEOUT, || {
            let c = c.clone();
            async move { readyz(&c).await.map(|()| true) }
        })
        .await?;

        let cm_args = vec![
            "controller-manager".to_owned(),
            format!("--kubeconfig={}", p(&kubeconfig)),
            "--bind-address=127.0.0.1".to_owned(),
            "--secure-port=0".to_owned(),
            "--leader-elect=false".to_owned(),
            format!("--controllers={}", CONTROLLERS.join(",")),
            "--use-service-account-credentials=true".to_owned(),
            format!("--service-account-private-key-file={}", p(&pki.sa_key)),
            format!("--root-ca-file={}", p(&pki.ca_cert)),
            "--concurrent-gc-syncs=5".to_owned(),
            // Its client's default limit (20 requests/s) makes 10,000 new Deployments a 20-minute
            // ReplicaSet backlog (the benchmark's 10k phase); large clusters raise it likewise.
            "--kube-api-qps=100".to_owned(),
            "--kube-api-burst=200".to_owned(),
        ];
        self.spawn("controller-manager", controlplane, &cm_args)?;

        let sandbox = st
            .images
            .iter()
            .find(|i| i.name == "pause")
            .map(|i| i.reference.clone())
            .ok_or_else(|| Error::Host("no pause image was built".to_owned()))?;
        let files = NodeFiles {
            dirs: &node_dirs,
            node_name: NODE_NAME,
            sandbox_image: &sandbox,
            apiserver_port: st.apiserver_port,
            ports: st.node_ports,
            pki,
        };
        files.write_all().map_err(|(path, source)| Error::Io {
            action: "writing",
            path,
            source,
        })?;
        self.spawn("scheduler", controlplane, &files.scheduler_args())?;

        self.spawn(
            "containerd",
            Path::new("containerd"),
            &files.containerd_args(),
        )?;
        let dirs = node_dirs.clone();
        self.wait("containerd to serve its socket", ETCD_TIMEOUT, || {
            let dirs = dirs.clone();
            async move { Ok(node::ctr(&dirs, &["version"]).is_ok()) }
        })
        .await?;
        images::import(&node_dirs, &st.images)?;

        self.spawn("kubelet", controlplane, &files.kubelet_args())?;
        self.spawn("proxy", controlplane, &files.proxy_args())?;

        let c = client.clone();
        self.wait(
            "the serviceaccount controller to create default/default",
            SETTLE_TIMEOUT,
            || {
                let api: Api<ServiceAccount> = Api::namespaced(c.clone(), "default");
                async move {
                    api.get_opt("default")
                        .await
                        .map(|sa| sa.is_some())
                        .map_err(|e| e.to_string())
                }
            },
        )
        .await?;
        let c = client.clone();
        self.wait("the kubelet's Node to be Ready", SETTLE_TIMEOUT, || {
            let api: Api<Node> = Api::all(c.clone());
            async move {
                let node = api.get_opt(NODE_NAME).await.map_err(|e| e.to_string())?;
                Ok(node.as_ref().is_some_and(node_ready))
            }
        })
        .await?;
        let healthz = st.node_ports.proxy_healthz;
        self.wait(
            "kube-proxy's first sync (healthz)",
            SETTLE_TIMEOUT,
            || async move { Ok(procs::port_open(healthz)) },
        )
        .await?;
        info!(kubeconfig = %kubeconfig.display(), apiserver = %format!("https://127.0.0.1:{}", st.apiserver_port), "cluster is up");
        Ok(())
    }

    fn spawn(&mut self, name: &'static str, program: &Path, args: &[String]) -> Result<(), Error> {
        let child = spawn_logged(self.dir, name, program, args)?;
        self.state.processes.push(ProcessRecord {
            name: name.to_owned(),
            pid: child.id(),
            marker: program.display().to_string(),
            program: Some(program.to_path_buf()),
            args: args.to_vec(),
        });
        write_state(self.dir, &self.state)?;
        self.children.push((name, child));
        Ok(())
    }

    /// Polls `check` until it says true, failing early if any started process exits.
    async fn wait<F, Fut>(
        &mut self,
        what: &'static str,
        timeout: Duration,
        mut check: F,
    ) -> Result<(), Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<bool, String>>,
    {
        let start = Instant::now();
        let mut last;
        loop {
            for (name, child) in &mut self.children {
                if let Ok(Some(status)) = child.try_wait() {
                    let log = self.dir.log(name);
                    return Err(Error::Exited {
                        name,
                        status: status.to_string(),
                        tail: log_tail(&log, 30),
                        log,
                    });
                }
            }
            match tokio::time::timeout(Duration::from_secs(10), check()).await {
                Ok(Ok(true)) => return Ok(()),
                Ok(Ok(false)) => last = "not yet".to_owned(),
                Ok(Err(e)) => last = e,
                Err(_) => last = "the check itself timed out after 10s".to_owned(),
            }
            if start.elapsed() >= timeout {
                return Err(Error::NotReady {
                    what,
                    waited: timeout,
                    last,
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Whether a Node's Ready condition is True.
pub fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `GET /readyz`: `Ok` when the API server says `ok`, else its answer.
pub async fn readyz(client: &Client) -> Result<(), String> {
    let request = http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    match client.request_text(request).await {
        Ok(body) if body.trim() == "ok" => Ok(()),
        Ok(body) => Err(format!("/readyz answered {body:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether every recorded process is alive and the API server is ready.
async fn check_up(state: &ClusterState) -> Result<(), String> {
    for p in &state.processes {
        if !procs::is_alive_with(p.pid, &p.marker) {
            return Err(format!("{} (pid {}) is not running", p.name, p.pid));
        }
    }
    if state.processes.len() < PROCESSES.len() {
        return Err("the cluster did not finish booting".to_owned());
    }
    let client = client_for(&state.kubeconfig)
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(10), readyz(&client))
        .await
        .map_err(|_| "/readyz did not answer within 10s".to_owned())?
}

/// What `down` did.
#[derive(Debug, Default)]
pub struct DownReport {
    /// Each process stopped, and how.
    pub stopped: Vec<(String, u32, procs::Ended)>,
    /// Pods the kubelet stopped before it was stopped itself.
    pub drained_pods: usize,
    /// Processes killed after their component stopped (shims, containers of a dead kubelet).
    pub stray_processes: usize,
}

impl fmt::Display for DownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.stopped.is_empty() {
            writeln!(f, "no cluster process was running")?;
        }
        for (name, pid, ended) in &self.stopped {
            writeln!(f, "{name} (pid {pid}): {ended:?}")?;
        }
        write!(
            f,
            "pods stopped by the kubelet: {}; stray processes killed: {}",
            self.drained_pods, self.stray_processes
        )
    }
}

/// Stops everything `up` started and undoes its host changes (see [`stop`]).
pub async fn down(dir: &StateDir) -> Result<DownReport, Error> {
    let _lock = StateLock::acquire(dir).await?;
    let state = read_state(dir)?.unwrap_or_default();
    stop(dir, &state).await
}

/// Stops the recorded processes called `name`.
async fn stop_named(
    state: &ClusterState,
    name: &str,
    report: &mut DownReport,
) -> Result<(), Error> {
    for p in state.processes.iter().filter(|p| p.name == name) {
        if !procs::is_alive_with(p.pid, &p.marker) {
            continue;
        }
        info!(name, pid = p.pid, "stopping");
        let ended = procs::terminate(p.pid, true, STOP_GRACE).await;
        report.stopped.push((p.name.clone(), p.pid, ended));
        if ended == procs::Ended::Stuck {
            return Err(Error::Stuck {
                name: p.name.clone(),
                pid: p.pid,
            });
        }
        if !procs::wait_reaped(p.pid, Duration::from_secs(10)).await {
            warn!(
                name,
                pid = p.pid,
                "stopped, but not yet reaped by its parent"
            );
        }
    }
    Ok(())
}

/// Has the kubelet stop every pod (containers, sandboxes, their networks), the way a drained node
/// does: no controller recreates them (controller-manager and scheduler stopped first), each pod
/// is deleted without grace, and the kubelet tears it down. Returns how many pods there were.
async fn drain(state: &ClusterState, dirs: &NodeDirs) -> usize {
    let Ok(client) = client_for(&state.kubeconfig).await else {
        return 0;
    };
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::all(client.clone());
    let Ok(list) = pods.list(&Default::default()).await else {
        return 0;
    };
    let count = list.items.len();
    let delete = kube::api::DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    for pod in &list.items {
        let (Some(ns), Some(name)) = (
            pod.metadata.namespace.as_deref(),
            pod.metadata.name.as_deref(),
        ) else {
            continue;
        };
        let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
        let _ = api.delete(name, &delete).await;
    }
    let start = Instant::now();
    loop {
        let tasks = node::running_tasks(dirs).map(|t| t.len()).unwrap_or(0);
        let netns = host::HostSnapshot::take()
            .netns
            .iter()
            .filter(|n| n.starts_with("cni-"))
            .count();
        if tasks == 0 && netns == 0 {
            break;
        }
        if start.elapsed() >= DRAIN_TIMEOUT {
            warn!(
                tasks,
                netns, "the kubelet did not stop every pod in time; cleaning up after it"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    count
}

/// Stops everything in reverse order and restores the host: controller-manager and scheduler;
/// the pods (drained through the kubelet); kubelet and kube-proxy (whose `--cleanup` removes its
/// rules); containerd, the API server, its forwarder and etcd; any shim or container process
/// left; mounts and network namespaces; then the bridge, routes, iptables chains, sysctls and
/// cgroups. Finally the clean-stop check: anything still there is an error.
async fn stop(dir: &StateDir, state: &ClusterState) -> Result<DownReport, Error> {
    let mut report = DownReport::default();
    let dirs = dir.node();
    for name in ["controller-manager", "scheduler"] {
        stop_named(state, name, &mut report).await?;
    }
    let kubelet_alive = state
        .processes
        .iter()
        .any(|p| p.name == "kubelet" && procs::is_alive_with(p.pid, &p.marker));
    if kubelet_alive {
        report.drained_pods = drain(state, &dirs).await;
    }
    for name in ["kubelet", "proxy"] {
        stop_named(state, name, &mut report).await?;
    }
    if let Some(proxy) = state.processes.iter().find(|p| p.name == "proxy")
        && let Some(program) = &proxy.program
    {
        let program = program.display().to_string();
        if let Err(e) = host::run(&program, &["proxy", "--cleanup"]) {
            warn!(error = %e, "kube-proxy --cleanup");
        }
    }
    for name in ["containerd", "apiserver", "forward", "etcd"] {
        stop_named(state, name, &mut report).await?;
    }
    for (name, port) in state.ports() {
        if port != 0 && !procs::wait_port_closed(port, Duration::from_secs(10)).await {
            return Err(Error::PortStillOpen { name, port });
        }
    }
    report.stray_processes = kill_node_processes(dir).await?;
    let mut failed = host::unmount_under(dir.root());
    let baseline = read_snapshot(&dirs);
    failed.extend(host::remove_new_netns(&baseline));
    failed.extend(host::teardown_network());
    failed.extend(host::restore_sysctls(&baseline.sysctls));
    failed.extend(host::remove_cgroups());
    for path in [dir.state_file()] {
        if path.exists() {
            std::fs::remove_file(&path).map_err(io_err("removing", &path))?;
        }
    }
    for sub in [
        dir.etcd_data(),
        dirs.containerd_root(),
        dirs.containerd_state(),
        dirs.kubelet_root(),
    ] {
        if sub.exists() && host::mounts_under(&sub).is_empty() {
            std::fs::remove_dir_all(&sub).map_err(io_err("removing", &sub))?;
        }
    }
    if std::fs::read_to_string(NODE_MARKER)
        .is_ok_and(|m| m.trim() == dir.root().display().to_string())
    {
        let _ = std::fs::remove_file(NODE_MARKER);
    }
    for f in &failed {
        warn!(what = %f, "could not undo");
    }
    let left = leftovers(dir);
    if left.is_empty() {
        Ok(report)
    } else {
        Err(Error::Leftovers(left))
    }
}

fn read_snapshot(dirs: &NodeDirs) -> host::HostSnapshot {
    std::fs::read(dirs.host_snapshot())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| host::HostSnapshot {
            // No snapshot: nothing to restore, and every current namespace and link is the host's.
            sysctls: Default::default(),
            ..host::HostSnapshot::take()
        })
}

/// Processes of this cluster that are still running: any whose command line names the state
/// directory (components, containerd's shims), and any in the pods' cgroups; never this process
/// or its ancestors (the `make` target or shell that runs `down` may name the directory too).
fn node_processes(dir: &StateDir) -> Vec<(u32, String)> {
    let needle = dir.root().display().to_string();
    let mine = procs::self_and_ancestors();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<(u32, String)> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| !mine.contains(pid) && procs::is_alive(*pid))
        .filter_map(|pid| {
            let cmd = procs::cmdline(pid)?;
            cmd.iter()
                .any(|a| a.contains(&needle))
                .then(|| (pid, cmd.join(" ")))
        })
        .collect();
    for pid in host::cgroup_processes() {
        if !mine.contains(&pid) && !found.iter().any(|(p, _)| *p == pid) {
            let cmd = procs::cmdline(pid).unwrap_or_default().join(" ");
            found.push((pid, cmd));
        }
    }
    found
}

/// Kills what [`node_processes`] finds (twice: a dying process may fork). Returns how many.
async fn kill_node_processes(dir: &StateDir) -> Result<usize, Error> {
    let mut count = 0;
    for _ in 0..2 {
        for (pid, cmd) in node_processes(dir) {
            count += 1;
            warn!(pid, %cmd, "killing a stray node process");
            if procs::terminate(pid, false, Duration::from_secs(5)).await == procs::Ended::Stuck {
                return Err(Error::Stuck { name: cmd, pid });
            }
            procs::wait_reaped(pid, Duration::from_secs(5)).await;
        }
    }
    Ok(count)
}

/// The clean-stop check: what this cluster left on the host (processes, mounts, network
/// namespaces and interfaces, routes, iptables chains, cgroups, changed sysctls), one line each.
pub fn leftovers(dir: &StateDir) -> Vec<String> {
    let baseline = read_snapshot(&dir.node());
    let processes: Vec<String> = node_processes(dir)
        .into_iter()
        .map(|(pid, cmd)| format!("{pid} {cmd}"))
        .collect();
    host::leftovers(&baseline, dir.root(), &processes)
}

/// The state of the local cluster as `status` reports it.
#[derive(Debug)]
pub struct Status {
    /// The state directory.
    pub dir: PathBuf,
    /// What `cluster.json` records, if anything.
    pub state: Option<ClusterState>,
    /// Each recorded process and whether it runs.
    pub processes: Vec<(ProcessRecord, bool)>,
    /// `Ok` when everything runs and `/readyz` is ok, else why not.
    pub health: Result<(), String>,
}

impl Status {
    /// Whether the cluster is up and ready.
    pub fn is_up(&self) -> bool {
        self.health.is_ok()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "state dir: {}", self.dir.display())?;
        let Some(state) = &self.state else {
            return write!(f, "cluster: down (no cluster.json)");
        };
        writeln!(f, "kubeconfig: {}", state.kubeconfig.display())?;
        writeln!(f, "apiserver: https://127.0.0.1:{}", state.apiserver_port)?;
        for (p, alive) in &self.processes {
            let word = if *alive { "running" } else { "NOT running" };
            writeln!(f, "{}: pid {} {word}", p.name, p.pid)?;
        }
        match &self.health {
            Ok(()) => write!(f, "cluster: up (readyz ok)"),
            Err(why) => write!(f, "cluster: unhealthy: {why}"),
        }
    }
}

/// Reports whether the cluster in `dir` is up.
pub async fn status(dir: &StateDir) -> Result<Status, Error> {
    let state = read_state(dir)?;
    let (processes, health) = match &state {
        None => (Vec::new(), Err("down".to_owned())),
        Some(state) => (
            state
                .processes
                .iter()
                .map(|p| (p.clone(), procs::is_alive_with(p.pid, &p.marker)))
                .collect(),
            check_up(state).await,
        ),
    };
    Ok(Status {
        dir: dir.root().to_path_buf(),
        state,
        processes,
        health,
    })
}

/// What [`restart_apiserver`] did.
#[derive(Debug, Clone)]
pub struct ApiserverRestart {
    /// PID of the stopped kube-apiserver.
    pub old_pid: u32,
    /// How it ended (SIGTERM within the grace period, or SIGKILL).
    pub stopped: procs::Ended,
    /// PID of the new kube-apiserver (recorded in `cluster.json`).
    pub new_pid: u32,
    /// From the stop signal to `/readyz` answering `ok` again.
    pub outage: Duration,
}

impl fmt::Display for ApiserverRestart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "kube-apiserver restarted: pid {} ({:?}) -> pid {}, ready again after {:.1}s",
            self.old_pid,
            self.stopped,
            self.new_pid,
            self.outage.as_secs_f64()
        )
    }
}

/// Restarts the kube-apiserver of the running local cluster in `dir`: SIGTERM (SIGKILL after
/// the grace period), wait until its port is closed, start it again with the same program and
/// arguments (same port, certificates and etcd), record the new PID in `cluster.json` (so that
/// `status` and `down` keep working), and wait for `/readyz`. Holds the state lock throughout, so
/// that an `up` meanwhile waits instead of taking the outage for a broken cluster.
pub async fn restart_apiserver(dir: &StateDir) -> Result<ApiserverRestart, Error> {
    const NAME: &str = "apiserver";
    let _lock = StateLock::acquire(dir).await?;
    let not_recorded = |detail: String| Error::NotRecorded {
        name: NAME,
        path: dir.state_file(),
        detail,
    };
    let mut state = read_state(dir)?.ok_or_else(|| not_recorded("no state file".to_owned()))?;
    let index = state
        .processes
        .iter()
        .position(|p| p.name == NAME)
        .ok_or_else(|| not_recorded("the cluster did not finish booting".to_owned()))?;
    let record = state.processes[index].clone();
    if !procs::is_alive_with(record.pid, &record.marker) {
        return Err(not_recorded(format!("pid {} is not running", record.pid)));
    }
    let (program, args) = match (&record.program, record.args.is_empty()) {
        (Some(program), false) => (program.clone(), record.args.clone()),
        // A state file of an older `up`: the running process's own command line.
        _ => {
            let mut cmdline = procs::cmdline(record.pid)
                .filter(|c| !c.is_empty())
                .ok_or_else(|| not_recorded(format!("pid {} has no command line", record.pid)))?;
            let program = PathBuf::from(cmdline.remove(0));
            (program, cmdline)
        }
    };
    info!(pid = record.pid, "stopping kube-apiserver for a restart");
    let start = Instant::now();
    let stopped = procs::terminate(record.pid, true, STOP_GRACE).await;
    if stopped == procs::Ended::Stuck {
        return Err(Error::Stuck {
            name: NAME.to_owned(),
            pid: record.pid,
        });
    }
    if !procs::wait_port_closed(state.apiserver_port, Duration::from_secs(10)).await {
        return Err(Error::PortStillOpen {
            name: NAME,
            port: state.apiserver_port,
        });
    }
    let mut child = spawn_logged(dir, NAME, &program, &args)?;
    let new_pid = child.id();
    state.processes[index] = ProcessRecord {
        name: NAME.to_owned(),
        pid: new_pid,
        marker: record.marker.clone(),
        program: Some(program),
        args,
    };
    write_state(dir, &state)?;
    let client = client_for(&state.kubeconfig).await?;
    let mut last;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = dir.log(NAME);
            return Err(Error::Exited {
                name: NAME,
                status: status.to_string(),
                tail: log_tail(&log, 30),
                log,
            });
        }
        match tokio::time::timeout(Duration::from_secs(10), readyz(&client)).await {
            Ok(Ok(())) => break,
            Ok(Err(e)) => last = e,
            Err(_) => last = "/readyz did not answer within 10s".to_owned(),
        }
        if start.elapsed() >= APISERVER_TIMEOUT {
            return Err(Error::NotReady {
                what: "the restarted kube-apiserver's /readyz",
                waited: APISERVER_TIMEOUT,
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let report = ApiserverRestart {
        old_pid: record.pid,
        stopped,
        new_pid,
        outage: start.elapsed(),
    };
    info!(%report, "kube-apiserver is back");
    Ok(report)
}
