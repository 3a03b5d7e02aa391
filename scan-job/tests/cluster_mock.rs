//! `scan-job run` against a mock API server (kube-rs controller-rs's `ApiServerVerifier`
//! pattern): a `tower_test::mock::pair` gives a `kube::Client` on one end; on the other, a
//! responder answers every request of a scenario and records it. Each test then checks the
//! requests: methods, paths, query (field manager included) and bodies. Related objects are
//! read in a fixed order, but the checks on those LISTs compare sets, so that a reordering of
//! the read plan does not break them; every other request is checked in order, and an
//! unexpected extra request fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::client::Body;
use kubevigil_crds::identity::{
    annotations, binding_fingerprint, object_fingerprint, object_fingerprint_with_spec, spec_hash,
};
use scan_job::cluster::{
    RunArgs, RunError, RunReport, TargetError, TargetOutcome, exit_code, run_with_client,
};
use serde_json::{Value, json};

/// One request the mock API server received.
#[derive(Clone, Debug)]
struct Call {
    method: String,
    path: String,
    query: String,
    content_type: String,
    body: Option<Value>,
}

impl Call {
    fn is_list(&self) -> bool {
        self.method == "GET" && self.query.contains("limit=500")
    }

    /// A LIST of the existing results of one kind in one namespace (metadata only).
    fn is_result_list(&self) -> bool {
        self.method == "GET"
            && (self.path.ends_with("/workloadconfigurationscans")
                || self.path.ends_with("/workloadconfigurationscansummaries"))
    }

    fn annotation(&self, key: &str) -> &str {
        self.body.as_ref().unwrap()["metadata"]["annotations"][key]
            .as_str()
            .unwrap_or_else(|| panic!("no annotation {key} in {:?}", self.body))
    }
}

/// The mock API server: a responder per scenario, and the record of every request.
struct ApiServer {
    calls: Arc<Mutex<Vec<Call>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ApiServer {
    fn start(respond: impl FnMut(&Call) -> (u16, Value) + Send + 'static) -> (Client, Self) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let calls = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&calls);
        let mut respond = respond;
        let task = tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let method = request.method().to_string();
                let path = request.uri().path().to_string();
                let query = request.uri().query().unwrap_or_default().to_string();
                let content_type = request
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let bytes = request.into_body().collect_bytes().await.unwrap();
                let body = (!bytes.is_empty()).then(|| serde_json::from_slice(&bytes).unwrap());
                let call = Call {
                    method,
                    path,
                    query,
                    content_type,
                    body,
                };
                // Every Job reads the posture exception resources first: none here (the
                // scenario tests cover them), and not recorded.
                let (status, answer) = if call.path.ends_with("postureexceptions") {
                    list(Vec::new())
                } else {
                    let answer = respond(&call);
                    record.lock().unwrap().push(call);
                    answer
                };
                send.send_response(
                    Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                        .unwrap(),
                );
            }
        });
        (client, ApiServer { calls, task })
    }

    fn finish(self) -> Vec<Call> {
        self.task.abort();
        self.calls.lock().unwrap().clone()
    }
}

fn status(code: u16, reason: &str) -> (u16, Value) {
    (
        code,
        json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
               "message": format!("mock: {reason}"), "reason": reason, "code": code}),
    )
}

fn not_found() -> (u16, Value) {
    status(404, "NotFound")
}

fn deleted() -> (u16, Value) {
    (
        200,
        json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success"}),
    )
}

fn list(items: Vec<Value>) -> (u16, Value) {
    (
        200,
        json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
    )
}

/// Answers an apply with the object it was sent.
fn echo(call: &Call) -> (u16, Value) {
    (200, call.body.clone().unwrap())
}

const OPTIONAL_PLURALS: [&str; 5] = [
    "ciliumnetworkpolicies",
    "ciliumclusterwidenetworkpolicies",
    "httproutes",
    "virtualservices",
    "gateways",
];

