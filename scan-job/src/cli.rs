//! Command-line interface of the `scan-job` binary: argument parsing (clap) and the commands,
//! which return an [`Exit`] or a [`CliError`]; `main` only maps them to the process exit code.

use std::io::{IsTerminal as _, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kubevigil_crds::Severity;
use serde::Serialize;

use crate::manifests;
use crate::offline::{self, ConfigError, ScanOptions, Scanner, Totals};
use crate::output::{self, Format, Renderer, Style};
use kubevigil_engine::catalog;

const EXIT_CODES: &str = "\
Exit codes:
  0  clean: every input was read and no failed control reached --severity-threshold
  1  a failed control at or above --severity-threshold
  2  unreadable input or configuration: a manifest that does not parse (the other files are
     still scanned and reported), a bad --controls-config or --exceptions file, an unknown
     --framework or --control (nothing is scanned), or invalid arguments
  3  the output could not be written, or the command is not available
When both 1 and 2 apply, the exit code is 2: the scan is incomplete.";

const SCAN_HELP: &str = "\
Compliance score of a resource: passed / (passed + failed) controls, in percent; controls passed
through an exception count as passed, skipped controls are not counted, and a resource with no
decided control scores 100.
";

/// kubevigil scan-job: evaluates the security-control catalog on Kubernetes objects.
#[derive(Parser, Debug)]
#[command(name = "scan-job", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The scan-job subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Scan the targets named by the controller, in the cluster, and write the result resources.
    Run(crate::cluster::RunArgs),
    /// Scan manifest files offline and print the results.
    #[command(after_help = format!("{SCAN_HELP}\n{EXIT_CODES}"))]
    Scan(ScanArgs),
    /// List the control catalog.
    Controls(ControlsArgs),
    /// Posture exceptions: convert Kubescape's exception policies into kubevigil's resources.
    #[command(subcommand)]
    Exceptions(ExceptionsCommand),
}

/// `scan-job exceptions` subcommands.
#[derive(Subcommand, Debug)]
pub enum ExceptionsCommand {
    /// Print Kubescape postureExceptionPolicy JSON (or YAML) as PostureException and
    /// ClusterPostureException YAML documents, ready for `kubectl apply -f -`.
    Convert(ConvertArgs),
}

/// Arguments of `scan-job exceptions convert`.
#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The Kubescape exceptions file (`-`: standard input).
    #[arg(default_value = "-")]
    pub file: PathBuf,
    /// The justification every converted exception gets (Kubescape's format has none; by
    /// default it says where the exception came from).
    #[arg(long)]
    pub justification: Option<String>,
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

/// Output formats of the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CatalogOutput {
    /// A table for people.
    Table,
    /// Every control's full metadata, description and remediation included.
    Json,
}

/// When to colour the table output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// When stdout is a terminal and `NO_COLOR` is not set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// The lowest severity that makes `scan` exit with 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Threshold {
    /// Low, Medium, High or Critical.
    Low,
    /// Medium, High or Critical.
    Medium,
    /// High or Critical.
    High,
    /// Critical.
    Critical,
}

impl From<Threshold> for Severity {
    fn from(t: Threshold) -> Self {
        match t {
            Threshold::Low => Severity::Low,
            Threshold::Medium => Severity::Medium,
            Threshold::High => Severity::High,
            Threshold::Critical => Severity::Critical,
        }
    }
}

/// Arguments of `scan-job scan`.
#[derive(Args, Debug)]
pub struct ScanArgs {
    /// Files or directories of YAML/JSON manifests (multi-document files and `List` kinds
    /// included; directories are read recursively for *.yaml, *.yml and *.json; `-` is stdin).
    #[arg(short = 'f', long = "file", value_name = "PATH", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Print WorkloadConfigurationScanSummary objects (or the summary table) instead of the
    /// full scans.
    #[arg(long)]
    pub summary: bool,
    /// Control inputs (Kubescape's postureControlInputs, YAML or JSON) overriding the defaults.
    #[arg(long, value_name = "FILE")]
    pub controls_config: Option<PathBuf>,
    /// Posture exceptions (Kubescape's postureExceptionPolicy list, YAML or JSON).
    #[arg(long, value_name = "FILE")]
    pub exceptions: Option<PathBuf>,
    /// Run only the controls of these frameworks (comma-separated, case-insensitive: nsa, mitre,
    /// allcontrols, armobest, cis-v1.12.0...; `scan-job controls` shows each control's).
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub framework: Vec<String>,
    /// Run only these controls (comma-separated IDs, e.g. C-0057,C-0041).
    #[arg(long = "control", value_name = "ID", value_delimiter = ',')]
    pub controls: Vec<String>,
    /// Exit with 1 when a control of this severity or higher fails.
    #[arg(long, value_enum, ignore_case = true, value_name = "SEVERITY")]
    pub severity_threshold: Option<Threshold>,
    /// Cluster name written into the results' wlid annotation.
    #[arg(long, default_value = "offline")]
    pub cluster_name: String,
    /// Namespace of the results of cluster-scoped targets and ClusterRoleBindings.
    #[arg(long, default_value = "kubevigil")]
    pub install_namespace: String,
    /// Colour in the table output.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

/// Arguments of `scan-job controls`.
#[derive(Args, Debug)]
pub struct ControlsArgs {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = CatalogOutput::Table)]
    pub output: CatalogOutput,
    /// List only the controls of these frameworks (comma-separated, case-insensitive).
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub framework: Vec<String>,
    /// Colour in the table output.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

