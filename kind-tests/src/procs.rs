//! Process helpers shared by the control plane and the kubelet: liveness, signals, bounded waits,
//! loopback ports.
//!
//! Processes started here are not always our children (`up` exits and leaves its daemons to
//! `down`), so liveness is read from `/proc` and a zombie counts as gone.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::time::Instant;

/// How often the bounded waits below look again.
const POLL: Duration = Duration::from_millis(50);

/// Whether process `pid` exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "<pid> (<comm>) <state> ...": comm may hold spaces and parentheses, so split at the last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// The command line of process `pid`, or `None` when it is gone.
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|part| !part.is_empty())
            .map(|part| String::from_utf8_lossy(part).into_owned())
            .collect(),
    )
}

/// Whether `pid` is alive and its command line contains `marker` (guards against PID reuse).
pub fn is_alive_with(pid: u32, marker: &str) -> bool {
    is_alive(pid) && cmdline(pid).is_some_and(|args| args.iter().any(|arg| arg.contains(marker)))
}

fn to_pid(pid: u32) -> Option<Pid> {
    i32::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .map(Pid::from_raw)
}

/// Sends `signal` to process `pid`; a process that is already gone is not an error.
pub fn signal(pid: u32, signal: Signal) {
    if let Some(pid) = to_pid(pid) {
        // ESRCH (already gone) is the only expected failure, and it means "done".
        let _ = kill(pid, signal);
    }
}

/// Sends `signal` to every process in process group `pgid`.
pub fn signal_group(pgid: u32, signal: Signal) {
    if let Some(pgid) = to_pid(pgid) {
        let _ = killpg(pgid, signal);
    }
}

/// Waits until `pid` is gone, at most `timeout`. Returns whether it is gone.
pub async fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !is_alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until `pid` has left the process table entirely (a zombie is reaped by its parent, which
/// for an orphan is PID 1, possibly with a delay), at most `timeout`. Returns whether it has.
pub async fn wait_reaped(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        // Our own child (a boot that failed midway) is reaped here; anyone else's by its parent.
        if let Some(p) = to_pid(pid) {
            let _ = nix::sys::wait::waitpid(p, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        }
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// How a process ended under [`terminate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It was not running.
    AlreadyGone,
    /// It exited within the grace period after SIGTERM.
    Terminated,
    /// It needed SIGKILL.
    Killed,
    /// It survived SIGKILL for the whole bound (should not happen).
    Stuck,
}

/// SIGTERM to `pid` (and its process group when `group` is set), wait up to `grace`, then SIGKILL
/// and wait a little more.
pub async fn terminate(pid: u32, group: bool, grace: Duration) -> Ended {
    if !is_alive(pid) {
        if group {
            signal_group(pid, Signal::SIGKILL);
        }
        return Ended::AlreadyGone;
    }
    if group {
        signal_group(pid, Signal::SIGTERM);
    }
    signal(pid, Signal::SIGTERM);
    if wait_gone(pid, grace).await {
        if group {
            // Stragglers in the group (children that ignored SIGTERM).
            signal_group(pid, Signal::SIGKILL);
        }
        return Ended::Terminated;
    }
    if group {
        signal_group(pid, Signal::SIGKILL);
    }
    signal(pid, Signal::SIGKILL);
    if wait_gone(pid, Duration::from_secs(5)).await {
        Ended::Killed
    } else {
        Ended::Stuck
    }
}

/// A free TCP port on 127.0.0.1, found by binding port 0 (the kernel picks) and releasing it.
pub fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(listener.local_addr()?.port())
}

/// Whether something accepts connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Waits until 127.0.0.1:`port` refuses connections, at most `timeout`. Returns whether it does.
pub async fn wait_port_closed(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !port_open(port) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The parent PID of process `pid`, or `None` when it is gone (or is PID 1's parent, 0).
pub fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "<pid> (<comm>) <state> <ppid> ...": split after comm, which may hold spaces.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace()
        .nth(1)?
        .parse()
        .ok()
        .filter(|ppid| *ppid != 0)
}

/// This process and every ancestor up to PID 1: the shells and `make` that started a command
/// may name the cluster directory in their own command lines, and must never count as strays.
pub fn self_and_ancestors() -> Vec<u32> {
    let mut chain = vec![std::process::id()];
    while let Some(ppid) = chain.last().copied().and_then(parent) {
        // A cycle cannot happen in /proc, but a bound keeps a corrupt read from looping.
        if chain.contains(&ppid) || chain.len() > 256 {
            break;
        }
        chain.push(ppid);
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_has_a_cmdline() {
        let me = std::process::id();
        assert!(is_alive(me));
        assert!(cmdline(me).is_some_and(|args| !args.is_empty()));
        assert!(!is_alive(u32::MAX));
    }

    #[test]
    fn ancestors_start_with_this_process_and_reach_init() {
        let chain = self_and_ancestors();
        assert_eq!(chain.first(), Some(&std::process::id()));
        assert_eq!(parent(chain[0]), chain.get(1).copied());
        assert!(chain.len() >= 2, "a test process has a parent: {chain:?}");
        assert_eq!(parent(u32::MAX), None);
    }

    #[test]
    fn a_free_port_is_closed_until_bound() {
        let port = free_port().unwrap();
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        assert!(port_open(port));
        drop(listener);
        assert!(!port_open(port));
    }
}
