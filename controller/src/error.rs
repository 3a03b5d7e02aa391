//! The controller's errors: one enum whose variants name the failed action and object, with a
//! category that decides what happens next (retry, report, or stop the process).

use kube::runtime::watcher;
pub use kubevigil_crds::api_error::{is_conflict, is_not_found, is_transient, status_code};

use crate::config::ConfigError;

/// The start of every message of the chart's ValidatingAdmissionPolicy
/// (`charts/kubevigil/templates/admission-policy.yaml`), which admits only the scan Jobs this
/// controller builds from its configuration.
pub const ADMISSION_DENIAL_MARKER: &str = "kubevigil admission: ";

/// Whether the API server denied a request through the chart's admission policy.
///
/// The policy and the controller's configuration come from the same values, but `helm upgrade`
/// updates them a moment apart: a Job built by the old pod (or by the new pod before the new
/// policy is in force) can be denied briefly. Such a denial is retried with backoff rather than
/// given up at once; one that persists is reported when the retries run out.
pub fn denied_by_admission_policy(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.message.contains(ADMISSION_DENIAL_MARKER))
}

/// What the controller does about an error: the one retry policy. API errors are sorted by
/// [`is_transient`] (shared with scan-job): throttling, timeouts, server errors and failures to
/// reach the server are retried; what the server refuses for good is reported at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    /// Transient (408, 429, 500, 502, 503, 504, connection errors): retried with backoff, by
    /// the caller or at the next resync.
    Retry,
    /// Permanent (400, 401, 403, 404, 409, 422 and every other answer): reported, not retried
    /// as such (a refused scan Job gives its targets up with a ScanFailed event).
    Report,
    /// The process cannot go on (bad configuration, missing CRDs, lost leadership).
    Fatal,
}

