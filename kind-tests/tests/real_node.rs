//! kubevigil on a real node (issue 16): containerd and runc run the chart's images, and the
//! chart's hardening is what the runtime enforces, read from inside the running containers; the
//! commands a user runs (`kubectl logs job/...`, `kubectl describe pod`, the API server's
//! service proxy) work as on any cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kind_tests::pipeline::{create_deployment, deployment, job_finished};
use kind_tests::release::{Release, SCAN_JOB_SELECTOR, with_release};
use kind_tests::scenario::{
    BoxError, Check, Error, TestCluster, probe_image, wait_for, with_temp_ns,
};
use kind_tests::security::{ProcessSecurity, parse_report};
use kube::api::ListParams;
use kube::{Api, Client};

/// The chart's default memory limits (charts/kubevigil/values.yaml).
const CONTROLLER_MEMORY_LIMIT: u64 = 128 * 1024 * 1024;
const SCAN_JOB_MEMORY_LIMIT: u64 = 256 * 1024 * 1024;

fn assert_hardened(what: &str, s: &ProcessSecurity, memory_limit: u64) {
    assert_eq!(s.uids, vec![65532; 4], "{what}: user: {s}");
    assert_eq!(s.gids, vec![65532; 4], "{what}: group: {s}");
    assert_eq!(s.no_new_privs, 1, "{what}: no_new_privs: {s}");
    assert_eq!(s.seccomp, 2, "{what}: a seccomp filter: {s}");
    assert_eq!(s.cap_eff, 0, "{what}: no effective capability: {s}");
    assert!(s.root_read_only, "{what}: read-only root: {s}");
    assert_eq!(
        s.memory_limit,
        Some(memory_limit),
        "{what}: cgroup memory limit: {s}"
    );
}

async fn controller_pod(client: &Client, ns: &str) -> Result<String, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    wait_for(
        Duration::from_secs(60),
        "a running controller pod",
        || async {
            let list = pods
                .list(&ListParams::default().labels("app.kubernetes.io/component=controller"))
                .await?;
            let running = list.items.iter().find(|p| {
                p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    && p.metadata.deletion_timestamp.is_none()
            });
            Ok::<_, BoxError>(match running.and_then(|p| p.metadata.name.clone()) {
                Some(name) => Check::Done(name),
                None => Check::NotYet(format!("{} pods", list.items.len())),
            })
        },
    )
    .await
}

/// Runs the probe as an ephemeral container in the controller's pod, sharing the controller
/// container's PID namespace, and returns its report on the controller's process (PID 1 there).
async fn inspect_controller(
    cluster: &TestCluster,
    client: &Client,
    ns: &str,
    pod: &str,
) -> Result<ProcessSecurity, BoxError> {
    cluster
        .kubectl([
            "debug",
            "-n",
            ns,
            pod,
            "--image",
            &probe_image(),
            "--image-pull-policy=IfNotPresent",
            "--target=controller",
            "--container=inspect",
            "--profile=restricted",
            "--",
            "/probe",
            "inspect",
            "--pid",
            "1",
        ])
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    wait_for(
        Duration::from_secs(60),
        "the ephemeral probe container to finish",
        || async {
            let p = pods.get(pod).await?;
            let state = p
                .status
                .and_then(|s| s.ephemeral_container_statuses)
                .and_then(|cs| cs.into_iter().find(|c| c.name == "inspect"))
                .and_then(|c| c.state);
            Ok::<_, BoxError>(match state.as_ref().and_then(|s| s.terminated.as_ref()) {
                Some(t) => Check::Done(t.exit_code),
                None => Check::NotYet(format!("{state:?}")),
            })
        },
    )
    .await?;
    let log = cluster
        .kubectl(["logs", "-n", ns, pod, "-c", "inspect"])
        .await?;
    parse_report(&log).ok_or_else(|| format!("no report in the probe's log: {log:?}").into())
}

#[tokio::test]
async fn the_runtime_enforces_the_charts_hardening() -> Result<(), Error> {
    with_temp_ns(|client, ns| async move {
        let cluster = TestCluster::shared().await?;
        // Finished scan Jobs stay long enough to read their logs.
        let release =
            Release::new(&format!("{ns}-kv"), &[&ns]).set("scanJob.ttlSecondsAfterFinished=600");
        let kv_ns = release.namespace.clone();
        with_release(cluster, &release, || async {
            let body = async {
                // The controller, seen from an ephemeral container in its pod.
                let pod = controller_pod(&client, &kv_ns).await?;
                let controller = inspect_controller(cluster, &client, &kv_ns, &pod).await?;
                println!("controller {pod}: {controller}");
                assert_hardened("controller", &controller, CONTROLLER_MEMORY_LIMIT);

                // `kubectl describe pod` shows the kubelet's events.
                let described = cluster.kubectl(["describe", "pod", "-n", &kv_ns, &pod]).await?;
                for event in ["Created", "Started"] {
                    assert!(
                        described.lines().any(|l| l.contains(event) && l.contains("kubelet")),
                        "kubectl describe pod {pod} has no {event} event of the kubelet:\n{described}"
                    );
                }

                // `/readyz` through the API server's service proxy.
                let readyz = cluster
                    .kubectl([
                        "get",
                        "--raw",
                        &format!(
                            "/api/v1/namespaces/{kv_ns}/services/{}:8080/proxy/readyz",
                            release.metrics_service()
                        ),
                    ])
                    .await?;
                println!("readyz through the service proxy: {}", readyz.trim());
                assert!(readyz.contains(r#""ready":true"#), "{readyz}");

                // A scan Job: its log (`kubectl logs job/...`) starts with what the runtime
                // enforces on scan-job.
                create_deployment(&client, &ns, &deployment("web", false, 0)?).await?;
                let jobs: Api<Job> = Api::namespaced(client.clone(), &kv_ns);
                let job = wait_for(Duration::from_secs(120), "a finished scan Job", || async {
                    let list = jobs.list(&ListParams::default().labels(SCAN_JOB_SELECTOR)).await?;
                    Ok::<_, BoxError>(
                        match list.items.iter().find(|j| job_finished(j)) {
                            Some(j) => Check::Done(j.metadata.name.clone().unwrap_or_default()),
                            None => Check::NotYet(format!("{} scan Jobs", list.items.len())),
                        },
                    )
                })
                .await?;
                let log = cluster
                    .kubectl(["logs", &format!("job/{job}"), "-n", &kv_ns])
                    .await?;
                println!("kubectl logs job/{job}:\n{log}");
                let line = log
                    .lines()
                    .find(|l| l.contains("scan-job run: process:"))
                    .ok_or_else(|| format!("no process line in the log of {job}"))?;
                let scan = parse_report(line).ok_or_else(|| format!("unreadable: {line}"))?;
                assert_hardened("scan-job", &scan, SCAN_JOB_MEMORY_LIMIT);
                Ok::<(), BoxError>(())
            };
            body.await.map_err(|source| Error::Test {
                namespace: ns.clone(),
                source,
            })
        })
        .await?;
        Ok(())
    })
    .await
}
