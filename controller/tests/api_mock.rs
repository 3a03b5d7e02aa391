//! The controller's API calls against a mock API server (`tower_test`), in the style of
//! kube-rs/controller-rs's `ApiServerVerifier`: each test expects an exact sequence of requests
//! (method, URI with field manager, body) and answers with fixtures; an unexpected extra call
//! fails the test.

// Test helpers outside `#[test]` functions assert with unwrap/expect/panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use controller::cleanup::delete_results;
use controller::config::Config;
use controller::dispatch::{CreateOutcome, create_job};
use controller::index::ResultRef;
use controller::jobs::{BatchItem, build_job};
use controller::ops::{Metrics, ResourceLabels};
use controller::summaries::{SummaryOutcome, summarize};
use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use kubevigil_crds::target::TargetKey;
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn mock() -> (Client, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), ApiServer(handle))
}

/// The verifier side: expects requests in order.
struct ApiServer(Handle);

/// A request as received.
struct Seen {
    method: Method,
    uri: String,
    body: Value,
}

impl ApiServer {
    /// Waits for the next request and answers it with `status` and `body`.
    async fn expect(&mut self, status: u16, body: Value) -> Seen {
        let (request, send) = tokio::time::timeout(Duration::from_secs(5), self.0.next_request())
            .await
            .expect("the client sent no further request")
            .expect("the client went away");
        let method = request.method().clone();
        let uri = request.uri().to_string();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body_in = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        let response = Response::builder()
            .status(StatusCode::from_u16(status).unwrap())
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        send.send_response(response);
        Seen {
            method,
            uri,
            body: body_in,
        }
    }

    /// Asserts that the client sends nothing more.
    async fn done(mut self) {
        let more = tokio::time::timeout(Duration::from_millis(200), self.0.next_request()).await;
        if let Ok(Some((request, _))) = more {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
    }
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": format!("mock {reason}"), "reason": reason, "code": code})
}

fn config() -> Arc<Config> {
    Arc::new(
        Config::parse(
            "t",
            r#"
clusterName: local
continuousScanning:
  matchingRules: [{apiGroups: [apps], apiVersions: [v1], resources: [deployments]}]
scanJob:
  image: ghcr.io/kubevigil/scan-job:0.1.0
  serviceAccountName: kubevigil-scan-job
  configMapName: kubevigil-config
  resources: {requests: {cpu: 50m, memory: 64Mi}, limits: {cpu: 500m, memory: 256Mi}}
  batchSize: 50
  maxConcurrentJobs: 5
  ttlSecondsAfterFinished: 300
  activeDeadlineSeconds: 300
  backoffLimit: 2
"#,
        )
        .unwrap(),
    )
}

fn batch() -> Vec<BatchItem> {
    ["web", "api"]
        .iter()
        .map(|n| BatchItem {
            key: TargetKey::parse(&format!("apps/v1/deployments/Deployment/shop/{n}")).unwrap(),
            fingerprint: format!("fp-{n}"),
            related_inputs: None,
        })
        .collect()
}

fn job_json(name: &str, condition: Option<&str>) -> Value {
    let mut j = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "kubevigil", "uid": format!("uid-{name}")},
        "spec": {"template": {"spec": {"containers": []}}}});
    if let Some(c) = condition {
        j["status"] = json!({"conditions": [{"type": c, "status": "True"}]});
    }
    j
}

