//! What the node changes on the host, and how `down` undoes it: the bridge and the `unreachable`
//! routes, the egress guard chain, sysctls, the cgroup root, mounts and network namespaces. Also
//! [`leftovers`], the clean-stop check: everything the node may have left behind, listed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::net;

/// A host command that failed.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` failed: {detail}")]
pub struct CommandError {
    /// The command line.
    pub command: String,
    /// Exit status and stderr, or why it could not start.
    pub detail: String,
}

/// Runs `program args`, returning its stdout.
pub fn run(program: &str, args: &[&str]) -> Result<String, CommandError> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| CommandError {
            command: command.clone(),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(CommandError {
            command,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

/// What the host looked like before the node booted: the baseline of `down` and of the check.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostSnapshot {
    /// Each sysctl of [`net::SYSCTLS`] that exists here, with its value.
    pub sysctls: BTreeMap<String, String>,
    /// Network namespaces in /run/netns.
    pub netns: Vec<String>,
    /// Network interfaces.
    pub links: Vec<String>,
}

fn sysctl_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key)
}

fn read_sysctls() -> BTreeMap<String, String> {
    net::SYSCTLS
        .iter()
        .filter_map(|key| {
            let value = std::fs::read_to_string(sysctl_path(key)).ok()?;
            Some(((*key).to_owned(), value.trim().to_owned()))
        })
        .collect()
}

fn netns_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn link_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

impl HostSnapshot {
    /// The host as it is now.
    pub fn take() -> Self {
        Self {
            sysctls: read_sysctls(),
            netns: netns_names(),
            links: link_names(),
        }
    }
}

/// Creates the bridge with its address, the `unreachable` routes for the pod and service ranges,
/// and the egress guard: a FORWARD rule that rejects every packet from the bridge to anywhere but
/// the bridge (pods reach the host itself through INPUT, which it does not touch).
pub fn setup_network() -> Result<(), CommandError> {
    if !Path::new("/sys/class/net").join(net::BRIDGE).exists() {
        run("ip", &["link", "add", net::BRIDGE, "type", "bridge"])?;
    }
    run(
        "ip",
        &[
            "addr",
            "replace",
            &format!("{}/24", net::BRIDGE_IP),
            "dev",
            net::BRIDGE,
        ],
    )?;
    run("ip", &["link", "set", net::BRIDGE, "up"])?;
    for range in [net::POD_RANGE, net::SERVICE_RANGE] {
        run("ip", &["route", "replace", "unreachable", range])?;
    }
    let chain = net::EGRESS_CHAIN;
    if run("iptables", &["-w", "-n", "-L", chain]).is_err() {
        run("iptables", &["-w", "-N", chain])?;
    }
    run("iptables", &["-w", "-F", chain])?;
    run(
        "iptables",
        &[
            "-w",
            "-A",
            chain,
            "-i",
            net::BRIDGE,
            "-o",
            net::BRIDGE,
            "-j",
            "RETURN",
        ],
    )?;
    run(
        "iptables",
        &[
            "-w",
            "-A",
            chain,
            "-i",
            net::BRIDGE,
            "-j",
            "REJECT",
            "--reject-with",
            "icmp-net-unreachable",
        ],
    )?;
    if run("iptables", &["-w", "-C", "FORWARD", "-j", chain]).is_err() {
        run("iptables", &["-w", "-I", "FORWARD", "1", "-j", chain])?;
    }
    Ok(())
}

/// Removes what [`setup_network`] and the node's components added: the bridge, the routes, and
/// every iptables chain with a node prefix (kube-proxy cleans its own first; this catches what a
/// killed component left). Best effort: returns what could not be removed.
pub fn teardown_network() -> Vec<String> {
    let mut failed = Vec::new();
    if Path::new("/sys/class/net").join(net::BRIDGE).exists()
        && let Err(e) = run("ip", &["link", "del", net::BRIDGE])
    {
        failed.push(e.to_string());
    }
    for range in [net::POD_RANGE, net::SERVICE_RANGE] {
        if route_exists(range) && run("ip", &["route", "del", "unreachable", range]).is_err() {
            failed.push(format!("route unreachable {range}"));
        }
    }
    for (save, tool) in [
        ("iptables-save", "iptables"),
        ("ip6tables-save", "ip6tables"),
    ] {
        failed.extend(remove_node_chains(save, tool));
    }
    failed
}

fn route_exists(range: &str) -> bool {
    run("ip", &["route", "show", "type", "unreachable"])
        .map(|out| {
            out.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(range))
        })
        .unwrap_or(false)
}