/// Answers the related LISTs: ServiceAccounts as given, optional CRD kinds not installed,
/// everything else empty.
fn related_list(call: &Call, service_accounts: &[Value]) -> (u16, Value) {
    let plural = call.path.rsplit('/').next().unwrap();
    if OPTIONAL_PLURALS.contains(&plural) {
        // What the API server answers for a resource path that does not exist.
        return (404, json!("404 page not found"));
    }
    match plural {
        "serviceaccounts" => list(service_accounts.to_vec()),
        _ => list(Vec::new()),
    }
}

fn args(targets: &[&str]) -> RunArgs {
    RunArgs {
        install_namespace: "kubevigil".into(),
        cluster_name: "kind".into(),
        config: None,
        targets: targets.iter().map(|t| (*t).to_string()).collect(),
    }
}

const DEPLOYMENT_TARGET: &str = "apps/v1/deployments/Deployment/shop/web";

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web", "namespace": "shop", "uid": "uid-web", "generation": 3,
            "resourceVersion": "100", "labels": {"app": "web"},
            "managedFields": [{"manager": "kubectl", "operation": "Apply"}]
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"hostNetwork": true, "containers": [{
                    "name": "web", "image": "nginx:latest",
                    "securityContext": {"privileged": true}
                }]}
            }
        },
        "status": {"replicas": 1}
    })
}

fn meta_of(object: &Value) -> ObjectMeta {
    serde_json::from_value(object["metadata"].clone()).unwrap()
}

/// The related LISTs of one namespace and the cluster-wide ones.
fn expected_lists(ns: &str) -> BTreeSet<String> {
    [
        format!("/api/v1/namespaces/{ns}/serviceaccounts"),
        format!("/api/v1/namespaces/{ns}/services"),
        format!("/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"),
        format!("/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses"),
        format!("/api/v1/namespaces/{ns}/configmaps"),
        format!("/api/v1/namespaces/{ns}/persistentvolumeclaims"),
        format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"),
        format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles"),
        format!("/apis/cilium.io/v2/namespaces/{ns}/ciliumnetworkpolicies"),
        format!("/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes"),
        format!("/apis/networking.istio.io/v1beta1/namespaces/{ns}/virtualservices"),
        format!("/apis/networking.istio.io/v1beta1/namespaces/{ns}/gateways"),
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings".to_string(),
        "/api/v1/nodes".to_string(),
        "/apis/rbac.authorization.k8s.io/v1/clusterroles".to_string(),
        "/apis/cilium.io/v2/ciliumclusterwidenetworkpolicies".to_string(),
    ]
    .into_iter()
    .collect()
}

const RESULTS: &str = "/apis/kubevigil.io/v1beta1/namespaces";

/// Checks one server-side apply of a result.
fn assert_apply(call: &Call, path: &str, kind: &str, fingerprint: &str, owner: Option<Value>) {
    assert_eq!((call.method.as_str(), call.path.as_str()), ("PATCH", path));
    assert!(
        call.query.contains("fieldManager=kubevigil-scan-job") && call.query.contains("force=true"),
        "{}",
        call.query
    );
    assert_eq!(call.content_type, "application/apply-patch+yaml");
    assert_result_body(call, kind, fingerprint, owner);
}

/// Checks one create (`POST`) of a new result: `path` is the collection.
fn assert_create(call: &Call, path: &str, kind: &str, fingerprint: &str, owner: Option<Value>) {
    assert_eq!((call.method.as_str(), call.path.as_str()), ("POST", path));
    assert!(
        call.query.contains("fieldManager=kubevigil-scan-job"),
        "{}",
        call.query
    );
    assert_eq!(call.content_type, "application/json");
    assert_result_body(call, kind, fingerprint, owner);
}

fn assert_result_body(call: &Call, kind: &str, fingerprint: &str, owner: Option<Value>) {
    let body = call.body.as_ref().unwrap();
    assert_eq!(body["apiVersion"], "kubevigil.io/v1beta1");
    assert_eq!(body["kind"], kind);
    assert_eq!(call.annotation(annotations::FINGERPRINT), fingerprint);
    let scan_time = call.annotation(annotations::SCAN_TIME);
    assert!(
        scan_time.ends_with('Z') && scan_time.len() == 20,
        "{scan_time}"
    );
    assert!(!call.annotation(annotations::CONTROLS_HASH).is_empty());
    assert_eq!(call.annotation(annotations::OUTCOME_HASH).len(), 16);
    match owner {
        Some(owner) => assert_eq!(body["metadata"]["ownerReferences"], json!([owner])),
        None => assert!(body["metadata"].get("ownerReferences").is_none(), "{body}"),
    }
    assert!(body["metadata"].get("managedFields").is_none());
    assert!(body["metadata"].get("resourceVersion").is_none());
}

