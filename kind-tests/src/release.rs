//! kubevigil installed by its Helm chart, as a scenario test needs it.
//!
//! Each scenario gets its own release (own name, own install namespace) that only includes the
//! scenario's namespaces, so scenarios running side by side do not scan, count or clean up each
//! other's workloads. The local kubelet maps the images `kubevigil.local/controller:dev` and
//! `kubevigil.local/scan-job:dev` to the workspace's binaries (`cargo build --bins`).

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::ListParams;
use kubevigil_crds::WorkloadConfigurationScanSummary;

use crate::scenario::{BoxError, Check, Error, TestCluster, dump_namespace, wait_for};

/// The chart in this repository.
pub fn chart_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/kubevigil"))
}

/// Label selector of the scan Jobs (SPEC.md: Jobs carry the component label).
pub const SCAN_JOB_SELECTOR: &str = "app.kubernetes.io/component=scan-job";

/// A Helm release of kubevigil for one scenario.
#[derive(Debug, Clone)]
pub struct Release {
    /// Helm release name; also the prefix of the chart's cluster-scoped RBAC names.
    pub name: String,
    /// Namespace the controller and its scan Jobs run in.
    pub namespace: String,
    /// Namespaces the controller watches (`includeNamespaces`).
    pub include: Vec<String>,
    /// Extra `--set key=value` pairs, applied after the defaults below.
    pub sets: Vec<String>,
    /// Extra `--set-json key=json` pairs, applied after `sets`.
    pub set_jsons: Vec<String>,
    /// Port of the controller's `/metrics`, `/livez` and `/readyz` (`metrics.port`). Pods of the
    /// local kubelet share the host network, so each release gets a free port of its own (two
    /// controllers on 8080 would collide); the test reaches it on 127.0.0.1.
    pub metrics_port: u16,
}

impl Release {
    /// A release named `name` in namespace `name`, watching `include`, with a free metrics port.
    pub fn new(name: &str, include: &[&str]) -> Self {
        Release {
            name: name.to_owned(),
            namespace: name.to_owned(),
            include: include.iter().map(|s| (*s).to_owned()).collect(),
            sets: Vec::new(),
            set_jsons: Vec::new(),
            metrics_port: crate::procs::free_port().unwrap_or(8080),
        }
    }

    /// Adds a `--set-json key=json` (lists of objects such as `continuousScanning.matchingRules`).
    #[must_use]
    pub fn set_json(mut self, key_json: &str) -> Self {
        self.set_jsons.push(key_json.to_owned());
        self
    }

    /// Adds a `--set key=value`.
    #[must_use]
    pub fn set(mut self, key_value: &str) -> Self {
        self.sets.push(key_value.to_owned());
        self
    }

