//! Bad input through the real `scan-job scan` binary (issue 8): names at the 253-character limit,
//! unicode and odd label values, a Pod with 500 containers, manifests with missing or wrongly
//! typed fields. Each gets a correct scan or a clear error naming the file and the field, never
//! a crash, and the other inputs are still scanned.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use kubevigil_crds::identity::{is_dns1123_subdomain, is_label_value};
use serde_json::{Value, json};

/// Runs `scan-job` with `args`, feeding `stdin`.
fn scan_job(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_scan-job"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scan-job");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn items(o: &Output) -> Vec<Value> {
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}); stderr: {}; stdout: {}",
            stderr(o),
            String::from_utf8_lossy(&o.stdout)
        )
    });
    doc["items"].as_array().expect("items").clone()
}

/// Every result has a valid name (DNS-1123 subdomain, at most 253) and valid label values.
fn assert_valid_metadata(items: &[Value]) {
    for it in items {
        let name = it["metadata"]["name"].as_str().unwrap();
        assert!(
            name.len() <= 253 && is_dns1123_subdomain(name),
            "invalid result name ({} chars): {name}",
            name.len()
        );
        for (k, v) in it["metadata"]["labels"].as_object().unwrap() {
            let v = v.as_str().unwrap();
            assert!(is_label_value(v), "label {k}={v:?} of {name} is not valid");
        }
    }
}

/// Scans `list` as JSON from stdin; the scan must succeed (exit 0, or 1 for failed controls).
fn scan_list(list: &Value) -> Vec<Value> {
    let out = scan_job(&["scan", "-f", "-", "-o", "json"], &list.to_string());
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "stderr: {}",
        stderr(&out)
    );
    items(&out)
}

/// A DNS-1123 subdomain of exactly `len` characters starting with `prefix`.
fn long_name(prefix: &str, len: usize) -> String {
    let mut s = prefix.to_owned();
    while s.len() < len {
        s.push(if s.len() % 60 == 59 { '.' } else { 'a' });
    }
    s.truncate(len);
    // A name must end alphanumeric.
    if s.ends_with('.') {
        s.pop();
        s.push('z');
    }
    s
}

/// Objects at the 253-character name limit: a Deployment, a ServiceAccount, a Role and a
/// RoleBinding binding them. The results (an object result and an RBAC triplet result whose
/// readable name would be far over 253) are named validly and distinctly, and the triplet
/// result is hashed.
#[test]
fn names_at_the_253_limit_are_scanned() {
    let n = long_name("x", 253);
    assert_eq!(n.len(), 253);
    let list = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": n, "namespace": "ns1"},
         "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
            "metadata": {"labels": {"a": "b"}},
            "spec": {"serviceAccountName": n, "containers": [{"name": "c", "image": "nginx:1"}]}}}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": n, "namespace": "ns1"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": n, "namespace": "ns1"},
         "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": n, "namespace": "ns1"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": n},
         "subjects": [{"kind": "ServiceAccount", "name": n, "namespace": "ns1"}]},
    ]});
    let items = scan_list(&list);
    assert_valid_metadata(&items);
    let kinds: Vec<&str> = items
        .iter()
        .map(|i| {
            i["metadata"]["labels"]["kubevigil.io/workload-kind"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert!(kinds.contains(&"Deployment"), "{kinds:?}");
    assert!(kinds.contains(&"ServiceAccount"), "{kinds:?}");
    let rbac: Vec<&Value> = items
        .iter()
        .filter(|i| i["metadata"]["labels"]["kubevigil.io/rbac-resource"] == "true")
        .collect();
    assert_eq!(rbac.len(), 1, "one triplet result: {items:#?}");
    let names: std::collections::BTreeSet<&str> = items
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), items.len(), "result names are distinct");
    // The full name stays in the resource-id annotation even when the name is shortened.
    let deployment = items
        .iter()
        .find(|i| i["metadata"]["labels"]["kubevigil.io/workload-kind"] == "Deployment")
        .unwrap();
    assert!(
        deployment["metadata"]["annotations"]["kubevigil.io/resource-id"]
            .as_str()
            .unwrap()
            .ends_with(&n)
    );
}

