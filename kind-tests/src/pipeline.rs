//! Helpers of the pipeline scenarios (issue 5's acceptance list): Deployments to scan, a watch
//! that counts scan Jobs while a scenario runs, `kubectl get` of results, and the controller's
//! HTTP endpoints.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{ListParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::task::JoinHandle;

use crate::release::{Release, SCAN_JOB_SELECTOR};
use crate::scenario::{BoxError, Check, Error, TestCluster, probe_image, wait_for};

/// Annotation of a scan Job listing its targets, one per line (SPEC.md).
pub const TARGETS_ANNOTATION: &str = "kubevigil.io/targets";

/// A Deployment `name` running the probe image, privileged or not.
pub fn deployment(name: &str, privileged: bool, replicas: i32) -> Result<Deployment, Error> {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "main",
                        "image": probe_image(),
                        "args": ["sleep"],
                        "securityContext": {"privileged": privileged},
                    }],
                },
            },
        },
    }))
    .map_err(|e| Error::Test {
        namespace: String::new(),
        source: format!("building deployment {name}: {e}").into(),
    })
}

/// Creates `deployment` in `ns`.
pub async fn create_deployment(
    client: &Client,
    ns: &str,
    deployment: &Deployment,
) -> Result<Deployment, Error> {
    let name = deployment.metadata.name.clone().unwrap_or_default();
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), deployment)
        .await
        .map_err(|e| Error::Kube {
            action: format!("creating deployment {ns}/{name}"),
            source: e,
        })
}

/// The target key a scan Job's annotation lists for Deployment `ns/name`.
pub fn deployment_target(ns: &str, name: &str) -> String {
    format!("apps/v1/deployments/Deployment/{ns}/{name}")
}

/// What a [`JobWatch`] has seen.
#[derive(Clone, Debug, Default)]
pub struct JobStats {
    /// Every scan Job seen (created before or during the watch), with its targets.
    pub seen: BTreeMap<String, Vec<String>>,
    /// Jobs created during the watch (not listed at its start).
    pub created: BTreeSet<String>,
    /// Jobs neither complete nor failed nor deleted, now.
    pub active: BTreeSet<String>,
    /// The most Jobs active at once during the watch.
    pub max_active: usize,
}

impl JobStats {
    /// Jobs created during the watch that scan a target containing `needle`.
    pub fn created_scanning(&self, needle: &str) -> Vec<String> {
        self.created
            .iter()
            .filter(|j| {
                self.seen
                    .get(*j)
                    .is_some_and(|ts| ts.iter().any(|t| t.contains(needle)))
            })
            .cloned()
            .collect()
    }

    /// Jobs ever seen that scan a target containing `needle`.
    pub fn seen_scanning(&self, needle: &str) -> Vec<String> {
        self.seen
            .iter()
            .filter(|(_, ts)| ts.iter().any(|t| t.contains(needle)))
            .map(|(j, _)| j.clone())
            .collect()
    }
}

/// A watch on a release's scan Jobs that keeps [`JobStats`] current, so that a scenario can
/// check a bound on active Jobs continuously rather than by sampling.
#[derive(Debug)]
pub struct JobWatch {
    stats: Arc<Mutex<JobStats>>,
    task: JoinHandle<()>,
}

/// Whether a Job has finished (a `Complete` or `Failed` condition that is true).
pub fn job_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        })
}

fn job_targets(job: &Job) -> Vec<String> {
    job.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TARGETS_ANNOTATION))
        .map(|s| s.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

impl JobWatch {
    /// Starts watching the scan Jobs in `namespace`; returns once the initial list is in.
    pub async fn start(client: Client, namespace: &str) -> Result<JobWatch, Error> {
        let stats = Arc::new(Mutex::new(JobStats::default()));
        let api: Api<Job> = Api::namespaced(client, namespace);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
        let task_stats = stats.clone();
        let task = tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            let mut initial = true;
            let config = watcher::Config::default().labels(SCAN_JOB_SELECTOR);
            let mut stream = std::pin::pin!(watcher::watcher(api, config));
            while let Some(event) = stream.next().await {
                let Ok(event) = event else { continue };
                let mut s = task_stats.lock().unwrap_or_else(|e| e.into_inner());
                match event {
                    Event::Init => {}
                    Event::InitApply(job) | Event::Apply(job) => {
                        let name = job.metadata.name.clone().unwrap_or_default();
                        if !initial && !s.seen.contains_key(&name) {
                            s.created.insert(name.clone());
                        }
                        s.seen.insert(name.clone(), job_targets(&job));
                        if job_finished(&job) || job.metadata.deletion_timestamp.is_some() {
                            s.active.remove(&name);
                        } else {
                            s.active.insert(name);
                        }
                        s.max_active = s.max_active.max(s.active.len());
                    }
                    Event::Delete(job) => {
                        let name = job.metadata.name.clone().unwrap_or_default();
                        s.active.remove(&name);
                    }
                    Event::InitDone => {
                        initial = false;
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                }
            }
        });
        match tokio::time::timeout(Duration::from_secs(30), ready_rx).await {
            Ok(Ok(())) => Ok(JobWatch { stats, task }),
            _ => {
                task.abort();
                Err(Error::Timeout {
                    what: format!("the initial list of scan Jobs in {namespace}"),
                    timeout: Duration::from_secs(30),
                    last: "no InitDone from the watch".to_owned(),
                })
            }
        }
    }

    /// What the watch has seen so far.
    pub fn stats(&self) -> JobStats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for JobWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until `name` no longer exists; returns how long that took.
pub async fn wait_gone<K>(api: &Api<K>, name: &str, timeout: Duration) -> Result<Duration, Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let start = tokio::time::Instant::now();
    wait_for(timeout, &format!("{name} to be deleted"), || async move {
        Ok::<_, BoxError>(match api.get_opt(name).await? {
            None => Check::Done(()),
            Some(_) => Check::NotYet("it still exists".to_owned()),
        })
    })
    .await?;
    Ok(start.elapsed())
}

