//! Running one container process in its own mount namespace.
//!
//! The kubelet writes a [`SandboxSpec`] (mounts, working directory, program, arguments) to a JSON
//! file and starts
//!
//! ```text
//! unshare --mount --propagation private -- local-cluster container-init SPEC.json
//! ```
//!
//! with the container's environment. `container-init` ([`container_init`]) bind-mounts each volume
//! at its `mountPath` (remounting read-only where asked), changes directory and `exec`s the
//! program, so the container's PID is the one the kubelet started. A container without
//! `workingDir` starts in `<pod dir>/work`. Mounts never reach the host:
//! the namespace is private and dies with the process.
//!
//! Not isolated: the network (pods share the host's, so `podIP` is 127.0.0.1), PIDs, users
//! (`runAsUser` and `readOnlyRootFilesystem` are ignored; the process runs as root) and the rest
//! of the filesystem.

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::volumes::Mount;

/// What `container-init` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// The `mount` binary to call.
    pub mount_bin: PathBuf,
    /// Bind mounts, parents first.
    pub mounts: Vec<Mount>,
    /// The working directory.
    pub workdir: PathBuf,
    /// Whether `workdir` is a host path to open before mounting (the pod's own directory), rather
    /// than the container's `workingDir` resolved after mounting.
    pub workdir_on_host: bool,
    /// The program to exec (a path, or a name looked up in the container's `PATH`).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
}

/// Errors of `container-init`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec file could not be read or parsed.
    #[error("reading the sandbox spec {path}: {detail}")]
    Spec {
        /// The spec file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// Refusing to mount in the host's mount namespace.
    #[error(
        "container-init must run in a private mount namespace (unshare --mount); refusing to \
         bind-mount on the host"
    )]
    HostNamespace,
    /// A `mount` call failed.
    #[error("mount {args:?} failed: {detail}")]
    Mount {
        /// The arguments of `mount`.
        args: Vec<String>,
        /// Exit status and stderr.
        detail: String,
    },
    /// `exec` failed.
    #[error("exec {program:?} (in {workdir}): {source}")]
    Exec {
        /// The program.
        program: String,
        /// The working directory.
        workdir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn mount(bin: &Path, args: &[String]) -> Result<(), Error> {
    let out = Command::new(bin)
        .args(args)
        .output()
        .map_err(|e| Error::Mount {
            args: args.to_vec(),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Mount {
            args: args.to_vec(),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

/// Whether this process has its own mount namespace (differs from PID 1's).
fn in_private_mount_namespace() -> bool {
    match (
        std::fs::read_link("/proc/self/ns/mnt"),
        std::fs::read_link("/proc/1/ns/mnt"),
    ) {
        (Ok(mine), Ok(init)) => mine != init,
        // PID 1's namespace unreadable: trust the caller (we are root in CI).
        (Ok(_), Err(_)) => true,
        _ => false,
    }
}

/// Performs the mounts of the spec at `spec_path` and execs the program. Returns only on error.
///
/// Every host path (mount sources, the program, the pod's own working directory) is opened before
/// the first mount and then used through `/proc/<pid>/fd/<n>`, so that a volume mounted over one
/// of their parents (an `emptyDir` at `/tmp` while the state directory is under `/tmp`) cannot
/// hide them.
pub fn container_init(spec_path: &Path) -> Error {
    let spec: SandboxSpec = match std::fs::read(spec_path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
    {
        Ok(spec) => spec,
        Err(detail) => {
            return Error::Spec {
                path: spec_path.to_path_buf(),
                detail,
            };
        }
    };
    if !spec.mounts.is_empty() && !in_private_mount_namespace() {
        return Error::HostNamespace;
    }
    let me = std::process::id();
    let open = |path: &Path| -> Result<(File, String), Error> {
        let file = File::open(path).map_err(|e| Error::Spec {
            path: spec_path.to_path_buf(),
            detail: format!("opening {}: {e}", path.display()),
        })?;
        let via = format!("/proc/{me}/fd/{}", file.as_raw_fd());
        Ok((file, via))
    };
    // Keeps the descriptors open until exec (they are close-on-exec).
    let mut held: Vec<File> = Vec::new();
    let mut sources = Vec::with_capacity(spec.mounts.len());
    for m in &spec.mounts {
        match open(&m.src) {
            Ok((file, via)) => {
                held.push(file);
                sources.push(via);
            }
            Err(e) => return e,
        }
    }
    let workdir = if spec.workdir_on_host {
        match open(&spec.workdir) {
            Ok((file, via)) => {
                held.push(file);
                PathBuf::from(via)
            }
            Err(e) => return e,
        }
    } else {
        spec.workdir.clone()
    };
    let program = if spec.program.starts_with('/') {
        match open(Path::new(&spec.program)) {
            Ok((file, via)) => {
                held.push(file);
                via
            }
            // Not on the host: it may exist once the volumes are mounted.
            Err(_) => spec.program.clone(),
        }
    } else {
        spec.program.clone()
    };

    for (m, src) in spec.mounts.iter().zip(sources) {
        let dst = m.dst.display().to_string();
        if let Err(e) = mount(&spec.mount_bin, &["--bind".to_owned(), src, dst.clone()]) {
            return e;
        }
        if m.read_only
            && let Err(e) = mount(
                &spec.mount_bin,
                &["-o".to_owned(), "remount,bind,ro".to_owned(), dst],
            )
        {
            return e;
        }
    }
    if let Err(source) = std::env::set_current_dir(&workdir) {
        return Error::Exec {
            program: spec.program,
            workdir: spec.workdir,
            source,
        };
    }
    let err = Command::new(&program)
        .arg0(&spec.program)
        .args(&spec.args)
        .exec();
    drop(held);
    Error::Exec {
        program: spec.program,
        workdir: spec.workdir,
        source: err,
    }
}

/// Looks `name` up in `PATH` (the kubelet's), for `unshare` and `mount`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
