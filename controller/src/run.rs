//! Wiring: configuration, client, startup checks, leader election, the watch tasks, and the
//! single main loop that owns the [`State`] and carries out its [`Effect`]s as API tasks.
//!
//! Startup order: health endpoint, client, CRD check, Lease (when enabled), discovery of the
//! watched kinds, the namespace watch's first list (only with `namespaceSelector`), the results
//! list (so that the watches' initial lists already know which results are current), then the Job
//! watch, the role watches, the other watches, and the binding watches once the roles are listed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::{Api, Client};
use kubevigil_crds::target::{KindInfo, TargetKey};
use kubevigil_engine::Settings as ScanSettings;
use kubevigil_engine::report::SCANNER_VERSION;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::cli::{Cli, LogFormat};
use crate::config::Config;
use crate::discovery::{self, Failure, KindSpec};
use crate::error::{Category, Error, status_code};
use crate::index::Index;
use crate::lease::{LeaderElector, LeaseSettings};
use crate::ops::{self, Health, Metrics, Role};
use crate::ratelimit::RateLimitLayer;
use crate::resync;
use crate::scope::NamespaceView;
use crate::state::{Effect, GiveUpReason, Msg, ResultsSnapshot, Scope, State, StateSettings};
use crate::{cleanup, dispatch, exception_watch, namespaces, summaries, watchers};

/// Capacity of the main loop's channel (watch tasks wait when it is full).
const CHANNEL: usize = 1024;
/// Most messages handled before the loop ticks (dispatch sees whole pages of a list).
const DRAIN: usize = 512;
/// Most API tasks (Job creates, deletes, summaries) running at once.
const API_TASKS: usize = 8;
/// How long shutdown waits for running API tasks.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Everything `run` needs, checked before anything starts.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The configuration (cluster name overridden from the command line).
    pub config: Arc<Config>,
    /// Install namespace.
    pub namespace: String,
    /// Address of the health and metrics endpoint.
    pub metrics_addr: SocketAddr,
    /// Log format.
    pub log_format: LogFormat,
    /// The controls hash results must carry to be current (the one scan-job writes).
    pub controls_hash: String,
    /// The controller's Deployment, owner of the scan Jobs (`--owner-deployment`).
    pub owner_deployment: Option<String>,
}

impl Settings {
    /// Reads and checks the configuration named on the command line.
    pub fn load(cli: &Cli) -> Result<Self, Error> {
        let path = cli.config.display().to_string();
        let mut config = Config::load(&path)?;
        if let Some(name) = &cli.cluster_name {
            config.cluster_name = name.clone();
        }
        let namespace = cli
            .namespace
            .clone()
            .or_else(|| config.namespace.clone())
            .filter(|ns| !ns.is_empty())
            .unwrap_or_else(|| "kubevigil".to_string());
        let controls_hash = controls_hash(&config, &path)?;
        let metrics_addr = cli
            .metrics_addr
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], config.controller.metrics_port)));
        Ok(Settings {
            config: Arc::new(config),
            namespace,
            metrics_addr,
            log_format: cli.log_format,
            controls_hash,
            owner_deployment: cli.owner_deployment.clone().filter(|n| !n.is_empty()),
        })
    }
}

/// The owner reference scan Jobs carry: the controller's Deployment. Without one (not given,
/// or unreadable) Jobs are still created, but outlive an uninstall until their TTL; that is
/// logged, not fatal.
async fn job_owner(client: &Client, namespace: &str, name: Option<&str>) -> Option<OwnerReference> {
    let name = name?;
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    match api.get(name).await {
        Ok(d) => {
            let uid = d.metadata.uid?;
            Some(OwnerReference {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: name.to_string(),
                uid,
                // Not the Jobs' controller, and no `blockOwnerDeletion`, which would need
                // update rights on deployments/finalizers.
                controller: None,
                block_owner_deletion: None,
            })
        }
        Err(e) => {
            tracing::warn!(
                deployment = %format!("{namespace}/{name}"),
                error = %e,
                "cannot read the controller's Deployment; scan Jobs get no owner and outlive an uninstall until their TTL"
            );
            None
        }
    }
}

/// The controls hash scan-job writes into results: the catalog and the control inputs from
/// `controlsConfig` (Kubescape's defaults plus the overrides). The engine's settings parser, the
/// one scan Jobs use, checks `controlsConfig` and `exceptions` on the way.
pub fn controls_hash(config: &Config, path: &str) -> Result<String, Error> {
    let settings = ScanSettings::from_sections(&config.controls_config, &config.exceptions)
        .map_err(|e| Error::ConfigValue {
            path: path.to_string(),
            field: e.field.into(),
            message: e.message,
        })?;
    Ok(settings.controls_hash())
}

