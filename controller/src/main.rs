//! `controller`: thin entry point; the work is in the `controller` library.

use std::process::ExitCode;

use clap::Parser as _;
use controller::{cli::Cli, ops, run};

// One thread: the controller is I/O-bound, and a single allocator arena keeps memory compact.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match run::Settings::load(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("controller: {e}");
            return ExitCode::FAILURE;
        }
    };
    ops::init_tracing(settings.log_format, &settings.config.controller.log_level);
    match run::run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, category = ?e.category(), "controller stopped");
            eprintln!("controller: {e}");
            ExitCode::FAILURE
        }
    }
}
