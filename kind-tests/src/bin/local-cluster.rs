//! `local-cluster`: the local real Kubernetes cluster (control plane and a real node).
//!
//! ```text
//! local-cluster up        boot (or reuse) the cluster; prints only the kubeconfig path on stdout
//! local-cluster down      stop every process of the cluster, drain its pods, restore the host
//! local-cluster status    show the processes and whether /readyz is ok
//! local-cluster check-clean
//!                         after `down`: list anything the cluster left on the host (exit 1 if any)
//! local-cluster restart-apiserver
//!                         stop kube-apiserver and start it again with the same arguments
//! local-cluster forward   serve the API server's port on the bridge address (started by `up`)
//! ```
//!
//! The state directory is `--state-dir`, else `$KUBEVIGIL_CLUSTER_DIR`, else
//! `$HOME/.cache/kubevigil/cluster`. Progress goes to stderr.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kind_tests::cluster::{self, StateDir, UpOptions};
use kind_tests::node::forward;

#[derive(Debug, Parser)]
#[command(
    name = "local-cluster",
    about = "The local real Kubernetes cluster for kubevigil's tests"
)]
struct Cli {
    /// State directory (kubeconfig, logs, PIDs, the node).
    #[arg(long, global = true, env = cluster::STATE_DIR_ENV)]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Boot the cluster (or reuse a healthy one) and print the kubeconfig path.
    Up {
        /// A prebuilt `controlplane` binary (default: kind-tests/controlplane/build.sh).
        #[arg(long, env = cluster::CONTROLPLANE_ENV)]
        controlplane: Option<PathBuf>,
    },
    /// Stop every process of the cluster, drain its pods and restore the host.
    Down,
    /// Show whether the cluster is up.
    Status,
    /// List what the stopped cluster left on the host; exit 1 if anything.
    CheckClean,
    /// Restart kube-apiserver with the same arguments (ports, certificates, etcd) and wait for
    /// /readyz; `status` and `down` follow the new PID (fault scenarios).
    RestartApiserver,
    /// Serve a TCP port at another address, byte for byte (started by `up`).
    Forward {
        /// Where to listen.
        #[arg(long)]
        listen: SocketAddr,
        /// Where to connect.
        #[arg(long)]
        to: SocketAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                // kube's client logs every failed request at ERROR, which is noise while `up`
                // polls /readyz; the callers report failures themselves.
                tracing_subscriber::EnvFilter::new("info,kube_client::client::builder=off")
            }),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("local-cluster: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("local-cluster: {e}");
            ExitCode::FAILURE
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn state_dir(cli: &Cli) -> Result<StateDir, cluster::Error> {
    match &cli.state_dir {
        Some(dir) => Ok(StateDir::new(dir)),
        None => StateDir::from_env(),
    }
}

async fn run(cli: Cli) -> Result<ExitCode, BoxError> {
    let state = state_dir(&cli)?;
    match cli.command {
        Command::Up { controlplane } => {
            let kubeconfig = cluster::up(&UpOptions {
                state,
                controlplane,
                local_cluster_exe: std::env::current_exe()?,
            })
            .await?;
            println!("{}", kubeconfig.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Down => {
            let report = cluster::down(&state).await?;
            eprintln!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Status => {
            let status = cluster::status(&state).await?;
            println!("{status}");
            Ok(if status.is_up() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Command::CheckClean => {
            let left = cluster::leftovers(&state);
            if left.is_empty() {
                println!(
                    "clean: no process, mount, network namespace or interface, route, iptables \
                     chain, cgroup or changed sysctl of {} is left",
                    state.root().display()
                );
                Ok(ExitCode::SUCCESS)
            } else {
                println!("the cluster left behind:");
                for l in left {
                    println!("  {l}");
                }
                Ok(ExitCode::FAILURE)
            }
        }
        Command::RestartApiserver => {
            let report = cluster::restart_apiserver(&state).await?;
            eprintln!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Forward { listen, to } => {
            forward::serve(listen, to, shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            // Without signal handlers, only Ctrl-C via tokio's default handling remains.
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
