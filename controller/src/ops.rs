//! Operations: Prometheus metrics, `/livez` and `/readyz`, the small HTTP server that serves
//! them, and log setup.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

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

/// Answers one request path: status, content type and body.
pub fn respond(path: &str, registry: &Registry, health: &Health) -> (u16, &'static str, String) {
    let path = path.split('?').next().unwrap_or(path);
    match path {
        "/metrics" => {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, registry) {
                Ok(()) => (
                    200,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    body,
                ),
                Err(_) => (500, "text/plain", "failed to encode metrics\n".into()),
            }
        }
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

/// Serves `/metrics`, `/livez` and `/readyz` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    health: Arc<Health>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let registry = registry.clone();
                    let health = health.clone();
                    tokio::spawn(async move {
                        let served = tokio::time::timeout(
                            Duration::from_secs(5),
                            handle(stream, &registry, &health),
                        );
                        if let Ok(Err(e)) = served.await {
                            tracing::debug!(error = %e, "health endpoint connection failed");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a health endpoint connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

async fn handle(
    mut stream: TcpStream,
    registry: &Registry,
    health: &Health,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next().unwrap_or_default().split_whitespace();
    let method = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or("/");
    let (code, content_type, body) = if method == "GET" || method == "HEAD" {
        respond(path, registry, health)
    } else {
        (405, "text/plain", "method not allowed\n".into())
    };
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let mut response = format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
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
        let (code, _, body) = respond("/metrics", &r, &Health::default());
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
        assert_eq!(respond("/readyz", &r, &h).0, 503);
        assert_eq!(respond("/livez", &r, &h).0, 200);
        h.set_role(Role::Standby);
        assert_eq!(respond("/readyz", &r, &h).0, 200);
        h.set_role(Role::Leader);
        h.set_kinds(vec![KindReport {
            group: "example.com".into(),
            version: "v1".into(),
            resource: "widgets".into(),
            state: "not-found".into(),
            message: Some("resource widgets.example.com/v1 not found in API discovery".into()),
        }]);
        let (code, _, body) = respond("/readyz", &r, &h);
        assert_eq!(code, 503);
        h.set_initial_sync(true);
        let (code, _, body2) = respond("/readyz", &r, &h);
        assert_eq!(code, 200);
        for b in [&body, &body2] {
            assert!(
                b.contains("not ready: resource widgets.example.com/v1 not found in API discovery"),
                "{b}"
            );
        }
        let v: serde_json::Value = serde_json::from_str(&body2).unwrap();
        assert_eq!(v["kinds"][0]["state"], "not-found");
        assert_eq!(respond("/nope", &r, &h).0, 404);
    }

    #[tokio::test]
    async fn serves_http() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(false);
        let health = Arc::new(Health::default());
        health.tick();
        let server = tokio::spawn(serve(listener, Arc::new(Registry::default()), health, rx));
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /livez HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.ends_with("ok\n"), "{out}");
        tx.send(true).unwrap();
        server.await.unwrap();
    }
}
