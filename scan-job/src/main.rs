//! `scan-job`: thin entry point; the work is in the `scan_job` library.

use std::process::ExitCode;

use clap::Parser as _;
use scan_job::cli::{Cli, run};

/// mimalloc: the engine allocates many small, short-lived strings per object; the engine
/// benchmark uses the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("scan-job: {e}");
            e.exit().into()
        }
    }
}
