//! `scan-job`: thin entry point; the work is in the `scan_job` library.

use std::process::ExitCode;

use clap::Parser as _;
use scan_job::cli::{Cli, run};

/// mimalloc: the engine allocates many small, short-lived strings per object; the engine
/// benchmark uses the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // No transparent huge pages: mimalloc asks for them on its arenas, and as it returns
    // freed pages to the system and takes them again, each fault zeroes a whole 2 MiB page
    // for a few KiB used. A 100,000-workload offline scan spent a quarter of its time in the
    // kernel clearing pages (2.5 s of system time; 0.3 s without). Failing to set it only
    // costs that time, so the error is ignored.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
    match run(Cli::parse()) {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("scan-job: {e}");
            e.exit().into()
        }
    }
}