/// Chains of the node in `iptables-save` output: (table, chain).
pub fn node_chains(save_output: &str) -> Vec<(String, String)> {
    let mut table = String::new();
    let mut chains = Vec::new();
    for line in save_output.lines() {
        if let Some(t) = line.strip_prefix('*') {
            t.clone_into(&mut table);
        } else if let Some(rest) = line.strip_prefix(':') {
            let name = rest.split_whitespace().next().unwrap_or_default();
            if net::CHAIN_PREFIXES.iter().any(|p| name.starts_with(p)) {
                chains.push((table.clone(), name.to_owned()));
            }
        }
    }
    chains
}

/// Rules in built-in chains that jump to a node chain: (table, the rule as `-A ...`).
fn jumps_to_node_chains(save_output: &str) -> Vec<(String, String)> {
    let mut table = String::new();
    let mut rules = Vec::new();
    for line in save_output.lines() {
        if let Some(t) = line.strip_prefix('*') {
            t.clone_into(&mut table);
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let chain = rule.split_whitespace().next().unwrap_or_default();
            let own = net::CHAIN_PREFIXES.iter().any(|p| chain.starts_with(p));
            let jumps = rule
                .split_whitespace()
                .skip_while(|w| *w != "-j" && *w != "-g")
                .nth(1)
                .is_some_and(|target| net::CHAIN_PREFIXES.iter().any(|p| target.starts_with(p)));
            if !own && jumps {
                rules.push((table.clone(), rule.to_owned()));
            }
        }
    }
    rules
}

fn remove_node_chains(save: &str, tool: &str) -> Vec<String> {
    let Ok(out) = run(save, &[]) else {
        return Vec::new();
    };
    let mut failed = Vec::new();
    for (table, rule) in jumps_to_node_chains(&out) {
        let words = split_rule(&rule);
        let mut args = vec!["-w", "-t", table.as_str(), "-D"];
        args.extend(words.iter().map(String::as_str));
        if let Err(e) = run(tool, &args) {
            failed.push(e.to_string());
        }
    }
    let chains = node_chains(&out);
    for (table, chain) in &chains {
        let _ = run(tool, &["-w", "-t", table, "-F", chain]);
    }
    for (table, chain) in &chains {
        if let Err(e) = run(tool, &["-w", "-t", table, "-X", chain]) {
            failed.push(e.to_string());
        }
    }
    failed
}

/// Splits an `iptables-save` rule into arguments: words, with double-quoted strings (which may hold
/// `\"`) kept whole.
fn split_rule(rule: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = rule.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Writes the saved values back (each that differs). Returns the keys it could not restore.
pub fn restore_sysctls(saved: &BTreeMap<String, String>) -> Vec<String> {
    let now = read_sysctls();
    let mut failed = Vec::new();
    for (key, value) in saved {
        if now.get(key) == Some(value) {
            continue;
        }
        info!(key, value, "restoring sysctl");
        if let Err(e) = std::fs::write(sysctl_path(key), format!("{value}\n")) {
            failed.push(format!("{key}={value}: {e}"));
        }
    }
    failed
}

/// The cgroup v1 hierarchies mounted here (`/sys/fs/cgroup/<name>`), without the v2 one.
fn cgroup_hierarchies() -> Vec<PathBuf> {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, mount, fstype) = (f.next()?, f.next()?, f.next()?);
            (fstype == "cgroup").then(|| PathBuf::from(mount))
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// Creates the pods' cgroup root in every hierarchy (the kubelet requires it to exist).
pub fn create_cgroup_root() -> Result<(), std::io::Error> {
    for h in cgroup_hierarchies() {
        std::fs::create_dir_all(h.join(net::CGROUP_ROOT))?;
    }
    Ok(())
}

/// Every cgroup under the node's root, deepest first.
fn node_cgroups() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path(), out);
                }
            }
        }
        out.push(dir.to_path_buf());
    }
    let mut out = Vec::new();
    for h in cgroup_hierarchies() {
        let root = h.join(net::CGROUP_ROOT);
        if root.is_dir() {
            walk(&root, &mut out);
        }
    }
    out
}

/// PIDs of processes in any cgroup under the node's root.
pub fn cgroup_processes() -> Vec<u32> {
    let mut pids: Vec<u32> = node_cgroups()
        .iter()
        .filter_map(|c| std::fs::read_to_string(c.join("cgroup.procs")).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Removes the node's cgroups (deepest first). Returns those that could not be removed.
pub fn remove_cgroups() -> Vec<String> {
    let mut failed = Vec::new();
    for c in node_cgroups() {
        if let Err(e) = std::fs::remove_dir(&c) {
            failed.push(format!("{}: {e}", c.display()));
        }
    }
    failed
}

/// Mount points under `prefix` (deepest first), from /proc/self/mountinfo.
pub fn mounts_under(prefix: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(unescape_mount)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    points.dedup();
    points
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mount(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(char::from(v));
            i += 4;
            continue;
        }
        out.push(char::from(bytes[i]));
        i += 1;
    }
    out
}

/// Lazily unmounts every mount point under `prefix`. Returns those that stayed.
pub fn unmount_under(prefix: &Path) -> Vec<String> {
    for point in mounts_under(prefix) {
        if let Err(e) = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH) {
            warn!(point = %point.display(), error = %e, "unmounting");
        }
    }
    mounts_under(prefix)
        .iter()
        .map(|p| p.display().to_string())
        .collect()
}

