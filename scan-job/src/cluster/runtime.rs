//! The first line a scan Job logs: what the container runtime enforces on this process (user,
//! no-new-privileges, seccomp, capabilities, read-only root, memory limit), read from `/proc`
//! and the container's cgroup. An operator reads it with `kubectl logs job/<scan job>`; the
//! real-node scenario test checks the chart's hardening with it.

/// One `key=value` line of the process's enforcement; a value that cannot be read is `unknown`.
pub fn enforcement_line() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| -> String {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(","))
            .unwrap_or_else(|| "unknown".to_owned())
    };
    let root_read_only = std::fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .rfind(|l| l.split_whitespace().nth(4) == Some("/"))
                .and_then(|l| l.split_whitespace().nth(5))
                .map(|opts| opts.split(',').any(|o| o == "ro").to_string())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    // cgroup v1 (runc mounts the container's own memory cgroup here), then v2.
    let memory_limit = [
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        "/sys/fs/cgroup/memory.max",
    ]
    .iter()
    .find_map(|f| std::fs::read_to_string(f).ok())
    .map_or_else(|| "unknown".to_owned(), |v| v.trim().to_owned());
    format!(
        "uids={} gids={} no_new_privs={} seccomp={} cap_eff={} root_read_only={root_read_only} memory_limit={memory_limit}",
        field("Uid"),
        field("Gid"),
        field("NoNewPrivs"),
        field("Seccomp"),
        field("CapEff"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_field() {
        let line = enforcement_line();
        for key in [
            "uids=",
            "gids=",
            "no_new_privs=",
            "seccomp=",
            "cap_eff=",
            "root_read_only=",
            "memory_limit=",
        ] {
            assert!(line.contains(key), "{line}");
        }
        assert!(
            !line.contains("uids=unknown"),
            "this process can read itself: {line}"
        );
    }
}