/// Errors of the controller. Each message names the action and the object.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file is bad.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A configuration value is accepted by the file format but not by the scanner.
    #[error("invalid config file {path}: field `{field}`: {message}")]
    ConfigValue {
        /// The file.
        path: String,
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// No Kubernetes client configuration could be found or used.
    #[error("failed to configure the Kubernetes client: {}", brief(.0))]
    Client(#[source] kube::Error),
    /// The result CRDs are not installed.
    #[error(
        "install the chart's CRDs: {missing} not found in API discovery (helm upgrade --install \
         kubevigil ./charts/kubevigil installs them, or kubectl apply -f charts/kubevigil/crds/)"
    )]
    CrdsMissing {
        /// The missing resources, comma-separated.
        missing: String,
    },
    /// An API discovery request failed.
    #[error("failed to discover {what}: {}", brief(.source))]
    Discovery {
        /// What was looked up (`apps/v1`).
        what: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Listing results failed.
    #[error("failed to list {what}: {}", brief(.source))]
    List {
        /// What was listed (`workloadconfigurationscansummaries in all namespaces`).
        what: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Creating a scan Job failed.
    #[error("failed to create scan Job {job}: {}", brief(.source))]
    CreateJob {
        /// `namespace/name` of the Job.
        job: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Reading or deleting an existing scan Job failed.
    #[error("failed to {action} scan Job {job}: {}", brief(.source))]
    Job {
        /// `get` or `delete`.
        action: &'static str,
        /// `namespace/name` of the Job.
        job: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Deleting a result failed.
    #[error("failed to delete {kind} {result}: {}", brief(.source))]
    DeleteResult {
        /// The result kind.
        kind: &'static str,
        /// `namespace/name` of the result.
        result: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Writing or deleting a namespace summary failed.
    #[error("failed to {action} ConfigurationScanSummary {name}: {}", brief(.source))]
    Summary {
        /// `apply`, `delete` or `list summaries of`.
        action: &'static str,
        /// Name of the summary (the namespace).
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Publishing a Kubernetes Event failed.
    #[error("failed to publish event {reason} on {target}: {}", brief(.source))]
    PublishEvent {
        /// The event's reason.
        reason: String,
        /// The object the event is about.
        target: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// A Lease request failed.
    #[error("failed to {action} leader Lease {lease}: {}", brief(.source))]
    Lease {
        /// `get`, `create` or `update`.
        action: &'static str,
        /// `namespace/name` of the Lease.
        lease: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Leadership was lost: the process stops so that the pod restarts as a candidate.
    #[error("lost the leader Lease {lease}: {reason}")]
    LeaseLost {
        /// `namespace/name` of the Lease.
        lease: String,
        /// Why.
        reason: String,
    },
    /// The metrics and health endpoint could not listen.
    #[error("failed to listen on {addr} for /metrics, /livez and /readyz: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Installing the signal handlers failed.
    #[error("failed to install the SIGTERM/SIGINT handler: {0}")]
    Signal(#[source] std::io::Error),
    /// The main loop's channel closed unexpectedly.
    #[error("internal channel closed: {0}")]
    Channel(&'static str),
}

impl Error {
    /// The HTTP status of the underlying API error, if any.
    pub fn status_code(&self) -> Option<u16> {
        self.kube_error().and_then(status_code)
    }

    fn kube_error(&self) -> Option<&kube::Error> {
        match self {
            Error::Client(e)
            | Error::Discovery { source: e, .. }
            | Error::List { source: e, .. }
            | Error::CreateJob { source: e, .. }
            | Error::Job { source: e, .. }
            | Error::DeleteResult { source: e, .. }
            | Error::Summary { source: e, .. }
            | Error::PublishEvent { source: e, .. }
            | Error::Lease { source: e, .. } => Some(e),
            _ => None,
        }
    }

    /// A short label for metrics (`kubevigil_errors_total{action=...}`) and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Config(_) | Error::ConfigValue { .. } => "config",
            Error::Client(_) => "client",
            Error::CrdsMissing { .. } => "crds_missing",
            Error::Discovery { .. } => "discovery",
            Error::List { .. } => "list_results",
            Error::CreateJob { .. } => "create_job",
            Error::Job { .. } => "job",
            Error::DeleteResult { .. } => "delete_result",
            Error::Summary { .. } => "summary",
            Error::PublishEvent { .. } => "publish_event",
            Error::Lease { .. } => "lease",
            Error::LeaseLost { .. } => "lease_lost",
            Error::Listen { .. } => "listen",
            Error::Signal(_) => "signal",
            Error::Channel(_) => "channel",
        }
    }

    /// Whether the error is retried, reported, or ends the process.
    pub fn category(&self) -> Category {
        match self {
            Error::Client(_) => Category::Fatal,
            // A 409 reaches here only where it is not handled as the collision it usually is
            // (Job creates and Lease updates handle theirs): re-sending the same request would
            // conflict again.
            // A scan Job denied by the chart's admission policy: an upgrade in progress.
            Error::CreateJob { source, .. } if denied_by_admission_policy(source) => {
                Category::Retry
            }
            _ => match self.kube_error() {
                Some(e) if is_transient(e) => Category::Retry,
                Some(_) => Category::Report,
                None => Category::Fatal,
            },
        }
    }
}

/// A one-line form of an API error: the server's message, code and reason for error responses
/// (kube's own `Display` repeats the whole status), the error itself otherwise.
pub fn brief(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) if !status.message.is_empty() => {
            let reason = if status.reason.is_empty() {
                String::new()
            } else {
                format!(" {}", status.reason)
            };
            format!("{} ({}{reason})", status.message, status.code)
        }
        other => other.to_string(),
    }
}

/// The HTTP status behind a watch error, if any.
pub fn watch_status(e: &watcher::Error) -> Option<u16> {
    match e {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => status_code(e),
        watcher::Error::WatchError(status) => Some(status.code),
        watcher::Error::NoResourceVersion => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            message: "boom".into(),
            ..kube::core::Status::default()
        }))
    }

    fn create(code: u16) -> Error {
        Error::CreateJob {
            job: "kubevigil/kubevigil-scan-ab12cd34ef".into(),
            source: api(code),
        }
    }

    #[test]
    fn messages_name_action_and_object() {
        let e = create(500).to_string();
        assert!(
            e.starts_with("failed to create scan Job kubevigil/kubevigil-scan-ab12cd34ef: "),
            "{e}"
        );
        let e = Error::CrdsMissing {
            missing: "workloadconfigurationscans.kubevigil.io".into(),
        }
        .to_string();
        assert!(e.starts_with("install the chart's CRDs: "), "{e}");
    }

    #[test]
    fn api_errors_are_brief() {
        let e = create(403).to_string();
        assert_eq!(
            e,
            "failed to create scan Job kubevigil/kubevigil-scan-ab12cd34ef: boom (403)"
        );
    }

    #[test]
    fn categories_decide_retry_or_report() {
        assert_eq!(create(500).category(), Category::Retry);
        assert_eq!(create(429).category(), Category::Retry);
        assert_eq!(create(422).category(), Category::Report);
        assert_eq!(create(403).category(), Category::Report);
        assert_eq!(create(403).metric_label(), "create_job");
        assert_eq!(create(408).category(), Category::Retry);
        assert_eq!(create(409).category(), Category::Report);
        assert_eq!(Error::Channel("main loop").category(), Category::Fatal);
        assert!(is_not_found(&api(404)) && is_conflict(&api(409)));
        let status = watcher::Error::WatchError(Box::new(kube::core::Status {
            code: 403,
            ..kube::core::Status::default()
        }));
        assert_eq!(watch_status(&status), Some(403));
    }

    #[test]
    fn a_denial_by_the_charts_admission_policy_is_retried() {
        let denied = |code: u16, message: &str| Error::CreateJob {
            job: "kubevigil/kubevigil-scan-ab12cd34ef".into(),
            source: kube::Error::Api(Box::new(kube::core::Status {
                code,
                message: message.into(),
                ..kube::core::Status::default()
            })),
        };
        let by_policy = "jobs.batch \"kubevigil-scan-ab12cd34ef\" is forbidden: \
             ValidatingAdmissionPolicy 'kubevigil-scan-job-admission' with binding \
             'kubevigil-scan-job-admission' denied request: kubevigil admission: the scan Job \
             must run image ghcr.io/kubevigil/scan-job:0.1.1";
        assert_eq!(denied(403, by_policy).category(), Category::Retry);
        assert_eq!(denied(422, by_policy).category(), Category::Retry);
        // Any other refusal (RBAC, another policy, validation) is reported at once.
        assert_eq!(
            denied(403, "jobs.batch is forbidden: User cannot create").category(),
            Category::Report
        );
        // Only Job creates: the marker elsewhere means nothing.
        let other = Error::Summary {
            action: "apply",
            name: "shop".into(),
            source: api(403),
        };
        assert_eq!(other.category(), Category::Report);
    }
}
