//! Scaffold of the scenario tests: one cluster per test process, a namespace per test, bounded
//! waits, and a dump of the namespace when a test fails.
//!
//! - [`TestCluster::shared`] uses the cluster that `KUBECONFIG` names (one file), else boots the
//!   local one (or reuses it when it is up) by running `local-cluster up`, which holds a file lock
//!   in the state directory, so that several test binaries never boot two clusters. Tests never
//!   tear it down: `scripts/cluster.sh down` does.
//! - [`with_temp_ns`] runs a test in a fresh namespace. On success the namespace is deleted; on
//!   failure (an `Err` or a panic) its pods, Jobs, events and pod logs are printed to stderr, and
//!   the namespace is kept when `KUBEVIGIL_KEEP_NS=1`.
//! - [`wait_for`] and [`wait_for_condition`] are the only ways to wait: bounded, and their error
//!   names what was awaited and what was last seen.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Pod, ServiceAccount};
use kube::api::{DeleteParams, ListParams, LogParams, ObjectMeta, PostParams};
use kube::runtime::wait::{Condition, await_condition};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::cluster::{self, StateDir};
use crate::tools;

/// Any error a test body returns.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Environment variable naming the `local-cluster` binary (default: next to the test binary).
pub const LOCAL_CLUSTER_BIN_ENV: &str = "KUBEVIGIL_LOCAL_CLUSTER_BIN";
/// Set to `1` to keep a failed test's namespace.
pub const KEEP_NS_ENV: &str = "KUBEVIGIL_KEEP_NS";
/// Environment variable overriding the image of kind-tests' `probe` program.
pub const PROBE_IMAGE_ENV: &str = "KUBEVIGIL_PROBE_IMAGE";

/// The image of kind-tests' `probe` program: `$KUBEVIGIL_PROBE_IMAGE`, else
/// `ghcr.io/kubevigil/probe:<version>` (built by `scripts/images.sh` from `images/Containerfile`
/// and imported into the local node at boot; `kind.sh` loads the same image).
pub fn probe_image() -> String {
    std::env::var(PROBE_IMAGE_ENV)
        .ok()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| format!("ghcr.io/kubevigil/probe:{}", env!("CARGO_PKG_VERSION")))
}

/// Label on every test namespace.
pub const TEST_NS_LABEL: &str = "kubevigil.io/scenario-test";

/// Errors of the scaffold (their `Debug` is their message, for readable test failures).
#[derive(thiserror::Error)]
pub enum Error {
    /// `local-cluster up` failed.
    #[error("booting the local cluster with `{command}`: {detail}")]
    Boot {
        /// The command.
        command: String,
        /// Why (with its stderr).
        detail: String,
    },
    /// A control-plane error.
    #[error(transparent)]
    Cluster(#[from] cluster::Error),
    /// kubectl or helm failed.
    #[error(transparent)]
    Tools(#[from] tools::Error),
    /// An API call failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The API error.
        source: kube::Error,
    },
    /// A bounded wait ran out.
    #[error("timed out after {timeout:?} waiting for {what}; last seen: {last}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The bound.
        timeout: Duration,
        /// The last observation.
        last: String,
    },
    /// The test body returned an error.
    #[error("test in namespace {namespace} failed: {source}")]
    Test {
        /// The test namespace.
        namespace: String,
        /// The test's error.
        source: BoxError,
    },
    /// The test task was cancelled.
    #[error("test task in namespace {namespace} was cancelled")]
    Cancelled {
        /// The test namespace.
        namespace: String,
    },
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn kube_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Kube { action, source }
}

/// The cluster the scenario tests run against.
#[derive(Debug)]
pub struct TestCluster {
    kubeconfig: PathBuf,
    local: Option<StateDir>,
}

static SHARED: OnceCell<TestCluster> = OnceCell::const_new();