fn outcome(report: &RunReport, i: usize) -> &TargetOutcome {
    &report.targets[i].outcome
}

/// The metadata LISTs of the existing results in `ns`.
fn result_lists(ns: &str) -> [String; 2] {
    [
        format!("{RESULTS}/{ns}/workloadconfigurationscans"),
        format!("{RESULTS}/{ns}/workloadconfigurationscansummaries"),
    ]
}

/// Scenario A: one live Deployment whose results do not exist yet. GET it, read the related
/// objects once and list the existing results (none), create the scan and the summary with an
/// owner reference and the fingerprint (one `POST` each).
#[tokio::test]
async fn live_deployment_is_scanned_and_written() {
    let sa = json!({"metadata": {"name": "default", "namespace": "shop", "uid": "sa"}});
    let (client, server) = ApiServer::start(move |call| match call.method.as_str() {
        "GET" if call.path == "/apis/apps/v1/namespaces/shop/deployments/web" => {
            (200, deployment())
        }
        "GET" if call.is_result_list() => list(Vec::new()),
        "GET" if call.is_list() => related_list(call, std::slice::from_ref(&sa)),
        "POST" => echo(call),
        _ => status(500, "Unexpected"),
    });
    let result = run_with_client(client, args(&[DEPLOYMENT_TARGET])).await;
    let calls = server.finish();

    let report = result.as_ref().unwrap();
    assert!(
        matches!(
            outcome(report, 0),
            TargetOutcome::Written { results: 1, .. }
        ),
        "{report:?}"
    );
    assert_eq!(exit_code(&result), std::process::ExitCode::SUCCESS);

    assert_eq!(calls.len(), 1 + 16 + 2 + 2, "{calls:#?}");
    assert_eq!(
        (calls[0].method.as_str(), calls[0].path.as_str()),
        ("GET", "/apis/apps/v1/namespaces/shop/deployments/web")
    );
    let lists: BTreeSet<String> = calls[1..19]
        .iter()
        .inspect(|c| assert!(c.is_list(), "{c:?}"))
        .map(|c| c.path.clone())
        .collect();
    let mut want = expected_lists("shop");
    want.extend(result_lists("shop"));
    assert_eq!(lists, want);
    // The results are listed by metadata only, kubevigil's own by label.
    for c in calls[1..19].iter().filter(|c| c.is_result_list()) {
        assert!(
            c.query
                .contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dkubevigil"),
            "{}",
            c.query
        );
    }
    let calls = &calls[2..];
    assert!(calls.iter().all(|c| !c.path.contains("secrets")));

    // A Deployment is scalable: its fingerprint covers the spec without `replicas`.
    let spec = spec_hash(&deployment()["spec"]);
    let fingerprint = object_fingerprint_with_spec(&meta_of(&deployment()), Some(&spec));
    let owner =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "uid-web"});
    assert_create(
        &calls[17],
        &format!("{RESULTS}/shop/workloadconfigurationscans"),
        "WorkloadConfigurationScan",
        &fingerprint,
        Some(owner.clone()),
    );
    assert_create(
        &calls[18],
        &format!("{RESULTS}/shop/workloadconfigurationscansummaries"),
        "WorkloadConfigurationScanSummary",
        &fingerprint,
        Some(owner),
    );
    let scan = calls[17].body.as_ref().unwrap();
    assert_eq!(calls[17].annotation(annotations::TARGET_UID), "uid-web");
    assert_eq!(
        scan["metadata"]["labels"]["kubevigil.io/workload-kind"],
        "Deployment"
    );
    assert!(scan["spec"]["evaluatedControls"].is_u64());
    let summary = calls[18].body.as_ref().unwrap();
    // The host-network control (C-0041) fails on this Deployment, in the scan and the summary.
    assert_eq!(
        scan["spec"]["controls"]["C-0041"]["status"]["status"],
        "failed"
    );
    assert_eq!(
        summary["spec"]["controls"]["C-0041"]["status"]["status"],
        "failed"
    );
    assert!(summary["spec"]["severities"].is_object(), "{summary}");
}

