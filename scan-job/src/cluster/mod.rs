//! `scan-job run`: the in-cluster edge. For each target named by the controller: read the live
//! object (GET, or one LIST for many targets of a namespace), read the related objects its
//! controls need (in batch, once per Job) and the metadata of the results that exist already
//! (one LIST per result kind and namespace), evaluate, and write the WorkloadConfigurationScan
//! and its Summary: a new result is created (`POST`), a changed one replaced by server-side
//! apply, an unchanged one (same fingerprint, controls hash and outcome) not written at all
//! (`existing.rs`); a target deleted meanwhile gets its results deleted instead. Every target ends in a written result, a deletion or a
//! reported failure.
//!
//! The pure parts (the read plan, object conversion, annotations and owner references, the
//! configuration) are in submodules with unit tests; [`run_with_client`] takes any
//! [`kube::Client`], so tests drive it against a mock API server.

mod annotate;
mod api;
mod batch;
mod events;
mod exceptions;
pub mod existing;
mod objects;
mod openreports;
mod plan;
mod runtime;
mod settings;

use std::path::PathBuf;
use std::process::ExitCode;

use kubevigil_crds::target::TargetParseError;

pub use api::FIELD_MANAGER;

/// Arguments of `scan-job run`, as the controller's Job passes them.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct RunArgs {
    /// Namespace kubevigil is installed in (results of cluster-scoped targets live there).
    #[arg(long)]
    pub install_namespace: String,
    /// Cluster name, for the results' `wlid` annotation.
    #[arg(long)]
    pub cluster_name: String,
    /// The controller's configuration file; only `controlsConfig` and `exceptions` are read.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A target to scan, `group/version/plural/Kind/namespace/name` (repeatable).
    #[arg(long = "target", required = true)]
    pub targets: Vec<String>,
}

/// Errors that stop the whole run before any target is scanned.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration file cannot be read.
    #[error("failed to read config file {path}: {source}")]
    ReadConfig {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration file is not a YAML mapping.
    #[error("invalid config file {path}: {message}")]
    ParseConfig {
        /// The file.
        path: String,
        /// What is wrong, from the parser.
        message: String,
    },
    /// A key of the configuration file that scan-job reads is malformed.
    #[error("invalid config file {path}: field `{field}`: {message}")]
    ConfigField {
        /// The file.
        path: String,
        /// The field (`controlsConfig` or `exceptions`).
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// No client could be built (no in-cluster configuration or kubeconfig).
    #[error("failed to create the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// Why one target failed. Each variant names the action and the object.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The target string does not parse.
    #[error(transparent)]
    Parse(#[from] TargetParseError),
    /// The target is a Secret, which kubevigil never reads.
    #[error("refusing to read {target}: kubevigil never reads Secrets")]
    Secret {
        /// The target.
        target: String,
    },
    /// The GET of the live object failed.
    #[error("failed to get {target}: {source}")]
    Get {
        /// The target (`Deployment shop/web`).
        target: String,
        /// The API error.
        source: kube::Error,
    },
    /// A list of related objects that the target's controls need failed.
    #[error("failed to list {kind} {scope}: {message}")]
    List {
        /// The kind listed.
        kind: String,
        /// `in namespace shop` or `cluster-wide`.
        scope: String,
        /// The API error.
        message: String,
    },
    /// The live object cannot be read as a Kubernetes object.
    #[error("failed to read {target}: {message}")]
    Convert {
        /// The target.
        target: String,
        /// What is wrong.
        message: String,
    },
    /// A result could not be written.
    #[error("failed to apply {kind} {object}: {source}")]
    Apply {
        /// `WorkloadConfigurationScan` or `WorkloadConfigurationScanSummary`.
        kind: String,
        /// `namespace/name` of the result.
        object: String,
        /// The API error.
        source: kube::Error,
    },
    /// A new result could not be created.
    #[error("failed to create {kind} {object}: {source}")]
    Create {
        /// `WorkloadConfigurationScan` or `WorkloadConfigurationScanSummary`.
        kind: String,
        /// `namespace/name` of the result.
        object: String,
        /// The API error.
        source: kube::Error,
    },
    /// The API server does not serve the result kind: its CRD is not installed.
    #[error(
        "failed to apply {kind} {object}: the API server does not serve {kind} (404 page not found); install kubevigil's CRDs (the Helm chart, or kubectl apply -f charts/kubevigil/crds)"
    )]
    MissingCrd {
        /// `WorkloadConfigurationScan` or `WorkloadConfigurationScanSummary`.
        kind: String,
        /// `namespace/name` of the result.
        object: String,
    },
    /// The posture exception resources could not be read (every target of the Job fails: a
    /// scan without them could report accepted risks as failures).
    #[error("{0}")]
    Exceptions(String),
    /// A result of a deleted target could not be deleted.
    #[error("failed to delete {kind} {object}: {source}")]
    Delete {
        /// The result kind.
        kind: String,
        /// `namespace/name` of the result.
        object: String,
        /// The API error.
        source: kube::Error,
    },
    /// The triplet results of a deleted binding could not be listed.
    #[error("failed to list {kind} of {binding} in namespace {namespace}: {source}")]
    ListResults {
        /// The result kind.
        kind: String,
        /// The binding (`RoleBinding ci/ci-edit`).
        binding: String,
        /// The namespace listed.
        namespace: String,
        /// The API error.
        source: kube::Error,
    },
}