/// Unicode and odd label values on the scanned objects (which the offline scanner accepts even
/// where the API server would not): the scan works and every result label value is valid.
#[test]
fn unicode_and_odd_label_values_give_valid_result_labels() {
    let odd = [
        "ünïcødé-wert",
        "日本語",
        "",
        "-leading-and-trailing-",
        "a b c",
        "emoji-🚀",
        &"x".repeat(200),
        "....",
    ];
    let labels: serde_json::Map<String, Value> = odd
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("k{i}"), json!(v)))
        .collect();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "uni", "namespace": "ns1", "labels": labels,
                      "annotations": {"note": "ünïcødé ✓"}},
         "spec": {"template": {"metadata": {"labels": labels},
            "spec": {"containers": [{"name": "c", "image": "registry.example/ïmage:✓",
                                     "env": [{"name": "GRÜSSE", "value": "名前"}]}]}}}},
        // Names with characters the API server rejects are still scanned offline, and the
        // result name is sanitised and hashed.
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": "Ünï_Cødé:SA", "namespace": "ns1", "labels": labels}},
    ]});
    let items = scan_list(&list);
    assert_eq!(items.len(), 2, "{items:#?}");
    assert_valid_metadata(&items);
    let sa = items
        .iter()
        .find(|i| i["metadata"]["labels"]["kubevigil.io/workload-kind"] == "ServiceAccount")
        .unwrap();
    assert_eq!(
        sa["metadata"]["annotations"]["kubevigil.io/resource-id"],
        "/v1/ns1/ServiceAccount/Ünï_Cødé:SA"
    );
}

/// The most a stored object may weigh: etcd's default request limit (1.5 MiB).
const ETCD_LIMIT: usize = 1536 * 1024;

/// A Pod with 500 containers, each failing several controls: the scan completes and the stored
/// result (WorkloadConfigurationScan and its summary) stays under etcd's 1.5 MiB limit.
#[test]
fn a_pod_with_500_containers_is_scanned_within_the_size_limit() {
    let containers: Vec<Value> = (0..500)
        .map(|i| {
            json!({"name": format!("c{i}"), "image": format!("nginx:{i}"),
                   "securityContext": {"privileged": true, "capabilities": {"add": ["SYS_ADMIN", "NET_ADMIN"]}},
                   "env": [{"name": "AWS_SECRET_ACCESS_KEY", "value": "x"}],
                   "ports": [{"containerPort": 80, "hostPort": 8000 + i}]})
        })
        .collect();
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "huge", "namespace": "ns1"},
        "spec": {"hostNetwork": true, "containers": containers}});
    let start = std::time::Instant::now();
    let out = scan_job(&["scan", "-f", "-", "-o", "json"], &pod.to_string());
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let items = items(&out);
    assert_eq!(items.len(), 1);
    let wcs = &items[0];
    // Every container fails C-0057 (privileged): the status is exact even though the paths
    // naming 500 containers for every failed control would not fit in etcd.
    let c0057 = &wcs["spec"]["controls"]["C-0057"];
    assert_eq!(c0057["status"]["status"], "failed");
    let kept = c0057["rules"][0]["paths"].as_array().unwrap().len();
    assert!(kept > 0, "some paths are kept");
    let info = c0057["status"]["info"].as_str().unwrap_or_default();
    assert!(
        info.contains("paths truncated to"),
        "the cut is said in status.info: {c0057}"
    );
    let size = serde_json::to_vec(wcs).unwrap().len();
    eprintln!(
        "500-container Pod: WorkloadConfigurationScan is {size} bytes (etcd limit {ETCD_LIMIT}), C-0057 keeps {kept} paths, scanned in {took:?}"
    );
    assert!(size < ETCD_LIMIT, "{size} bytes exceeds etcd's limit");
    // A small Pod keeps every path, with no note.
    let small = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "small", "namespace": "ns1"},
        "spec": {"containers": (0..3).map(|i| json!({"name": format!("c{i}"), "image": "nginx:1",
            "securityContext": {"privileged": true}})).collect::<Vec<_>>()}});
    let out = scan_job(&["scan", "-f", "-", "-o", "json"], &small.to_string());
    let c = &items_of(&out)[0]["spec"]["controls"]["C-0057"];
    let paths = c["rules"][0]["paths"].as_array().unwrap();
    assert!(paths.len() >= 3, "{c}");
    assert!(
        c["status"]
            .get("info")
            .is_none_or(|i| !i.as_str().unwrap_or_default().contains("truncated")),
        "{c}"
    );

    let out = scan_job(
        &["scan", "-f", "-", "-o", "json", "--summary"],
        &pod.to_string(),
    );
    let summary = &items_of(&out)[0];
    assert!(serde_json::to_vec(summary).unwrap().len() < 64 * 1024);
}