/// Scenario B: the target was deleted meanwhile: its scan and summary are deleted (a 404 on
/// delete is fine), nothing else is read.
#[tokio::test]
async fn deleted_target_gets_its_results_deleted() {
    let (client, server) =
        ApiServer::start(|call| match (call.method.as_str(), call.path.as_str()) {
            ("GET", "/apis/apps/v1/namespaces/shop/deployments/web") => not_found(),
            ("DELETE", p) if p.ends_with("/workloadconfigurationscans/deployment-web") => deleted(),
            ("DELETE", _) => not_found(),
            _ => status(500, "Unexpected"),
        });
    let result = run_with_client(client, args(&[DEPLOYMENT_TARGET])).await;
    let calls = server.finish();

    let report = result.as_ref().unwrap();
    assert!(
        matches!(outcome(report, 0), TargetOutcome::Deleted { deleted: 1 }),
        "{report:?}"
    );
    assert_eq!(exit_code(&result), std::process::ExitCode::SUCCESS);
    let seen: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c.method.as_str(), c.path.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("GET", "/apis/apps/v1/namespaces/shop/deployments/web"),
            (
                "DELETE",
                "/apis/kubevigil.io/v1beta1/namespaces/shop/workloadconfigurationscans/deployment-web"
            ),
            (
                "DELETE",
                "/apis/kubevigil.io/v1beta1/namespaces/shop/workloadconfigurationscansummaries/deployment-web"
            ),
        ]
    );
}

const BINDING_TARGET: &str = "rbac.authorization.k8s.io/v1/rolebindings/RoleBinding/ci/ci-edit";

fn role_binding() -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "ci-edit", "namespace": "ci", "uid": "uid-rb", "resourceVersion": "7"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [
            {"kind": "ServiceAccount", "name": "ci-bot"},
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}
        ]
    })
}

fn edit_role() -> Value {
    json!({
        "metadata": {"name": "edit", "uid": "uid-edit", "resourceVersion": "5"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "delete"]}]
    })
}

/// Scenario C: a live RoleBinding. Only the ClusterRoles are read (for its role); its own
/// result and one per subject are applied, all with the binding's fingerprint (binding and
/// role, as the controller computes it) and the binding as owner.
#[tokio::test]
async fn live_binding_writes_its_own_and_its_triplet_results() {
    let (client, server) =
        ApiServer::start(|call| match (call.method.as_str(), call.path.as_str()) {
            ("GET", "/apis/rbac.authorization.k8s.io/v1/namespaces/ci/rolebindings/ci-edit") => {
                (200, role_binding())
            }
            ("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles") => list(vec![
                edit_role(),
                json!({"metadata": {"name": "view", "uid": "uid-view", "resourceVersion": "6"}}),
            ]),
            ("GET", _) if call.is_result_list() => list(Vec::new()),
            ("POST", _) => echo(call),
            _ => status(500, "Unexpected"),
        });
    let result = run_with_client(client, args(&[BINDING_TARGET])).await;
    let calls = server.finish();

    let report = result.as_ref().unwrap();
    assert!(
        matches!(
            outcome(report, 0),
            TargetOutcome::Written { results: 3, .. }
        ),
        "{report:?}"
    );
    assert_eq!(calls.len(), 2 + 2 + 6, "{calls:#?}");
    assert!(calls[1].is_list());
    let result_listed: BTreeSet<String> = calls
        .iter()
        .filter(|c| c.is_result_list())
        .map(|c| c.path.clone())
        .collect();
    assert_eq!(result_listed, result_lists("ci").into_iter().collect());
    let calls: Vec<Call> = calls.into_iter().filter(|c| !c.is_result_list()).collect();

    let fingerprint = binding_fingerprint(
        &object_fingerprint(&meta_of(&role_binding())),
        Some(&object_fingerprint(&meta_of(&edit_role()))),
    );
    let owner = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                       "name": "ci-edit", "uid": "uid-rb"});
    let names = [
        "rolebinding-ci-edit",
        "serviceaccount-ci-bot-clusterrole-edit-rolebinding-ci-edit",
        "user-alice-clusterrole-edit-rolebinding-ci-edit",
    ];
    for (i, name) in names.iter().enumerate() {
        let (scan, summary) = (&calls[2 + 2 * i], &calls[3 + 2 * i]);
        assert_eq!(scan.body.as_ref().unwrap()["metadata"]["name"], *name);
        assert_eq!(summary.body.as_ref().unwrap()["metadata"]["name"], *name);
        assert_create(
            scan,
            &format!("{RESULTS}/ci/workloadconfigurationscans"),
            "WorkloadConfigurationScan",
            &fingerprint,
            Some(owner.clone()),
        );
        assert_create(
            summary,
            &format!("{RESULTS}/ci/workloadconfigurationscansummaries"),
            "WorkloadConfigurationScanSummary",
            &fingerprint,
            Some(owner.clone()),
        );
        assert_eq!(scan.annotation(annotations::TARGET_UID), "uid-rb");
    }
    // Triplet results name their binding and role.
    let triplet = calls[4].body.as_ref().unwrap();
    assert_eq!(
        triplet["metadata"]["labels"]["kubevigil.io/rbac-resource"],
        "true"
    );
    assert_eq!(
        triplet["spec"]["relatedObjects"].as_array().unwrap().len(),
        2
    );
}

