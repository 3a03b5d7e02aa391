//! Operations: Prometheus metrics, `/livez` and `/readyz`, the HTTP server that serves them
//! (axum), and log setup.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::posture::Posture;

use crate::cli::LogFormat;

/// How long the main loop may go without a tick before `/livez` fails.
pub const LIVENESS_STALL: Duration = Duration::from_secs(30);

/// Labels of `kubevigil_watched_kind_ready`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// API group (empty for core).
    pub group: String,
    /// API version.
    pub version: String,
    /// Plural resource name.
    pub resource: String,
}

/// Labels of `kubevigil_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The failed action (`Error::metric_label`).
    pub action: String,
}

/// Labels of `kubevigil_malformed_objects_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    /// Plural resource name of the listed object.
    pub resource: String,
}

/// The controller's metrics. Clones share the same values.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Targets waiting to be scanned (ready now plus debounced or backing off).
    pub queue_depth: Gauge,
    /// Target scans started (one per target in a created Job).
    pub scans_started: Counter,
    /// Target scans whose Job completed.
    pub scans_succeeded: Counter,
    /// Target scans that failed every attempt and were reported.
    pub scans_failed: Counter,
    /// Failed scan attempts that are retried.
    pub scan_retries: Counter,
    /// Scan Jobs whose container was OOMKilled (their targets are given up).
    pub scan_jobs_oom_killed: Counter,
    /// Scan Jobs created and not finished.
    pub jobs_active: Gauge,
    /// Seconds from a target's first queued event to the completion of its scan Job.
    pub scan_latency: Histogram,
    /// 1 when a watched kind is discovered and its watch has listed everything, else 0.
    pub kind_ready: Family<KindLabels, Gauge>,
    /// Failed API actions, by action.
    pub errors: Family<ErrorLabels, Counter>,
    /// Results deleted by the controller (deleted targets, removed subjects, orphans).
    pub results_deleted: Counter,
    /// Listed objects of the controller's own kinds that could not be read, by resource
    /// (logged and skipped).
    pub malformed_objects: Family<ResourceLabels, Counter>,
    /// Posture by namespace, written by the namespace summaries, read at each scrape.
    pub posture: Arc<Posture>,
    /// Targets queued because a related object (NetworkPolicy, Service, Ingress, mounted PVC or
    /// ConfigMap...) they relate to changed.
    pub related_rescans: Counter,
    /// Results the resync found stale by relation (their recorded related inputs differ from
    /// the watch caches': a missed related event) and queued for a rescan.
    pub related_stale: Counter,
    /// Targets queued by `rescanAfter` (their results were older than the maximum age).
    pub age_rescans: Counter,
}

impl Metrics {
    /// The metrics and the registry that exposes them.
    pub fn new() -> (Self, Registry) {
        let m = Metrics {
            queue_depth: Gauge::default(),
            scans_started: Counter::default(),
            scans_succeeded: Counter::default(),
            scans_failed: Counter::default(),
            scan_retries: Counter::default(),
            scan_jobs_oom_killed: Counter::default(),
            jobs_active: Gauge::default(),
            scan_latency: Histogram::new([
                0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
            ]),
            kind_ready: Family::default(),
            errors: Family::default(),
            results_deleted: Counter::default(),
            related_rescans: Counter::default(),
            related_stale: Counter::default(),
            age_rescans: Counter::default(),
            malformed_objects: Family::default(),
            posture: Arc::new(Posture::default()),
        };
        let mut r = Registry::default();
        r.register(
            "kubevigil_queue_depth",
            "Targets waiting to be scanned",
            m.queue_depth.clone(),
        );
        r.register(
            "kubevigil_scans_started",
            "Target scans started",
            m.scans_started.clone(),
        );
        r.register(
            "kubevigil_scans_succeeded",
            "Target scans whose Job completed",
            m.scans_succeeded.clone(),
        );
        r.register(
            "kubevigil_scans_failed",
            "Target scans that failed every attempt (reported as a ScanFailed event)",
            m.scans_failed.clone(),
        );
        r.register(
            "kubevigil_scan_retries",
            "Failed scan attempts that are retried with backoff",
            m.scan_retries.clone(),
        );
        r.register(
            "kubevigil_scan_jobs_oom_killed",
            "Scan Jobs whose container was OOMKilled (memory limit too small for the batch); their targets are given up until they change",
            m.scan_jobs_oom_killed.clone(),
        );
        r.register(
            "kubevigil_scan_jobs_active",
            "Scan Jobs created and not finished",
            m.jobs_active.clone(),
        );
        r.register(
            "kubevigil_scan_latency_seconds",
            "Seconds from a target's first queued event to the completion of its scan Job",
            m.scan_latency.clone(),
        );
        r.register(
            "kubevigil_watched_kind_ready",
            "1 when a watched kind is discovered and fully listed, else 0",
            m.kind_ready.clone(),
        );
        r.register(
            "kubevigil_errors",
            "Failed API actions by action",
            m.errors.clone(),
        );
        r.register(
            "kubevigil_results_deleted",
            "Result objects deleted by the controller",
            m.results_deleted.clone(),
        );
        r.register(
            "kubevigil_related_rescans",
            "Targets queued because a related object they relate to changed",
            m.related_rescans.clone(),
        );
        r.register(
            "kubevigil_related_stale_results",
            "Results the resync found stale by relation (missed related events) and queued",
            m.related_stale.clone(),
        );
        r.register(
            "kubevigil_age_rescans",
            "Targets queued by rescanAfter because their results reached the maximum age",
            m.age_rescans.clone(),
        );
        r.register(
            "kubevigil_malformed_objects",
            "Listed objects of kubevigil's own kinds that could not be read (logged and skipped)",
            m.malformed_objects.clone(),
        );
        r.register_collector(Box::new(m.posture.clone()));
        (m, r)
    }