impl TestCluster {
    /// The cluster of this test process: `KUBECONFIG` if set, else the local cluster (booted once,
    /// or reused when already up).
    pub async fn shared() -> Result<&'static TestCluster, Error> {
        SHARED.get_or_try_init(Self::connect).await
    }

    async fn connect() -> Result<TestCluster, Error> {
        let state = StateDir::from_env()?;
        if let Some(kc) = std::env::var_os("KUBECONFIG").filter(|k| !k.is_empty()) {
            let kubeconfig = PathBuf::from(kc);
            let local = kubeconfig.starts_with(state.root()).then_some(state);
            return Ok(TestCluster { kubeconfig, local });
        }
        let exe = local_cluster_exe()?;
        let command = format!("{} up", exe.display());
        let out = tokio::process::Command::new(&exe)
            .arg("up")
            .env(cluster::STATE_DIR_ENV, state.root())
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| Error::Boot {
                command: command.clone(),
                detail: e.to_string(),
            })?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(Error::Boot {
                command,
                detail: format!("{}; its stderr:\n{stderr}", out.status),
            });
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let kubeconfig = stdout
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| Error::Boot {
                command,
                detail: format!("it printed no kubeconfig path; stderr:\n{stderr}"),
            })?;
        Ok(TestCluster {
            kubeconfig,
            local: Some(state),
        })
    }

    /// The kubeconfig file.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The local cluster's state directory; `None` on another cluster (kind).
    pub fn local_state(&self) -> Option<&StateDir> {
        self.local.as_ref()
    }

    /// A new client (one per test: a client must not outlive the runtime that created it).
    pub async fn client(&self) -> Result<Client, Error> {
        Ok(cluster::client_for(&self.kubeconfig).await?)
    }

    /// `kubectl ARGS` against this cluster.
    pub async fn kubectl<I, S>(&self, args: I) -> Result<String, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Ok(tools::kubectl(&self.kubeconfig, args).await?)
    }

    /// `helm ARGS` against this cluster.
    pub async fn helm<I, S>(&self, args: I) -> Result<String, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Ok(tools::helm(&self.kubeconfig, args).await?)
    }

    /// A pod's log through the API (`pods/log`, served by the node's kubelet), as `kubectl logs`
    /// reads it.
    pub async fn pod_log(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
    ) -> Result<String, Error> {
        let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
        api.logs(name, &LogParams::default())
            .await
            .map_err(kube_err(format!(
                "reading the log of pod {namespace}/{name}"
            )))
    }
}

fn local_cluster_exe() -> Result<PathBuf, Error> {
    if let Some(bin) = std::env::var_os(LOCAL_CLUSTER_BIN_ENV).filter(|b| !b.is_empty()) {
        return Ok(PathBuf::from(bin));
    }
    workspace_binary("local-cluster").map_err(|detail| Error::Boot {
        command: "local-cluster up".to_owned(),
        detail: format!("{detail}; run `cargo build -p kind-tests` or set {LOCAL_CLUSTER_BIN_ENV}"),
    })
}

/// A binary of this workspace next to the running test: integration tests live in
/// `target/<profile>/deps/`, binaries in `target/<profile>/`. The error says where it looked.
pub fn workspace_binary(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("locating the test binary: {e}"))?;
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(name))
        .collect();
    candidates
        .iter()
        .find(|c| c.is_file())
        .cloned()
        .ok_or_else(|| format!("no {name} binary at {candidates:?}"))
}

/// A fresh random namespace name, `kv-test-<hex>`.
pub fn random_namespace() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    format!("kv-test-{:08x}", h.finish() & 0xffff_ffff)
}

/// Runs `test` in a new namespace (see the module docs for cleanup and failure dumps).
pub async fn with_temp_ns<F, Fut>(test: F) -> Result<(), Error>
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    let cluster = TestCluster::shared().await?;
    let client = cluster.client().await?;
    let ns = random_namespace();
    create_namespace(&client, &ns).await?;
    let outcome = tokio::spawn(test(client.clone(), ns.clone())).await;
    let failed = !matches!(outcome, Ok(Ok(())));
    if failed {
        eprintln!("{}", dump_namespace(cluster, &client, &ns).await);
    }
    let keep = failed && std::env::var(KEEP_NS_ENV).is_ok_and(|v| v == "1");
    if keep {
        eprintln!("keeping namespace {ns} ({KEEP_NS_ENV}=1)");
    } else {
        let api: Api<Namespace> = Api::all(client.clone());
        if let Err(e) = api.delete(&ns, &DeleteParams::background()).await {
            eprintln!("warning: deleting namespace {ns}: {e}");
        }
    }
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(Error::Test {
            namespace: ns,
            source,
        }),
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Err(_) => Err(Error::Cancelled { namespace: ns }),
    }
}

