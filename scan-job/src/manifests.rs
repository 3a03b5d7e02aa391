//! Offline input: manifest files and directories (YAML with several documents, JSON, `List`
//! kinds) turned into objects. A bad file is reported with its path and does not stop the rest.

use kubevigil_engine::object::type_name;
use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use serde_json::Value;

use kubevigil_engine::K8sObject;

/// The path that stands for standard input.
pub const STDIN: &str = "-";

/// A file (or document in it) that could not be read, or a note about one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct LoadError {
    /// The offending file.
    pub path: String,
    /// What went wrong, with the document number for multi-document files.
    pub message: String,
}

/// What loading produced: every object that could be read, every error and every warning.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The objects, in file order (an object defined twice keeps its first place and its last
    /// definition).
    pub objects: Vec<K8sObject>,
    /// One entry per unreadable file or document: the input is incomplete.
    pub errors: Vec<LoadError>,
    /// Documents skipped because they are not Kubernetes objects (no `apiVersion` and no
    /// `kind`), and objects defined more than once. Nothing scannable was lost.
    pub warnings: Vec<LoadError>,
    /// Where each object was read (`path` or `path: document N`), parallel to `objects`.
    origins: Vec<String>,
    /// Index in `objects` of each (apiVersion group, kind, namespace, name).
    seen: HashMap<(String, String, Option<String>, String), usize>,
}

impl Loaded {
    fn push_object(&mut self, obj: K8sObject, origin: String) {
        let key = (
            obj.group().to_string(),
            obj.kind.clone(),
            obj.namespace.clone(),
            obj.name.clone(),
        );
        if let Some(&i) = self.seen.get(&key) {
            if let (Some(slot), Some(first)) = (self.objects.get_mut(i), self.origins.get_mut(i)) {
                self.warnings.push(LoadError {
                    path: origin.clone(),
                    message: format!(
                        "{} {} is also defined in {first}; the later definition is scanned",
                        obj.kind,
                        display_name(&obj)
                    ),
                });
                *slot = obj;
                *first = origin;
            }
            return;
        }
        self.seen.insert(key, self.objects.len());
        self.objects.push(obj);
        self.origins.push(origin);
    }
}

fn display_name(obj: &K8sObject) -> String {
    match &obj.namespace {
        Some(ns) => format!("{ns}/{}", obj.name),
        None => obj.name.clone(),
    }
}

/// Whether a path looks like a manifest file.
fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>, errors: &mut Vec<LoadError>) {
    if path.is_dir() {
        let entries = match std::fs::read_dir(path) {
            Ok(e) => e,
            Err(e) => {
                errors.push(LoadError {
                    path: path.display().to_string(),
                    message: format!("cannot read directory: {e}"),
                });
                return;
            }
        };
        let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        children.sort();
        for child in children {
            if child.is_dir() || is_manifest(&child) {
                collect_files(&child, out, errors);
            }
        }
    } else {
        out.push(path.to_path_buf());
    }
}

/// Loads every manifest under the given files and directories (directories recursively, files
/// ending in `.yaml`, `.yml` or `.json`; a file named explicitly is read whatever its name).
/// The path `-` reads standard input.
pub fn load_paths(paths: &[PathBuf]) -> Loaded {
    let mut loaded = Loaded::default();
    let mut files = Vec::new();
    for p in paths {
        if p.as_os_str() == STDIN {
            files.push(p.clone());
            continue;
        }
        if !p.exists() {
            loaded.errors.push(LoadError {
                path: p.display().to_string(),
                message: "no such file or directory".into(),
            });
            continue;
        }
        collect_files(p, &mut files, &mut loaded.errors);
    }
    for file in files {
        let name = file.display().to_string();
        let text = if file.as_os_str() == STDIN {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map(|_| text)
        } else {
            std::fs::read_to_string(&file)
        };
        match text {
            Ok(text) => load_str(&name, &text, &mut loaded),
            Err(e) => loaded.errors.push(LoadError {
                path: name,
                message: format!("cannot read file: {e}"),
            }),
        }
    }
    loaded
}

