//! Offline input: manifest files and directories (YAML with several documents, JSON, `List`
//! kinds) turned into objects. A bad file is reported with its path and does not stop the rest.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use serde_json::Value;

use crate::engine::K8sObject;

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
}