    /// The `helm` arguments of `upgrade --install` (the README's command plus the local images).
    pub fn install_args(&self) -> Vec<String> {
        let chart = chart_dir();
        let mut args: Vec<String> = [
            "upgrade",
            "--install",
            &self.name,
            &chart.to_string_lossy(),
            "-n",
            &self.namespace,
            "--create-namespace",
            "--set",
            "clusterName=local",
            "--set",
            "capabilities.continuousScan=enable",
            "--set",
            "controller.image.repository=kubevigil.local/controller",
            "--set",
            "controller.image.tag=dev",
            "--set",
            "scanJob.image.repository=kubevigil.local/scan-job",
            "--set",
            "scanJob.image.tag=dev",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.push("--set".to_owned());
        args.push(format!("metrics.port={}", self.metrics_port));
        if !self.include.is_empty() {
            args.push("--set".to_owned());
            args.push(format!("includeNamespaces={{{}}}", self.include.join(",")));
        }
        for kv in &self.sets {
            args.push("--set".to_owned());
            args.push(kv.clone());
        }
        for kj in &self.set_jsons {
            args.push("--set-json".to_owned());
            args.push(kj.clone());
        }
        args.extend(["--wait", "--timeout", "180s"].map(str::to_owned));
        args
    }

    /// `helm upgrade --install` and wait for the controller to be ready.
    pub async fn install(&self, cluster: &TestCluster) -> Result<(), Error> {
        cluster.helm(self.install_args()).await?;
        Ok(())
    }

    /// `helm uninstall --wait`, then deletes the install namespace. Errors are printed, not
    /// returned: cleanup must not hide the test's own outcome.
    pub async fn uninstall(&self, cluster: &TestCluster) {
        if let Err(e) = cluster
            .helm(["uninstall", &self.name, "-n", &self.namespace, "--wait"])
            .await
        {
            eprintln!("warning: helm uninstall {}: {e}", self.name);
        }
        if let Err(e) = cluster
            .kubectl([
                "delete",
                "namespace",
                &self.namespace,
                "--ignore-not-found",
                "--wait=false",
            ])
            .await
        {
            eprintln!("warning: deleting namespace {}: {e}", self.namespace);
        }
    }

    /// The install namespace's pods, Jobs, events and logs (controller and scan Jobs).
    pub async fn dump(&self, cluster: &TestCluster) -> String {
        match cluster.client().await {
            Ok(client) => dump_namespace(cluster, &client, &self.namespace).await,
            Err(e) => format!("(no client to dump {}: {e})", self.namespace),
        }
    }

    /// `GET path` on the controller's HTTP endpoint (`/metrics`, `/livez`, `/readyz`).
    pub async fn controller_get(&self, path: &str) -> Result<HttpResponse, Error> {
        controller_get(self.metrics_port, path).await
    }

    /// The scan Jobs of this release.
    pub async fn scan_jobs(&self, cluster: &TestCluster) -> Result<Vec<Job>, Error> {
        let client = cluster.client().await?;
        let api: Api<Job> = Api::namespaced(client, &self.namespace);
        let list = api
            .list(&ListParams::default().labels(SCAN_JOB_SELECTOR))
            .await
            .map_err(|e| Error::Kube {
                action: format!("listing scan Jobs in {}", self.namespace),
                source: e,
            })?;
        Ok(list.items)
    }
}

/// Runs `body` with `release` installed, and uninstalls it afterwards whatever happened. On
/// failure the install namespace is dumped to stderr (the test namespace is dumped by
/// `with_temp_ns`).
pub async fn with_release<F, Fut, T>(
    cluster: &TestCluster,
    release: &Release,
    body: F,
) -> Result<T, Error>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let outcome = match release.install(cluster).await {
        Ok(()) => body().await,
        Err(e) => Err(e),
    };
    if outcome.is_err() {
        eprintln!("{}", release.dump(cluster).await);
    }
    release.uninstall(cluster).await;
    outcome
}

/// The status (`passed`, `failed`, `skipped`) of `control` in wcss `ns/name`, `None` when the
/// summary or the control is absent.
pub async fn control_status(
    summaries: &Api<WorkloadConfigurationScanSummary>,
    name: &str,
    control: &str,
) -> Result<Option<String>, Error> {
    let Some(summary) = summaries.get_opt(name).await.map_err(|e| Error::Kube {
        action: format!("reading wcss {name}"),
        source: e,
    })?
    else {
        return Ok(None);
    };
    Ok(summary.spec.controls.get(control).and_then(|c| {
        serde_json::to_value(c.status.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
    }))
}

/// Waits until `control` in wcss `name` has `status`.
pub async fn wait_control_status(
    summaries: &Api<WorkloadConfigurationScanSummary>,
    name: &str,
    control: &str,
    status: &str,
    timeout: Duration,
) -> Result<(), Error> {
    wait_for(
        timeout,
        &format!("wcss {name} with {control} {status}"),
        || async move {
            Ok::<_, BoxError>(match control_status(summaries, name, control).await? {
                Some(s) if s == status => Check::Done(()),
                other => Check::NotYet(format!("{control} is {other:?}")),
            })
        },
    )
    .await
}

/// A response of the controller's HTTP endpoint.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// HTTP status code.
    pub status: u16,
    /// Body.
    pub body: String,
}

/// `GET path` on a controller of the local cluster, at `127.0.0.1:port`. The local kubelet runs
/// pods as host processes with pod IP 127.0.0.1, which the API server's service and pod proxies
/// refuse to reach, so tests talk to the port directly (on a real cluster: `kubectl get --raw
/// /api/v1/namespaces/NS/services/SVC:PORT/proxy/PATH`).
pub async fn controller_get(port: u16, path: &str) -> Result<HttpResponse, Error> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let what = format!("GET http://127.0.0.1:{port}{path}");
    let io = |e: std::io::Error| Error::Boot {
        command: what.clone(),
        detail: e.to_string(),
    };
    let mut stream = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    .map_err(|_| io(std::io::Error::other("connect timed out")))?
    .map_err(io)?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await
        .map_err(io)?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
        .await
        .map_err(|_| io(std::io::Error::other("read timed out")))?
        .map_err(io)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io(std::io::Error::other(format!("no HTTP status in {head:?}"))))?;
    Ok(HttpResponse {
        status,
        body: body.to_owned(),
    })
}

/// The value of the first sample of metric `name` in a Prometheus text exposition.
pub fn metric_value(exposition: &str, name: &str) -> Option<f64> {
    exposition
        .lines()
        .find(|l| l.split([' ', '{']).next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
