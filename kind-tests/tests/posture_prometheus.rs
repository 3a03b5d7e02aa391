//! Issue 18, acceptances 2 and 4: the posture metrics on a real Prometheus.
//!
//! Debian's `prometheus` (the package `make rules-check` installs for promtool) runs on
//! loopback only, with its own temporary storage and a bounded retention, scraping the
//! controller pod every 2 s and evaluating the chart's rules file
//! (`charts/kubevigil/files/prometheus-rules.yaml`) every 2 s. The demo namespace
//! (`demo/k8s-bad-practices.yaml`) is scanned; Prometheus' values must equal its
//! ConfigurationScanSummary, before and after one of its Deployments is fixed; every PromQL
//! expression of the Grafana dashboard must return data; and a new Deployment failing the one
//! Critical control (C-0090, an old Grafana image) must fire `KubevigilNewCriticalFailure` for the namespace. Prometheus is killed when the test ends
//! (`kill_on_drop`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kind_tests::pipeline::{create_deployment, deployment};
use kind_tests::release::{Release, chart_dir, wait_control_status, with_release};
use kind_tests::scenario::{BoxError, Check, Error, TestCluster, wait_for};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use kubevigil_crds::{ConfigurationScanSummary, WorkloadConfigurationScanSummary};
use serde_json::{Value, json};

const DEMO_NS: &str = "k8s-bad-practices";
/// The summary of the demo's privileged reverse proxy.
const PROXY: &str = "deployment-trusty-reverse-proxy";
const WAIT: Duration = Duration::from_secs(240);

fn demo_file() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../demo/k8s-bad-practices.yaml"
    ))
}

fn test_err(what: impl std::fmt::Display) -> Error {
    Error::Test {
        namespace: DEMO_NS.to_owned(),
        source: what.to_string().into(),
    }
}

