//! Label-selector matching, shared by every control that relates objects through selectors.

use crate::object::Field;
use serde_json::{Map, Value};

use super::object::{array, str_at};

/// Whether every `key: value` of `selector` (a `matchLabels`-style map) is in `labels`.
/// An empty or absent selector matches everything.
pub fn map_subset(
    selector: Option<&Map<String, Value>>,
    labels: Option<&Map<String, Value>>,
) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.field(k)) == Some(v))
}

/// Evaluates one `matchExpressions` entry against `labels`. Unknown operators never match.
pub fn expression_matches(expr: &Value, labels: Option<&Map<String, Value>>) -> bool {
    let Some(key) = str_at(expr, "key") else {
        return false;
    };
    let value = labels.and_then(|l| l.field(key)).and_then(Value::as_str);
    let in_values = |v: &str| array(expr, "values").iter().any(|x| x.as_str() == Some(v));
    match str_at(expr, "operator") {
        Some("In") => value.is_some_and(in_values),
        Some("NotIn") => !value.is_some_and(in_values),
        Some("Exists") => value.is_some(),
        Some("DoesNotExist") => value.is_none(),
        _ => false,
    }
}

/// Whether a full `LabelSelector` (`matchLabels` and `matchExpressions`) selects `labels`.
/// An empty selector (`{}`) selects everything.
pub fn selector_matches(selector: &Value, labels: Option<&Map<String, Value>>) -> bool {
    map_subset(
        selector.field("matchLabels").and_then(Value::as_object),
        labels,
    ) && array(selector, "matchExpressions")
        .iter()
        .all(|e| expression_matches(e, labels))
}

/// Whether a selector has neither `matchLabels` entries nor `matchExpressions`.
pub fn selector_is_empty(selector: &Value) -> bool {
    selector
        .field("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty)
        && array(selector, "matchExpressions").is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors() {
        let labels = json!({"app": "web", "tier": "front"});
        let l = labels.as_object();
        assert!(selector_matches(&json!({"matchLabels": {"app": "web"}}), l));
        assert!(!selector_matches(&json!({"matchLabels": {"app": "db"}}), l));
        assert!(selector_matches(
            &json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]}),
            l
        ));
        assert!(selector_matches(
            &json!({"matchExpressions": [{"key": "x", "operator": "NotIn", "values": ["a"]}]}),
            l
        ));
        assert!(!selector_matches(
            &json!({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}),
            l
        ));
        assert!(selector_matches(&json!({}), None));
        assert!(selector_is_empty(&json!({"matchLabels": {}})));
    }
}