#[tokio::test]
async fn creates_a_batch_job() {
    let (client, mut server) = mock();
    let job = build_job(&batch(), 0, &config(), "kubevigil");
    let name = job.metadata.name.clone().unwrap();
    let task = tokio::spawn(async move { create_job(client, "kubevigil", &job).await });
    let seen = server.expect(201, job_json(&name, None)).await;
    assert_eq!(seen.method, Method::POST);
    assert!(
        seen.uri
            .starts_with("/apis/batch/v1/namespaces/kubevigil/jobs?"),
        "{}",
        seen.uri
    );
    assert!(
        seen.uri.contains("fieldManager=kubevigil-controller"),
        "{}",
        seen.uri
    );
    let labels = &seen.body["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/name"], "kubevigil");
    assert_eq!(labels["app.kubernetes.io/component"], "scan-job");
    assert!(
        labels.get("kubevigil.io/target-name").is_none(),
        "target labels only on one-target Jobs"
    );
    assert_eq!(
        seen.body["metadata"]["annotations"]["kubevigil.io/targets"],
        "apps/v1/deployments/Deployment/shop/web\napps/v1/deployments/Deployment/shop/api"
    );
    assert_eq!(seen.body["metadata"]["name"], name.as_str());
    assert!(name.starts_with("kubevigil-scan-"));
    let spec = &seen.body["spec"];
    assert_eq!(spec["ttlSecondsAfterFinished"], 300);
    assert_eq!(spec["activeDeadlineSeconds"], 300);
    assert_eq!(spec["backoffLimit"], 2);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["serviceAccountName"], "kubevigil-scan-job");
    let args: Vec<&str> = pod["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(args[0], "run");
    assert!(args.contains(&"--install-namespace=kubevigil"));
    assert!(args.contains(&"--cluster-name=local"));
    assert!(args.contains(&"--target=apps/v1/deployments/Deployment/shop/web"));
    assert!(args.contains(&"--target=apps/v1/deployments/Deployment/shop/api"));
    let outcome = task.await.unwrap();
    assert!(
        matches!(&outcome, CreateOutcome::Created { uid } if *uid == format!("uid-{name}")),
        "{outcome:?}"
    );
    server.done().await;
}

#[tokio::test]
async fn conflict_with_a_finished_job_deletes_it() {
    let (client, mut server) = mock();
    let job = build_job(&batch(), 0, &config(), "kubevigil");
    let name = job.metadata.name.clone().unwrap();
    let task = tokio::spawn(async move { create_job(client, "kubevigil", &job).await });
    let seen = server.expect(409, status(409, "AlreadyExists")).await;
    assert_eq!(seen.method, Method::POST);
    let seen = server.expect(200, job_json(&name, Some("Complete"))).await;
    assert_eq!(seen.method, Method::GET);
    assert_eq!(
        seen.uri,
        format!("/apis/batch/v1/namespaces/kubevigil/jobs/{name}")
    );
    let seen = server.expect(200, job_json(&name, Some("Complete"))).await;
    assert_eq!(seen.method, Method::DELETE);
    assert_eq!(
        seen.uri,
        format!("/apis/batch/v1/namespaces/kubevigil/jobs/{name}?")
    );
    assert_eq!(seen.body["propagationPolicy"], "Background");
    let outcome = task.await.unwrap();
    assert!(
        matches!(outcome, CreateOutcome::FinishedDeleted),
        "{outcome:?}"
    );
    server.done().await;
}

#[tokio::test]
async fn conflict_with_a_running_job_waits_for_it() {
    let (client, mut server) = mock();
    let job = build_job(&batch(), 0, &config(), "kubevigil");
    let name = job.metadata.name.clone().unwrap();
    let task = tokio::spawn(async move { create_job(client, "kubevigil", &job).await });
    server.expect(409, status(409, "AlreadyExists")).await;
    let seen = server.expect(200, job_json(&name, None)).await;
    assert_eq!(seen.method, Method::GET);
    let outcome = task.await.unwrap();
    assert!(
        matches!(outcome, CreateOutcome::Running { .. }),
        "{outcome:?}"
    );
    server.done().await;
}

#[tokio::test]
async fn a_rejected_job_is_a_named_error() {
    let (client, mut server) = mock();
    let job = build_job(&batch(), 0, &config(), "kubevigil");
    let name = job.metadata.name.clone().unwrap();
    let task = tokio::spawn(async move { create_job(client, "kubevigil", &job).await });
    server.expect(403, status(403, "Forbidden")).await;
    match task.await.unwrap() {
        CreateOutcome::Failed(e) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("failed to create scan Job kubevigil/{name}: ")),
                "{msg}"
            );
            assert_eq!(e.category(), controller::error::Category::Report);
        }
        other => panic!("unexpected {other:?}"),
    }
    server.done().await;
}

