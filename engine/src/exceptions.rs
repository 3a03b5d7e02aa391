//! Posture exceptions: accepted risks that turn a failure into `passed` / `w/exceptions`.
//!
//! The file format is Kubescape's: a list of `postureExceptionPolicy` objects, each with
//! `resources[].attributes` (`kind`, `name`, `namespace`, matched as case-insensitive full
//! regexes) and `posturePolicies[]` (`controlID`, also a case-insensitive regex; an empty list or
//! an empty entry means every control).

use crate::object::Field;
use regex::{Regex, RegexBuilder};
use serde_json::Value;

use super::object::{array, str_at};

/// Errors reading an exceptions file.
#[derive(Debug, thiserror::Error)]
pub enum ExceptionsError {
    /// The document is not a list of exception policies.
    #[error("exceptions: expected a list of postureExceptionPolicy objects, found {0}")]
    Shape(String),
    /// A regex does not compile.
    #[error("exceptions: policy {policy:?}: field `{field}`: invalid regex {pattern:?}: {reason}")]
    Regex {
        /// Name of the policy.
        policy: String,
        /// The field holding the regex.
        field: String,
        /// The regex.
        pattern: String,
        /// The compiler's message.
        reason: String,
    },
}

#[derive(Debug, Clone)]
struct ResourceMatcher {
    kind: Option<Regex>,
    name: Option<Regex>,
    namespace: Option<Regex>,
}

#[derive(Debug, Clone)]
struct Policy {
    name: String,
    resources: Vec<ResourceMatcher>,
    /// `None`: every control.
    controls: Option<Vec<Regex>>,
}

/// A set of posture exceptions.
#[derive(Debug, Clone, Default)]
pub struct Exceptions {
    policies: Vec<Policy>,
}

fn full_regex(policy: &str, field: &str, pattern: &str) -> Result<Regex, ExceptionsError> {
    RegexBuilder::new(&format!("^(?:{pattern})$"))
        .case_insensitive(true)
        .build()
        .map_err(|e| ExceptionsError::Regex {
            policy: policy.to_string(),
            field: field.to_string(),
            pattern: pattern.to_string(),
            reason: e.to_string(),
        })
}

impl Exceptions {
    /// No exceptions.
    pub fn none() -> Self {
        Exceptions::default()
    }

    /// Whether there are no policies.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Reads Kubescape's exception-policy list.
    pub fn from_value(doc: &Value) -> Result<Self, ExceptionsError> {
        let items = doc
            .as_array()
            .ok_or_else(|| ExceptionsError::Shape(describe(doc).into()))?;
        let mut policies = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if !item.is_object() {
                return Err(ExceptionsError::Shape(format!(
                    "item {i} is {}",
                    describe(item)
                )));
            }
            let name = str_at(item, "name").unwrap_or("").to_string();
            let label = if name.is_empty() {
                format!("#{i}")
            } else {
                name.clone()
            };
            let mut resources = Vec::new();
            for (r, res) in array(item, "resources").iter().enumerate() {
                let attrs = res.field("attributes").unwrap_or(&Value::Null);
                let field = |key: &str| -> Result<Option<Regex>, ExceptionsError> {
                    str_at(attrs, key)
                        .map(|p| full_regex(&label, &format!("resources[{r}].attributes.{key}"), p))
                        .transpose()
                };
                resources.push(ResourceMatcher {
                    kind: field("kind")?,
                    name: field("name")?,
                    namespace: field("namespace")?,
                });
            }
            let mut controls = Vec::new();
            let mut all_controls = false;
            for (p, pol) in array(item, "posturePolicies").iter().enumerate() {
                match str_at(pol, "controlID").or_else(|| str_at(pol, "controlId")) {
                    Some(id) => controls.push(full_regex(
                        &label,
                        &format!("posturePolicies[{p}].controlID"),
                        id,
                    )?),
                    None => all_controls = true,
                }
            }
            let controls = (!all_controls && !controls.is_empty()).then_some(controls);
            policies.push(Policy {
                name: label,
                resources,
                controls,
            });
        }
        Ok(Exceptions { policies })
    }

    /// The name of the first policy that excepts `control_id` on an object with this kind,
    /// name and namespace.
    pub fn find(
        &self,
        control_id: &str,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
    ) -> Option<&str> {
        self.policies
            .iter()
            .find(|p| {
                let control_ok = p
                    .controls
                    .as_ref()
                    .is_none_or(|cs| cs.iter().any(|c| c.is_match(control_id)));
                control_ok
                    && p.resources.iter().any(|r| {
                        r.kind.as_ref().is_none_or(|k| k.is_match(kind))
                            && r.name.as_ref().is_none_or(|n| n.is_match(name))
                            && r.namespace
                                .as_ref()
                                .is_none_or(|n| n.is_match(namespace.unwrap_or("")))
                    })
            })
            .map(|p| p.name.as_str())
    }
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}
