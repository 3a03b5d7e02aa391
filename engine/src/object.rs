//! One Kubernetes object as the engine sees it: the raw JSON (so that wrongly typed or unknown
//! fields never stop a scan) plus the identity fields read once.

use kubevigil_crds::identity::{ObjectRef, split_api_version};
use serde_json::{Map, Value};

/// Errors turning a JSON value into a scannable object.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ObjectError {
    /// The document is not a JSON/YAML mapping.
    #[error("not an object: a Kubernetes manifest must be a mapping")]
    NotAMapping,
    /// `kind` is missing or not a string.
    #[error("missing or non-string field `kind`")]
    MissingKind,
    /// `metadata.name` is missing or not a string.
    #[error("{kind}: missing or non-string field `metadata.name`")]
    MissingName {
        /// Kind of the object without a name.
        kind: String,
    },
}

/// A Kubernetes object: its identity and the full manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct K8sObject {
    /// `apiVersion` as written (`apps/v1`); empty when absent.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, `None` when absent or empty.
    pub namespace: Option<String>,
    /// The whole manifest.
    pub value: Value,
}

impl K8sObject {
    /// Reads the identity fields of a manifest.
    pub fn from_value(value: Value) -> Result<Self, ObjectError> {
        let map = value.as_object().ok_or(ObjectError::NotAMapping)?;
        let kind = map
            .get("kind")
            .and_then(Value::as_str)
            .ok_or(ObjectError::MissingKind)?
            .to_string();
        let metadata = map.get("metadata");
        let name = metadata
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| ObjectError::MissingName { kind: kind.clone() })?
            .to_string();
        let namespace = metadata
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty())
            .map(str::to_string);
        let api_version = map
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Ok(K8sObject {
            api_version,
            kind,
            name,
            namespace,
            value,
        })
    }

    /// The namespace, treating a missing one as `default` (as Kubescape's helpers do).
    pub fn namespace_or_default(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }

    /// API group (empty for the core group).
    pub fn group(&self) -> &str {
        split_api_version(&self.api_version).0
    }

    /// Identity as used for result names.
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef::new(
            &self.api_version,
            &self.kind,
            self.namespace.as_deref(),
            &self.name,
        )
    }

    /// Kubescape resource ID: `<group>/<version>/<namespace>/<kind>/<name>`.
    pub fn resource_id(&self) -> String {
        self.object_ref().resource_id()
    }

    /// `metadata`, or `Null` when absent.
    pub fn metadata(&self) -> &Value {
        self.value.get("metadata").unwrap_or(&Value::Null)
    }

    /// `metadata.labels` as a JSON object, if present.
    pub fn labels(&self) -> Option<&serde_json::Map<String, Value>> {
        self.metadata().get("labels").and_then(Value::as_object)
    }

    /// Follows a dotted path of object keys (`spec.template.metadata`).
    pub fn get(&self, path: &str) -> Option<&Value> {
        get_path(&self.value, path)
    }
}

/// Follows a dotted path of object keys from `value`; `None` as soon as a key is missing. Empty
/// segments (`a..b`, a leading or trailing dot) are skipped.
pub fn get_path<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    // A plain byte scan: the paths are a few short literals, for which `split('.')`'s searcher
    // costs more than the lookups it separates (the catalog calls this hundreds of times per
    // object).
    let mut value = value;
    let mut rest = path;
    loop {
        let (key, tail) = match rest.bytes().position(|b| b == b'.') {
            Some(dot) => (rest.get(..dot)?, rest.get(dot + 1..)),
            None => (rest, None),
        };
        if !key.is_empty() {
            value = field(value, key)?;
        }
        match tail {
            Some(tail) => rest = tail,
            None => return Some(value),
        }
    }
}

/// `value[key]` when `value` is an object holding `key`.
///
/// Kubernetes objects are small maps (a container has a dozen keys, a security context a
/// handful), and the catalog looks fields up in them thousands of times per workload. A sorted
/// map's search compares the key with several others byte-wise; scanning the entries and
/// comparing bytes only when the lengths agree finds it with about one byte comparison. Larger
/// maps keep the search.
pub fn field<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value.as_object()?.field(key)
}

/// A JSON object, or a view of one whose common fields were found beforehand (see
/// [`super::pod_view`]): anything a field can be read from. `c.field("image")` reads like
/// serde's `c.get("image")` without its sorted-map search.
pub trait Field<'a>: Copy {
    /// The value at `key`, if any.
    fn field(self, key: &str) -> Option<&'a Value>;
}

impl<'a> Field<'a> for &'a Map<String, Value> {
    fn field(self, key: &str) -> Option<&'a Value> {
        const SCAN_UP_TO: usize = 16;
        if self.len() > SCAN_UP_TO {
            return self.get(key);
        }
        self.iter()
            .find(|(k, _)| k.len() == key.len() && k.as_str() == key)
            .map(|(_, v)| v)
    }
}

impl<'a> Field<'a> for &'a Value {
    fn field(self, key: &str) -> Option<&'a Value> {
        field(self, key)
    }
}

/// True when `value` at `key` is the JSON boolean `true`.
pub fn is_true<'a>(value: impl Field<'a>, key: &str) -> bool {
    value.field(key).and_then(Value::as_bool) == Some(true)
}

/// True when `value` at `key` is the JSON boolean `false`.
pub fn is_false<'a>(value: impl Field<'a>, key: &str) -> bool {
    value.field(key).and_then(Value::as_bool) == Some(false)
}

/// Whether `value` at `key` is set: present and not `null` (Rego's "defined").
pub fn has<'a>(value: impl Field<'a>, key: &str) -> bool {
    value.field(key).is_some_and(|x| !x.is_null())
}

/// What a JSON value is, for messages (`found a string`).
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// The elements of the array at `key`, or nothing when absent or not an array.
pub fn array<'a>(value: impl Field<'a>, key: &str) -> &'a [Value] {
    value
        .field(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The string at `key`, if it is one.
pub fn str_at<'a>(value: impl Field<'a>, key: &str) -> Option<&'a str> {
    value.field(key).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn get_path_follows_dotted_keys_and_skips_empty_segments() {
        let v = json!({"spec": {"template": {"spec": {"x": 1}}, "list": [1]}, "": {"y": 2}});
        let one = json!(1);
        assert_eq!(get_path(&v, "spec.template.spec.x"), Some(&one));
        assert_eq!(get_path(&v, ".spec..template.spec.x."), Some(&one));
        assert_eq!(get_path(&v, ""), Some(&v));
        assert_eq!(get_path(&v, "..."), Some(&v));
        assert_eq!(get_path(&v, "spec.missing.x"), None);
        assert_eq!(get_path(&v, "spec.list.0"), None, "lists are not indexed");
        assert_eq!(get_path(&v, "spec.template.spec.x.deeper"), None);
        assert_eq!(get_path(&v, "spéc"), None);
    }

    #[test]
    fn field_is_what_get_returns() {
        let small = json!({"image": "a", "imagePullPolicy": "b", "name": "c", "": "d"});
        let large = Value::Object((0..40).map(|i| (format!("k{i}"), json!(i))).collect());
        for v in [&small, &large] {
            for key in [
                "image",
                "imagePullPolicy",
                "name",
                "",
                "imag",
                "k7",
                "k39",
                "k40",
            ] {
                assert_eq!(field(v, key), v.get(key), "{key:?}");
            }
        }
        assert_eq!(field(&json!(["image"]), "image"), None);
        assert_eq!(field(&json!("image"), "image"), None);
    }
}
