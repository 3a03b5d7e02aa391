//! `controller`: thin entry point; the work is in the `controller` library.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = controller::cli::Cli::parse();
    eprintln!(
        "controller: not implemented yet (namespace {})",
        cli.namespace
    );
    std::process::ExitCode::FAILURE
}