/// Creates namespace `ns` and waits until pods can run in it (its `default` ServiceAccount and
/// `kube-root-ca.crt` ConfigMap exist).
pub async fn create_namespace(client: &Client, ns: &str) -> Result<(), Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(ns.to_owned()),
            labels: Some([(TEST_NS_LABEL.to_owned(), "true".to_owned())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create(&PostParams::default(), &namespace)
        .await
        .map_err(kube_err(format!("creating namespace {ns}")))?;
    let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let cm: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    wait_for(
        Duration::from_secs(60),
        &format!("serviceaccount {ns}/default and configmap {ns}/kube-root-ca.crt"),
        || {
            let (sa, cm) = (sa.clone(), cm.clone());
            async move {
                let has_sa = sa.get_opt("default").await?.is_some();
                let has_cm = cm.get_opt("kube-root-ca.crt").await?.is_some();
                Ok(if has_sa && has_cm {
                    Check::Done(())
                } else {
                    Check::NotYet(format!("serviceaccount: {has_sa}, configmap: {has_cm}"))
                })
            }
        },
    )
    .await
}

/// The outcome of one look in [`wait_for`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check<T> {
    /// The condition holds, with this value.
    Done(T),
    /// Not yet; what was seen (reported on timeout).
    NotYet(String),
}

/// Polls `check` (every 250 ms, each look bounded by the time left) until it is done or
/// `timeout` passes. Errors from `check` count as "not yet" and are reported on timeout.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Check<T>, BoxError>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = "nothing yet".to_owned();
    loop {
        match tokio::time::timeout_at(deadline, check()).await {
            Ok(Ok(Check::Done(value))) => return Ok(value),
            Ok(Ok(Check::NotYet(seen))) => last = seen,
            Ok(Err(e)) => last = format!("error: {e}"),
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.to_owned(),
                timeout,
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(250).min(deadline - Instant::now())).await;
    }
}

/// Watches object `name` until `condition` holds (kube-runtime's `await_condition`), at most
/// `timeout`. On timeout the error shows the object as last seen.
pub async fn wait_for_condition<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    what: &str,
    condition: impl Condition<K>,
) -> Result<Option<K>, Error>
where
    K: Resource + Clone + DeserializeOwned + fmt::Debug + serde::Serialize + Send + 'static,
{
    match tokio::time::timeout(timeout, await_condition(api.clone(), name, condition)).await {
        Ok(Ok(obj)) => Ok(obj),
        Ok(Err(e)) => Err(Error::Timeout {
            what: what.to_owned(),
            timeout,
            last: format!("watch failed: {e}"),
        }),
        Err(_) => {
            let last = match api.get_opt(name).await {
                Ok(Some(obj)) => serde_json::to_value(&obj)
                    .ok()
                    .and_then(|v| v.get("status").cloned())
                    .map_or_else(|| "exists, no status".to_owned(), |s| s.to_string()),
                Ok(None) => "it does not exist".to_owned(),
                Err(e) => format!("reading it: {e}"),
            };
            Err(Error::Timeout {
                what: what.to_owned(),
                timeout,
                last,
            })
        }
    }
}

