//! The streaming offline scan (`scan-job scan`): the same results as the whole-inventory scan,
//! relations between objects kept through the index, and a valid List however many items.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

use scan_job::manifests;
use scan_job::offline::{ScanOptions, ScannedResource, Scanner};
use serde_json::Value;

fn options() -> ScanOptions {
    ScanOptions {
        cluster_name: "offline".into(),
        install_namespace: "kubevigil".into(),
        ..ScanOptions::default()
    }
}

/// A fresh directory under the system temporary directory.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kubevigil-stream-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn streamed(scanner: &Scanner, paths: &[PathBuf]) -> Vec<ScannedResource> {
    streamed_keeping(scanner, paths, None)
}

/// Streamed with the full workloads of inputs kept within `budget` bytes (`None`: the default
/// budget; `Some(0)`: every input read twice).
fn streamed_keeping(
    scanner: &Scanner,
    paths: &[PathBuf],
    budget: Option<usize>,
) -> Vec<ScannedResource> {
    let mut out = Vec::new();
    let indexed = match budget {
        Some(b) => manifests::index_paths_keeping(paths, b),
        None => manifests::index_paths(paths),
    };
    scanner.stream(indexed, &mut |r| {
        out.push(r);
        true
    });
    out
}

fn as_json(resources: &[ScannedResource]) -> Vec<(Value, Value)> {
    resources
        .iter()
        .map(|r| {
            (
                serde_json::to_value(&r.objects.scan).unwrap(),
                serde_json::to_value(&r.objects.summary).unwrap(),
            )
        })
        .collect()
}

#[test]
fn streaming_gives_the_whole_inventory_scans_results_on_every_fixture() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/fixtures");
    let mut scanner = Scanner::new(&options()).unwrap();
    let whole = scanner.scan_paths(std::slice::from_ref(&fixtures));
    let indexed = manifests::index_paths(std::slice::from_ref(&fixtures));
    assert_eq!(indexed.errors, whole.errors);
    assert_eq!(indexed.warnings, whole.warnings);
    assert!(whole.resources.len() > 400, "{}", whole.resources.len());
    let whole = as_json(&whole.resources);
    // Every input kept (the fixtures are small), none (read twice), and some: 64 KiB runs out
    // part of the way through the fixtures, and inside some of them.
    for budget in [None, Some(0), Some(64 * 1024)] {
        let stream = streamed_keeping(&scanner, std::slice::from_ref(&fixtures), budget);
        assert!(as_json(&stream) == whole, "budget {budget:?}");
    }
}

#[test]
fn relations_see_objects_defined_later_and_redefinitions_win() {
    let dir = temp_dir("relations");
    // The Service, HPA and NetworkPolicy come before the Deployment they point at; the
    // Deployment is defined twice (the second file's labels are the ones selected).
    std::fs::write(
        dir.join("a.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {selector: {app: web2}}\n\
---\napiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: web, namespace: shop}\nspec: {scaleTargetRef: {kind: Deployment, name: web}}\n\
---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: shop}\nspec: {podSelector: {matchLabels: {app: web2}}}\n\
---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec: {template: {metadata: {labels: {app: web}}, spec: {containers: [{name: c, image: nginx}]}}}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("b.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop, labels: {v: '2'}}\nspec: {template: {metadata: {labels: {app: web2}}, spec: {containers: [{name: c, image: nginx}]}}}\n",
    )
    .unwrap();
    let mut scanner = Scanner::new(&options()).unwrap();
    let stream = streamed(&scanner, std::slice::from_ref(&dir));
    let whole = scanner.scan_paths(std::slice::from_ref(&dir));
    assert_eq!(as_json(&stream), as_json(&whole.resources));
    let twice = streamed_keeping(&scanner, std::slice::from_ref(&dir), Some(0));
    assert_eq!(as_json(&twice), as_json(&whole.resources));
    let status = |kind: &str, control: &str| {
        let r = stream
            .iter()
            .find(|r| {
                r.objects.scan.metadata.labels.as_ref().unwrap()["kubevigil.io/workload-kind"]
                    == kind
            })
            .unwrap_or_else(|| panic!("no result for {kind}"));
        r.objects.summary.spec.controls[control].status.status
    };
    use kubevigil_crds::Status;
    // C-0293 Service with no workload, C-0299 dangling NetworkPolicy, C-0300 HPA target.
    assert_eq!(status("Service", "C-0293"), Status::Passed);
    assert_eq!(status("NetworkPolicy", "C-0299"), Status::Passed);
    assert_eq!(status("HorizontalPodAutoscaler", "C-0300"), Status::Passed);
    // One Deployment result, in the first file's place, with the second definition's labels.
    let deployments: Vec<_> = stream
        .iter()
        .filter(|r| r.objects.scan.metadata.name.as_deref() == Some("deployment-web"))
        .collect();
    assert_eq!(deployments.len(), 1);
    let index_of = |name: &str| {
        stream
            .iter()
            .position(|r| r.objects.scan.metadata.name.as_deref() == Some(name))
            .unwrap()
    };
    assert!(index_of("deployment-web") > index_of("service-web"));
    let whole_fp = whole
        .resources
        .iter()
        .find(|r| r.objects.scan.metadata.name.as_deref() == Some("deployment-web"))
        .unwrap();
    assert_eq!(
        deployments[0].objects.scan.metadata.annotations,
        whole_fp.objects.scan.metadata.annotations
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_scan-job"))
        .args(args)
        .output()
        .expect("run scan-job")
}

/// A `kind: List` with its fields in the order `kubectl` prints them.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct List {
    api_version: &'static str,
    kind: &'static str,
    metadata: serde_json::Map<String, Value>,
    items: Vec<Item>,
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum Item {
    Scan(Box<kubevigil_crds::WorkloadConfigurationScan>),
    Summary(Box<kubevigil_crds::WorkloadConfigurationScanSummary>),
}

/// The printed list read back into the result types, to be serialised again in one piece.
fn typed(doc: &Value, summary: bool) -> List {
    let items = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            if summary {
                Item::Summary(Box::new(serde_json::from_value(i.clone()).unwrap()))
            } else {
                Item::Scan(Box::new(serde_json::from_value(i.clone()).unwrap()))
            }
        })
        .collect();
    List {
        api_version: "v1",
        kind: "List",
        metadata: serde_json::Map::new(),
        items,
    }
}

