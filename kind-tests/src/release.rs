//! kubevigil installed by its Helm chart, as a scenario test needs it.
//!
//! Each scenario gets its own release (own name, own install namespace) that only includes the
//! scenario's namespaces, so scenarios running side by side do not scan, count or clean up each
//! other's workloads. The images are the chart's defaults (`ghcr.io/kubevigil/...:<appVersion>`),
//! which the local node imports at boot from `scripts/images.sh`.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
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
    /// The Pod Security Standard the install namespace enforces (`restricted`), if any: the
    /// namespace is then created with the `pod-security.kubernetes.io/{enforce,warn,audit}`
    /// labels before the chart goes in (Helm's `--create-namespace` cannot label it).
    pub pod_security: Option<String>,
}

/// The chart's default `metrics.port`.
pub const METRICS_PORT: u16 = 8080;

impl Release {
    /// A release named `name` in namespace `name`, watching `include`.
    pub fn new(name: &str, include: &[&str]) -> Self {
        Release {
            name: name.to_owned(),
            namespace: name.to_owned(),
            include: include.iter().map(|s| (*s).to_owned()).collect(),
            sets: Vec::new(),
            set_jsons: Vec::new(),
            pod_security: None,
        }
    }

    /// Makes the install namespace enforce Pod Security `level` (see [`Release::pod_security`]).
    #[must_use]
    pub fn with_pod_security(mut self, level: &str) -> Self {
        self.pod_security = Some(level.to_owned());
        self
    }

    /// Creates the install namespace with its Pod Security labels when the release asks for
    /// them (server-side apply: it also labels a namespace that exists); otherwise does nothing,
    /// and `helm --create-namespace` creates it.
    pub async fn prepare_namespace(&self, cluster: &TestCluster) -> Result<(), Error> {
        let Some(level) = &self.pod_security else {
            return Ok(());
        };
        let labels: serde_json::Map<String, serde_json::Value> = ["enforce", "warn", "audit"]
            .iter()
            .map(|mode| {
                (
                    format!("pod-security.kubernetes.io/{mode}"),
                    serde_json::Value::String(level.clone()),
                )
            })
            .collect();
        let namespace = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": self.namespace, "labels": labels},
        });
        let client = cluster.client().await?;
        Api::<Namespace>::all(client)
            .patch(
                &self.namespace,
                &PatchParams::apply("kubevigil-tests"),
                &Patch::Apply(&namespace),
            )
            .await
            .map_err(|e| Error::Kube {
                action: format!(
                    "creating namespace {} with Pod Security {level}",
                    self.namespace
                ),
                source: e,
            })?;
        Ok(())
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

    /// The `helm` arguments of `upgrade --install` (the README's command, with the test's scope).
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
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
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

    /// `helm upgrade --install` (after [`Release::prepare_namespace`]) and wait for the
    /// controller to be ready.
    pub async fn install(&self, cluster: &TestCluster) -> Result<(), Error> {
        self.prepare_namespace(cluster).await?;
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

    /// The chart's `kubevigil.fullname`: `<release>-kubevigil`, or the release name when it
    /// holds `kubevigil`, cut to 40 characters. Every object name of the release starts with it.
    pub fn fullname(&self) -> String {
        let full = if self.name.contains("kubevigil") {
            self.name.clone()
        } else {
            format!("{}-kubevigil", self.name)
        };
        let full: String = full.chars().take(40).collect();
        full.trim_end_matches('-').to_owned()
    }

    /// The controller's ServiceAccount as the API server names its requests
    /// (`system:serviceaccount:<namespace>:<fullname>-controller`).
    pub fn controller_user(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}-controller",
            self.namespace,
            self.fullname()
        )
    }

    /// The controller's metrics Service (`<release>-kubevigil-controller-metrics`, or
    /// `<release>-controller-metrics` when the release name holds `kubevigil`).
    pub fn metrics_service(&self) -> String {
        format!("{}-controller-metrics", self.fullname())
    }

    /// `GET path` on the controller's HTTP endpoint (`/metrics`, `/livez`, `/readyz`), through
    /// the API server's service proxy.
    pub async fn controller_get(
        &self,
        cluster: &TestCluster,
        path: &str,
    ) -> Result<HttpResponse, Error> {
        let client = cluster.client().await?;
        controller_get(&client, &self.namespace, &self.metrics_service(), path).await
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

/// `GET path` on the controller behind Service `service` in `namespace`, through the API
/// server's service proxy (`kubectl get --raw
/// /api/v1/namespaces/NS/services/SVC:8080/proxy/PATH`): the API server connects to the
/// controller pod's address on the node's bridge. A non-2xx answer (`/readyz` says 503 while a
/// kind is not ready) is returned as such, not as an error.
pub async fn controller_get(
    client: &kube::Client,
    namespace: &str,
    service: &str,
    path: &str,
) -> Result<HttpResponse, Error> {
    let uri =
        format!("/api/v1/namespaces/{namespace}/services/{service}:{METRICS_PORT}/proxy{path}");
    let what = format!("GET {uri}");
    let request = http::Request::get(&uri)
        .body(Vec::new())
        .map_err(|e| Error::Boot {
            command: what.clone(),
            detail: e.to_string(),
        })?;
    let answer = tokio::time::timeout(Duration::from_secs(10), client.request_text(request))
        .await
        .map_err(|_| Error::Boot {
            command: what.clone(),
            detail: "no answer within 10s".to_owned(),
        })?;
    match answer {
        Ok(body) => Ok(HttpResponse { status: 200, body }),
        Err(kube::Error::Api(status)) => Ok(HttpResponse {
            status: status.code,
            body: status.message.clone(),
        }),
        Err(e) => Err(Error::Kube {
            action: what,
            source: e,
        }),
    }
}

/// The value of the first sample of metric `name` in a Prometheus text exposition.
pub fn metric_value(exposition: &str, name: &str) -> Option<f64> {
    exposition
        .lines()
        .find(|l| l.split([' ', '{']).next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
