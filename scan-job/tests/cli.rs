//! The `scan-job` binary end to end: the real executable on the fixtures in
//! `tests/cli_fixtures/`, checking stdout, stderr and the exit code as a user (or CI) sees them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use kubevigil_engine::catalog;
use scan_job::offline::known_frameworks;
use serde_json::Value;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cli_fixtures")
        .join(rel)
}

fn fixture_str(rel: &str) -> String {
    fixture(rel).display().to_string()
}

/// The failing Deployment on its own (no malformed file beside it).
fn web() -> String {
    fixture_str("broken-dir/web.yaml")
}

fn scan_job(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scan-job"))
        .args(args)
        .env_remove("NO_COLOR")
        .output()
        .expect("run scan-job")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

fn json_list(o: &Output) -> Vec<Value> {
    let doc: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(o)));
    assert_eq!(doc["kind"], "List");
    assert_eq!(doc["apiVersion"], "v1");
    doc["items"].as_array().expect("items").clone()
}

fn item<'a>(items: &'a [Value], name: &str) -> &'a Value {
    items
        .iter()
        .find(|i| i["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no item {name} in {items:#?}"))
}

/// Acceptance 5: a directory with one malformed YAML file and one valid Deployment. The bad
/// file is named with the parse error, the Deployment is still reported, exit code 2.
#[test]
fn malformed_file_is_named_and_the_rest_is_scanned() {
    let dir = fixture_str("broken-dir");
    for format in ["table", "json"] {
        let out = scan_job(&["scan", "-f", &dir, "-o", format]);
        assert_eq!(code(&out), 2, "{format}: stderr: {}", stderr(&out));
        let err = stderr(&out);
        let bad = fixture_str("broken-dir/bad.yaml");
        assert!(
            err.contains(&format!("scan-job: {bad}: document 1: invalid YAML/JSON: ")),
            "{format}: stderr: {err}"
        );
        assert!(!err.contains("web.yaml"), "{format}: stderr: {err}");
        let text = stdout(&out);
        if format == "json" {
            let items = json_list(&out);
            assert_eq!(items.len(), 1, "{text}");
            assert_eq!(items[0]["metadata"]["name"], "deployment-web");
        } else {
            assert!(text.contains("Deployment shop/web"), "{text}");
            assert!(
                text.contains("1 input unreadable (errors on stderr)"),
                "{text}"
            );
        }
    }
}

/// `-o json`: the List items are the WorkloadConfigurationScans as stored, with name,
/// namespace, identity labels and annotations.
#[test]
fn json_items_are_stored_objects() {
    let out = scan_job(&[
        "scan",
        "-f",
        &web(),
        "-o",
        "json",
        "--cluster-name",
        "prod-eu",
    ]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let items = json_list(&out);
    assert_eq!(items.len(), 1);
    let it = item(&items, "deployment-web");
    assert_eq!(it["apiVersion"], "kubevigil.io/v1beta1");
    assert_eq!(it["kind"], "WorkloadConfigurationScan");
    let meta = &it["metadata"];
    assert_eq!(meta["namespace"], "shop");
    let labels = &meta["labels"];
    assert_eq!(labels["kubevigil.io/workload-api-group"], "apps");
    assert_eq!(labels["kubevigil.io/workload-api-version"], "v1");
    assert_eq!(labels["kubevigil.io/workload-kind"], "Deployment");
    assert_eq!(labels["kubevigil.io/workload-name"], "web");
    assert_eq!(labels["kubevigil.io/workload-namespace"], "shop");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "kubevigil");
    let ann = &meta["annotations"];
    assert_eq!(
        ann["kubevigil.io/resource-id"],
        "apps/v1/shop/Deployment/web"
    );
    assert_eq!(
        ann["kubevigil.io/wlid"],
        "wlid://cluster-prod-eu/namespace-shop/deployment-web"
    );
    assert_eq!(
        ann["kubevigil.io/scanner-version"],
        env!("CARGO_PKG_VERSION")
    );
    for key in [
        "kubevigil.io/controls-hash",
        "kubevigil.io/fingerprint",
        "kubevigil.io/scan-time",
    ] {
        assert!(
            ann[key].as_str().is_some_and(|v| !v.is_empty()),
            "{key} in {ann}"
        );
    }
    // No UID in the manifest: no target-uid annotation and no ownerReference.
    assert!(ann.get("kubevigil.io/target-uid").is_none());
    assert!(meta.get("ownerReferences").is_none());
    let c = &it["spec"]["controls"]["C-0041"];
    assert_eq!(c["status"]["status"], "failed");
    assert_eq!(c["severity"]["severity"], "High");
    assert_eq!(
        c["rules"][0]["paths"][0]["deletePath"],
        "spec.template.spec.hostNetwork"
    );
}