/// Removes the network namespaces that did not exist at boot (containerd's `cni-*` pins of pods
/// the kubelet could not stop). Returns those that stayed.
pub fn remove_new_netns(baseline: &HostSnapshot) -> Vec<String> {
    let mut failed = Vec::new();
    for name in netns_names() {
        if baseline.netns.contains(&name) || !name.starts_with("cni-") {
            continue;
        }
        let path = Path::new("/run/netns").join(&name);
        let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
        if let Err(e) = std::fs::remove_file(&path) {
            failed.push(format!("{}: {e}", path.display()));
        }
    }
    failed
}

/// Everything the node may leave behind that is still there, one line each; empty when the host
/// is as it was at boot. `processes` are the node's own processes found by the caller.
pub fn leftovers(baseline: &HostSnapshot, state_dir: &Path, processes: &[String]) -> Vec<String> {
    let mut found: Vec<String> = processes.iter().map(|p| format!("process: {p}")).collect();
    found.extend(
        cgroup_processes()
            .iter()
            .map(|pid| format!("process {pid} in a pod cgroup")),
    );
    found.extend(
        mounts_under(state_dir)
            .iter()
            .map(|m| format!("mount: {}", m.display())),
    );
    found.extend(
        netns_names()
            .into_iter()
            .filter(|n| !baseline.netns.contains(n))
            .map(|n| format!("network namespace: {n}")),
    );
    found.extend(
        link_names()
            .into_iter()
            .filter(|n| !baseline.links.contains(n))
            .map(|n| format!("network interface: {n}")),
    );
    for range in [net::POD_RANGE, net::SERVICE_RANGE] {
        if route_exists(range) {
            found.push(format!("route: unreachable {range}"));
        }
    }
    for save in ["iptables-save", "ip6tables-save"] {
        if let Ok(out) = run(save, &[]) {
            found.extend(
                node_chains(&out)
                    .into_iter()
                    .map(|(t, c)| format!("{save}: chain {c} in table {t}")),
            );
        }
    }
    found.extend(
        node_cgroups()
            .iter()
            .map(|c| format!("cgroup: {}", c.display())),
    );
    let now = read_sysctls();
    for (key, value) in &baseline.sysctls {
        if let Some(current) = now.get(key).filter(|c| *c != value) {
            found.push(format!("sysctl {key} is {current}, was {value}"));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVE: &str = "# Generated by iptables-save\n*nat\n:PREROUTING ACCEPT [0:0]\n\
        :KUBE-SERVICES - [0:0]\n:CNI-HOSTPORT-DNAT - [0:0]\n:DOCKER - [0:0]\n\
        -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
        -A PREROUTING -j DOCKER\n-A KUBE-SERVICES -j RETURN\nCOMMIT\n*filter\n\
        :FORWARD ACCEPT [0:0]\n:KUBEVIGIL-EGRESS - [0:0]\n-A FORWARD -j KUBEVIGIL-EGRESS\nCOMMIT\n";

    #[test]
    fn finds_node_chains_by_table() {
        assert_eq!(
            node_chains(SAVE),
            vec![
                ("nat".to_owned(), "KUBE-SERVICES".to_owned()),
                ("nat".to_owned(), "CNI-HOSTPORT-DNAT".to_owned()),
                ("filter".to_owned(), "KUBEVIGIL-EGRESS".to_owned()),
            ]
        );
    }

    #[test]
    fn finds_jumps_from_builtin_chains_only() {
        let jumps = jumps_to_node_chains(SAVE);
        assert_eq!(jumps.len(), 2, "{jumps:?}");
        assert!(jumps[0].1.starts_with("PREROUTING -m comment"));
        assert_eq!(
            jumps[1],
            (
                "filter".to_owned(),
                "FORWARD -j KUBEVIGIL-EGRESS".to_owned()
            )
        );
    }

    #[test]
    fn splits_rules_with_quoted_comments() {
        assert_eq!(
            split_rule(
                r#"PREROUTING -m comment --comment "kube \"svc\" portals" -j KUBE-SERVICES"#
            ),
            vec![
                "PREROUTING",
                "-m",
                "comment",
                "--comment",
                "kube \"svc\" portals",
                "-j",
                "KUBE-SERVICES"
            ]
        );
    }

    #[test]
    fn unescapes_mountinfo_paths() {
        assert_eq!(unescape_mount("/a\\040b/c"), "/a b/c");
        assert_eq!(unescape_mount("/plain"), "/plain");
    }
}