/// A readable description of namespace `ns`: pods with their status, Jobs, events and the logs
/// of every pod (on the local cluster including pods already deleted).
pub async fn dump_namespace(cluster: &TestCluster, client: &Client, ns: &str) -> String {
    use std::fmt::Write as _;
    let mut out = format!("===== dump of namespace {ns} =====\n");
    let lp = ListParams::default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    match pods.list(&lp).await {
        Ok(list) => {
            let _ = writeln!(out, "--- pods ({}) ---", list.items.len());
            for p in &list.items {
                let _ = writeln!(out, "{}", describe_pod(p));
            }
        }
        Err(e) => {
            let _ = writeln!(out, "listing pods: {e}");
        }
    }
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    match jobs.list(&lp).await {
        Ok(list) => {
            let _ = writeln!(out, "--- jobs ({}) ---", list.items.len());
            for j in &list.items {
                let s = j.status.clone().unwrap_or_default();
                let conditions: Vec<String> = s
                    .conditions
                    .iter()
                    .flatten()
                    .map(|c| {
                        format!(
                            "{}={} ({})",
                            c.type_,
                            c.status,
                            c.message.clone().unwrap_or_default()
                        )
                    })
                    .collect();
                let _ = writeln!(
                    out,
                    "{} active={} succeeded={} failed={} conditions=[{}]",
                    j.metadata.name.clone().unwrap_or_default(),
                    s.active.unwrap_or(0),
                    s.succeeded.unwrap_or(0),
                    s.failed.unwrap_or(0),
                    conditions.join(", ")
                );
            }
        }
        Err(e) => {
            let _ = writeln!(out, "listing jobs: {e}");
        }
    }
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    match events.list(&lp).await {
        Ok(mut list) => {
            list.items.sort_by_key(|e| {
                e.last_timestamp
                    .as_ref()
                    .map(|t| t.0)
                    .or(e.event_time.as_ref().map(|t| t.0))
            });
            let _ = writeln!(out, "--- events ({}) ---", list.items.len());
            for e in &list.items {
                let _ = writeln!(
                    out,
                    "{} {} {}/{}: {}",
                    e.type_.clone().unwrap_or_default(),
                    e.reason.clone().unwrap_or_default(),
                    e.involved_object.kind.clone().unwrap_or_default(),
                    e.involved_object.name.clone().unwrap_or_default(),
                    e.message.clone().unwrap_or_default()
                );
            }
        }
        Err(e) => {
            let _ = writeln!(out, "listing events: {e}");
        }
    }
    let _ = writeln!(out, "--- pod logs ---");
    if let Ok(list) = pods.list(&lp).await {
        for p in &list.items {
            let name = p.metadata.name.clone().unwrap_or_default();
            let _ = writeln!(out, ">>> {name}");
            match cluster.pod_log(client, ns, &name).await {
                Ok(log) => out.push_str(&log),
                Err(e) => {
                    let _ = writeln!(out, "({e})");
                }
            }
        }
    }
    let _ = writeln!(out, "===== end of dump of namespace {ns} =====");
    out
}

/// One line per pod: phase, node, reason and each container's state.
pub fn describe_pod(p: &Pod) -> String {
    let status = p.status.clone().unwrap_or_default();
    let containers: Vec<String> = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .map(|c| {
            let state = c.state.clone().unwrap_or_default();
            let s = if let Some(t) = state.terminated {
                format!(
                    "terminated(exit {}, {})",
                    t.exit_code,
                    t.reason.unwrap_or_default()
                )
            } else if state.running.is_some() {
                "running".to_owned()
            } else if let Some(w) = state.waiting {
                format!(
                    "waiting({}: {})",
                    w.reason.unwrap_or_default(),
                    w.message.unwrap_or_default()
                )
            } else {
                "unknown".to_owned()
            };
            format!("{}={s} restarts={}", c.name, c.restart_count)
        })
        .collect();
    format!(
        "{} phase={} node={} reason={} message={} deleting={} [{}]",
        p.metadata.name.clone().unwrap_or_default(),
        status.phase.unwrap_or_default(),
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        status.reason.unwrap_or_default(),
        status.message.unwrap_or_default(),
        p.metadata.deletion_timestamp.is_some(),
        containers.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_random_dns_labels() {
        let a = random_namespace();
        let b = random_namespace();
        assert_ne!(a, b);
        assert!(a.len() <= 63 && a.starts_with("kv-test-"));
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }

    #[tokio::test]
    async fn wait_for_reports_what_and_last_seen() {
        let err = wait_for(Duration::from_millis(300), "the answer", || async {
            Ok::<_, BoxError>(Check::<()>::NotYet("41".to_owned()))
        })
        .await
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("the answer") && msg.contains("41"), "{msg}");
        let mut n = 0;
        let value = wait_for(Duration::from_secs(5), "n to reach 2", || {
            n += 1;
            let n = n;
            async move {
                Ok::<_, BoxError>(if n >= 2 {
                    Check::Done(n)
                } else {
                    Check::NotYet(n.to_string())
                })
            }
        })
        .await
        .unwrap();
        assert_eq!(value, 2);
    }
}