/// Scenario D: a deleted RoleBinding: its own results, and the triplet results whose
/// resource ID names it (found by label), are deleted; a result that only shares the label
/// is kept.
#[tokio::test]
async fn deleted_binding_gets_its_triplet_results_deleted() {
    let ours = "rbac.authorization.k8s.io/v1//ClusterRole/edit/rbac.authorization.k8s.io/v1/ci/RoleBinding/ci-edit/v1/ci/ServiceAccount/ci-bot";
    let other = "rbac.authorization.k8s.io/v1//ClusterRole/edit/rbac.authorization.k8s.io/v1/ci/RoleBinding/ci-edit-2/v1/ci/ServiceAccount/ci-bot";
    let (client, server) = ApiServer::start(move |call| match call.method.as_str() {
        "GET" if call.path.ends_with("/rolebindings/ci-edit") => not_found(),
        "GET" if call.is_list() => {
            assert!(
                call.query.contains("labelSelector=kubevigil.io%2Frolebinding-name%3Dci-edit%2Ckubevigil.io%2Frolebinding-namespace%3Dci"),
                "{}",
                call.query
            );
            list(vec![
                json!({"apiVersion": "kubevigil.io/v1beta1", "kind": "WorkloadConfigurationScan",
                       "metadata": {"name": "mine", "namespace": "ci",
                                    "annotations": {"kubevigil.io/resource-id": ours}},
                       "spec": {}}),
                json!({"apiVersion": "kubevigil.io/v1beta1", "kind": "WorkloadConfigurationScan",
                       "metadata": {"name": "not-mine", "namespace": "ci",
                                    "annotations": {"kubevigil.io/resource-id": other}},
                       "spec": {}}),
            ])
        }
        "DELETE" if call.path.ends_with("/mine") => deleted(),
        "DELETE" => not_found(),
        _ => status(500, "Unexpected"),
    });
    let result = run_with_client(client, args(&[BINDING_TARGET])).await;
    let calls = server.finish();

    let report = result.as_ref().unwrap();
    assert!(
        matches!(outcome(report, 0), TargetOutcome::Deleted { deleted: 2 }),
        "{report:?}"
    );
    let seen: Vec<String> = calls
        .iter()
        .map(|c| format!("{} {}", c.method, c.path.trim_start_matches(RESULTS)))
        .collect();
    assert_eq!(
        seen,
        [
            "GET /apis/rbac.authorization.k8s.io/v1/namespaces/ci/rolebindings/ci-edit",
            "DELETE /ci/workloadconfigurationscans/rolebinding-ci-edit",
            "DELETE /ci/workloadconfigurationscansummaries/rolebinding-ci-edit",
            "GET /ci/workloadconfigurationscans",
            "DELETE /ci/workloadconfigurationscans/mine",
            "GET /ci/workloadconfigurationscansummaries",
            "DELETE /ci/workloadconfigurationscansummaries/mine",
        ]
    );
}