/// The names `kubectl get RESOURCE -n NS -o name` prints (without the `kind/` prefix).
pub async fn kubectl_names(
    cluster: &TestCluster,
    resource: &str,
    ns: &str,
    extra: &[&str],
) -> Result<BTreeSet<String>, Error> {
    let mut args = vec!["get", resource, "-n", ns, "-o", "name"];
    args.extend_from_slice(extra);
    let out = cluster.kubectl(args).await?;
    Ok(out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.rsplit('/').next().unwrap_or(l).to_owned())
        .collect())
}

/// `kubectl get wcss NAME -n NS -o jsonpath=...`: the status of `control`, empty when absent.
pub async fn kubectl_control_status(
    cluster: &TestCluster,
    ns: &str,
    wcss: &str,
    control: &str,
) -> Result<String, Error> {
    let path = format!("jsonpath={{.spec.controls.{control}.status.status}}");
    Ok(cluster
        .kubectl(["get", "wcss", wcss, "-n", ns, "-o", &path])
        .await?
        .trim()
        .to_owned())
}

/// `kubectl get KIND NAME -n NS -o jsonpath={.metadata.uid}`.
pub async fn kubectl_uid(
    cluster: &TestCluster,
    kind: &str,
    ns: &str,
    name: &str,
) -> Result<String, Error> {
    Ok(cluster
        .kubectl([
            "get",
            kind,
            name,
            "-n",
            ns,
            "-o",
            "jsonpath={.metadata.uid}",
        ])
        .await?
        .trim()
        .to_owned())
}

/// GET `path` from the release's controller (`/readyz`, `/metrics`) through the API server's
/// service proxy: status code and body.
pub async fn controller_get(release: &Release, path: &str) -> Result<(u16, String), BoxError> {
    let cluster = TestCluster::shared().await?;
    let response = release.controller_get(cluster, path).await?;
    Ok((response.status, response.body))
}

/// Scales the release's controller Deployment to `replicas` and waits until that many
/// controller pods exist (0: every pod is gone; otherwise: ready).
pub async fn scale_controller(
    cluster: &TestCluster,
    release: &Release,
    replicas: i32,
) -> Result<(), Error> {
    cluster
        .kubectl([
            "scale",
            "deployment",
            "--all",
            "-n",
            &release.namespace,
            &format!("--replicas={replicas}"),
        ])
        .await?;
    let client = cluster.client().await?;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client, &release.namespace);
    wait_for(
        Duration::from_secs(90),
        &format!("{replicas} controller pods in {}", release.namespace),
        || {
            let pods = pods.clone();
            async move {
                let list = pods
                    .list(&ListParams::default().labels("app.kubernetes.io/component=controller"))
                    .await?;
                let ready = list
                    .items
                    .iter()
                    .filter(|p| {
                        p.metadata.deletion_timestamp.is_none()
                            && p.status
                                .as_ref()
                                .and_then(|s| s.conditions.as_ref())
                                .is_some_and(|cs| {
                                    cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                                })
                    })
                    .count();
                let done = if replicas == 0 {
                    list.items.is_empty()
                } else {
                    ready == usize::try_from(replicas).unwrap_or(0) && list.items.len() == ready
                };
                Ok::<_, BoxError>(if done {
                    Check::Done(())
                } else {
                    Check::NotYet(format!("{} pods, {ready} ready", list.items.len()))
                })
            }
        },
    )
    .await
}

