//! `local-cluster`: the local real Kubernetes control plane and the process kubelet.
//!
//! ```text
//! local-cluster up        boot (or reuse) the cluster; prints only the kubeconfig path on stdout
//! local-cluster down      stop every process of the cluster and its pods
//! local-cluster status    show the processes and whether /readyz is ok
//! local-cluster restart-apiserver
//!                         stop kube-apiserver and start it again with the same arguments
//! local-cluster kubelet   the process kubelet itself (started by `up`)
//! ```
//!
//! The state directory is `--state-dir`, else `$KUBEVIGIL_CLUSTER_DIR`, else
//! `$HOME/.cache/kubevigil/cluster`. Progress goes to stderr.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use kind_tests::cluster::{self, NODE_NAME, StateDir, UpOptions};
use kind_tests::kubelet::{self, KubeletConfig, image::ImageMap, sandbox};

#[derive(Debug, Parser)]
#[command(
    name = "local-cluster",
    about = "The local real Kubernetes control plane for kubevigil's tests"
)]
struct Cli {
    /// State directory (kubeconfig, logs, PIDs, pods).
    #[arg(long, global = true, env = cluster::STATE_DIR_ENV)]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct ImageArgs {
    /// Extra image rule PREFIX=PATH: images starting with PREFIX run the binary PATH
    /// (repeatable, or comma-separated in the environment variable).
    #[arg(long = "image-map", env = "KUBEVIGIL_IMAGE_MAP", value_delimiter = ',')]
    image_map: Vec<String>,
    /// Where the built-in rules find controller, scan-job and probe (default: the directory of
    /// this binary).
    #[arg(long)]
    target_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Boot the cluster (or reuse a healthy one) and print the kubeconfig path.
    Up {
        /// A prebuilt `controlplane` binary (default: kind-tests/controlplane/build.sh).
        #[arg(long, env = cluster::CONTROLPLANE_ENV)]
        controlplane: Option<PathBuf>,
        #[command(flatten)]
        images: ImageArgs,
    },
    /// Stop every process of the cluster, including pod processes.
    Down,
    /// Show whether the cluster is up.
    Status,
    /// Restart kube-apiserver with the same arguments (ports, certificates, etcd) and wait for
    /// /readyz; `status` and `down` follow the new PID (fault scenarios).
    RestartApiserver,
    /// Run the process kubelet (started by `up`).
    Kubelet {
        /// Admin kubeconfig.
        #[arg(long)]
        kubeconfig: PathBuf,
        /// kube-apiserver's port on 127.0.0.1.
        #[arg(long)]
        apiserver_port: u16,
        /// Node name.
        #[arg(long, default_value = NODE_NAME)]
        node_name: String,
        /// Upper bound of a pod's termination grace period, in seconds.
        #[arg(long, default_value_t = 30)]
        max_grace_seconds: u64,
        #[command(flatten)]
        images: ImageArgs,
    },
    /// Internal: set up a container's mounts and exec it (run by the kubelet under unshare).
    #[command(hide = true)]
    ContainerInit {
        /// The sandbox spec (JSON).
        spec: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::ContainerInit { spec } = &cli.command {
        // Returns only on failure.
        let err = sandbox::container_init(spec);
        eprintln!("container-init: {err}");
        return ExitCode::from(127);
    }
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

fn self_dir() -> Result<PathBuf, BoxError> {
    let exe = std::env::current_exe()?;
    Ok(exe
        .parent()
        .ok_or("the executable has no parent directory")?
        .to_path_buf())
}

async fn run(cli: Cli) -> Result<ExitCode, BoxError> {
    let state = state_dir(&cli)?;
    match cli.command {
        Command::Up {
            controlplane,
            images,
        } => {
            let mut kubelet_args: Vec<String> = images
                .image_map
                .iter()
                .map(|rule| format!("--image-map={rule}"))
                .collect();
            if let Some(dir) = &images.target_dir {
                kubelet_args.push(format!("--target-dir={}", dir.display()));
            }
            let kubeconfig = cluster::up(&UpOptions {
                state,
                controlplane,
                local_cluster_exe: std::env::current_exe()?,
                kubelet_args,
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
        Command::RestartApiserver => {
            let report = cluster::restart_apiserver(&state).await?;
            eprintln!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Kubelet {
            kubeconfig,
            apiserver_port,
            node_name,
            max_grace_seconds,
            images,
        } => {
            let target = match images.target_dir {
                Some(dir) => dir,
                None => self_dir()?,
            };
            let mut map = ImageMap::new(target);
            for rule in &images.image_map {
                map = map.with_rule_str(rule)?;
            }
            let client = cluster::client_for(&kubeconfig).await?;
            let cfg = KubeletConfig {
                node_name,
                state,
                apiserver_port,
                images: map,
                max_grace: Duration::from_secs(max_grace_seconds),
            };
            kubelet::run(client, cfg, shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ContainerInit { .. } => Ok(ExitCode::FAILURE),
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