#[tokio::test]
async fn deletes_both_objects_of_each_result() {
    let (client, mut server) = mock();
    let refs = vec![
        ResultRef {
            namespace: "ci".into(),
            name: "serviceaccount-deployer-clusterrole-edit-rolebinding-ci-edit".into(),
        },
        ResultRef {
            namespace: "kubevigil".into(),
            name: "namespace-team-a".into(),
        },
    ];
    let task = tokio::spawn(async move { delete_results(client, &refs, None).await });
    let ok = json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}});
    let expected = [
        (
            "workloadconfigurationscans",
            "ci",
            "serviceaccount-deployer-clusterrole-edit-rolebinding-ci-edit",
            200,
        ),
        (
            "workloadconfigurationscansummaries",
            "ci",
            "serviceaccount-deployer-clusterrole-edit-rolebinding-ci-edit",
            200,
        ),
        (
            "workloadconfigurationscans",
            "kubevigil",
            "namespace-team-a",
            404,
        ),
        (
            "workloadconfigurationscansummaries",
            "kubevigil",
            "namespace-team-a",
            200,
        ),
    ];
    for (plural, ns, name, code) in expected {
        let body = if code == 404 {
            status(404, "NotFound")
        } else {
            ok.clone()
        };
        let seen = server.expect(code, body).await;
        assert_eq!(seen.method, Method::DELETE);
        assert_eq!(
            seen.uri,
            format!("/apis/kubevigil.io/v1beta1/namespaces/{ns}/{plural}/{name}?")
        );
    }
    let done = task.await.unwrap();
    assert_eq!(done.deleted, 3, "a result already gone is fine");
    assert!(done.errors.is_empty());
    assert_eq!(
        done.namespaces.into_iter().collect::<Vec<_>>(),
        vec!["ci".to_string(), "kubevigil".to_string()]
    );
    server.done().await;
}

#[tokio::test]
async fn with_open_reports_deletes_the_report_and_the_cluster_report_too() {
    let (client, mut server) = mock();
    let refs = vec![
        ResultRef {
            namespace: "shop".into(),
            name: "deployment-web".into(),
        },
        ResultRef {
            namespace: "kubevigil".into(),
            name: "namespace-team-a".into(),
        },
    ];
    let task = tokio::spawn(async move { delete_results(client, &refs, Some("kubevigil")).await });
    let ok = json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}});
    let expected = [
        "/apis/kubevigil.io/v1beta1/namespaces/shop/workloadconfigurationscans/deployment-web?",
        "/apis/kubevigil.io/v1beta1/namespaces/shop/workloadconfigurationscansummaries/deployment-web?",
        "/apis/openreports.io/v1alpha1/namespaces/shop/reports/deployment-web?",
        "/apis/kubevigil.io/v1beta1/namespaces/kubevigil/workloadconfigurationscans/namespace-team-a?",
        "/apis/kubevigil.io/v1beta1/namespaces/kubevigil/workloadconfigurationscansummaries/namespace-team-a?",
        "/apis/openreports.io/v1alpha1/namespaces/kubevigil/reports/namespace-team-a?",
        "/apis/openreports.io/v1alpha1/clusterreports/namespace-team-a?",
    ];
    for uri in expected {
        let code = if uri.contains("/reports/namespace-team-a") {
            404
        } else {
            200
        };
        let body = if code == 404 {
            status(404, "NotFound")
        } else {
            ok.clone()
        };
        let seen = server.expect(code, body).await;
        assert_eq!(seen.method, Method::DELETE);
        assert_eq!(seen.uri, uri);
    }
    let done = task.await.unwrap();
    assert_eq!(done.deleted, 6);
    assert!(done.errors.is_empty());
    server.done().await;
}

fn wcss(name: &str, critical: u32, high: u32) -> Value {
    json!({"apiVersion": "kubevigil.io/v1beta1", "kind": "WorkloadConfigurationScanSummary",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"severities": {"critical": critical, "high": high, "medium": 0, "low": 1, "unknown": 0}, "controls": {}}})
}