/// How one target ended.
#[derive(Debug)]
pub enum TargetOutcome {
    /// The target exists; its results were written.
    Written {
        /// Results written (1, plus one per RBAC triplet for a binding).
        results: usize,
        /// Failed controls over all of them.
        failed_controls: usize,
    },
    /// The target no longer exists; its results were deleted.
    Deleted {
        /// Result objects (scans and summaries) that existed and were deleted.
        deleted: usize,
    },
    /// Nothing (or not everything) was written.
    Failed(TargetError),
}

/// One target of the run and how it ended.
#[derive(Debug)]
pub struct TargetReport {
    /// The target as passed on the command line.
    pub target: String,
    /// How it ended.
    pub outcome: TargetOutcome,
}

/// The outcome of every target, in command-line order (duplicates once).
#[derive(Debug, Default)]
pub struct RunReport {
    /// One entry per distinct target.
    pub targets: Vec<TargetReport>,
}

impl RunReport {
    /// The targets that failed, with their errors.
    pub fn failures(&self) -> impl Iterator<Item = (&str, &TargetError)> {
        self.targets.iter().filter_map(|t| match &t.outcome {
            TargetOutcome::Failed(e) => Some((t.target.as_str(), e)),
            _ => None,
        })
    }

    /// Whether every target was written or its results deleted.
    pub fn is_success(&self) -> bool {
        self.failures().next().is_none()
    }
}

/// Runs `scan-job run` in the cluster: reads the configuration, builds the client from the
/// in-cluster configuration (or a kubeconfig), and scans every target.
pub async fn run(args: RunArgs) -> Result<RunReport, RunError> {
    eprintln!("scan-job run: process: {}", runtime::enforcement_line());
    // The configuration is checked first, so that a bad file is reported as such.
    let settings = settings::load(args.config.as_deref())?;
    let options = settings::load_options(args.config.as_deref())?;
    let client = kube::Client::try_default()
        .await
        .map_err(RunError::Client)?;
    Ok(batch::scan(client, &args, settings, options).await)
}

/// Like [`run`], with a given client (tests use a mock API server).
pub async fn run_with_client(client: kube::Client, args: RunArgs) -> Result<RunReport, RunError> {
    let settings = settings::load(args.config.as_deref())?;
    let options = settings::load_options(args.config.as_deref())?;
    Ok(batch::scan(client, &args, settings, options).await)
}

/// The process exit code of a run: success when every target was written or its results
/// deleted; otherwise failure, after printing to stderr which targets failed and why.
pub fn exit_code(result: &Result<RunReport, RunError>) -> ExitCode {
    match result {
        Err(e) => {
            eprintln!("scan-job run: {e}");
            ExitCode::FAILURE
        }
        Ok(report) if report.is_success() => ExitCode::SUCCESS,
        Ok(report) => {
            let failed: Vec<_> = report.failures().collect();
            eprintln!(
                "scan-job run: {} of {} targets failed:",
                failed.len(),
                report.targets.len()
            );
            for (target, error) in failed {
                eprintln!("  {target}: {error}");
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Command {
        Run(RunArgs),
    }

    #[test]
    fn parses_the_controllers_arguments() {
        let cli = Cli::try_parse_from([
            "scan-job",
            "run",
            "--install-namespace=kubevigil",
            "--cluster-name=kind",
            "--config=/etc/kubevigil/config.yaml",
            "--target=apps/v1/deployments/Deployment/shop/web",
            "--target=/v1/namespaces/Namespace//team-a",
        ])
        .unwrap();
        let Command::Run(args) = cli.command;
        assert_eq!(
            args,
            RunArgs {
                install_namespace: "kubevigil".into(),
                cluster_name: "kind".into(),
                config: Some("/etc/kubevigil/config.yaml".into()),
                targets: vec![
                    "apps/v1/deployments/Deployment/shop/web".into(),
                    "/v1/namespaces/Namespace//team-a".into(),
                ],
            }
        );
        assert!(
            Cli::try_parse_from([
                "scan-job",
                "run",
                "--install-namespace=a",
                "--cluster-name=b"
            ])
            .is_err()
        );
    }

    #[test]
    fn exit_codes() {
        let ok = RunReport {
            targets: vec![
                TargetReport {
                    target: "a".into(),
                    outcome: TargetOutcome::Written {
                        results: 1,
                        failed_controls: 2,
                    },
                },
                TargetReport {
                    target: "b".into(),
                    outcome: TargetOutcome::Deleted { deleted: 0 },
                },
            ],
        };
        assert!(ok.is_success());
        assert_eq!(exit_code(&Ok(ok)), ExitCode::SUCCESS);
        let bad = RunReport {
            targets: vec![TargetReport {
                target: "x".into(),
                outcome: TargetOutcome::Failed(TargetError::Parse(TargetParseError("x".into()))),
            }],
        };
        assert_eq!(bad.failures().count(), 1);
        assert_eq!(exit_code(&Ok(bad)), ExitCode::FAILURE);
        let err = settings::parse("c.yaml", "- 1").map(|_| RunReport::default());
        assert_eq!(exit_code(&err), ExitCode::FAILURE);
    }
}
