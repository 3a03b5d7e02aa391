//! Issue 8: the controller's startup checks of a malformed controls config, exceptions list or
//! matchingRules entry (a clear error naming the file and the field), and kube's retries on 429
//! and 503 through the controller's real client stack (rate limit layer included), against a
//! minimal HTTP server on loopback that throttles the first requests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::Parser as _;
use controller::cli::Cli;
use controller::config::Config;
use controller::run::{Settings, client_from};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const BASE: &str = r#"
clusterName: test
namespace: kubevigil
continuousScanning:
  matchingRules:
  - {apiGroups: [apps], apiVersions: [v1], resources: [deployments]}
scanJob: {image: i, serviceAccountName: sa, batchSize: 5, maxConcurrentJobs: 1, ttlSecondsAfterFinished: 1, activeDeadlineSeconds: 1, backoffLimit: 0}
"#;

/// Writes `text` as a config file and runs the controller's startup checks on it.
fn load(name: &str, text: &str) -> Result<Settings, String> {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bad-config");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let cli = Cli::try_parse_from(["controller", "--config", path.to_str().unwrap()]).unwrap();
    Settings::load(&cli).map_err(|e| e.to_string())
}

#[test]
fn a_good_config_loads() {
    load("good.yaml", BASE).unwrap();
}

#[test]
fn a_malformed_controls_config_is_named_at_startup() {
    let e = load(
        "bad-controls.yaml",
        &format!(
            "{BASE}controlsConfig:\n  settings:\n    postureControlInputs:\n      insecureCapabilities: SYS_ADMIN\n"
        ),
    )
    .map(|_| ()).expect_err("a string where a list is needed must be refused");
    assert!(e.contains("bad-controls.yaml"), "{e}");
    assert!(e.contains("controlsConfig"), "{e}");
    assert!(e.contains("insecureCapabilities"), "{e}");
}

#[test]
fn a_malformed_exceptions_list_is_named_at_startup() {
    let e = load(
        "bad-exceptions.yaml",
        &format!(
            "{BASE}exceptions:\n- name: x\n  policyType: postureExceptionPolicy\n  actions: [alertOnly]\n  resources:\n  - designatorType: Attributes\n    attributes: {{kind: Deployment, name: 'web('}}\n  posturePolicies: [{{controlID: C-0041}}]\n"
        ),
    )
    .map(|_| ()).expect_err("an invalid regex must be refused");
    assert!(e.contains("bad-exceptions.yaml"), "{e}");
    assert!(e.contains("exceptions"), "{e}");
    assert!(e.contains("resources[0].attributes.name"), "{e}");

    let e = load(
        "wrong-type.yaml",
        &format!("{BASE}exceptions: {{not: a list}}\n"),
    )
    .map(|_| ())
    .expect_err("a mapping where a list is needed must be refused");
    assert!(
        e.contains("wrong-type.yaml") && e.contains("exceptions"),
        "{e}"
    );
}

#[test]
fn wrongly_typed_and_unknown_fields_are_named_at_startup() {
    let e = load(
        "typo.yaml",
        &BASE.replace("maxConcurrentJobs: 1", "maxConcurrentJobs: one"),
    )
    .err()
    .unwrap();
    assert!(
        e.contains("typo.yaml") && e.contains("scanJob.maxConcurrentJobs"),
        "{e}"
    );
    let e = load("unknown.yaml", &format!("{BASE}resyncPerod: 1m\n"))
        .map(|_| ())
        .unwrap_err();
    assert!(e.contains("resyncPerod"), "{e}");
}

/// A rule for a kind that does not exist is not a startup error: discovery reports it (log,
/// readiness detail, metric) and retries it while the other kinds run.
#[test]
fn a_rule_for_a_missing_kind_still_loads() {
    let text = BASE.replace(
        "resources: [deployments]}",
        "resources: [deployments]}\n  - {apiGroups: [nope.example.com], apiVersions: [v1], resources: [widgets]}",
    );
    let settings = load("missing-kind.yaml", &text).unwrap();
    let specs = controller::discovery::specs(&settings.config);
    assert_eq!(specs.len(), 2, "{specs:?}");
}

/// A loopback HTTP server answering `fail_first` requests with `status` (429 or 503, with
/// `Retry-After: 0`), then `200` with an empty Namespace list. Returns its URL and the request
/// counter.
async fn throttling_server(status: u16, fail_first: usize) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                // One request per connection is enough: read to the end of the headers.
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let (code, reason, body) = if n < fail_first {
                    (
                        status,
                        if status == 429 {
                            "Too Many Requests"
                        } else {
                            "Service Unavailable"
                        },
                        format!(
                            r#"{{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"TooManyRequests","code":{status}}}"#
                        ),
                    )
                } else {
                    (
                        200,
                        "OK",
                        r#"{"kind":"NamespaceList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}"#.to_string(),
                    )
                };
                let resp = format!(
                    "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nRetry-After: 0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (format!("http://{addr}"), count)
}

async fn list_through_throttling(status: u16) -> (Result<usize, kube::Error>, usize) {
    let (url, count) = throttling_server(status, 2).await;
    let mut kube_config = kube::Config::new(url.parse().unwrap());
    assert!(
        kube_config.default_retry,
        "kube's retry layer is on by default"
    );
    kube_config.default_retry = true;
    let config = Config::parse("c.yaml", BASE).unwrap();
    let client = client_from(kube_config, &config).unwrap();
    let api: Api<Namespace> = Api::all(client);
    let result = api.list(&Default::default()).await.map(|l| l.items.len());
    (result, count.load(Ordering::SeqCst))
}

#[tokio::test]
async fn the_controller_client_retries_429() {
    let (result, requests) = list_through_throttling(429).await;
    assert_eq!(result.unwrap(), 0);
    assert_eq!(requests, 3, "two 429 answers, then the successful retry");
}

#[tokio::test]
async fn the_controller_client_retries_503() {
    let (result, requests) = list_through_throttling(503).await;
    assert_eq!(result.unwrap(), 0);
    assert_eq!(requests, 3, "two 503 answers, then the successful retry");
}