/// The kube client with the client-side request limit.
pub async fn build_client(config: &Config) -> Result<Client, Error> {
    let kube_config = kube::Config::infer()
        .await
        .map_err(|e| Error::Client(kube::Error::InferConfig(e)))?;
    client_from(kube_config, config)
}

/// The kube client for `kube_config` with the client-side request limit. kube's own retry
/// layer (on 429, 503 and 504, with backoff) stays on: `kube::Config::default_retry` is true.
pub fn client_from(kube_config: kube::Config, config: &Config) -> Result<Client, Error> {
    let builder = kube::client::ClientBuilder::try_from(kube_config).map_err(Error::Client)?;
    let limit = RateLimitLayer::new(
        config.controller.kube_api_qps,
        config.controller.kube_api_burst,
    );
    Ok(builder.with_layer(&limit).build())
}

/// The plural names of kubevigil's result resources.
pub const RESULT_RESOURCES: [&str; 3] = [
    "workloadconfigurationscans",
    "workloadconfigurationscansummaries",
    "configurationscansummaries",
];

/// Checks that the three result CRDs are served.
pub async fn check_crds(client: &Client) -> Result<(), Error> {
    let gv = format!("{}/{}", kubevigil_crds::GROUP, kubevigil_crds::VERSION);
    let served: Vec<String> = match client.list_api_group_resources(&gv).await {
        Ok(list) => list.resources.into_iter().map(|r| r.name).collect(),
        Err(e) if status_code(&e) == Some(404) => Vec::new(),
        Err(source) => return Err(Error::Discovery { what: gv, source }),
    };
    let missing: Vec<String> = RESULT_RESOURCES
        .iter()
        .filter(|r| !served.iter().any(|s| s == *r))
        .map(|r| format!("{r}.{}", kubevigil_crds::GROUP))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::CrdsMissing {
            missing: missing.join(", "),
        })
    }
}

fn identity() -> String {
    std::env::var("KUBEVIGIL_POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("kubevigil-controller-{}", std::process::id()))
}

fn install_signal_handler(tx: watch::Sender<bool>) -> Result<(), Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(Error::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(Error::Signal)?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        let _ = tx.send(true);
    });
    Ok(())
}

/// Runs the controller until SIGTERM/SIGINT (`Ok`) or a fatal error.
pub async fn run(settings: Settings) -> Result<(), Error> {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    install_signal_handler(shutdown_tx)?;
    let (metrics, registry) = Metrics::new();
    metrics
        .posture
        .set_per_resource(settings.config.controller.per_resource_metrics);
    let health = Arc::new(Health::default());
    let listener = TcpListener::bind(settings.metrics_addr)
        .await
        .map_err(|source| Error::Listen {
            addr: settings.metrics_addr.to_string(),
            source,
        })?;
    let server = tokio::spawn(ops::serve(
        listener,
        Arc::new(registry),
        health.clone(),
        shutdown_rx.clone(),
    ));
    tracing::info!(
        namespace = %settings.namespace,
        metrics = %settings.metrics_addr,
        controls_hash = %settings.controls_hash,
        scanner_version = SCANNER_VERSION,
        "starting kubevigil controller"
    );
    let result = run_with_server(&settings, metrics, health, shutdown_rx).await;
    server.abort();
    result
}

