//! Command-line interface of the `scan-job` binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use kube::api::ObjectMeta;

use crate::catalog;
use crate::engine::{ControlInputs, Evaluator, Exceptions, Inventory};
use crate::manifests;
use crate::report::{self, ReportContext};

/// kubevigil scan-job: evaluates the security-control catalog on Kubernetes objects.
#[derive(Parser, Debug)]
#[command(name = "scan-job", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats of an offline scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A table for people.
    Table,
    /// A `kind: List` of WorkloadConfigurationScan objects, as they would be stored.
    Json,
    /// The same list as YAML.
    Yaml,
}

/// The scan-job subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Scan the targets named by the controller, in the cluster, and write the result resources.
    Run,
    /// Scan manifest files offline and print the results.
    Scan {
        /// Files or directories of YAML/JSON manifests.
        #[arg(short = 'f', long = "file", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// List the control catalog.
    Controls,
}

/// Runs the command line; returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run => {
            eprintln!("scan-job run: not implemented yet");
            ExitCode::FAILURE
        }
        Command::Controls => {
            for c in catalog::all() {
                let m = c.meta();
                println!("{}\t{}\t{}", m.id, m.severity().as_str(), m.name);
            }
            ExitCode::SUCCESS
        }
        Command::Scan { files, output } => scan(&files, output),
    }
}

fn scan(files: &[PathBuf], output: Output) -> ExitCode {
    let loaded = manifests::load_paths(files);
    for e in &loaded.errors {
        eprintln!("scan-job: {e}");
    }
    let inventory = Inventory::new(loaded.objects);
    let controls = catalog::all();
    let evaluator = Evaluator::new(controls, ControlInputs::default(), Exceptions::none());
    let cx = ReportContext {
        install_namespace: "kubevigil".into(),
        cluster_name: "offline".into(),
        controls_hash: report::controls_hash(&evaluator),
    };
    let items: Vec<_> = evaluator
        .evaluate_all(&inventory)
        .iter()
        .map(|r| report::build(r, &inventory, &cx).scan)
        .collect();
    let list = serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "metadata": ObjectMeta::default(),
        "items": items,
    });
    let text = match output {
        Output::Json | Output::Table => {
            serde_json::to_string_pretty(&list).map_err(|e| e.to_string())
        }
        Output::Yaml => serde_norway::to_string(&list).map_err(|e| e.to_string()),
    };
    match text {
        Ok(t) => println!("{t}"),
        Err(e) => {
            eprintln!("scan-job: failed to render results: {e}");
            return ExitCode::FAILURE;
        }
    }
    if loaded.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
