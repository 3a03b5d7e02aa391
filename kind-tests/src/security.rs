//! What a running container really gets from the runtime, read from `/proc/<pid>` of its process
//! (by the probe in an ephemeral container that shares the target's PID namespace): user, no new
//! privileges, seccomp mode, effective capabilities, a read-only root, and the memory limit of
//! its cgroup as the container itself sees it.

use std::fmt;
use std::path::Path;

/// The runtime's enforcement on one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSecurity {
    /// Real, effective, saved and filesystem UIDs.
    pub uids: Vec<u32>,
    /// Real, effective, saved and filesystem GIDs.
    pub gids: Vec<u32>,
    /// `NoNewPrivs` (1 when set).
    pub no_new_privs: u8,
    /// `Seccomp`: 0 off, 1 strict, 2 filter.
    pub seccomp: u8,
    /// `CapEff`, the effective capability mask.
    pub cap_eff: u64,
    /// Whether the process's `/` is mounted read-only.
    pub root_read_only: bool,
    /// The memory limit of its cgroup in bytes, if readable.
    pub memory_limit: Option<u64>,
}

/// Why a process could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file under /proc could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A field is missing or malformed.
    #[error("{path} has no valid {field}")]
    Field {
        /// The file.
        path: String,
        /// The field.
        field: &'static str,
    },
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The value of `Key:` in a `/proc/<pid>/status` text.
fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

/// Whether the mount at `/` in a `/proc/<pid>/mountinfo` text has the `ro` option.
pub fn root_is_read_only(mountinfo: &str) -> Option<bool> {
    mountinfo
        .lines()
        .rfind(|l| l.split_whitespace().nth(4) == Some("/"))
        .and_then(|l| l.split_whitespace().nth(5))
        .map(|opts| opts.split(',').any(|o| o == "ro"))
}

/// The security fields of a `/proc/<pid>/status` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusFields {
    /// Real, effective, saved and filesystem UIDs.
    pub uids: Vec<u32>,
    /// Real, effective, saved and filesystem GIDs.
    pub gids: Vec<u32>,
    /// `NoNewPrivs`.
    pub no_new_privs: u8,
    /// `Seccomp`.
    pub seccomp: u8,
    /// `CapEff`.
    pub cap_eff: u64,
}

/// Parses the security fields of a `/proc/<pid>/status` text.
pub fn parse_status(status: &str, path: &str) -> Result<StatusFields, Error> {
    let field = |field: &'static str| Error::Field {
        path: path.to_owned(),
        field,
    };
    let ids = |key: &'static str| -> Result<Vec<u32>, Error> {
        status_field(status, key)
            .ok_or_else(|| field(key))?
            .split_whitespace()
            .map(|v| v.parse().map_err(|_| field(key)))
            .collect()
    };
    let small = |key: &'static str| -> Result<u8, Error> {
        status_field(status, key)
            .ok_or_else(|| field(key))?
            .parse()
            .map_err(|_| field(key))
    };
    let (uids, gids) = (ids("Uid")?, ids("Gid")?);
    let (no_new_privs, seccomp) = (small("NoNewPrivs")?, small("Seccomp")?);
    let cap_eff = status_field(status, "CapEff")
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .ok_or_else(|| field("CapEff"))?;
    Ok(StatusFields {
        uids,
        gids,
        no_new_privs,
        seccomp,
        cap_eff,
    })
}

impl ProcessSecurity {
    /// Reads process `pid` (from a process that may look at it: same user, or the process
    /// itself).
    pub fn read(pid: &str) -> Result<Self, Error> {
        let dir = Path::new("/proc").join(pid);
        let status_path = dir.join("status");
        let status = read(&status_path)?;
        let StatusFields {
            uids,
            gids,
            no_new_privs,
            seccomp,
            cap_eff,
        } = parse_status(&status, &status_path.display().to_string())?;
        let mountinfo_path = dir.join("mountinfo");
        let root_read_only =
            root_is_read_only(&read(&mountinfo_path)?).ok_or_else(|| Error::Field {
                path: mountinfo_path.display().to_string(),
                field: "mount at /",
            })?;
        // Through the process's own root: its cgroup as runc mounted it for the container.
        let root = dir.join("root/sys/fs/cgroup");
        let memory_limit = ["memory/memory.limit_in_bytes", "memory.max"]
            .iter()
            .find_map(|f| std::fs::read_to_string(root.join(f)).ok())
            .and_then(|v| v.trim().parse().ok());
        Ok(Self {
            uids,
            gids,
            no_new_privs,
            seccomp,
            cap_eff,
            root_read_only,
            memory_limit,
        })
    }
}

impl fmt::Display for ProcessSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        write!(
            f,
            "uids={} gids={} no_new_privs={} seccomp={} cap_eff={:016x} root_read_only={} memory_limit={}",
            join(&self.uids),
            join(&self.gids),
            self.no_new_privs,
            self.seccomp,
            self.cap_eff,
            self.root_read_only,
            self.memory_limit
                .map_or_else(|| "unknown".to_owned(), |m| m.to_string()),
        )
    }
}

/// Parses the [`fmt::Display`] form back (what a test reads from the probe's log).
pub fn parse_report(line: &str) -> Option<ProcessSecurity> {
    let get = |key: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    };
    let ids =
        |key: &str| -> Option<Vec<u32>> { get(key)?.split(',').map(|v| v.parse().ok()).collect() };
    Some(ProcessSecurity {
        uids: ids("uids")?,
        gids: ids("gids")?,
        no_new_privs: get("no_new_privs")?.parse().ok()?,
        seccomp: get("seccomp")?.parse().ok()?,
        cap_eff: u64::from_str_radix(get("cap_eff")?, 16).ok()?,
        root_read_only: get("root_read_only")?.parse().ok()?,
        memory_limit: get("memory_limit")?.parse().ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tcontroller\nUid:\t65532\t65532\t65532\t65532\n\
        Gid:\t65532\t65532\t65532\t65532\nCapEff:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n";

    #[test]
    fn parses_the_status_fields() {
        let f = parse_status(STATUS, "status").unwrap();
        assert_eq!(f.uids, vec![65532; 4]);
        assert_eq!(f.gids, vec![65532; 4]);
        assert_eq!((f.no_new_privs, f.seccomp, f.cap_eff), (1, 2, 0));
    }

    #[test]
    fn a_missing_field_is_named() {
        let err = parse_status("Uid:\t0 0 0 0\n", "/proc/1/status").unwrap_err();
        assert_eq!(err.to_string(), "/proc/1/status has no valid Gid");
    }

    #[test]
    fn reads_the_root_mount_options() {
        let info = "22 1 0:21 / / ro,relatime - overlay overlay rw,lowerdir=/a\n\
                    23 22 0:22 / /proc rw,nosuid - proc proc rw\n";
        assert_eq!(root_is_read_only(info), Some(true));
        assert_eq!(
            root_is_read_only(&info.replacen("ro,", "rw,", 1)),
            Some(false)
        );
    }

    #[test]
    fn the_report_round_trips() {
        let s = ProcessSecurity {
            uids: vec![65532; 4],
            gids: vec![65532; 4],
            no_new_privs: 1,
            seccomp: 2,
            cap_eff: 0,
            root_read_only: true,
            memory_limit: Some(268_435_456),
        };
        assert_eq!(parse_report(&format!("probe: {s}")), Some(s));
    }
}