/// Whether the text is JSON rather than YAML: it starts with `{` or `[`. JSON is read with the
/// JSON parser (one or more concatenated values), so that JSON that YAML rejects (tabs) works
/// and errors point at the JSON position.
fn looks_like_json(text: &str) -> bool {
    text.trim_start_matches('\u{feff}')
        .trim_start()
        .starts_with(['{', '['])
}

/// A syntax error in a YAML/JSON stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// The document it is in, counting from 1.
    pub document: usize,
    /// The parser's message.
    pub message: String,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "document {}: invalid YAML/JSON: {}",
            self.document, self.message
        )
    }
}

/// Parses YAML or JSON text (possibly several documents) into values. A syntax error ends the
/// stream: the documents before it are returned with it.
pub fn parse_documents(text: &str) -> (Vec<Value>, Option<SyntaxError>) {
    let mut documents = Vec::new();
    let error = |i: usize, message: String| {
        Some(SyntaxError {
            document: i + 1,
            message,
        })
    };
    if looks_like_json(text) {
        let text = text.trim_start_matches('\u{feff}');
        for (i, doc) in serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .enumerate()
        {
            match doc {
                Ok(v) => documents.push(v),
                Err(e) => return (documents, error(i, e.to_string())),
            }
        }
    } else {
        for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
            match Value::deserialize(doc) {
                Ok(v) => documents.push(v),
                // A syntax error leaves the rest of the stream unreadable.
                Err(e) => return (documents, error(i, e.to_string())),
            }
        }
    }
    (documents, None)
}

/// Parses one file's text (YAML or JSON, possibly several documents) into `loaded`.
///
/// A syntax error ends the file: the documents before it are kept, and the error names the
/// document it is in (counting from 1).
pub fn load_str(path: &str, text: &str, loaded: &mut Loaded) {
    let (documents, error) = parse_documents(text);
    let multi = documents.len() > 1 || (error.is_some() && !documents.is_empty());
    for (i, doc) in documents.into_iter().enumerate() {
        let what = if multi {
            format!("document {}: ", i + 1)
        } else {
            String::new()
        };
        push_document(path, &what, doc, loaded);
    }
    if let Some(e) = error {
        loaded.errors.push(LoadError {
            path: path.to_string(),
            message: e.to_string(),
        });
    }
}

fn push_document(path: &str, what: &str, doc: Value, loaded: &mut Loaded) {
    if doc.is_null() {
        return;
    }
    let is_list = doc
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k == "List" || k.ends_with("List"))
        && doc.get("items").is_some_and(Value::is_array);
    if is_list {
        if let Value::Object(mut map) = doc
            && let Some(Value::Array(items)) = map.remove("items")
        {
            for (j, item) in items.into_iter().enumerate() {
                push_document(path, &format!("{what}items[{j}]: "), item, loaded);
            }
        }
        return;
    }
    let not_kubernetes = doc
        .as_object()
        .is_some_and(|m| !m.contains_key("kind") && !m.contains_key("apiVersion"));
    if not_kubernetes {
        loaded.warnings.push(LoadError {
            path: path.to_string(),
            message: format!("{what}skipped: not a Kubernetes object (no apiVersion and no kind)"),
        });
        return;
    }
    match K8sObject::from_value(doc) {
        Ok(o) => {
            if let Some(problem) = shape_error(&o) {
                loaded.errors.push(LoadError {
                    path: path.to_string(),
                    message: format!("{what}{} {}: {problem}", o.kind, display_name(&o)),
                });
                return;
            }
            let origin = if what.is_empty() {
                path.to_string()
            } else {
                format!("{path}: {}", what.trim_end_matches(": "))
            };
            loaded.push_object(o, origin);
        }
        Err(e) => loaded.errors.push(LoadError {
            path: path.to_string(),
            message: format!("{what}{e}"),
        }),
    }
}

/// The type a field must have.
#[derive(Clone, Copy)]
enum Shape {
    Mapping,
    List,
    Str,
    Bool,
    Integer,
    /// A mapping whose values are strings (labels, annotations).
    StringMap,
}