    /// Logs and counts a listed object that could not be read.
    pub fn malformed(&self, resource: &str, bad: &kube::core::error_boundary::InvalidObject) {
        let name = format!(
            "{}/{}",
            bad.metadata.namespace.as_deref().unwrap_or(""),
            bad.metadata.name.as_deref().unwrap_or("")
        );
        tracing::warn!(resource, object = %name.trim_start_matches('/'), error = %bad, "skipping a malformed object");
        self.malformed_objects
            .get_or_create(&ResourceLabels {
                resource: resource.to_string(),
            })
            .inc();
    }

    /// Counts a failed action.
    pub fn error(&self, e: &crate::error::Error) {
        self.errors
            .get_or_create(&ErrorLabels {
                action: e.metric_label().to_string(),
            })
            .inc();
    }
}

/// The state of one watched kind, as `/readyz` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KindReport {
    /// API group.
    pub group: String,
    /// API version.
    pub version: String,
    /// Plural resource name.
    pub resource: String,
    /// `discovering`, `listing`, `ready`, `not-found`, `forbidden` or `error`.
    pub state: String,
    /// Why it is not ready, if it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// This replica's part in leader election.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    /// Starting up (before leader election).
    Starting = 0,
    /// Waiting for the leader Lease.
    Standby = 1,
    /// Running the controller.
    Leader = 2,
}

/// Health shared between the main loop and the HTTP endpoint.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    heartbeat_ms: AtomicU64,
    loop_running: AtomicBool,
    role: AtomicU8,
    initial_sync: AtomicBool,
    kinds: Mutex<Vec<KindReport>>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            started: Instant::now(),
            heartbeat_ms: AtomicU64::new(0),
            loop_running: AtomicBool::new(false),
            role: AtomicU8::new(Role::Starting as u8),
            initial_sync: AtomicBool::new(false),
            kinds: Mutex::new(Vec::new()),
        }
    }
}

#[derive(Serialize)]
struct Readiness<'a> {
    ready: bool,
    role: &'static str,
    #[serde(rename = "initialSync")]
    initial_sync: bool,
    message: String,
    kinds: &'a [KindReport],
}

impl Health {
    /// Records that the main loop is alive.
    pub fn tick(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.heartbeat_ms.store(ms, Ordering::Relaxed);
        self.loop_running.store(true, Ordering::Relaxed);
    }

    /// Records this replica's role.
    pub fn set_role(&self, role: Role) {
        self.role.store(role as u8, Ordering::Relaxed);
    }

    /// Records that the initial sync is done (or not).
    pub fn set_initial_sync(&self, done: bool) {
        self.initial_sync.store(done, Ordering::Relaxed);
    }

    /// Replaces the per-kind states.
    pub fn set_kinds(&self, kinds: Vec<KindReport>) {
        *self.kinds.lock().unwrap_or_else(|e| e.into_inner()) = kinds;
    }

    /// `/livez`: healthy unless the main loop stopped ticking.
    pub fn livez(&self) -> (u16, String) {
        if !self.loop_running.load(Ordering::Relaxed) {
            return (200, "ok\n".into());
        }
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let age =
            Duration::from_millis(now.saturating_sub(self.heartbeat_ms.load(Ordering::Relaxed)));
        if age > LIVENESS_STALL {
            (503, format!("main loop stalled for {}s\n", age.as_secs()))
        } else {
            (200, "ok\n".into())
        }
    }