/// `--summary`: the WorkloadConfigurationScanSummary objects instead, same name and namespace.
#[test]
fn summary_objects() {
    let out = scan_job(&[
        "scan",
        "-f",
        &web(),
        "-o",
        "json",
        "--summary",
        "--control",
        "C-0041",
    ]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let items = json_list(&out);
    let it = item(&items, "deployment-web");
    assert_eq!(it["kind"], "WorkloadConfigurationScanSummary");
    assert_eq!(it["metadata"]["namespace"], "shop");
    assert_eq!(it["spec"]["severities"]["high"], 1);
    assert_eq!(
        it["spec"]["controls"]["C-0041"]["status"]["status"],
        "failed"
    );
    assert_eq!(it["spec"]["complianceScore"], 0.0);

    let table = scan_job(&["scan", "-f", &web(), "--summary", "--control", "C-0041"]);
    assert_eq!(code(&table), 0);
    let text = stdout(&table);
    assert!(text.starts_with("RESOURCE"), "{text}");
    assert!(text.contains("Deployment shop/web"), "{text}");
}

/// `-o yaml` prints the same List as YAML.
#[test]
fn yaml_output_parses() {
    let out = scan_job(&["scan", "-f", &web(), "-o", "yaml"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let doc: Value = serde_norway::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["kind"], "List");
    assert_eq!(doc["items"][0]["metadata"]["name"], "deployment-web");
}

/// `--severity-threshold`: exit 1 when a failed control is at or above it (C-0041 is High),
/// 0 when every failure is below it.
#[test]
fn severity_threshold() {
    for (threshold, want) in [
        ("low", 1),
        ("medium", 1),
        ("high", 1),
        ("HIGH", 1),
        ("critical", 0),
    ] {
        let out = scan_job(&["scan", "-f", &web(), "--severity-threshold", threshold]);
        assert_eq!(code(&out), want, "{threshold}: stderr: {}", stderr(&out));
    }
    let out = scan_job(&["scan", "-f", &web()]);
    assert_eq!(code(&out), 0, "no threshold: stderr: {}", stderr(&out));
    // Unreadable input wins over the threshold: the scan is incomplete.
    let out = scan_job(&[
        "scan",
        "-f",
        &fixture_str("broken-dir"),
        "--severity-threshold",
        "high",
    ]);
    assert_eq!(code(&out), 2);
}

/// The table: header with score and counts, the failed control with its severity, name and
/// path, the totals; plain text when stdout is not a terminal, and at most 100 columns.
#[test]
fn table_output() {
    // One control, so the counts below are exact whatever else the catalog holds.
    let out = scan_job(&["scan", "-f", &web(), "--control", "C-0041"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(!text.contains('\x1b'), "colour on a pipe: {text:?}");
    let lines: Vec<&str> = text.lines().collect();
    let header = lines[0];
    assert!(header.starts_with("Deployment shop/web"), "{text}");
    assert!(header.contains("score 0%"), "{text}");
    assert!(
        header.contains("critical 0  high 1  medium 0  low 0"),
        "{text}"
    );
    let control = lines
        .iter()
        .position(|l| l.trim_start().starts_with("C-0041"))
        .unwrap_or_else(|| panic!("no C-0041 line: {text}"));
    assert!(lines[control].contains("High"), "{text}");
    assert!(lines[control].contains("HostNetwork access"), "{text}");
    let path = lines[control + 1].split_whitespace().collect::<Vec<_>>();
    assert_eq!(path, ["delete", "spec.template.spec.hostNetwork"], "{text}");
    let last = lines.last().unwrap();
    assert!(
        *last
            == "1 resource scanned (1 failing); failed controls: 0 critical, 1 high, 0 medium, 0 low; 0 skipped",
        "{text}"
    );
    for l in &lines {
        assert!(l.chars().count() <= 100, "line over 100 columns: {l:?}");
    }
    // Colour only when asked for (or on a terminal).
    let colored = stdout(&scan_job(&["scan", "-f", &web(), "--color", "always"]));
    assert!(colored.contains("\x1b["), "{colored:?}");
}

/// An exception turns the failure into passed / w/exceptions: the threshold is not reached.
#[test]
fn exceptions_file() {
    let out = scan_job(&[
        "scan",
        "-f",
        &web(),
        "-o",
        "json",
        "--exceptions",
        &fixture_str("config/exceptions.json"),
        "--control",
        "C-0041",
        "--severity-threshold",
        "low",
    ]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let items = json_list(&out);
    let status = &item(&items, "deployment-web")["spec"]["controls"]["C-0041"]["status"];
    assert_eq!(status["status"], "passed");
    assert_eq!(status["subStatus"], "w/exceptions");
}

/// A valid controls config changes the controls hash (results under another configuration are
/// stale).
#[test]
fn controls_config_file() {
    let hash = |extra: &[&str]| {
        let w = web();
        let mut args = vec!["scan", "-f", w.as_str(), "-o", "json"];
        args.extend_from_slice(extra);
        let out = scan_job(&args);
        assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
        json_list(&out)[0]["metadata"]["annotations"]["kubevigil.io/controls-hash"].clone()
    };
    let cfg = fixture_str("config/controls-config.yaml");
    assert_ne!(hash(&[]), hash(&["--controls-config", &cfg]));
}

/// A malformed --controls-config or --exceptions file: exit 2 before scanning, with a message
/// naming the file and the bad field.
#[test]
fn malformed_config_files() {
    let cfg = fixture_str("config/bad-controls-config.yaml");
    let out = scan_job(&["scan", "-f", &web(), "--controls-config", &cfg]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(err.contains(&cfg), "{err}");
    assert!(err.contains("`insecureCapabilities`"), "{err}");
    assert!(
        err.contains("must be a list of strings, found a string"),
        "{err}"
    );
    assert_eq!(stdout(&out), "", "nothing may be scanned");

    let exc = fixture_str("config/bad-exceptions.json");
    let out = scan_job(&["scan", "-f", &web(), "--exceptions", &exc]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(err.contains(&exc), "{err}");
    assert!(err.contains("resources[0].attributes.name"), "{err}");
    assert!(err.contains("web-on-host-network"), "{err}");
    assert_eq!(stdout(&out), "");

    let missing = fixture_str("config/does-not-exist.yaml");
    let out = scan_job(&["scan", "-f", &web(), "--exceptions", &missing]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains(&missing), "{}", stderr(&out));

    // A syntax error in a config file names the file too.
    let broken = fixture_str("broken-dir/bad.yaml");
    let out = scan_job(&["scan", "-f", &web(), "--controls-config", &broken]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains(&format!("{broken}: document 1: invalid YAML/JSON: ")),
        "{}",
        stderr(&out)
    );
}

/// An unknown --framework is an error listing the known ones, computed from the catalog.
#[test]
fn unknown_framework() {
    let out = scan_job(&["scan", "-f", &web(), "--framework", "nope"]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(err.contains("unknown framework \"nope\""), "{err}");
    for known in known_frameworks(&catalog::all()) {
        assert!(err.contains(&known), "{known} missing from: {err}");
    }
    assert_eq!(stdout(&out), "");
}

/// --framework and --control select controls; an unknown control ID is an error.
#[test]
fn control_selection() {
    let out = scan_job(&[
        "scan",
        "-f",
        &web(),
        "-o",
        "json",
        "--framework",
        "NSA,allcontrols",
    ]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert!(json_list(&out)[0]["spec"]["controls"]["C-0041"].is_object());

    let out = scan_job(&["scan", "-f", &web(), "-o", "json", "--control", "c-0041"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let items = json_list(&out);
    let controls = items[0]["spec"]["controls"].as_object().unwrap();
    assert_eq!(controls.keys().collect::<Vec<_>>(), ["C-0041"]);

    let out = scan_job(&["scan", "-f", &web(), "--control", "C-9999"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("unknown control \"C-9999\""),
        "{}",
        stderr(&out)
    );
}

/// `controls -o json` parses and holds the full metadata of every control.
#[test]
fn controls_json() {
    let out = scan_job(&["controls", "-o", "json"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.len(), catalog::all().len());
    let c = list
        .iter()
        .find(|c| c["controlID"] == "C-0041")
        .expect("C-0041");
    assert_eq!(c["severity"], "High");
    assert_eq!(c["baseScore"], 7.0);
    for key in ["name", "description", "remediation"] {
        assert!(c[key].as_str().is_some_and(|s| !s.is_empty()), "{key}: {c}");
    }
    assert!(
        c["frameworks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "AllControls")
    );
    assert!(
        c["kinds"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k == "Deployment")
    );
    assert_eq!(c["configurationRequired"], false);
    assert_eq!(c["integrationRequired"], false);

    let table = scan_job(&["controls"]);
    assert_eq!(code(&table), 0);
    let text = stdout(&table);
    assert!(text.starts_with("ID"), "{text}");
    assert!(text.contains("C-0041  High"), "{text}");
    for l in text.lines() {
        assert!(l.chars().count() <= 100, "line over 100 columns: {l:?}");
    }
}

/// `--help` documents the exit codes.
#[test]
fn help_lists_exit_codes() {
    let out = scan_job(&["scan", "--help"]);
    assert_eq!(code(&out), 0);
    let text = stdout(&out);
    for line in ["0  clean", "1  a failed control", "2  unreadable input"] {
        assert!(text.contains(line), "{line} missing from: {text}");
    }
}

/// `-f -` reads manifests from standard input.
#[test]
fn reads_stdin() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_scan-job"))
        .args(["scan", "-f", "-", "-o", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let manifest = std::fs::read(web()).unwrap();
    child.stdin.take().unwrap().write_all(&manifest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_eq!(json_list(&out)[0]["metadata"]["name"], "deployment-web");
}

#[test]
fn exception_resources_among_the_input_apply_to_every_object() {
    let o = scan_job(&["scan", "-f", &fixture_str("exceptions-dir"), "-o", "json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let items = json_list(&o);
    let web = item(&items, "deployment-web");
    let c41 = &web["spec"]["controls"]["C-0041"]["status"];
    assert_eq!(c41["status"], "passed", "{c41}");
    assert_eq!(c41["subStatus"], "w/exceptions");
    assert_eq!(
        c41["info"],
        "excepted by PostureException shop/web-host-network"
    );
    // The expired one does not apply.
    assert_eq!(
        web["spec"]["controls"]["C-0017"]["status"]["status"],
        "failed"
    );
}