impl Shape {
    fn fits(self, v: &Value) -> bool {
        match self {
            Shape::Mapping => v.is_object(),
            Shape::List => v.is_array(),
            Shape::Str => v.is_string(),
            Shape::Bool => v.is_boolean(),
            Shape::Integer => v.is_i64() || v.is_u64(),
            Shape::StringMap => v
                .as_object()
                .is_some_and(|m| m.values().all(|x| x.is_string() || x.is_null())),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Shape::Mapping => "a mapping",
            Shape::List => "a list",
            Shape::Str => "a string",
            Shape::Bool => "a boolean",
            Shape::Integer => "an integer",
            Shape::StringMap => "a mapping of strings",
        }
    }
}

/// Checks `value.field` against `shape` (an absent or null field is fine, as the API server
/// defaults it). The message names the full dotted path.
fn check(value: &Value, base: &str, field: &str, shape: Shape) -> Result<(), String> {
    let Some(v) = value.get(field).filter(|v| !v.is_null()) else {
        return Ok(());
    };
    if shape.fits(v) {
        return Ok(());
    }
    let at = if base.is_empty() {
        field.to_string()
    } else {
        format!("{base}.{field}")
    };
    let found = match (shape, v) {
        (Shape::StringMap, Value::Object(m)) => m
            .iter()
            .find(|(_, x)| !x.is_string() && !x.is_null())
            .map(|(k, x)| format!("`{k}` is {}", type_name(x)))
            .unwrap_or_default(),
        _ => format!("found {}", type_name(v)),
    };
    Err(format!(
        "field `{at}` must be {}, {found}",
        shape.describe()
    ))
}

/// The first field of a manifest whose type the API server would reject, among the fields the
/// controls read (metadata, pod template, pod spec, containers). Such an object is reported
/// rather than scanned: scanning it would silently treat the wrongly typed field as absent and
/// could pass controls that the real object (once fixed) fails.
pub fn shape_error(obj: &K8sObject) -> Option<String> {
    shape_problem(obj).err()
}