/// How a command ended, as the process exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// 0: every input was read; no failed control at or above the threshold.
    Clean,
    /// 1: a failed control at or above `--severity-threshold`.
    ThresholdReached,
    /// 2: unreadable input or configuration.
    BadInput,
    /// 3: the output could not be written, or the command is not available.
    Failure,
}

impl Exit {
    /// The numeric exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Clean => 0,
            Exit::ThresholdReached => 1,
            Exit::BadInput => 2,
            Exit::Failure => 3,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e.code())
    }
}

/// Why a command could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad configuration or arguments: nothing was scanned.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Results could not be serialised.
    #[error("cannot render the results: {0}")]
    Render(String),
    /// Writing to stdout failed.
    #[error("cannot write the output: {0}")]
    Write(#[from] std::io::Error),
    /// The exceptions file could not be read or converted.
    #[error("exceptions convert: {0}")]
    Convert(String),
    /// The in-cluster scan could not start its runtime.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl CliError {
    /// The exit status this error ends the process with.
    pub fn exit(&self) -> Exit {
        match self {
            CliError::Config(_) | CliError::Convert(_) => Exit::BadInput,
            CliError::Render(_) | CliError::Write(_) | CliError::Runtime(_) => Exit::Failure,
        }
    }
}

/// Runs the command line, writing results to stdout and diagnostics to stderr.
pub fn run(cli: Cli) -> Result<Exit, CliError> {
    match cli.command {
        Command::Run(args) => run_in_cluster(args),
        Command::Controls(args) => controls(&args),
        Command::Scan(args) => scan(&args),
        Command::Exceptions(ExceptionsCommand::Convert(args)) => convert(&args),
    }
}

/// `scan-job exceptions convert`: warnings on stderr, the resources on stdout.
fn convert(args: &ConvertArgs) -> Result<Exit, CliError> {
    let text = if args.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(&args.file)
    }
    .map_err(|e| CliError::Convert(format!("cannot read {}: {e}", args.file.display())))?;
    let conversion = crate::convert::convert(&text, &catalog::all(), args.justification.as_deref())
        .map_err(|e| CliError::Convert(format!("{}: {e}", args.file.display())))?;
    for w in &conversion.warnings {
        eprintln!("scan-job: warning: {w}");
    }
    print(&crate::convert::to_yaml(&conversion).map_err(CliError::Render)?)?;
    Ok(Exit::Clean)
}

/// `scan-job run`: JSON logs (filter from `RUST_LOG`), then the in-cluster scan. Exit 0 when
/// every target was written or its results deleted, 3 otherwise (the failed targets are named on
/// stderr).
fn run_in_cluster(args: crate::cluster::RunArgs) -> Result<Exit, CliError> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second initialisation (tests) is harmless: keep the first subscriber.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    let result = runtime.block_on(async {
        tokio::select! {
            result = crate::cluster::run(args) => Some(result),
            () = terminated() => None,
        }
    });
    let Some(result) = result else {
        // The pod is being deleted (its Job was deleted, or it ran past its deadline). Writing
        // on through the grace period could put this scan's older results over those of the
        // scan the controller has already started in its place; stop at once instead. Requests
        // in flight are dropped with the runtime.
        eprintln!("scan-job run: stopped by SIGTERM before finishing; nothing more is written");
        return Ok(Exit::Failure);
    };
    // exit_code prints the failed targets; map its verdict onto our exit statuses.
    if crate::cluster::exit_code(&result) == ExitCode::SUCCESS {
        Ok(Exit::Clean)
    } else {
        Ok(Exit::Failure)
    }
}