    /// `/readyz`: a JSON body with each watched kind's state; 200 once the initial sync is
    /// done (a standby replica is ready too, so that rolling updates proceed).
    pub fn readyz(&self) -> (u16, String) {
        let kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let role = match self.role.load(Ordering::Relaxed) {
            1 => Role::Standby,
            2 => Role::Leader,
            _ => Role::Starting,
        };
        let synced = self.initial_sync.load(Ordering::Relaxed);
        let problems: Vec<String> = kinds.iter().filter_map(|k| k.message.clone()).collect();
        let (ready, role_name, mut message) = match role {
            Role::Starting => (false, "starting", "starting".to_string()),
            Role::Standby => (
                true,
                "standby",
                "standby: waiting for the leader Lease".into(),
            ),
            Role::Leader if synced => (true, "leader", "ready".into()),
            Role::Leader => (false, "leader", "not ready: initial sync running".into()),
        };
        if !problems.is_empty() {
            message = format!("{message}; not ready: {}", problems.join("; "));
        }
        let body = Readiness {
            ready,
            role: role_name,
            initial_sync: synced,
            message,
            kinds: &kinds,
        };
        let text = serde_json::to_string(&body).unwrap_or_else(|_| "{}".into());
        (if ready { 200 } else { 503 }, text + "\n")
    }
}

/// The content type of the OpenMetrics text format.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the Prometheus text format 0.0.4.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics: any `application/openmetrics-text` media
/// range with a non-zero quality (Prometheus lists it first when it can parse it).
pub fn wants_openmetrics(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default();
        let q = parts
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        media.eq_ignore_ascii_case("application/openmetrics-text") && q > 0.0
    })
}

/// The registry in the OpenMetrics text format (with its `# EOF`) or, converted, in the
/// Prometheus text format 0.0.4: counters are named with their `_total` suffix in `# HELP` and
/// `# TYPE` as their samples are, and there is no `# UNIT` or `# EOF` line.
pub fn encode_metrics(registry: &Registry, openmetrics: bool) -> Result<String, std::fmt::Error> {
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, registry)?;
    if openmetrics {
        return Ok(body);
    }
    let counters: std::collections::HashSet<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(body.len());
    for line in body.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    Ok(out)
}

/// Answers one request path: status, content type and body. `openmetrics` is what the
/// client's `Accept` header asked for ([`wants_openmetrics`]).
pub fn respond(
    path: &str,
    openmetrics: bool,
    registry: &Registry,
    health: &Health,
) -> (u16, &'static str, String) {
    let path = path.split('?').next().unwrap_or(path);
    match path {
        "/metrics" => match encode_metrics(registry, openmetrics) {
            Ok(body) => (
                200,
                if openmetrics {
                    OPENMETRICS
                } else {
                    PROMETHEUS_TEXT
                },
                body,
            ),
            Err(_) => (500, "text/plain", "failed to encode metrics\n".into()),
        },
        "/livez" | "/healthz" => {
            let (code, body) = health.livez();
            (code, "text/plain", body)
        }
        "/readyz" => {
            let (code, body) = health.readyz();
            (code, "application/json", body)
        }
        _ => (404, "text/plain", "not found\n".into()),
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

#[derive(Clone)]
struct Endpoint {
    registry: Arc<Registry>,
    health: Arc<Health>,
}

async fn answer(
    State(endpoint): State<Endpoint>,
    uri: Uri,
    headers: HeaderMap,
) -> impl IntoResponse {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(wants_openmetrics);
    let (code, content_type, body) = respond(
        uri.path(),
        openmetrics,
        &endpoint.registry,
        &endpoint.health,
    );
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, content_type)], body)
}

/// The router of `/metrics`, `/livez` (and `/healthz`) and `/readyz`; GET and HEAD only
/// (other methods get 405, other paths 404).
pub fn router(registry: Arc<Registry>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(answer))
        .route("/livez", get(answer))
        .route("/healthz", get(answer))
        .route("/readyz", get(answer))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(Endpoint { registry, health })
}

/// Serves `/metrics`, `/livez` and `/readyz` with axum (hyper: HTTP/1.1 keep-alive, request
/// parsing and limits) until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    health: Arc<Health>,
    mut shutdown: watch::Receiver<bool>,
) {
    let served = axum::serve(listener, router(registry, health))
        .with_graceful_shutdown(async move { stopped(&mut shutdown).await })
        .await;
    if let Err(e) = served {
        tracing::warn!(error = %e, "the metrics and health endpoint stopped");
    }
}