fn shape_problem(obj: &K8sObject) -> Result<(), String> {
    let root = &obj.value;
    check(root, "", "metadata", Shape::Mapping)?;
    check(root, "", "spec", Shape::Mapping)?;
    let meta = |value: &Value, base: &str| -> Result<(), String> {
        if let Some(m) = value.get("metadata") {
            let at = if base.is_empty() {
                "metadata".to_string()
            } else {
                format!("{base}.metadata")
            };
            check(m, &at, "labels", Shape::StringMap)?;
            check(m, &at, "annotations", Shape::StringMap)?;
        }
        Ok(())
    };
    meta(root, "")?;
    if let Some(spec) = root.get("spec") {
        check(spec, "spec", "replicas", Shape::Integer)?;
    }
    let Some(template) = kubevigil_engine::workload::template_path(&obj.kind) else {
        return Ok(());
    };
    // Walk down to the pod template, checking each level is a mapping.
    let mut node = root;
    let mut at = String::new();
    for part in template.split('.').filter(|p| !p.is_empty()) {
        check(node, &at, part, Shape::Mapping)?;
        match node.get(part) {
            Some(next) if next.is_object() => node = next,
            _ => return Ok(()),
        }
        at = if at.is_empty() {
            part.to_string()
        } else {
            format!("{at}.{part}")
        };
    }
    if !template.is_empty() {
        check(node, &at, "metadata", Shape::Mapping)?;
        meta(node, &at)?;
        check(node, &at, "spec", Shape::Mapping)?;
    }
    let spec_at = if at.is_empty() {
        "spec".to_string()
    } else {
        format!("{at}.spec")
    };
    let Some(pod) = node.get("spec").filter(|v| v.is_object()) else {
        return Ok(());
    };
    for field in [
        "hostNetwork",
        "hostPID",
        "hostIPC",
        "automountServiceAccountToken",
    ] {
        check(pod, &spec_at, field, Shape::Bool)?;
    }
    check(pod, &spec_at, "serviceAccountName", Shape::Str)?;
    check(pod, &spec_at, "securityContext", Shape::Mapping)?;
    check(pod, &spec_at, "volumes", Shape::List)?;
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        check(pod, &spec_at, list, Shape::List)?;
        for (i, c) in kubevigil_engine::object::array(pod, list)
            .iter()
            .enumerate()
        {
            let c_at = format!("{spec_at}.{list}[{i}]");
            if !c.is_object() {
                return Err(format!(
                    "field `{c_at}` must be a mapping, found {}",
                    type_name(c)
                ));
            }
            check(c, &c_at, "name", Shape::Str)?;
            check(c, &c_at, "image", Shape::Str)?;
            check(c, &c_at, "securityContext", Shape::Mapping)?;
            check(c, &c_at, "resources", Shape::Mapping)?;
            check(c, &c_at, "env", Shape::List)?;
            check(c, &c_at, "ports", Shape::List)?;
            check(c, &c_at, "volumeMounts", Shape::List)?;
            check(c, &c_at, "command", Shape::List)?;
            check(c, &c_at, "args", Shape::List)?;
            if let Some(sc) = c.get("securityContext").filter(|v| v.is_object()) {
                let sc_at = format!("{c_at}.securityContext");
                for field in [
                    "privileged",
                    "allowPrivilegeEscalation",
                    "readOnlyRootFilesystem",
                    "runAsNonRoot",
                ] {
                    check(sc, &sc_at, field, Shape::Bool)?;
                }
                check(sc, &sc_at, "runAsUser", Shape::Integer)?;
                check(sc, &sc_at, "capabilities", Shape::Mapping)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_and_lists() {
        let mut l = Loaded::default();
        load_str(
            "x.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\nkind: List\nitems:\n- {kind: Pod, metadata: {name: b}}\n- {kind: Pod}\n",
            &mut l,
        );
        assert_eq!(l.objects.len(), 2);
        assert_eq!(l.errors.len(), 1);
        assert!(l.errors[0].message.contains("items[1]"), "{:?}", l.errors);
    }

    #[test]
    fn broken_yaml_is_named() {
        let mut l = Loaded::default();
        load_str("bad.yaml", "kind: [unclosed\n", &mut l);
        assert!(l.objects.is_empty());
        assert_eq!(l.errors[0].path, "bad.yaml");
        assert!(
            l.errors[0]
                .message
                .starts_with("document 1: invalid YAML/JSON: "),
            "{:?}",
            l.errors
        );
    }

    #[test]
    fn documents_before_a_syntax_error_are_kept() {
        let mut l = Loaded::default();
        load_str(
            "x.yaml",
            "kind: Pod\nmetadata: {name: a}\n---\nkind: Pod\nmetadata: {name: [b\n---\nkind: Pod\nmetadata: {name: c}\n",
            &mut l,
        );
        assert_eq!(l.objects.len(), 1, "{:?}", l.errors);
        assert_eq!(l.objects[0].name, "a");
        assert_eq!(l.errors.len(), 1);
        assert!(
            l.errors[0]
                .message
                .starts_with("document 2: invalid YAML/JSON"),
            "{:?}",
            l.errors
        );
    }

    #[test]
    fn json_with_tabs_and_concatenated_values() {
        let mut l = Loaded::default();
        load_str(
            "x.json",
            "{\n\t\"kind\": \"Pod\",\n\t\"metadata\": {\"name\": \"a\"}\n}\n{\"kind\": \"Pod\", \"metadata\": {\"name\": \"b\"}}",
            &mut l,
        );
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        assert_eq!(l.objects.len(), 2);
        let mut l = Loaded::default();
        load_str("bad.json", "{\"kind\": \"Pod\",", &mut l);
        assert!(l.objects.is_empty());
        assert!(
            l.errors[0]
                .message
                .starts_with("document 1: invalid YAML/JSON: "),
            "{:?}",
            l.errors
        );
    }

    #[test]
    fn non_kubernetes_documents_are_warnings() {
        let mut l = Loaded::default();
        load_str("values.yaml", "replicas: 3\nimage: {tag: x}\n", &mut l);
        assert!(l.objects.is_empty());
        assert!(l.errors.is_empty());
        assert_eq!(l.warnings.len(), 1);
    }

    #[test]
    fn duplicates_keep_the_first_place_and_the_last_definition() {
        let mut l = Loaded::default();
        load_str(
            "a.yaml",
            "kind: Pod\nmetadata: {name: a, namespace: x, labels: {v: '1'}}\n---\nkind: Pod\nmetadata: {name: b}\n",
            &mut l,
        );
        load_str(
            "b.yaml",
            "kind: Pod\nmetadata: {name: a, namespace: x, labels: {v: '2'}}\n",
            &mut l,
        );
        assert_eq!(l.objects.len(), 2);
        assert_eq!(l.objects[0].name, "a");
        assert_eq!(
            l.objects[0].labels().and_then(|m| m.get("v")),
            Some(&Value::from("2"))
        );
        assert_eq!(l.warnings.len(), 1);
        assert!(
            l.warnings[0].message.contains("a.yaml: document 1"),
            "{:?}",
            l.warnings
        );
    }

    #[test]
    fn wrongly_typed_fields_are_named_and_the_rest_is_kept() {
        let cases = [
            (
                "kind: Deployment\nmetadata: {name: a}\nspec: {template: {spec: {containers: oops}}}\n",
                "field `spec.template.spec.containers` must be a list, found a string",
            ),
            (
                "kind: Pod\nmetadata: {name: a, labels: {app: [x]}}\n",
                "field `metadata.labels` must be a mapping of strings, `app` is a list",
            ),
            (
                "kind: Deployment\nmetadata: {name: a}\nspec: {replicas: three}\n",
                "field `spec.replicas` must be an integer, found a string",
            ),
            (
                "kind: CronJob\nmetadata: {name: a}\nspec: {jobTemplate: {spec: {template: {spec: {containers: [{name: c, securityContext: {privileged: 'yes'}}]}}}}}\n",
                "field `spec.jobTemplate.spec.template.spec.containers[0].securityContext.privileged` must be a boolean, found a string",
            ),
            (
                "kind: Pod\nmetadata: {name: a}\nspec: {containers: [5]}\n",
                "field `spec.containers[0]` must be a mapping, found a number",
            ),
            (
                "kind: Pod\nmetadata: {name: a}\nspec: {hostNetwork: 1}\n",
                "field `spec.hostNetwork` must be a boolean, found a number",
            ),
            (
                "kind: Pod\nmetadata: {name: a}\nspec: [1]\n",
                "field `spec` must be a mapping, found a list",
            ),
            (
                "kind: Deployment\nmetadata: {name: a}\nspec: {template: {metadata: {labels: {app: 1}}}}\n",
                "field `spec.template.metadata.labels` must be a mapping of strings, `app` is a number",
            ),
        ];
        for (text, expected) in cases {
            let mut l = Loaded::default();
            load_str(
                "bad.yaml",
                &format!("{text}---\nkind: Pod\nmetadata: {{name: good}}\n"),
                &mut l,
            );
            assert_eq!(l.errors.len(), 1, "{text}: {:?}", l.errors);
            assert_eq!(l.errors[0].path, "bad.yaml");
            assert!(
                l.errors[0].message.contains(expected)
                    && l.errors[0].message.contains("document 1"),
                "{text}: {:?}",
                l.errors[0].message
            );
            assert_eq!(l.objects.len(), 1, "the good document is kept");
            assert_eq!(l.objects[0].name, "good");
        }
    }

    #[test]
    fn nulls_and_well_typed_fields_pass_the_shape_check() {
        let mut l = Loaded::default();
        load_str(
            "ok.yaml",
            "kind: Deployment\nmetadata: {name: a, labels: {x: y}, annotations: null}\nspec: {replicas: 2, template: {metadata: {labels: {app: a}}, spec: {hostNetwork: null, containers: [{name: c, image: i, securityContext: {privileged: false, runAsUser: 1000}}]}}}\n---\nkind: ConfigMap\nmetadata: {name: b}\ndata: {k: v}\n",
            &mut l,
        );
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        assert_eq!(l.objects.len(), 2);
    }
}
