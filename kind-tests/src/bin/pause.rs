//! `pause`: the pod sandbox's process for the local node (the `ghcr.io/kubevigil/pause` image,
//! built from `images/Containerfile` like kubevigil's own images). It holds the pod's namespaces
//! open, does nothing else, and exits 0 on SIGTERM or SIGINT. With a shared PID namespace it is
//! PID 1, so it also reaps the zombies it inherits.

use std::process::ExitCode;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

fn main() -> ExitCode {
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        set.add(s);
    }
    if let Err(e) = set.thread_block() {
        eprintln!("pause: blocking signals: {e}");
        return ExitCode::FAILURE;
    }
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => reap(),
            Ok(_) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pause: waiting for a signal: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}

/// Reaps every exited child without blocking.
fn reap() {
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}
