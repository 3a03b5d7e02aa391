//! Command-line interface of the `controller` binary.

use clap::Parser;

/// kubevigil controller: continuous security-posture scanning through scan Jobs.
#[derive(Parser, Debug)]
#[command(name = "controller", version, about, long_about = None)]
pub struct Cli {
    /// Namespace kubevigil is installed in (scan Jobs and cluster-scoped results live there).
    #[arg(long, env = "KUBEVIGIL_NAMESPACE", default_value = "kubevigil")]
    pub namespace: String,
}
