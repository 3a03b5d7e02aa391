//! `kv-bench`: kubevigil's cluster benchmark on the local real control plane. Prints figures
//! (Markdown tables); it is not a test and fails only when it cannot measure.
//!
//! ```text
//! kv-bench run [--phases all|scan-job,1k,2k,latency,churn,10k,write-limit] [--edits 200]
//!              [--edit-interval-ms 1000] [--idle-secs 300] [--max-workloads 10000]
//!              [--write-concurrency 80] [--set scanJob.batchSize=100]...
//!              [--scan-job-bin target/release/scan-job]
//! kv-bench cleanup        delete the benchmark namespaces (kvb-*)
//! ```
//!
//! Uses `KUBECONFIG`, else boots (or reuses) the local cluster. `make bench` is the one command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kind_tests::bench::{Bench, Options, render};

#[derive(Debug, Parser)]
#[command(
    name = "kv-bench",
    about = "kubevigil's cluster benchmark (prints figures)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the measurements and print the figures.
    Run {
        /// Phases: all, or a comma-separated subset of scan-job,1k,2k,latency,churn,10k,write-limit
        /// (write-limit runs after each initial scan it is given with).
        #[arg(long, value_delimiter = ',', default_value = "all")]
        phases: Vec<String>,
        /// Single-object edits of the latency phase.
        #[arg(long, default_value_t = 200)]
        edits: usize,
        /// Milliseconds between two edits (open loop).
        #[arg(long, default_value_t = 1000)]
        edit_interval_ms: u64,
        /// Idle window of the CPU measurement, in seconds.
        #[arg(long, default_value_t = 300)]
        idle_secs: u64,
        /// Workloads of the largest scale (a multiple of 100).
        #[arg(long, default_value_t = 10_000)]
        max_workloads: usize,
        /// Writes in flight of the write-limit phase (default: the scan Jobs' total, 5 Jobs × 8
        /// targets × 2 results).
        #[arg(long, default_value_t = kind_tests::bench::write_limit::SCAN_WRITE_CONCURRENCY)]
        write_concurrency: usize,
        /// A chart value `key=value` set on every release (repeatable).
        #[arg(long = "set")]
        sets: Vec<String>,
        /// The scan-job binary of the scan-job phase.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/scan-job"))]
        scan_job_bin: PathBuf,
    },
    /// Delete the benchmark namespaces.
    Cleanup,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kv-bench: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run {
                phases,
                edits,
                edit_interval_ms,
                idle_secs,
                max_workloads,
                write_concurrency,
                sets,
                scan_job_bin,
            } => {
                let bench = Bench::connect(Options {
                    phases,
                    edits,
                    edit_interval: Duration::from_millis(edit_interval_ms),
                    idle: Duration::from_secs(idle_secs),
                    scan_job_bin,
                    max_workloads,
                    write_concurrency,
                    sets,
                })
                .await?;
                let figures = bench.run().await?;
                println!("{}", render(&figures));
                Ok(())
            }
            Command::Cleanup => {
                let bench = Bench::connect(Options {
                    phases: Vec::new(),
                    edits: 0,
                    edit_interval: Duration::ZERO,
                    idle: Duration::ZERO,
                    scan_job_bin: PathBuf::new(),
                    max_workloads: 0,
                    write_concurrency: 0,
                    sets: Vec::new(),
                })
                .await?;
                bench.cleanup().await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kv-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
