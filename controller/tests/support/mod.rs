//! Rendering the chart with `helm template` for the tests that compare it with the code.
//! helm comes from `$KUBEVIGIL_HELM`, else from `scripts/tools.sh` (the project's pinned helm).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The helm binary.
fn helm() -> PathBuf {
    if let Some(helm) = std::env::var_os("KUBEVIGIL_HELM").filter(|h| !h.is_empty()) {
        return PathBuf::from(helm);
    }
    let script = repo_root().join("scripts/tools.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run bash {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "helm not found: `bash {}` failed: {}; install it with `bash scripts/tools.sh` or set KUBEVIGIL_HELM",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
    PathBuf::from(dir.trim()).join("helm")
}

/// `helm template <release> charts/kubevigil -n <namespace> ARGS`, one JSON value per object.
pub fn render(release: &str, namespace: &str, args: &[&str]) -> Vec<Value> {
    let chart = repo_root().join("charts/kubevigil");
    let out = Command::new(helm())
        .arg("template")
        .arg(release)
        .arg(&chart)
        .args(["-n", namespace])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running helm: {e}"));
    assert!(
        out.status.success(),
        "helm template {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8 output");
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("a YAML document"))
        .filter(|doc: &Value| !doc.is_null())
        .collect()
}