/// A Prometheus process on loopback, killed when dropped.
struct Prometheus {
    /// Held for `kill_on_drop`.
    _child: tokio::process::Child,
    port: u16,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Prometheus {
    async fn start(target: &str) -> Result<Prometheus, Error> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(test_err)?
            .port();
        let dir = std::env::temp_dir().join(format!("kv-prometheus-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).map_err(test_err)?;
        let rules = chart_dir().join("files/prometheus-rules.yaml");
        let config = format!(
            "global: {{scrape_interval: 2s, scrape_timeout: 2s, evaluation_interval: 2s}}\n\
             rule_files: [{rules:?}]\n\
             scrape_configs:\n\
             - job_name: kubevigil\n\
             \x20 static_configs: [{{targets: [{target:?}]}}]\n",
            rules = rules.display().to_string(),
        );
        std::fs::write(dir.join("prometheus.yml"), config).map_err(test_err)?;
        let child = tokio::process::Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg("--storage.tsdb.retention.time=1h")
            .arg("--storage.tsdb.retention.size=256MB")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).map_err(test_err)?)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                test_err(format!(
                    "starting prometheus (apt-get install prometheus): {e}"
                ))
            })?;
        let p = Prometheus {
            _child: child,
            port,
            _dir: TempDir(dir),
        };
        wait_for(Duration::from_secs(60), "prometheus ready", || async {
            Ok::<_, BoxError>(match p.get("/-/ready", &[]).await {
                Ok(_) => Check::Done(()),
                Err(e) => Check::NotYet(e.to_string()),
            })
        })
        .await?;
        Ok(p)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.0.join("prometheus.log")).unwrap_or_default()
    }

    async fn get(&self, path: &str, params: &[(&str, &str)]) -> Result<String, BoxError> {
        let mut cmd = tokio::process::Command::new("curl");
        cmd.args(["-sf", "--max-time", "5", "--get"]);
        for (k, v) in params {
            cmd.arg("--data-urlencode").arg(format!("{k}={v}"));
        }
        cmd.arg(format!("http://127.0.0.1:{}{path}", self.port));
        let out = cmd.output().await?;
        if !out.status.success() {
            return Err(format!("curl {path}: {}", out.status).into());
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// The result vector of an instant query.
    async fn query(&self, expr: &str) -> Result<Vec<Value>, BoxError> {
        let body = self.get("/api/v1/query", &[("query", expr)]).await?;
        let v: Value = serde_json::from_str(&body)?;
        if v["status"] != "success" {
            return Err(format!("query {expr}: {body}").into());
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// `namespace`'s failed controls per severity, as Prometheus has them.
    async fn failed_controls(&self, namespace: &str) -> Result<Vec<(String, f64)>, BoxError> {
        let mut out: Vec<(String, f64)> = self
            .query(&format!(
                "kubevigil_posture_failed_controls{{namespace=\"{namespace}\"}}"
            ))
            .await?
            .iter()
            .map(|s| {
                (
                    s["metric"]["severity"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    s["value"][1]
                        .as_str()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(-1.0),
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// The severities of the namespace summary, in the order of [`Prometheus::failed_controls`].
async fn css_counts(client: &Client, namespace: &str) -> Result<Vec<(String, f64)>, BoxError> {
    let css: Api<ConfigurationScanSummary> = Api::all(client.clone());
    let s = css.get(namespace).await?.spec;
    let mut out = vec![
        ("critical".to_owned(), f64::from(s.severities.critical)),
        ("high".to_owned(), f64::from(s.severities.high)),
        ("low".to_owned(), f64::from(s.severities.low)),
        ("medium".to_owned(), f64::from(s.severities.medium)),
        ("unknown".to_owned(), f64::from(s.severities.unknown)),
    ];
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Waits until Prometheus' values for the namespace equal its summary (and the workloads
/// count equals `kubevigil_posture_resources`), with at least `critical` Critical failures
/// when given.
async fn wait_equal(
    prom: &Prometheus,
    client: &Client,
    what: &str,
    check: impl Fn(&[(String, f64)]) -> bool,
) -> Result<Vec<(String, f64)>, Error> {
    wait_for(WAIT, what, || async {
        let css = css_counts(client, DEMO_NS).await?;
        let scraped = prom.failed_controls(DEMO_NS).await?;
        let css_obj: Api<ConfigurationScanSummary> = Api::all(client.clone());
        let workloads = f64::from(css_obj.get(DEMO_NS).await?.spec.workloads);
        let resources = prom
            .query(&format!("kubevigil_posture_resources{{namespace=\"{DEMO_NS}\"}}"))
            .await?;
        let res = resources
            .first()
            .and_then(|s| s["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()));
        // The controller is idle: nothing queued, no scan Job running.
        let busy = prom
            .query("sum(kubevigil_queue_depth) + sum(kubevigil_scan_jobs_active)")
            .await?
            .first()
            .and_then(|s| s["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()));
        Ok::<_, BoxError>(if css == scraped && check(&css) && res == Some(workloads) && busy == Some(0.0) {
            Check::Done(css)
        } else {
            Check::NotYet(format!(
                "summary {css:?} ({workloads} workloads), prometheus {scraped:?} ({res:?} resources, {busy:?} queued or running)"
            ))
        })
    })
    .await
}

/// Failed controls of every severity.
fn total(counts: &[(String, f64)]) -> f64 {
    counts.iter().map(|c| c.1).sum()
}

fn critical(counts: &[(String, f64)]) -> f64 {
    counts
        .iter()
        .find(|(s, _)| s == "critical")
        .map_or(0.0, |c| c.1)
}

/// Every `expr` of the dashboard's panels.
fn dashboard_queries() -> Vec<String> {
    let board: Value = serde_json::from_str(
        &std::fs::read_to_string(chart_dir().join("files/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    board["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect()
}

async fn controller_pod_ip(client: &Client, release: &Release) -> Result<String, BoxError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &release.namespace);
    let list = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=controller"))
        .await?;
    list.items
        .iter()
        .find_map(|p| p.status.as_ref()?.pod_ip.clone())
        .ok_or_else(|| "no controller pod IP".into())
}

async fn scenario(cluster: &TestCluster, client: &Client, release: &Release) -> Result<(), Error> {
    let ip = wait_for(Duration::from_secs(60), "controller pod IP", || async {
        Ok::<_, BoxError>(Check::Done(controller_pod_ip(client, release).await?))
    })
    .await?;
    let prom = Prometheus::start(&format!("{ip}:8080")).await?;
    let outcome = observe(cluster, client, release, &prom).await;
    if outcome.is_err() {
        eprintln!("prometheus log:\n{}", prom.log());
    }
    drop(prom);
    outcome
}

async fn observe(
    cluster: &TestCluster,
    client: &Client,
    release: &Release,
    prom: &Prometheus,
) -> Result<(), Error> {
    wait_for(
        Duration::from_secs(60),
        "prometheus scraping the controller",
        || async {
            let up = prom.query("up{job=\"kubevigil\"}").await?;
            Ok::<_, BoxError>(match up.first() {
                Some(s) if s["value"][1] == "1" => Check::Done(()),
                other => Check::NotYet(format!("{other:?}")),
            })
        },
    )
    .await?;
    // The demo namespace scanned: its privileged Deployment and Pod, among others.
    let summaries: Api<WorkloadConfigurationScanSummary> = Api::namespaced(client.clone(), DEMO_NS);
    wait_control_status(&summaries, PROXY, "C-0057", "failed", WAIT).await?;
    let before = wait_equal(prom, client, "prometheus equal to the demo summary", |c| {
        total(c) > 0.0
    })
    .await?;
    println!("demo namespace scanned: summary = prometheus = {before:?}");
    let metrics = release.controller_get(cluster, "/metrics").await?;
    println!("controller /metrics, posture series of {DEMO_NS}:");
    for line in metrics.body.lines().filter(|l| {
        l.starts_with("kubevigil_posture_") && l.contains(&format!("namespace=\"{DEMO_NS}\""))
    }) {
        println!("  {line}");
    }
    let css = cluster
        .kubectl(["get", "configurationscansummary", DEMO_NS])
        .await?;
    println!("kubectl get configurationscansummary {DEMO_NS}:\n{css}");

    // Fix one workload: the reverse proxy is no longer privileged, nor on the host's
    // namespaces, nor root.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), DEMO_NS);
    let fix = json!({"spec": {"template": {"spec": {
        "hostNetwork": false, "hostPID": false,
        "containers": [{"name": "proxy", "securityContext": {"privileged": false, "runAsUser": 1000, "runAsNonRoot": true},
                        "ports": [{"containerPort": 80, "hostPort": null}]}]}}}});
    deployments
        .patch(
            "trusty-reverse-proxy",
            &PatchParams::default(),
            &Patch::Strategic(&fix),
        )
        .await
        .map_err(|source| Error::Kube {
            action: "fixing trusty-reverse-proxy".into(),
            source,
        })?;
    wait_control_status(&summaries, PROXY, "C-0057", "passed", WAIT).await?;
    let after = wait_equal(
        prom,
        client,
        "prometheus equal to the fixed demo summary",
        |c| total(c) < total(&before),
    )
    .await?;
    println!("after the fix: summary = prometheus = {after:?}");

    // Every dashboard query returns data.
    for expr in dashboard_queries() {
        let series = wait_for(
            Duration::from_secs(60),
            &format!("data for {expr}"),
            || async {
                let r = prom.query(&expr).await?;
                Ok::<_, BoxError>(if r.is_empty() {
                    Check::NotYet("empty".into())
                } else {
                    Check::Done(r.len())
                })
            },
        )
        .await?;
        println!("dashboard query {expr}: {series} series");
    }

    // A new Critical failure fires the alert. The catalog's one Critical control is C-0090
    // (CVE-2022-39328: Grafana before 9.2.4); no replicas, so no image is ever pulled.
    let mut grafana = deployment("old-grafana", false, 0)?;
    if let Some(c) = grafana
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .and_then(|p| p.containers.first_mut())
    {
        c.image = Some("grafana/grafana:9.2.0".into());
    }
    create_deployment(client, DEMO_NS, &grafana).await?;
    let alert = wait_for(WAIT, "KubevigilNewCriticalFailure firing", || async {
        let body = prom.get("/api/v1/alerts", &[]).await?;
        let v: Value = serde_json::from_str(&body)?;
        let firing = v["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .find(|a| {
                a["labels"]["alertname"] == "KubevigilNewCriticalFailure"
                    && a["labels"]["namespace"] == DEMO_NS
                    && a["state"] == "firing"
            });
        Ok::<_, BoxError>(match firing {
            Some(a) => Check::Done(a),
            None => Check::NotYet(body),
        })
    })
    .await?;
    println!(
        "alert firing: {} {} value={} ({})",
        alert["labels"]["alertname"],
        alert["labels"]["namespace"],
        alert["value"],
        alert["annotations"]["summary"]
    );
    let now = css_counts(client, DEMO_NS).await.map_err(test_err)?;
    println!("after the old Grafana Deployment: summary {now:?}");
    assert!(critical(&now) > critical(&after), "{now:?} vs {after:?}");
    Ok(())
}

#[tokio::test]
async fn posture_metrics_on_a_real_prometheus() -> Result<(), Error> {
    let cluster = TestCluster::shared().await?;
    let client = cluster.client().await?;
    let demo: &Path = &demo_file();
    cluster
        .kubectl(["apply", "-f", &demo.display().to_string()])
        .await?;
    let release = Release::new("kv-prom", &[DEMO_NS]);
    let outcome = with_release(cluster, &release, || scenario(cluster, &client, &release)).await;
    if let Err(e) = cluster
        .kubectl([
            "delete",
            "-f",
            &demo.display().to_string(),
            "--wait=false",
            "--ignore-not-found",
        ])
        .await
    {
        eprintln!("warning: deleting the demo namespace: {e}");
    }
    outcome
}