async fn run_with_server(
    settings: &Settings,
    metrics: Metrics,
    health: Arc<Health>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let client = build_client(&settings.config).await?;
    check_crds(&client).await?;
    let election = &settings.config.controller.leader_election;
    let mut lease_task = None;
    let (lease_stop_tx, lease_stop_rx) = watch::channel(false);
    if election.enabled {
        health.set_role(Role::Standby);
        let name = election
            .lease_name
            .clone()
            .unwrap_or_else(|| "kubevigil-controller-leader".into());
        let mut elector = LeaderElector::new(
            client.clone(),
            LeaseSettings::new(&settings.namespace, &name, &identity()),
        );
        if !elector.acquire(&mut shutdown).await? {
            return Ok(());
        }
        let mut stop = lease_stop_rx;
        lease_task = Some(tokio::spawn(async move {
            let kept = elector.keep(&mut stop).await;
            if kept.is_ok() {
                elector.release().await;
            }
            kept
        }));
    }
    health.set_role(Role::Leader);
    let (result, lease_task) = Controller::start(settings, client, metrics, health, &mut shutdown)
        .await?
        .run(&mut shutdown, lease_task)
        .await;
    let _ = lease_stop_tx.send(true);
    if let Some(task) = lease_task {
        // Let the renewal task release the Lease after the API calls above finished.
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    result
}

/// Lists results with a few retries of transient errors (startup needs them before the watches
/// start); a permanent error (RBAC, say) stops the start at once.
async fn list_results_with_retry(
    client: &Client,
    scope: &Scope,
    metrics: &Metrics,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<ResultsSnapshot>, Error> {
    let mut delay = Duration::from_secs(1);
    let mut attempt = 1;
    loop {
        match resync::list_results(client.clone(), scope, metrics).await {
            Ok(s) => return Ok(Some(s)),
            Err(e) if attempt >= 5 || e.category() != Category::Retry => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, attempt, "listing existing results failed; retrying")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = crate::ops::stopped(shutdown) => return Ok(None),
        }
        delay *= 2;
        attempt += 1;
    }
}

/// The namespace view of the configuration. Without a namespace selector, names decide and the
/// view never changes (its sender is returned, to keep it open). With one, the namespace watch
/// starts (in `watches`) and this waits for its first list, since no namespaced object can be
/// placed before.
async fn start_namespace_watch(
    client: &Client,
    config: &Config,
    watches: &mut JoinSet<()>,
    shutdown: &mut watch::Receiver<bool>,
) -> (
    Option<watch::Sender<Arc<NamespaceView>>>,
    watch::Receiver<Arc<NamespaceView>>,
) {
    let scope = config.namespace_scope();
    if !scope.needs_labels() {
        let (tx, rx) = watch::channel(Arc::new(NamespaceView::static_scope(scope)));
        return (Some(tx), rx);
    }
    // With a selector, the view is not synced until the namespace watch has listed.
    let (tx, mut rx) = watch::channel(Arc::new(NamespaceView::static_scope(scope.clone())));
    watches.spawn(namespaces::watch_namespaces(client.clone(), scope, tx));
    tracing::info!("namespaceSelector is set: waiting for the namespace watch's first list");
    tokio::select! {
        _ = rx.wait_for(|v| v.synced) => {}
        _ = crate::ops::stopped(shutdown) => {}
    }
    (None, rx)
}

/// The leader Lease renewal task: ends with an error when leadership is lost.
type LeaseTask = tokio::task::JoinHandle<Result<(), Error>>;

/// The running controller: the state, its channel, and the tasks around it.
struct Controller {
    state: State,
    rx: mpsc::Receiver<Msg>,
    runner: Runner,
    /// Watches, discovery retries and result lists: aborted at shutdown.
    watches: JoinSet<()>,
    /// API calls that write (Jobs, deletions, summaries, events): awaited at shutdown.
    tasks: JoinSet<()>,
    health: Arc<Health>,
}

/// Carries out effects.
struct Runner {
    client: Client,
    config: Arc<Config>,
    namespace: String,
    tx: mpsc::Sender<Msg>,
    roles_tx: watch::Sender<bool>,
    roles_rx: watch::Receiver<bool>,
    /// Keeps a static namespace view open (no namespace watch: no selector).
    _namespaces_tx: Option<watch::Sender<Arc<NamespaceView>>>,
    /// Which namespaces are in scope, for the watches and the resync.
    namespaces_rx: watch::Receiver<Arc<NamespaceView>>,
    permits: Arc<Semaphore>,
    recorder: Recorder,
    metrics: Metrics,
}

impl Controller {
    async fn start(
        settings: &Settings,
        client: Client,
        metrics: Metrics,
        health: Arc<Health>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Self, Error> {
        let specs = discovery::specs(&settings.config);
        let resolved: Vec<(KindSpec, Result<KindInfo, Failure>)> =
            discovery::resolve_all(&client, &specs).await;
        let mut found: Vec<Arc<KindInfo>> = Vec::new();
        for (spec, r) in &resolved {
            match r {
                Ok(info) => found.push(Arc::new(info.clone())),
                Err(f) => {
                    tracing::warn!(kind = %spec, error = f.message(), "watched kind not available; retrying in the background")
                }
            }
        }
        let mut index = Index::new(
            &settings.namespace,
            &found,
            SCANNER_VERSION,
            &settings.controls_hash,
        );
        let mut watches = JoinSet::new();
        let (namespaces_tx, namespaces_rx) =
            start_namespace_watch(&client, &settings.config, &mut watches, shutdown).await;
        let scope = Scope::with_namespaces(namespaces_rx.borrow().clone(), &settings.namespace);
        let snapshot = list_results_with_retry(&client, &scope, &metrics, shutdown)
            .await?
            .unwrap_or_default();
        tracing::info!(results = snapshot.results.len(), "existing results listed");
        index.set_results(snapshot.results);
        let now = Instant::now();
        let mut state_settings =
            StateSettings::new(settings.config.clone(), settings.namespace.clone());
        state_settings.job_owner = job_owner(
            &client,
            &settings.namespace,
            settings.owner_deployment.as_deref(),
        )
        .await;
        let mut state = State::new(state_settings, index, resolved, metrics.clone(), now);
        let (tx, rx) = mpsc::channel(CHANNEL);
        let (roles_tx, roles_rx) = watch::channel(false);
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "kubevigil-controller".into(),
                instance: Some(identity()),
            },
        );
        let runner = Runner {
            client: client.clone(),
            config: settings.config.clone(),
            namespace: settings.namespace.clone(),
            tx: tx.clone(),
            roles_tx,
            roles_rx,
            _namespaces_tx: namespaces_tx,
            namespaces_rx,
            permits: Arc::new(Semaphore::new(API_TASKS)),
            recorder,
            metrics,
        };
        for kind in kubevigil_engine::related::watched_kinds() {
            watches.spawn(watchers::watch_related(
                client.clone(),
                kind,
                settings.config.clone(),
                tx.clone(),
            ));
        }
        watches.spawn(exception_watch::watch_namespaced(
            client.clone(),
            tx.clone(),
        ));
        watches.spawn(exception_watch::watch_cluster(client.clone(), tx.clone()));
        watches.spawn(watchers::watch_jobs(client, settings.namespace.clone(), tx));
        let mut tasks = JoinSet::new();
        // Roles first: their watches start before the others.
        let mut effects = state.start(now);
        effects.sort_by_key(|e| match e {
            Effect::StartWatch(k) if k.is_role() => 0,
            _ => 1,
        });
        for e in effects {
            runner.execute(e, &mut watches, &mut tasks);
        }
        health.set_kinds(state.kind_reports());
        Ok(Controller {
            state,
            rx,
            runner,
            watches,
            tasks,
            health,
        })
    }

    async fn run(
        mut self,
        shutdown: &mut watch::Receiver<bool>,
        mut lease: Option<LeaseTask>,
    ) -> (Result<(), Error>, Option<LeaseTask>) {
        let outcome = loop {
            self.health.tick();
            let wake = self.state.next_wake(Instant::now());
            tokio::select! {
                biased;
                _ = crate::ops::stopped(shutdown) => break Ok(()),
                lost = async {
                    match lease.as_mut() {
                        Some(task) => task.await,
                        None => std::future::pending().await,
                    }
                } => {
                    // The renewal task ended: it must not be awaited again.
                    lease = None;
                    break match lost {
                        Ok(Err(e)) => Err(e),
                        Ok(Ok(())) => Ok(()),
                        Err(_) => Err(Error::Channel("leader Lease task")),
                    };
                }
                msg = self.rx.recv() => {
                    let Some(msg) = msg else { break Err(Error::Channel("main loop")) };
                    self.handle(msg);
                    for _ in 0..DRAIN {
                        match self.rx.try_recv() {
                            Ok(msg) => self.handle(msg),
                            Err(_) => break,
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            let effects = self.state.tick(Instant::now());
            for e in effects {
                self.runner.execute(e, &mut self.watches, &mut self.tasks);
            }
            while let Some(done) = self.tasks.try_join_next() {
                if let Err(e) = done {
                    tracing::error!(error = %e, "API task failed");
                }
            }
            while let Some(done) = self.watches.try_join_next() {
                if let Err(e) = done {
                    tracing::error!(error = %e, "background task failed");
                }
            }
            if self.state.take_kinds_changed() {
                self.health.set_kinds(self.state.kind_reports());
                self.health.set_initial_sync(self.state.initial_sync_done());
            }
        };
        // Graceful shutdown: stop the watches, let running API calls finish.
        self.watches.abort_all();
        let pending = self.tasks.len();
        if pending > 0 {
            tracing::info!(pending, "waiting for running API calls");
            let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
                while self.tasks.join_next().await.is_some() {}
            })
            .await;
            if drained.is_err() {
                tracing::warn!("API calls still running after {SHUTDOWN_GRACE:?}; stopping anyway");
                self.tasks.abort_all();
            }
        }
        if outcome.is_ok() {
            tracing::info!("controller stopped");
        }
        (outcome, lease)
    }

    fn handle(&mut self, msg: Msg) {
        let effects = self.state.handle(msg, Instant::now());
        for e in effects {
            self.runner.execute(e, &mut self.watches, &mut self.tasks);
        }
    }
}

impl Runner {
    fn execute(&self, effect: Effect, watches: &mut JoinSet<()>, tasks: &mut JoinSet<()>) {
        let client = self.client.clone();
        let tx = self.tx.clone();
        let permits = self.permits.clone();
        match effect {
            Effect::StartWatch(kind) => {
                let wait = kind.is_binding().then(|| self.roles_rx.clone());
                watches.spawn(watchers::watch_kind(
                    client,
                    kind,
                    self.config.clone(),
                    tx,
                    wait,
                    self.namespaces_rx.clone(),
                ));
            }
            Effect::RetryDiscovery(spec) => {
                watches.spawn(discovery::retry_until_found(client, spec, tx));
            }
            Effect::RolesSynced => {
                let _ = self.roles_tx.send(true);
            }
            Effect::CreateJob(job) => {
                let namespace = self.namespace.clone();
                tasks.spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    let name = job.metadata.name.clone().unwrap_or_default();
                    let outcome = dispatch::create_job(client, &namespace, &job).await;
                    let _ = tx.send(Msg::JobCreated { name, outcome }).await;
                });
            }
            Effect::DeleteResults(refs) => {
                let metrics = self.metrics.clone();
                let open_reports = self
                    .config
                    .open_reports
                    .enabled
                    .then(|| self.namespace.clone());
                tasks.spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    let done = cleanup::delete_results(client, &refs, open_reports.as_deref()).await;
                    for e in &done.errors {
                        tracing::warn!(error = %e, "deleting a result failed; the resync collects it");
                        metrics.error(e);
                    }
                    let _ = tx
                        .send(Msg::ResultsDeleted {
                            deleted: done.deleted,
                            namespaces: done.namespaces,
                        })
                        .await;
                });
            }
            Effect::ListResults => {
                // Read-only: in the background set, which shutdown aborts instead of awaiting.
                let scope =
                    Scope::with_namespaces(self.namespaces_rx.borrow().clone(), &self.namespace);
                let metrics = self.metrics.clone();
                watches.spawn(async move {
                    let listed = resync::list_results(client, &scope, &metrics).await;
                    let _ = tx.send(Msg::ResultsListed(listed)).await;
                });
            }
            Effect::Summarize(namespace) => {
                let metrics = self.metrics.clone();
                let installation = self.namespace.clone();
                tasks.spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    let outcome = summaries::summarize(client, &namespace, &installation, &metrics).await.map(|done| {
                        tracing::debug!(namespace = %namespace, outcome = ?done, "namespace summary updated");
                    });
                    let _ = tx.send(Msg::Summarized { namespace, outcome }).await;
                });
            }
            Effect::ReportFailure {
                key,
                attempts,
                job,
                reason,
            } => {
                let recorder = self.recorder.clone();
                let metrics = self.metrics.clone();
                tasks.spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    if let Err(e) = report_failure(&recorder, &key, attempts, &job, reason).await {
                        tracing::warn!(error = %e, "could not publish the ScanFailed event");
                        metrics.error(&e);
                    }
                });
            }
        }
    }
}

