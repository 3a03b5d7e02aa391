//! `scan-job run` stops at once on SIGTERM: a deleted scan Job's pod must not write on through
//! its grace period over the results of the scan that replaced it.
#![cfg(target_os = "linux")]

use std::io::Read as _;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A kubeconfig for an API server at `server`.
fn kubeconfig(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n\
         contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n    namespace: shop\n\
         current-context: c\nusers:\n- name: u\n  user:\n    token: t\n"
    )
}

/// What the (ended) child printed on stderr.
fn stderr_of(child: &mut std::process::Child) -> String {
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    stderr
}

#[test]
fn sigterm_stops_a_run_that_waits_on_the_api_server() {
    // An "API server" that accepts connections and never answers: the run blocks on its GET.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    let (accepted_tx, accepted_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            let _ = accepted_tx.send(());
            held.push(conn);
        }
    });
    let dir = std::env::temp_dir().join(format!("scan-job-sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("kubeconfig");
    std::fs::write(&config, kubeconfig(&format!("http://{addr}"))).expect("write kubeconfig");

    let mut child = Command::new(env!("CARGO_BIN_EXE_scan-job"))
        .args([
            "run",
            "--install-namespace",
            "kubevigil",
            "--cluster-name",
            "test",
            "--target",
            "apps/v1/deployments/Deployment/shop/web",
        ])
        .env("KUBECONFIG", &config)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start scan-job");
    let connect_deadline = Instant::now() + Duration::from_secs(20);
    while accepted_rx
        .recv_timeout(Duration::from_millis(100))
        .is_err()
    {
        if let Some(status) = child.try_wait().expect("wait for scan-job") {
            panic!(
                "scan-job ended ({status}) before it connected to the API server:\n{}",
                stderr_of(&mut child)
            );
        }
        if Instant::now() > connect_deadline {
            let _ = child.kill();
            panic!("scan-job did not connect to the API server within 20 s");
        }
    }
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
    kill(pid, Signal::SIGTERM).expect("send SIGTERM");

    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for scan-job") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("scan-job still running 5 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = stderr_of(&mut child);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(status.code(), Some(3), "exit status; stderr:\n{stderr}");
    assert!(
        stderr.contains("stopped by SIGTERM"),
        "stderr does not say why it stopped:\n{stderr}"
    );
}