fn items_of(o: &Output) -> Vec<Value> {
    items(o)
}

/// Manifests with missing or wrongly typed fields in several files: each bad document is named
/// with its file and field on stderr (exit 2), and the good documents and files are scanned.
#[test]
fn missing_and_wrongly_typed_fields_are_named_and_the_rest_is_scanned() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bad-input-fields");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let files = [
        (
            "a-no-name.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {namespace: ns1}\n",
        ),
        (
            "b-no-kind.yaml",
            "apiVersion: v1\nmetadata: {name: p}\nspec: {}\n",
        ),
        (
            "c-containers-string.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: ns1}\nspec: {template: {spec: {containers: nginx}}}\n",
        ),
        (
            "d-privileged-string.json",
            r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p2", "namespace": "ns1"}, "spec": {"containers": [{"name": "c", "securityContext": {"privileged": "true"}}]}}"#,
        ),
        (
            "e-name-number.yaml",
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: 42}\n",
        ),
        (
            "f-good.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: good, namespace: ns1}\nspec: {hostNetwork: true, containers: [{name: c, image: nginx}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: bad-labels, namespace: ns1, labels: {n: 1}}\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let d = dir.display().to_string();
    let out = scan_job(&["scan", "-f", &d, "-o", "json"], "");
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(&out));
    let err = stderr(&out);
    let expected = [
        (
            "a-no-name.yaml",
            "missing or non-string field `metadata.name`",
        ),
        ("b-no-kind.yaml", "missing or non-string field `kind`"),
        (
            "c-containers-string.yaml",
            "field `spec.template.spec.containers` must be a list, found a string",
        ),
        (
            "d-privileged-string.json",
            "field `spec.containers[0].securityContext.privileged` must be a boolean, found a string",
        ),
        (
            "e-name-number.yaml",
            "missing or non-string field `metadata.name`",
        ),
        (
            "f-good.yaml",
            "document 2: Pod ns1/bad-labels: field `metadata.labels` must be a mapping of strings, `n` is a number",
        ),
    ];
    for (file, message) in expected {
        let line = err
            .lines()
            .find(|l| l.contains(file))
            .unwrap_or_else(|| panic!("{file} not named on stderr: {err}"));
        assert!(line.contains(message), "{file}: {line}");
    }
    let items = items(&out);
    let names: Vec<&str> = items
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pod-good"], "only the good Pod is scanned");
    assert_eq!(
        items[0]["spec"]["controls"]["C-0041"]["status"]["status"],
        "failed"
    );
}

/// Arbitrary JSON documents that are not manifests at all (scalars, lists, nested nonsense):
/// errors or warnings, never a crash.
#[test]
fn non_manifest_documents_do_not_crash() {
    let text = "3\n---\n[1, 2]\n---\n\"text\"\n---\n{kind: Pod, metadata: []}\n---\n{kind: [Pod]}\n---\n{kind: Pod, metadata: {name: p}, spec: {containers: [{}, null, {securityContext: null}]}}\n";
    let out = scan_job(&["scan", "-f", "-", "-o", "json"], text);
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("document 2"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