/// Resolves when the process receives SIGTERM (as PID 1 of its container it has no default
/// handler for it); never when the handler cannot be installed.
async fn terminated() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut sigterm) => {
            sigterm.recv().await;
        }
        Err(e) => {
            eprintln!("scan-job run: cannot handle SIGTERM ({e}); running to the end");
            std::future::pending::<()>().await;
        }
    }
}

fn style(choice: ColorChoice) -> Style {
    let color = match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
        }
    };
    Style { color }
}

/// Writes `text` to stdout. A closed pipe (`| head`) is not an error: the reader has what it
/// wanted.
fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::Write(e)),
        _ => Ok(()),
    }
}

fn json<T: Serialize>(value: &T) -> Result<String, CliError> {
    serde_json::to_string_pretty(value)
        .map(|mut s| {
            s.push('\n');
            s
        })
        .map_err(|e| CliError::Render(e.to_string()))
}

fn controls(args: &ControlsArgs) -> Result<Exit, CliError> {
    let selected = offline::select_controls(catalog::all(), &args.framework, &[])?;
    let text = match args.output {
        CatalogOutput::Table => output::controls_table(&selected, style(args.color)),
        CatalogOutput::Json => json(&output::controls_info(&selected))?,
    };
    print(&text)?;
    Ok(Exit::Clean)
}

/// The current time, RFC 3339 to the second, for the scan-time annotation.
fn now() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    now.round(k8s_openapi::jiff::Unit::Second)
        .unwrap_or(now)
        .to_string()
}

/// What `--output` and `--summary` print.
fn format(args: &ScanArgs) -> Format {
    match args.output {
        Output::Table if args.summary => Format::SummaryTable,
        Output::Table => Format::ScanTable,
        Output::Json => Format::Json {
            summary: args.summary,
        },
        Output::Yaml => Format::Yaml {
            summary: args.summary,
        },
    }
}

/// Standard output for a streaming scan: buffered; once the reader has gone (`| head`), later
/// writes are dropped, as the reader has what it wanted (the scan still runs to its exit code).
struct Stdout {
    out: std::io::BufWriter<std::io::StdoutLock<'static>>,
    closed: bool,
}

impl Stdout {
    fn new() -> Self {
        Stdout {
            out: std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock()),
            closed: false,
        }
    }

    /// Runs one write; a closed pipe is not an error.
    fn write(
        &mut self,
        f: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<(), CliError> {
        if self.closed {
            return Ok(());
        }
        match f(&mut self.out) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(CliError::Write(e)),
            Ok(()) => Ok(()),
        }
    }
}

/// `scan-job scan`: reads the manifests once for the index (every object, workloads as what
/// other objects' controls read of them), reports unreadable input, then reads them again and
/// evaluates and prints one object at a time.
fn scan(args: &ScanArgs) -> Result<Exit, CliError> {
    let options = ScanOptions {
        controls_config: args.controls_config.clone(),
        exceptions: args.exceptions.clone(),
        frameworks: args.framework.clone(),
        controls: args.controls.clone(),
        cluster_name: args.cluster_name.clone(),
        install_namespace: args.install_namespace.clone(),
        scan_time: Some(now()),
    };
    let mut scanner = Scanner::new(&options)?;
    for w in scanner.warnings() {
        eprintln!("scan-job: warning: {w}");
    }
    let mut indexed = manifests::index_paths(&args.files);
    scanner.apply_manifest_exceptions(&mut indexed);
    for w in &indexed.warnings {
        eprintln!("scan-job: warning: {w}");
    }
    for e in &indexed.errors {
        eprintln!("scan-job: {e}");
    }
    let errors = std::mem::take(&mut indexed.errors);
    let threshold: Option<Severity> = args.severity_threshold.map(Into::into);
    let mut out = Stdout::new();
    let mut renderer = Renderer::new(format(args), style(args.color));
    let mut totals = Totals {
        unreadable: errors.len(),
        ..Totals::default()
    };
    let mut reached = false;
    let mut failure = None;
    out.write(|w| renderer.begin(w))?;
    scanner.stream(indexed, &mut |r| {
        totals.add(&r);
        reached = reached || threshold.is_some_and(|t| r.reaches(t));
        match out.write(|w| renderer.item(w, &r)) {
            Ok(()) => true,
            Err(e) => {
                failure = Some(e);
                false
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    out.write(|w| renderer.end(w, &totals))?;
    out.write(|w| w.flush())?;
    Ok(if !errors.is_empty() {
        Exit::BadInput
    } else if reached {
        Exit::ThresholdReached
    } else {
        Exit::Clean
    })
}