/// Sets up logging: JSON lines (or text) on stdout, filtered by `RUST_LOG` or else `level`.
pub fn init_tracing(format: LogFormat, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_have_the_documented_names() {
        let (m, r) = Metrics::new();
        m.scans_started.inc_by(3);
        m.kind_ready
            .get_or_create(&KindLabels {
                group: "apps".into(),
                version: "v1".into(),
                resource: "deployments".into(),
            })
            .set(1);
        m.scan_latency.observe(1.5);
        let (code, _, body) = respond("/metrics", true, &r, &Health::default());
        assert_eq!(code, 200);
        for name in [
            "kubevigil_queue_depth ",
            "kubevigil_scans_started_total 3",
            "kubevigil_scans_succeeded_total",
            "kubevigil_scans_failed_total",
            "kubevigil_scan_jobs_active",
            "kubevigil_scan_latency_seconds_bucket",
            "kubevigil_watched_kind_ready{group=\"apps\",version=\"v1\",resource=\"deployments\"} 1",
        ] {
            assert!(body.contains(name), "{name} missing in\n{body}");
        }
    }

    #[test]
    fn readiness_follows_role_and_sync() {
        let h = Health::default();
        let r = Registry::default();
        assert_eq!(respond("/readyz", false, &r, &h).0, 503);
        assert_eq!(respond("/livez", false, &r, &h).0, 200);
        h.set_role(Role::Standby);
        assert_eq!(respond("/readyz", false, &r, &h).0, 200);
        h.set_role(Role::Leader);
        h.set_kinds(vec![KindReport {
            group: "example.com".into(),
            version: "v1".into(),
            resource: "widgets".into(),
            state: "not-found".into(),
            message: Some("resource widgets.example.com/v1 not found in API discovery".into()),
        }]);
        let (code, _, body) = respond("/readyz", false, &r, &h);
        assert_eq!(code, 503);
        h.set_initial_sync(true);
        let (code, _, body2) = respond("/readyz", false, &r, &h);
        assert_eq!(code, 200);
        for b in [&body, &body2] {
            assert!(
                b.contains("not ready: resource widgets.example.com/v1 not found in API discovery"),
                "{b}"
            );
        }
        let v: serde_json::Value = serde_json::from_str(&body2).unwrap();
        assert_eq!(v["kinds"][0]["state"], "not-found");
        assert_eq!(respond("/nope", false, &r, &h).0, 404);
    }

    #[test]
    fn content_negotiation() {
        assert!(wants_openmetrics(
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        ));
        assert!(!wants_openmetrics("text/plain;version=0.0.4"));
        assert!(!wants_openmetrics(
            "application/openmetrics-text;q=0,text/plain"
        ));
        assert!(!wants_openmetrics("*/*"));
        let (m, r) = Metrics::new();
        m.scans_failed.inc();
        let om = encode_metrics(&r, true).unwrap();
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(
            om.contains("# TYPE kubevigil_scans_failed counter\n"),
            "{om}"
        );
        let text = encode_metrics(&r, false).unwrap();
        assert!(!text.contains("# EOF"), "{text}");
        assert!(
            text.contains("# TYPE kubevigil_scans_failed_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP kubevigil_scans_failed_total "),
            "{text}"
        );
        assert!(
            text.contains("\nkubevigil_scans_failed_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE kubevigil_posture_failed_controls gauge"),
            "{text}"
        );
    }

    async fn get(addr: std::net::SocketAddr, path: &str, accept: &str) -> (u16, String, String) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!(
                "GET {path} HTTP/1.1\r\nhost: x\r\naccept: {accept}\r\nconnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let code = out[9..12].parse().unwrap();
        let content_type = out
            .lines()
            .find_map(|l| l.strip_prefix("content-type: "))
            .unwrap_or_default()
            .to_string();
        (code, content_type, out)
    }

    #[tokio::test]
    async fn serves_http() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(false);
        let health = Arc::new(Health::default());
        health.tick();
        let (_m, registry) = Metrics::new();
        let server = tokio::spawn(serve(listener, Arc::new(registry), health, rx));
        let (code, _, out) = get(addr, "/livez", "*/*").await;
        assert_eq!(code, 200, "{out}");
        assert!(out.ends_with("ok\n"), "{out}");
        let (code, ct, out) = get(
            addr,
            "/metrics",
            "application/openmetrics-text;version=1.0.0",
        )
        .await;
        assert_eq!((code, ct.as_str()), (200, OPENMETRICS), "{out}");
        assert!(out.ends_with("# EOF\n"), "{out}");
        let (code, ct, out) = get(addr, "/metrics", "text/plain").await;
        assert_eq!((code, ct.as_str()), (200, PROMETHEUS_TEXT), "{out}");
        assert!(!out.contains("# EOF"), "{out}");
        assert_eq!(get(addr, "/readyz", "*/*").await.0, 503);
        assert_eq!(get(addr, "/nope", "*/*").await.0, 404);
        // Keep-alive: two requests on one connection.
        {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /livez HTTP/1.1\r\nhost: x\r\n\r\nGET /livez HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
        }
        tx.send(true).unwrap();
        server.await.unwrap();
    }
}
