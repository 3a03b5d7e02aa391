//! `probe`: kind-tests' test program, run as a pod by the local kubelet (any image whose
//! repository ends in `probe`) or from a real image on kind.
//!
//! ```text
//! probe rbac --configmap NAME   in-cluster client: read the ConfigMap, try to list Secrets
//! probe sleep                   run until SIGTERM, then exit 0
//! probe exit CODE               print and exit with CODE
//! probe inspect [--pid PID]     print what the runtime enforces on process PID (default 1: the
//!                               target container's process when run as an ephemeral container
//!                               with `kubectl debug --target`), or on itself with --pid self
//! ```

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};

#[derive(Debug, Parser)]
#[command(name = "probe", about = "kind-tests' in-cluster test program")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read a ConfigMap and try to list Secrets with the in-cluster configuration.
    Rbac {
        /// The ConfigMap to read (in the pod's namespace).
        #[arg(long, env = "PROBE_CONFIGMAP")]
        configmap: String,
    },
    /// Sleep until SIGTERM.
    Sleep,
    /// Exit with a code.
    Exit {
        /// The exit code.
        code: u8,
    },
    /// Print the user, no-new-privileges, seccomp mode, effective capabilities, root mount and
    /// memory limit of a process.
    Inspect {
        /// The process (`self` for the probe itself).
        #[arg(long, default_value = "1")]
        pid: String,
    },
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Rbac { configmap } => rbac(&configmap).await,
        Command::Sleep => sleep().await,
        Command::Inspect { pid } => match kind_tests::security::ProcessSecurity::read(&pid) {
            Ok(report) => {
                println!("probe: pid {pid}: {report}");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Err(e.into()),
        },
        Command::Exit { code } => {
            println!("probe: exiting with {code}");
            Ok(ExitCode::from(code))
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("probe: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn rbac(configmap: &str) -> Result<ExitCode, BoxError> {
    let client = Client::try_default().await?;
    let ns = client.default_namespace().to_owned();
    let review: SelfSubjectReview = Api::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await?;
    let user = review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .unwrap_or_default();
    println!("probe: authenticated as {user}");

    let mut ok = true;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    match cms.get(configmap).await {
        Ok(cm) => {
            let data: Vec<String> = cm
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            println!("probe: configmap {ns}/{configmap} read: {}", data.join(","));
        }
        Err(e) => {
            println!("probe: configmap {ns}/{configmap} NOT readable: {e}");
            ok = false;
        }
    }
    let secrets: Api<Secret> = Api::namespaced(client, &ns);
    match secrets.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) if status.code == 403 => {
            println!("probe: list secrets in {ns} forbidden (403)");
        }
        Err(e) => {
            println!("probe: list secrets in {ns} failed unexpectedly: {e}");
            ok = false;
        }
        Ok(list) => {
            println!(
                "probe: list secrets in {ns} ALLOWED ({} items), expected 403",
                list.items.len()
            );
            ok = false;
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn sleep() -> Result<ExitCode, BoxError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    println!("probe: sleeping until SIGTERM");
    term.recv().await;
    println!("probe: got SIGTERM, exiting");
    Ok(ExitCode::SUCCESS)
}