#[test]
fn json_and_yaml_lists_are_valid_with_zero_one_and_many_items() {
    let dir = temp_dir("lists");
    let deployment = |i: usize| {
        format!(
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: w-{i}, namespace: ns}}\nspec: {{template: {{spec: {{containers: [{{name: c, image: nginx}}]}}}}}}\n"
        )
    };
    let cases = [
        (
            "zero",
            "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n".to_string(),
            0,
        ),
        ("one", deployment(0), 1),
        ("many", (0..5).map(deployment).collect::<String>(), 5),
    ];
    for (name, text, count) in cases {
        let file = dir.join(format!("{name}.yaml"));
        std::fs::write(&file, text).unwrap();
        let file = file.display().to_string();
        for summary in [false, true] {
            let mut args = vec!["scan", "-f", file.as_str(), "-o", "json"];
            if summary {
                args.push("--summary");
            }
            let out = run(&args);
            let doc: Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{name}: not JSON ({e})"));
            assert_eq!(doc["kind"], "List", "{name}");
            assert_eq!(doc["items"].as_array().map(Vec::len), Some(count), "{name}");
            // Byte for byte what serialising the whole list at once prints.
            let whole = serde_json::to_string_pretty(&typed(&doc, summary)).unwrap() + "\n";
            assert_eq!(String::from_utf8(out.stdout).unwrap(), whole, "{name}");
            args[4] = "yaml";
            let out = run(&args);
            let doc: Value = serde_norway::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{name}: not YAML ({e})"));
            assert_eq!(doc["items"].as_array().map(Vec::len), Some(count), "{name}");
            let whole = serde_norway::to_string(&typed(&doc, summary)).unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), whole, "{name}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn yaml_documents_are_cut_at_their_markers_only() {
    let text = "# leading comment\n---\nkind: Pod\nmetadata: {name: a}\n--- # marker with a comment\nkind: Pod\nmetadata:\n  name: b\n  annotations:\n    x: |\n      not --- a marker\n---\n...\n";
    let (docs, error) = manifests::parse_documents(text);
    assert!(error.is_none(), "{error:?}");
    let names: Vec<_> = docs
        .iter()
        .filter_map(|d| d.pointer("/metadata/name").and_then(Value::as_str))
        .collect();
    assert_eq!(names, ["a", "b"]);
    // An error's line number counts from the start of the file, not of its document.
    let (docs, error) =
        manifests::parse_documents("kind: Pod\n---\nkind: Pod\nmetadata: {name: [b\n");
    let error = error.expect("syntax error");
    assert_eq!(docs.len(), 1);
    assert_eq!(error.document, 2);
    assert!(
        error.message.contains("line 5") || error.message.contains("line 4"),
        "{}",
        error.message
    );
}
