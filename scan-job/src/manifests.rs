//! Offline input: manifest files and directories (YAML with several documents, JSON, `List`
//! kinds) turned into objects. A bad file is reported with its path and does not stop the rest.

use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use serde_json::Value;

use crate::engine::K8sObject;

/// A file (or document in it) that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct LoadError {
    /// The offending file.
    pub path: String,
    /// What went wrong, with the document number for multi-document files.
    pub message: String,
}

/// What loading produced: every object that could be read, and every error.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The objects, in file order.
    pub objects: Vec<K8sObject>,
    /// One entry per unreadable file or document.
    pub errors: Vec<LoadError>,
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
/// ending in `.yaml`, `.yml` or `.json`).
pub fn load_paths(paths: &[PathBuf]) -> Loaded {
    let mut loaded = Loaded::default();
    let mut files = Vec::new();
    for p in paths {
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
        match std::fs::read_to_string(&file) {
            Ok(text) => load_str(&name, &text, &mut loaded),
            Err(e) => loaded.errors.push(LoadError {
                path: name,
                message: format!("cannot read file: {e}"),
            }),
        }
    }
    loaded
}

/// Parses one file's text (YAML or JSON, possibly several documents) into `loaded`.
pub fn load_str(path: &str, text: &str, loaded: &mut Loaded) {
    let mut documents = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        match Value::deserialize(doc) {
            Ok(v) => documents.push(v),
            Err(e) => {
                loaded.errors.push(LoadError {
                    path: path.to_string(),
                    message: format!("document {}: invalid YAML/JSON: {e}", i + 1),
                });
                // A syntax error leaves the rest of the stream unreadable.
                return;
            }
        }
    }
    let multi = documents.len() > 1;
    for (i, doc) in documents.into_iter().enumerate() {
        let what = if multi {
            format!("document {}: ", i + 1)
        } else {
            String::new()
        };
        push_document(path, &what, doc, loaded);
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
        if let Value::Object(mut map) = doc {
            if let Some(Value::Array(items)) = map.remove("items") {
                for (j, item) in items.into_iter().enumerate() {
                    push_document(path, &format!("{what}items[{j}]: "), item, loaded);
                }
            }
        }
        return;
    }
    match K8sObject::from_value(doc) {
        Ok(o) => loaded.objects.push(o),
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
    }
}