/// Proof that the controller has processed every earlier event of the Deployment, ReplicaSet
/// and Pod watches, so that a scenario can then assert that those events started nothing.
///
/// Creates a Deployment, a ReplicaSet (no owner, no replicas) and a Pod (no owner), all named
/// `sentinel-<n>`, and waits for their three wcss. Each watch delivers its kind's events in
/// order, so once the sentinels' results exist the events before them were handled, and any
/// scan they caused was dispatched no later than the sentinels' (same debounce).
pub async fn sentinel(client: &Client, ns: &str, n: u32) -> Result<(), Error> {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::core::v1::Pod;
    use kubevigil_crds::WorkloadConfigurationScanSummary;

    let name = format!("sentinel-{n}");
    create_deployment(client, ns, &deployment(&name, false, 0)?).await?;
    let bad = |e: serde_json::Error| Error::Test {
        namespace: ns.to_owned(),
        source: format!("building sentinel {name}: {e}").into(),
    };
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"sentinel-rs": name}},
            "template": {
                "metadata": {"labels": {"sentinel-rs": name}},
                "spec": {"containers": [{"name": "main", "image": probe_image(), "args": ["sleep"]}]},
            },
        },
    }))
    .map_err(bad)?;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": probe_image(), "args": ["sleep"]}],
        },
    }))
    .map_err(bad)?;
    let kube_err = |what: &str| {
        let action = format!("creating {what} {ns}/{name}");
        move |source| Error::Kube { action, source }
    };
    Api::<ReplicaSet>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &rs)
        .await
        .map_err(kube_err("replicaset"))?;
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pod)
        .await
        .map_err(kube_err("pod"))?;
    let summaries: Api<WorkloadConfigurationScanSummary> = Api::namespaced(client.clone(), ns);
    let want = [
        format!("deployment-{name}"),
        format!("replicaset-{name}"),
        format!("pod-{name}"),
    ];
    let want = &want;
    let summaries = &summaries;
    wait_for(
        Duration::from_secs(60),
        &format!("the results of sentinel {name}: {want:?}"),
        || async move {
            let mut missing = Vec::new();
            for w in want {
                if summaries.get_opt(w).await?.is_none() {
                    missing.push(w.clone());
                }
            }
            Ok::<_, BoxError>(if missing.is_empty() {
                Check::Done(())
            } else {
                Check::NotYet(format!("missing {missing:?}"))
            })
        },
    )
    .await
}

/// Whether `target` (a scan Job's target line) is one of [`sentinel`]'s objects.
pub fn is_sentinel(target: &str) -> bool {
    target
        .rsplit('/')
        .next()
        .is_some_and(|n| n.starts_with("sentinel-"))
}

/// How many resyncs the release's running controller pods have logged so far (their
/// `"message":"resync"` lines, written once a resync's result list is in and its orphan
/// deletions are issued).
pub async fn resyncs_logged(cluster: &TestCluster, release: &Release) -> Result<usize, Error> {
    let client = cluster.client().await?;
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(client.clone(), &release.namespace);
    let list = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=controller"))
        .await
        .map_err(|e| Error::Kube {
            action: format!("listing controller pods in {}", release.namespace),
            source: e,
        })?;
    let mut n = 0;
    for p in list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let name = p.metadata.name.clone().unwrap_or_default();
        let log = cluster.pod_log(&client, &release.namespace, &name).await?;
        n += log
            .lines()
            .filter(|l| l.contains(r#""message":"resync""#))
            .count();
    }
    Ok(n)
}

/// `kubectl get wcss -n NS -o jsonpath`: each summary's name to the value at `field` (a jsonpath
/// below the item, e.g. `.metadata.uid` or `.spec.controls.C-0057.status.status`).
pub async fn wcss_field_by_name(
    cluster: &TestCluster,
    ns: &str,
    field: &str,
) -> Result<BTreeMap<String, String>, Error> {
    let out = cluster
        .kubectl([
            "get",
            "wcss",
            "-n",
            ns,
            "-o",
            &format!(
                r#"jsonpath={{range .items[*]}}{{.metadata.name}}{{" "}}{{{field}}}{{"\n"}}{{end}}"#
            ),
        ])
        .await?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect())
}

/// Waits until `kubectl get wcs` and `kubectl get wcss` in `ns` both list every name of
/// `present` and none of `absent`.
pub async fn wait_results(
    cluster: &TestCluster,
    ns: &str,
    present: &[&str],
    absent: &[&str],
    timeout: Duration,
) -> Result<(), Error> {
    wait_for(
        timeout,
        &format!("results in {ns}: {present:?} present, {absent:?} absent"),
        || async move {
            let wcs = kubectl_names(cluster, "wcs", ns, &[]).await?;
            let wcss = kubectl_names(cluster, "wcss", ns, &[]).await?;
            let ok = present
                .iter()
                .all(|n| wcs.contains(*n) && wcss.contains(*n))
                && absent
                    .iter()
                    .all(|n| !wcs.contains(*n) && !wcss.contains(*n));
            Ok::<_, BoxError>(if ok {
                Check::Done(())
            } else {
                Check::NotYet(format!("wcs {wcs:?}, wcss {wcss:?}"))
            })
        },
    )
    .await
}