#[tokio::test]
async fn applies_the_namespace_summary() {
    let (client, mut server) = mock();
    let (metrics, _) = Metrics::new();
    let counted = metrics.clone();
    let task = tokio::spawn(async move { summarize(client, "shop", "kubevigil", &metrics).await });
    let seen = server
        .expect(
            200,
            json!({"apiVersion": "kubevigil.io/v1beta1", "kind": "WorkloadConfigurationScanSummaryList",
                "metadata": {"continue": "page2"}, "items": [wcss("deployment-web", 1, 2)]}),
        )
        .await;
    assert_eq!(seen.method, Method::GET);
    assert!(
        seen.uri.starts_with(
            "/apis/kubevigil.io/v1beta1/namespaces/shop/workloadconfigurationscansummaries?"
        ),
        "{}",
        seen.uri
    );
    let seen = server
        .expect(
            200,
            json!({"apiVersion": "kubevigil.io/v1beta1", "kind": "WorkloadConfigurationScanSummaryList",
                "metadata": {}, "items": [wcss("deployment-api", 0, 3), {"apiVersion": "kubevigil.io/v1beta1", "kind": "WorkloadConfigurationScanSummary", "metadata": {"name": "broken", "namespace": "shop"}, "spec": {"severities": "not a map"}}]}),
        )
        .await;
    assert!(seen.uri.contains("continue=page2"), "{}", seen.uri);
    // The current namespace summary is read first; none exists yet, so it is applied.
    let seen = server
        .expect(
            404,
            json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
        )
        .await;
    assert_eq!(seen.method, Method::GET);
    assert_eq!(
        seen.uri,
        "/apis/kubevigil.io/v1beta1/configurationscansummaries/shop"
    );
    let seen = server
        .expect(200, json!({"apiVersion": "kubevigil.io/v1beta1", "kind": "ConfigurationScanSummary", "metadata": {"name": "shop"}, "spec": {"severities": {"critical": 1, "high": 5, "medium": 0, "low": 2, "unknown": 0}}}))
        .await;
    assert_eq!(seen.method, Method::PATCH);
    assert_eq!(
        seen.uri,
        "/apis/kubevigil.io/v1beta1/configurationscansummaries/shop?&force=true&fieldManager=kubevigil-controller"
    );
    let body = seen.body;
    assert_eq!(body["kind"], "ConfigurationScanSummary");
    assert_eq!(body["metadata"]["name"], "shop");
    assert_eq!(
        body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "kubevigil"
    );
    // The installation that keeps it: how a later scope change finds the namespaces it scanned.
    assert_eq!(
        body["metadata"]["labels"]["kubevigil.io/installation"],
        "kubevigil"
    );
    assert_eq!(body["spec"]["workloads"], 3);
    assert_eq!(
        body["spec"]["severities"],
        json!({"critical": 1, "high": 5, "medium": 0, "low": 2, "unknown": 0})
    );
    let names: Vec<&str> = body["spec"]["summaryRef"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, vec!["broken", "deployment-api", "deployment-web"]);
    assert_eq!(task.await.unwrap().unwrap(), SummaryOutcome::Applied(3));
    // The malformed summary is counted, not silently summed as zero.
    let malformed = counted
        .malformed_objects
        .get_or_create(&ResourceLabels {
            resource: "workloadconfigurationscansummaries".into(),
        })
        .get();
    assert_eq!(malformed, 1);
    server.done().await;
}

#[tokio::test]
async fn deletes_the_summary_of_an_empty_namespace() {
    let (client, mut server) = mock();
    let (metrics, _) = Metrics::new();
    let task = tokio::spawn(async move { summarize(client, "gone", "kubevigil", &metrics).await });
    server
        .expect(
            200,
            json!({"apiVersion": "kubevigil.io/v1beta1", "kind": "WorkloadConfigurationScanSummaryList", "metadata": {}, "items": []}),
        )
        .await;
    let seen = server.expect(404, status(404, "NotFound")).await;
    assert_eq!(seen.method, Method::DELETE);
    assert_eq!(
        seen.uri,
        "/apis/kubevigil.io/v1beta1/configurationscansummaries/gone?"
    );
    assert_eq!(task.await.unwrap().unwrap(), SummaryOutcome::Deleted);
    server.done().await;
}

#[tokio::test]
async fn missing_crds_are_named() {
    let (client, mut server) = mock();
    let task = tokio::spawn(async move { controller::run::check_crds(&client).await });
    let seen = server
        .expect(
            200,
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "kubevigil.io/v1beta1",
                "resources": [{"name": "workloadconfigurationscans", "singularName": "", "namespaced": true, "kind": "WorkloadConfigurationScan", "verbs": ["get"]}]}),
        )
        .await;
    assert_eq!(seen.uri, "/apis/kubevigil.io/v1beta1");
    let e = task.await.unwrap().unwrap_err().to_string();
    assert!(e.starts_with("install the chart's CRDs: workloadconfigurationscansummaries.kubevigil.io, configurationscansummaries.kubevigil.io not found"), "{e}");
    server.done().await;
}
