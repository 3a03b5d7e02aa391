//! The OpenReports CRDs on the local cluster, as the OpenReports project serves them (the Go
//! module `github.com/openreports/reports-api`, fetched and cached by
//! `scripts/openreports-crds.sh`), so that every Report kubevigil writes is checked by the real
//! schema. Installed once and left installed (CRDs are cluster-wide; later tests reuse them).

use std::path::PathBuf;
use std::time::Duration;

use crate::cluster::repo_root;
use crate::scenario::{BoxError, Check, Error, TestCluster, wait_for};

fn test_error(message: String) -> Error {
    Error::Test {
        namespace: String::new(),
        source: message.into(),
    }
}

/// The directory of the OpenReports CRD YAML (downloaded on first use).
pub async fn crd_dir() -> Result<PathBuf, Error> {
    let out = tokio::process::Command::new("bash")
        .arg(repo_root().join("scripts/openreports-crds.sh"))
        .output()
        .await
        .map_err(|e| test_error(format!("running scripts/openreports-crds.sh: {e}")))?;
    if !out.status.success() {
        return Err(test_error(format!(
            "scripts/openreports-crds.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Applies the OpenReports CRDs and waits until both are Established.
pub async fn install_crds(cluster: &TestCluster) -> Result<(), Error> {
    let dir = crd_dir().await?;
    cluster
        .kubectl([
            "apply",
            "--server-side",
            "--field-manager=kubevigil-tests",
            "-f",
            &dir.to_string_lossy(),
        ])
        .await?;
    wait_for(
        Duration::from_secs(60),
        "the OpenReports CRDs to be established",
        || async {
            let out = cluster
                .kubectl([
                    "wait",
                    "--for=condition=Established",
                    "--timeout=5s",
                    "crd/reports.openreports.io",
                    "crd/clusterreports.openreports.io",
                ])
                .await;
            Ok::<_, BoxError>(match out {
                Ok(_) => Check::Done(()),
                Err(e) => Check::NotYet(e.to_string()),
            })
        },
    )
    .await
}
