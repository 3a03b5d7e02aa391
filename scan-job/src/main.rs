//! `scan-job`: thin entry point; the work is in the `scan_job` library.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    scan_job::cli::run(scan_job::cli::Cli::parse())
}
