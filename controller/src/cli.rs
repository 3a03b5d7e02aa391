//! Command-line interface of the `controller` binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Log output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for log collectors).
    Json,
    /// Human-readable lines.
    Text,
}

/// kubevigil controller: continuous security-posture scanning through scan Jobs.
#[derive(Parser, Debug, Clone)]
#[command(name = "controller", version, about, long_about = None)]
pub struct Cli {
    /// The configuration file (the chart renders it into a ConfigMap).
    #[arg(long, env = "KUBEVIGIL_CONFIG")]
    pub config: PathBuf,

    /// Namespace kubevigil is installed in (scan Jobs and results of cluster-scoped targets live
    /// there). Default: the config file's `namespace`, else `kubevigil`.
    #[arg(long, env = "KUBEVIGIL_NAMESPACE")]
    pub namespace: Option<String>,

    /// Cluster name for the results' workload IDs; overrides the config file's `clusterName`.
    #[arg(long, env = "KUBEVIGIL_CLUSTER_NAME")]
    pub cluster_name: Option<String>,

    /// Address of `/metrics`, `/livez` and `/readyz`. Default: `0.0.0.0:<controller.metricsPort>`.
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,

    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// The controller's own Deployment (in the install namespace). Scan Jobs get it as their
    /// owner, so `helm uninstall` (which deletes the Deployment) also stops and removes them.
    #[arg(long, env = "KUBEVIGIL_OWNER_DEPLOYMENT")]
    pub owner_deployment: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_chart_arguments() {
        let cli = Cli::try_parse_from([
            "controller",
            "--namespace=kubevigil",
            "--cluster-name=local",
            "--config=/etc/kubevigil/config.yaml",
            "--owner-deployment=kubevigil-controller",
        ])
        .unwrap();
        assert_eq!(cli.namespace.as_deref(), Some("kubevigil"));
        assert_eq!(
            cli.owner_deployment.as_deref(),
            Some("kubevigil-controller")
        );
        assert_eq!(cli.cluster_name.as_deref(), Some("local"));
        assert_eq!(cli.log_format, LogFormat::Json);
        assert!(cli.metrics_addr.is_none());
        let cli = Cli::try_parse_from([
            "controller",
            "--config=c.yaml",
            "--log-format=text",
            "--metrics-addr=127.0.0.1:9090",
        ])
        .unwrap();
        assert_eq!(cli.log_format, LogFormat::Text);
        assert_eq!(cli.metrics_addr.map(|a| a.port()), Some(9090));
    }
}
