//! One task per pod bound to this node: prepare volumes, run init containers in order, run the
//! containers with the pod's restart policy, report status, and on deletion stop the processes
//! (SIGTERM, grace period, SIGKILL) and finalize the pod.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::Ctx;
use super::env::{ObjectCache, container_env, expand};
use super::sandbox::SandboxSpec;
use super::status::{ContainerState, PodState, State, phase};
use super::volumes;
use crate::cluster::POD_MARKER_ENV;
use crate::procs;

/// What the kubelet's watch tells a pod task.
#[derive(Debug, Clone)]
pub(crate) enum Update {
    /// The latest version of the pod.
    Pod(Box<Pod>),
    /// The pod is gone from the API.
    Gone,
}

/// The pod's directory name: `<namespace>_<name>_<uid>` (neither part can contain `_`).
pub fn pod_dir_name(namespace: &str, name: &str, uid: &str) -> String {
    format!("{namespace}_{name}_{uid}")
}

/// Whether the pod's phase is Succeeded or Failed.
pub(crate) fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some(phase::SUCCEEDED | phase::FAILED)
    )
}

/// Whether the pod has a deletion timestamp.
pub(crate) fn is_deleting(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Program and arguments: with no `command`, the mapped binary is the entrypoint and `args`
/// follow; with a `command` whose first word names the mapped binary (`/scan-job`), that word is
/// replaced by the binary's path; any other command runs as written (from the host).
pub fn entrypoint(container: &Container, binary: &Path) -> (String, Vec<String>) {
    let args = container.args.clone().unwrap_or_default();
    match container.command.as_deref() {
        Some([first, rest @ ..]) => {
            let program = if Path::new(first).file_name() == binary.file_name() {
                binary.display().to_string()
            } else {
                first.clone()
            };
            (program, rest.iter().cloned().chain(args).collect())
        }
        _ => (binary.display().to_string(), args),
    }
}

/// How long a status report is retried while the API server cannot be reached.
const STATUS_RETRY_BOUND: Duration = Duration::from_secs(120);

/// Restart back-off: 1 s doubling per restart, at most 30 s.
pub fn backoff(restarts: i32) -> Duration {
    let exp = u32::try_from(restarts.clamp(0, 5)).unwrap_or(5);
    Duration::from_secs(1u64 << exp).min(Duration::from_secs(30))
}

/// How long a start is retried after a configuration error (missing ConfigMap key, ...).
const RETRY: Duration = Duration::from_secs(2);

struct Planned {
    container: Container,
    program: String,
    args: Vec<String>,
}

struct Exit {
    name: String,
    pid: u32,
    status: std::io::Result<ExitStatus>,
    at: Timestamp,
}

enum Wake {
    Updated,
    Deleting,
    Gone,
    Shutdown,
    Exit(Exit),
    Timer,
}

enum Flow {
    Terminal,
    Deleting,
    Gone,
    Shutdown,
}

/// Runs one pod until it is finalized, gone, or the kubelet shuts down.
pub(crate) async fn run(
    ctx: Arc<Ctx>,
    first: Pod,
    updates: watch::Receiver<Update>,
    shutdown: watch::Receiver<bool>,
) {
    let ns = first.metadata.namespace.clone().unwrap_or_default();
    let name = first.metadata.name.clone().unwrap_or_default();
    let uid = first.metadata.uid.clone().unwrap_or_default();
    let dir = ctx.cfg.state.pods().join(pod_dir_name(&ns, &name, &uid));
    let (exit_tx, exits) = mpsc::unbounded_channel();
    let spec = first.spec.clone().unwrap_or_default();
    let image_id = |c: &Container| {
        let image = c.image.clone().unwrap_or_default();
        let id = ctx
            .cfg
            .images
            .lookup(&image)
            .map(|p| format!("local://{}", p.display()))
            .unwrap_or_default();
        ContainerState::new(&c.name, &image, &id)
    };
    let state = PodState::new(
        spec.init_containers
            .iter()
            .flatten()
            .map(image_id)
            .collect(),
        spec.containers.iter().map(image_id).collect(),
    );
    let mut worker = Worker {
        api: Api::namespaced(ctx.client.clone(), &ns),
        restart_policy: spec.restart_policy.unwrap_or_else(|| "Always".to_owned()),
        ctx,
        pod: first,
        ns,
        name,
        uid,
        dir,
        updates,
        shutdown,
        state,
        exit_tx,
        exits,
        running: HashMap::new(),
        groups: Vec::new(),
        volumes: HashMap::new(),
        last_patch: None,
    };
    worker.run().await;
}

struct Worker {
    ctx: Arc<Ctx>,
    api: Api<Pod>,
    pod: Pod,
    ns: String,
    name: String,
    uid: String,
    dir: PathBuf,
    updates: watch::Receiver<Update>,
    shutdown: watch::Receiver<bool>,
    state: PodState,
    exit_tx: mpsc::UnboundedSender<Exit>,
    exits: mpsc::UnboundedReceiver<Exit>,
    /// Running containers: name → (pid, start time).
    running: HashMap<String, (u32, Timestamp)>,
    /// Every process group started, for the final sweep.
    groups: Vec<u32>,
    volumes: HashMap<String, PathBuf>,
    restart_policy: String,
    last_patch: Option<Value>,
}

impl Worker {
    async fn run(&mut self) {
        if is_terminal(&self.pod) {
            self.idle_terminal().await;
            return;
        }
        if is_deleting(&self.pod) {
            self.finalize().await;
            return;
        }
        if let Err(e) = std::fs::create_dir_all(self.dir.join("work"))
            .and_then(|()| std::fs::create_dir_all(self.dir.join("home")))
            .and_then(|()| std::fs::create_dir_all(self.dir.join("specs")))
        {
            warn!(pod = %self.key(), error = %e, "cannot create the pod directory");
        }
        info!(pod = %self.key(), "starting pod");
        match self.execute().await {
            Flow::Terminal => self.idle_terminal().await,
            Flow::Deleting => {
                let grace = self.grace();
                info!(pod = %self.key(), ?grace, "pod deleted; stopping its containers");
                self.terminate_all(grace).await;
                if !self.state.is_terminal() {
                    self.state.phase = self.state.terminal_phase();
                }
                self.patch().await;
                self.finalize().await;
            }
            Flow::Gone => {
                self.terminate_all(Duration::from_secs(2)).await;
                self.remove_volumes();
            }
            Flow::Shutdown => self.terminate_all(Duration::from_secs(5)).await,
        }
    }

    fn key(&self) -> String {
        format!("{}/{}", self.ns, self.name)
    }

    fn grace(&self) -> Duration {
        let secs = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30);
        Duration::from_secs(u64::try_from(secs).unwrap_or(0)).min(self.ctx.cfg.max_grace)
    }

    /// Waits for the next thing that matters, at most until `until`.
    async fn next(&mut self, until: Option<Instant>) -> Wake {
        if *self.shutdown.borrow() {
            return Wake::Shutdown;
        }
        let timer = async {
            match until {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = self.shutdown.changed() => Wake::Shutdown,
            changed = self.updates.changed() => {
                if changed.is_err() {
                    return Wake::Gone;
                }
                let update = self.updates.borrow_and_update().clone();
                match update {
                    Update::Gone => Wake::Gone,
                    Update::Pod(pod) => {
                        self.pod = *pod;
                        if is_deleting(&self.pod) { Wake::Deleting } else { Wake::Updated }
                    }
                }
            }
            Some(exit) = self.exits.recv() => Wake::Exit(exit),
            () = timer => Wake::Timer,
        }
    }

    /// Reports the pod's status. Like a real kubelet's status manager, it retries while the
    /// API server cannot be reached (a restart of it, found by the chaos scenario: a lost
    /// "Failed" left a scan pod Running forever), at most [`STATUS_RETRY_BOUND`]; an answer
    /// other than 429 or 5xx (the pod is gone, say) ends it.
    async fn patch(&mut self) {
        let body = self.state.to_patch();
        if self.last_patch.as_ref() == Some(&body) {
            return;
        }
        let start = Instant::now();
        let mut pause = Duration::from_millis(250);
        loop {
            match self
                .api
                .patch_status(
                    &self.name,
                    &PatchParams::default(),
                    &Patch::Strategic(&body),
                )
                .await
            {
                Ok(_) => {
                    self.last_patch = Some(body);
                    return;
                }
                Err(kube::Error::Api(s)) if s.code != 429 && s.code < 500 => {
                    warn!(pod = %self.key(), error = %s, "patching pod status");
                    return;
                }
                Err(e) => {
                    if *self.shutdown.borrow() || start.elapsed() + pause > STATUS_RETRY_BOUND {
                        warn!(pod = %self.key(), error = %e, "patching pod status; giving up");
                        return;
                    }
                    warn!(pod = %self.key(), error = %e, "patching pod status; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    fn plan(&self) -> Result<(Vec<Planned>, Vec<Planned>), String> {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let plan = |c: &Container| -> Result<Planned, String> {
            let image = c.image.clone().unwrap_or_default();
            let binary = self
                .ctx
                .cfg
                .images
                .resolve(&image)
                .map_err(|e| format!("container {:?}: {e}", c.name))?;
            let (program, args) = entrypoint(c, &binary);
            Ok(Planned {
                container: c.clone(),
                program,
                args,
            })
        };
        let init = spec
            .init_containers
            .iter()
            .flatten()
            .map(plan)
            .collect::<Result<_, _>>()?;
        let main = spec.containers.iter().map(plan).collect::<Result<_, _>>()?;
        Ok((init, main))
    }

    fn set_waiting(&mut self, name: &str, reason: &str, message: Option<String>) {
        if let Some(c) = self.state.container_mut(name) {
            c.state = State::Waiting {
                reason: reason.to_owned(),
                message,
            };
        }
    }

    async fn execute(&mut self) -> Flow {
        let (init, main) = match self.plan() {
            Ok(plans) => plans,
            Err(message) => {
                warn!(pod = %self.key(), %message, "cannot run pod");
                for c in self
                    .state
                    .init
                    .iter_mut()
                    .chain(self.state.containers.iter_mut())
                {
                    c.state = State::Waiting {
                        reason: "ImageNotMapped".to_owned(),
                        message: Some(message.clone()),
                    };
                }
                // Like a real kubelet that cannot pull an image: the pod stays Pending (a
                // Failed pod would make its ReplicaSet create replacements in a loop).
                self.state.phase = phase::PENDING;
                self.state.reason = Some("ImageNotMapped".to_owned());
                self.state.message = Some(message);
                self.patch().await;
                return Flow::Terminal;
            }
        };

        loop {
            let mut cache = ObjectCache::new(self.ctx.client.clone(), &self.ns);
            match volumes::materialise(&mut cache, &self.pod, &self.dir.join("volumes")).await {
                Ok(v) => {
                    self.volumes = v;
                    break;
                }
                Err(message) => {
                    debug!(pod = %self.key(), %message, "volumes not ready");
                    let names: Vec<String> = init
                        .iter()
                        .chain(main.iter())
                        .map(|p| p.container.name.clone())
                        .collect();
                    for n in names {
                        self.set_waiting(&n, "ContainerCreating", Some(message.clone()));
                    }
                    self.patch().await;
                    match self.next(Some(Instant::now() + RETRY)).await {
                        Wake::Deleting => return Flow::Deleting,
                        Wake::Gone => return Flow::Gone,
                        Wake::Shutdown => return Flow::Shutdown,
                        _ => {}
                    }
                }
            }
        }
        self.state.sandbox_ready = true;
        let waiting = if init.is_empty() {
            "ContainerCreating"
        } else {
            "PodInitializing"
        };
        for p in &main {
            self.set_waiting(&p.container.name, waiting, None);
        }
        self.patch().await;

        for plan in &init {
            if let Some(flow) = self.run_init(plan).await {
                return flow;
            }
        }
        self.run_main(&main).await
    }

    /// Runs one init container to success (restarting it per policy). `Some` ends the pod run.
    async fn run_init(&mut self, plan: &Planned) -> Option<Flow> {
        let name = plan.container.name.clone();
        loop {
            if let Err(message) = self.start(plan).await {
                self.set_waiting(&name, "CreateContainerConfigError", Some(message));
                self.patch().await;
                match self.next(Some(Instant::now() + RETRY)).await {
                    Wake::Deleting => return Some(Flow::Deleting),
                    Wake::Gone => return Some(Flow::Gone),
                    Wake::Shutdown => return Some(Flow::Shutdown),
                    _ => continue,
                }
            }
            self.patch().await;
            let code = loop {
                match self.next(None).await {
                    Wake::Exit(exit) => {
                        if let Some(code) = self.record_exit(exit) {
                            break code;
                        }
                    }
                    Wake::Deleting => return Some(Flow::Deleting),
                    Wake::Gone => return Some(Flow::Gone),
                    Wake::Shutdown => return Some(Flow::Shutdown),
                    Wake::Updated | Wake::Timer => {}
                }
            };
            if code == 0 {
                self.patch().await;
                return None;
            }
            if self.restart_policy == "Never" {
                self.state.phase = phase::FAILED;
                self.patch().await;
                return Some(Flow::Terminal);
            }
            let deadline = Instant::now() + self.schedule_restart(&name);
            self.patch().await;
            loop {
                match self.next(Some(deadline)).await {
                    Wake::Timer => break,
                    Wake::Deleting => return Some(Flow::Deleting),
                    Wake::Gone => return Some(Flow::Gone),
                    Wake::Shutdown => return Some(Flow::Shutdown),
                    Wake::Updated | Wake::Exit(_) => {}
                }
            }
            if let Some(c) = self.state.container_mut(&name) {
                c.restart_count += 1;
            }
        }
    }

    /// Marks `name` as backing off; returns the delay.
    fn schedule_restart(&mut self, name: &str) -> Duration {
        let Some(c) = self.state.container_mut(name) else {
            return RETRY;
        };
        let delay = backoff(c.restart_count);
        c.last = Some(c.state.clone());
        c.state = State::Waiting {
            reason: "CrashLoopBackOff".to_owned(),
            message: Some(format!(
                "back-off {}s restarting failed container={name}",
                delay.as_secs()
            )),
        };
        delay
    }

    fn should_restart(&self, code: i32) -> bool {
        match self.restart_policy.as_str() {
            "Always" => true,
            "OnFailure" => code != 0,
            _ => false,
        }
    }

    async fn run_main(&mut self, plans: &[Planned]) -> Flow {
        let mut restart_at: HashMap<String, (Instant, bool)> = HashMap::new();
        for plan in plans {
            if let Err(message) = self.start(plan).await {
                self.set_waiting(
                    &plan.container.name,
                    "CreateContainerConfigError",
                    Some(message),
                );
                restart_at.insert(plan.container.name.clone(), (Instant::now() + RETRY, false));
            }
        }
        self.state.phase = phase::RUNNING;
        self.patch().await;
        loop {
            let deadline = restart_at.values().map(|(t, _)| *t).min();
            match self.next(deadline).await {
                Wake::Exit(exit) => {
                    let name = exit.name.clone();
                    let Some(code) = self.record_exit(exit) else {
                        continue;
                    };
                    if self.should_restart(code) {
                        let delay = self.schedule_restart(&name);
                        restart_at.insert(name, (Instant::now() + delay, true));
                    }
                    if self.running.is_empty() && restart_at.is_empty() {
                        self.state.phase = self.state.terminal_phase();
                        info!(pod = %self.key(), phase = self.state.phase, "pod finished");
                        self.patch().await;
                        return Flow::Terminal;
                    }
                    self.patch().await;
                }
                Wake::Timer => {
                    let now = Instant::now();
                    let due: Vec<(String, bool)> = restart_at
                        .iter()
                        .filter(|(_, (t, _))| *t <= now)
                        .map(|(n, (_, counted))| (n.clone(), *counted))
                        .collect();
                    for (name, counted) in due {
                        restart_at.remove(&name);
                        if counted && let Some(c) = self.state.container_mut(&name) {
                            c.restart_count += 1;
                        }
                        let Some(plan) = plans.iter().find(|p| p.container.name == name) else {
                            continue;
                        };
                        if let Err(message) = self.start(plan).await {
                            self.set_waiting(&name, "CreateContainerConfigError", Some(message));
                            restart_at.insert(name, (Instant::now() + RETRY, false));
                        }
                    }
                    self.patch().await;
                }
                Wake::Updated => {}
                Wake::Deleting => return Flow::Deleting,
                Wake::Gone => return Flow::Gone,
                Wake::Shutdown => return Flow::Shutdown,
            }
        }
    }

    /// Records an exit; `None` when it is stale (not a running container of ours).
    fn record_exit(&mut self, exit: Exit) -> Option<i32> {
        match self.running.get(&exit.name) {
            Some((pid, _)) if *pid == exit.pid => {}
            _ => return None,
        }
        let (pid, started) = self.running.remove(&exit.name)?;
        // Anything the container left behind in its process group goes with it.
        procs::signal_group(pid, Signal::SIGKILL);
        let (code, signal, message) = match &exit.status {
            Ok(status) => {
                use std::os::unix::process::ExitStatusExt as _;
                match (status.code(), status.signal()) {
                    (Some(code), _) => (code, None, None),
                    (None, Some(sig)) => (128 + sig, Some(sig), None),
                    (None, None) => (255, None, None),
                }
            }
            Err(e) => (255, None, Some(format!("waiting for the process: {e}"))),
        };
        info!(pod = %self.key(), container = %exit.name, code, "container exited");
        if let Some(c) = self.state.container_mut(&exit.name) {
            c.state = State::Terminated {
                exit_code: code,
                signal,
                reason: if code == 0 { "Completed" } else { "Error" }.to_owned(),
                message,
                started: Some(started),
                finished: exit.at,
                container_id: c.container_id.clone(),
            };
        }
        Some(code)
    }

    fn record_created(&self, created: &[PathBuf]) {
        if created.is_empty() {
            return;
        }
        let list = self.ctx.cfg.state.created_paths();
        let text: String = created
            .iter()
            .map(|p| format!("{}\n", p.display()))
            .collect();
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&list)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        if let Err(e) = written {
            warn!(list = %list.display(), error = %e, "recording created mount points");
        }
    }

    /// Starts one container process.
    async fn start(&mut self, plan: &Planned) -> Result<(), String> {
        use std::os::unix::process::CommandExt as _;
        let container = &plan.container;
        let mut cache = ObjectCache::new(self.ctx.client.clone(), &self.ns);
        let env = container_env(
            &mut cache,
            &self.pod,
            container,
            self.ctx.cfg.apiserver_port,
        )
        .await?;
        let program = expand(&plan.program, &env);
        let args: Vec<String> = plan.args.iter().map(|a| expand(a, &env)).collect();
        let mounts = volumes::container_mounts(container, &self.volumes)?;
        let own_workdir = container
            .working_dir
            .as_deref()
            .is_none_or(|w| w.is_empty());
        let workdir = container
            .working_dir
            .as_deref()
            .filter(|w| !w.is_empty())
            .map_or_else(|| self.dir.join("work"), PathBuf::from);
        let mut points = mounts.clone();
        if !own_workdir && !mounts.iter().any(|m| m.dst == workdir) {
            // A missing workingDir is created, as a container runtime creates it in the image:
            // inside the volume that contains it, else on the host (recorded, removed by
            // `down`).
            points.push(volumes::Mount {
                src: self.dir.join("work"),
                dst: workdir.clone(),
                read_only: false,
            });
        }
        let created = volumes::prepare_mount_points(&points)?;
        self.record_created(&created);

        let spec = SandboxSpec {
            mount_bin: self.ctx.mount.clone(),
            mounts,
            workdir,
            workdir_on_host: own_workdir,
            program: program.clone(),
            args: args.clone(),
        };
        let spec_path = self
            .dir
            .join("specs")
            .join(format!("{}.json", container.name));
        let json = serde_json::to_vec_pretty(&spec).map_err(|e| e.to_string())?;
        std::fs::write(&spec_path, json)
            .map_err(|e| format!("writing {}: {e}", spec_path.display()))?;

        let log_path = self.dir.join(format!("{}.log", container.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("opening {}: {e}", log_path.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;

        let mut cmd = std::process::Command::new(&self.ctx.unshare);
        cmd.args(["--mount", "--propagation", "private", "--"])
            .arg(&self.ctx.self_exe)
            .arg("container-init")
            .arg(&spec_path)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", self.dir.join("home"))
            .env("HOSTNAME", &self.name)
            .envs(env.vars().iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(POD_MARKER_ENV, &self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0);
        let mut child = tokio::process::Command::from(cmd)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.ctx.unshare.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| "the started process has no pid".to_owned())?;
        let started = Timestamp::now();
        info!(pod = %self.key(), container = %container.name, pid, %program, "container started");
        self.running.insert(container.name.clone(), (pid, started));
        self.groups.push(pid);
        if let Some(c) = self.state.container_mut(&container.name) {
            c.state = State::Running { started };
            c.container_id = Some(format!("local://{pid}"));
        }
        let tx = self.exit_tx.clone();
        let name = container.name.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let _ = tx.send(Exit {
                name,
                pid,
                status,
                at: Timestamp::now(),
            });
        });
        Ok(())
    }

    /// SIGTERM every running container, wait up to `grace`, SIGKILL the rest.
    async fn terminate_all(&mut self, grace: Duration) {
        for (pid, _) in self.running.values() {
            procs::signal_group(*pid, Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while !self.running.is_empty() && self.wait_exit(deadline).await {}
        if !self.running.is_empty() {
            for (pid, _) in self.running.values() {
                procs::signal_group(*pid, Signal::SIGKILL);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while !self.running.is_empty() && self.wait_exit(deadline).await {}
        }
        for pgid in &self.groups {
            procs::signal_group(*pgid, Signal::SIGKILL);
        }
    }

    /// Records one exit; false on timeout.
    async fn wait_exit(&mut self, deadline: Instant) -> bool {
        tokio::select! {
            Some(exit) = self.exits.recv() => {
                self.record_exit(exit);
                true
            }
            () = tokio::time::sleep_until(deadline) => false,
        }
    }

    /// Waits in a terminal phase until the pod is deleted, then finalizes it.
    async fn idle_terminal(&mut self) {
        if is_deleting(&self.pod) {
            self.finalize().await;
            return;
        }
        loop {
            match self.next(None).await {
                Wake::Deleting => {
                    self.finalize().await;
                    return;
                }
                Wake::Gone => {
                    self.remove_volumes();
                    return;
                }
                Wake::Shutdown => return,
                Wake::Updated | Wake::Exit(_) | Wake::Timer => {}
            }
        }
    }

    /// Deletes the pod with grace period 0 (its processes are gone), bounded retries.
    async fn finalize(&mut self) {
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        for attempt in 0..6u32 {
            match self.api.delete(&self.name, &dp).await {
                Ok(_) => break,
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => break,
                Err(e) => {
                    warn!(pod = %self.key(), error = %e, attempt, "finalizing pod");
                    tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
                }
            }
        }
        debug!(pod = %self.key(), "pod finalized");
        self.remove_volumes();
    }

    fn remove_volumes(&self) {
        let volumes = self.dir.join("volumes");
        if volumes.exists()
            && let Err(e) = std::fs::remove_dir_all(&volumes)
        {
            warn!(dir = %volumes.display(), error = %e, "removing pod volumes");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::no_command(None, Some(vec!["--x"]), "/t/scan-job", vec!["--x"])]
    #[case::command_names_binary(Some(vec!["/scan-job", "run"]), Some(vec!["--x"]), "/t/scan-job", vec!["run", "--x"])]
    #[case::other_command(Some(vec!["sh", "-c", "echo"]), None, "sh", vec!["-c", "echo"])]
    fn entrypoints(
        #[case] command: Option<Vec<&str>>,
        #[case] args: Option<Vec<&str>>,
        #[case] program: &str,
        #[case] expected: Vec<&str>,
    ) {
        let owned = |v: Vec<&str>| v.into_iter().map(str::to_owned).collect::<Vec<_>>();
        let c = Container {
            name: "c".into(),
            command: command.map(owned),
            args: args.map(owned),
            ..Default::default()
        };
        let (p, a) = entrypoint(&c, Path::new("/t/scan-job"));
        assert_eq!(p, program);
        assert_eq!(a, owned(expected));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(50), Duration::from_secs(30));
    }
}