/// Transient errors are retried, permanent ones fail the target (and only it) with an error
/// naming the action and the object; a forbidden related kind is skipped.
#[tokio::test]
async fn retries_transient_errors_and_reports_permanent_ones() {
    let mut scan_attempts = 0;
    let (client, server) = ApiServer::start(move |call| match call.method.as_str() {
        "GET" if call.path.ends_with("/deployments/web") => (200, deployment()),
        "GET" if call.path.ends_with("/configmaps") => status(403, "Forbidden"),
        "GET" if call.is_result_list() => list(Vec::new()),
        "GET" if call.is_list() => related_list(call, &[]),
        "POST" if call.path.ends_with("/workloadconfigurationscans") => {
            scan_attempts += 1;
            if scan_attempts == 1 {
                status(503, "ServiceUnavailable")
            } else {
                echo(call)
            }
        }
        "POST" => status(403, "Forbidden"),
        _ => status(500, "Unexpected"),
    });
    let result = run_with_client(client, args(&["not-a-target", DEPLOYMENT_TARGET])).await;
    let calls = server.finish();

    let report = result.as_ref().unwrap();
    assert_eq!(report.targets.len(), 2);
    assert!(matches!(
        outcome(report, 0),
        TargetOutcome::Failed(TargetError::Parse(_))
    ));
    let TargetOutcome::Failed(e) = outcome(report, 1) else {
        panic!("{report:?}");
    };
    assert!(
        e.to_string()
            .starts_with("failed to create WorkloadConfigurationScanSummary shop/deployment-web: "),
        "{e}"
    );
    assert_eq!(exit_code(&result), std::process::ExitCode::FAILURE);

    // A target's scan and summary are written concurrently: their order is not defined.
    let mut patches: Vec<&str> = calls
        .iter()
        .filter(|c| c.method == "POST")
        .map(|c| c.path.rsplit('/').next().unwrap())
        .collect();
    patches.sort_unstable();
    assert_eq!(
        patches,
        [
            "workloadconfigurationscans",
            "workloadconfigurationscans",
            "workloadconfigurationscansummaries"
        ]
    );
    // The forbidden ConfigMaps were asked for once, and the scan went on without them.
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.path.ends_with("/configmaps"))
            .count(),
        1
    );
}

/// A related read that keeps failing fails the targets that need it: no result is written
/// from an incomplete view.
#[tokio::test]
async fn failed_related_read_fails_the_target() {
    let (client, server) = ApiServer::start(|call| match call.method.as_str() {
        "GET" if call.path.ends_with("/deployments/web") => (200, deployment()),
        "GET" if call.path.ends_with("/services") => status(500, "InternalError"),
        "GET" if call.is_list() => related_list(call, &[]),
        _ => status(500, "Unexpected"),
    });
    let result = run_with_client(client, args(&[DEPLOYMENT_TARGET])).await;
    let calls = server.finish();

    let report = result.as_ref().unwrap();
    let TargetOutcome::Failed(e) = outcome(report, 0) else {
        panic!("{report:?}");
    };
    assert!(
        e.to_string()
            .starts_with("failed to list Service in namespace shop: "),
        "{e}"
    );
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.path.ends_with("/services"))
            .count(),
        3
    );
    assert!(calls.iter().all(|c| c.method == "GET"));
}