/// The reference of a target for a Kubernetes Event.
pub fn object_reference(key: &TargetKey) -> ObjectReference {
    ObjectReference {
        api_version: Some(key.kind.api_version()),
        kind: Some(key.kind.kind.clone()),
        name: Some(key.name.clone()),
        namespace: key.namespace.clone(),
        ..ObjectReference::default()
    }
}

/// Publishes a `ScanFailed` Warning event on a target.
pub async fn report_failure(
    recorder: &Recorder,
    key: &TargetKey,
    attempts: u32,
    job: &str,
    reason: GiveUpReason,
) -> Result<(), Error> {
    let kind = &key.kind.kind;
    let note = match reason {
        GiveUpReason::Attempts => format!(
            "kubevigil could not scan this {kind} after {attempts} attempts (last scan Job {job}); \
             it is tried again at the next resync"
        ),
        GiveUpReason::Refused => format!(
            "kubevigil could not scan this {kind}: the API server refused its scan Job {job}; \
             it is tried again at the next resync"
        ),
        GiveUpReason::OomKilled => format!(
            "kubevigil could not scan this {kind}: scan Job {job} was OOMKilled (its batch needs \
             more memory than scanJob.resources.limits.memory); raise the limit or lower \
             scanJob.batchSize. It is not retried until it changes or the configuration does"
        ),
    };
    let event = KubeEvent {
        type_: EventType::Warning,
        reason: "ScanFailed".into(),
        note: Some(note),
        action: "Scan".into(),
        secondary: None,
    };
    recorder
        .publish(&event, &object_reference(key))
        .await
        .map_err(|source| Error::PublishEvent {
            reason: "ScanFailed".into(),
            target: key.to_string(),
            source,
        })
}