/// A malformed configuration file stops the run before any request, naming file and field.
#[tokio::test]
async fn bad_config_is_a_startup_error() {
    let path = std::env::temp_dir().join(format!(
        "kubevigil-cluster-mock-{}.yaml",
        std::process::id()
    ));
    std::fs::write(
        &path,
        "controlsConfig:\n  insecureCapabilities: SYS_ADMIN\n",
    )
    .unwrap();
    let (client, server) = ApiServer::start(|_| status(500, "Unexpected"));
    let mut a = args(&[DEPLOYMENT_TARGET]);
    a.config = Some(path.clone());
    let result = run_with_client(client, a).await;
    let calls = server.finish();
    std::fs::remove_file(&path).ok();

    let Err(e @ RunError::ConfigField { .. }) = &result else {
        panic!("{result:?}");
    };
    let msg = e.to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("`controlsConfig`"),
        "{msg}"
    );
    assert!(calls.is_empty());
    assert_eq!(exit_code(&result), std::process::ExitCode::FAILURE);
}

/// Runs one Deployment scan against a mock whose result LISTs return `existing`; the calls.
async fn scan_with_existing(deployment: Value, existing: Vec<Value>) -> (RunReport, Vec<Call>) {
    let (client, server) = ApiServer::start(move |call| match call.method.as_str() {
        "GET" if call.path.ends_with("/deployments/web") => (200, deployment.clone()),
        "GET" if call.is_result_list() => {
            let kind = if call.path.ends_with("summaries") {
                "WorkloadConfigurationScanSummary"
            } else {
                "WorkloadConfigurationScan"
            };
            list(
                existing
                    .iter()
                    .filter(|o| o["kind"] == kind)
                    .cloned()
                    .collect(),
            )
        }
        "GET" if call.is_list() => related_list(call, &[]),
        "POST" | "PATCH" => echo(call),
        _ => status(500, "Unexpected"),
    });
    let result = run_with_client(client, args(&[DEPLOYMENT_TARGET])).await;
    (result.unwrap(), server.finish())
}

fn writes(calls: &[Call]) -> Vec<(String, String)> {
    calls
        .iter()
        .filter(|c| c.method != "GET")
        .map(|c| {
            (
                c.method.clone(),
                c.path.rsplit('/').next().unwrap().to_string(),
            )
        })
        .collect()
}

/// Scenario G (issue 17): a rescan whose outcome is unchanged (same fingerprint, controls hash
/// and outcome hash) writes nothing; a hand-edited result or a changed target is replaced by a
/// server-side apply.
#[tokio::test]
async fn an_unchanged_outcome_is_not_written_a_changed_one_is_applied() {
    // First scan: nothing exists, both results are created.
    let (report, calls) = scan_with_existing(deployment(), Vec::new()).await;
    assert!(report.is_success(), "{report:?}");
    let created: Vec<Value> = calls
        .iter()
        .filter(|c| c.method == "POST")
        .map(|c| {
            let mut body = c.body.clone().unwrap();
            // As the API server stores a create: the creator's Update entry.
            body["metadata"]["managedFields"] = json!([{
                "manager": "kubevigil-scan-job", "operation": "Update",
                "fieldsV1": {"f:metadata": {"f:labels": {}}, "f:spec": {}}
            }]);
            body
        })
        .collect();
    assert_eq!(created.len(), 2, "{calls:#?}");

    // The same target again: nothing is written, not even the scan time.
    let (report, calls) = scan_with_existing(deployment(), created.clone()).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(writes(&calls), Vec::<(String, String)>::new());

    // A hand edit of the scan (another field manager): that one is replaced, the summary not.
    let mut edited = created.clone();
    for o in &mut edited {
        if o["kind"] == "WorkloadConfigurationScan" {
            o["metadata"]["managedFields"]
                .as_array_mut()
                .unwrap()
                .push(json!({"manager": "kubectl-edit", "operation": "Update"}));
        }
    }
    let (_, calls) = scan_with_existing(deployment(), edited).await;
    assert_eq!(
        writes(&calls),
        [("PATCH".to_string(), "deployment-web".to_string())]
    );
    assert!(
        calls
            .iter()
            .any(|c| c.method == "PATCH" && c.path.contains("/workloadconfigurationscans/"))
    );

    // The target changed (a new label, so a new fingerprint): both are applied.
    let mut changed = deployment();
    changed["metadata"]["labels"]["tier"] = json!("front");
    let (report, calls) = scan_with_existing(changed.clone(), created).await;
    assert!(report.is_success(), "{report:?}");
    let fingerprint =
        object_fingerprint_with_spec(&meta_of(&changed), Some(&spec_hash(&changed["spec"])));
    let patch = calls
        .iter()
        .find(|c| c.method == "PATCH" && c.path.contains("/workloadconfigurationscans/"))
        .unwrap();
    let owner =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "uid-web"});
    assert_apply(
        patch,
        &format!("{RESULTS}/shop/workloadconfigurationscans/deployment-web"),
        "WorkloadConfigurationScan",
        &fingerprint,
        Some(owner),
    );
    let mut w = writes(&calls);
    w.sort();
    assert_eq!(
        w,
        [
            ("PATCH".to_string(), "deployment-web".to_string()),
            ("PATCH".to_string(), "deployment-web".to_string())
        ]
    );
}

/// Posture Events: the Deployment's existing summary (as its namespace's metadata list shows
/// it) failed no control; the scan finds the host-network control (C-0041, High) failed and
/// raises one PostureRegressed on the Deployment (events.k8s.io/v1, reporting controller
/// kubevigil), after writing the results. The previous outcome costs no request of its own,
/// and the summary carries the new failed controls for the next comparison.
#[tokio::test]
async fn a_newly_failed_control_raises_one_posture_regressed_event() {
    let sa = json!({"metadata": {"name": "default", "namespace": "shop", "uid": "sa"}});
    let (client, server) = ApiServer::start(move |call| match call.method.as_str() {
        "GET" if call.path == "/apis/apps/v1/namespaces/shop/deployments/web" => {
            (200, deployment())
        }
        "GET"
            if call
                .path
                .ends_with("/shop/workloadconfigurationscansummaries") =>
        {
            list(vec![
                json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                   "metadata": {"name": "deployment-web", "namespace": "shop",
                                "annotations": {"kubevigil.io/failed-controls": ""}}}),
            ])
        }
        "GET" if call.is_result_list() => list(Vec::new()),
        "GET" if call.is_list() => related_list(call, std::slice::from_ref(&sa)),
        "POST" if call.path == "/apis/events.k8s.io/v1/namespaces/shop/events" => echo(call),
        "POST" | "PATCH" => echo(call),
        _ => status(500, "Unexpected"),
    });
    let result = run_with_client(client, args(&[DEPLOYMENT_TARGET])).await;
    let calls = server.finish();
    assert!(result.as_ref().unwrap().is_success(), "{result:?}");
    // The summary exists (applied), the scan does not (created).
    let summary = calls
        .iter()
        .find(|c| c.method == "PATCH" && c.path.contains("summaries"))
        .unwrap();
    assert!(
        summary
            .annotation("kubevigil.io/failed-controls")
            .split(',')
            .any(|id| id == "C-0041"),
        "{summary:?}"
    );
    assert!(
        !calls
            .iter()
            .any(|c| c.method == "GET" && c.path.contains("summaries/")),
        "no GET of a single summary: {calls:#?}"
    );
    let events: Vec<&Call> = calls
        .iter()
        .filter(|c| c.method == "POST" && c.path.contains("events.k8s.io"))
        .collect();
    assert_eq!(events.len(), 1, "{calls:#?}");
    let event = events[0].body.as_ref().unwrap();
    assert_eq!(event["reason"], "PostureRegressed", "{event}");
    assert_eq!(event["type"], "Warning", "{event}");
    assert_eq!(event["reportingController"], "kubevigil", "{event}");
    assert_eq!(event["regarding"]["kind"], "Deployment", "{event}");
    assert_eq!(event["regarding"]["uid"], "uid-web", "{event}");
    let note = event["note"].as_str().unwrap();
    assert!(
        note.contains("newly failed") && note.contains("C-0041"),
        "{note}"
    );
    // After both results were written.
    let event_at = calls
        .iter()
        .position(|c| c.path.contains("events.k8s.io"))
        .unwrap();
    let written = calls[..event_at]
        .iter()
        .filter(|c| matches!(c.method.as_str(), "POST" | "PATCH"))
        .count();
    assert_eq!(written, 2, "{calls:#?}");
}
