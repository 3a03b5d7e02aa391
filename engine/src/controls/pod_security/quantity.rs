//! Kubernetes resource quantities as Kubescape's resource rules read them: memory in bytes, CPU
//! in millicores. Unparsable values give `None`, which never fails a comparison (as in Rego,
//! where a failed `to_number` leaves the rule undefined).

use serde_json::Value;

/// Binary suffixes first, so that `Mi` is not read as `M` followed by garbage.
const MEMORY_SUFFIXES: &[(&str, f64)] = &[
    ("Ki", 1024.0),
    ("Mi", 1_048_576.0),
    ("Gi", 1_073_741_824.0),
    ("Ti", 1_099_511_627_776.0),
    ("Pi", 1_125_899_906_842_624.0),
    ("Ei", 1_152_921_504_606_846_976.0),
    ("m", 0.001),
    ("k", 1e3),
    ("K", 1e3),
    ("M", 1e6),
    ("G", 1e9),
    ("T", 1e12),
    ("P", 1e15),
    ("E", 1e18),
];

/// A plain decimal number (`128`, `0.5`, `1e3`); `None` for anything else. Whole numbers (the
/// usual case) take a fast path without float parsing.
fn number(s: &str) -> Option<f64> {
    if !s.is_empty() && s.len() <= 15 && s.bytes().all(|b| b.is_ascii_digit()) {
        let n = s.bytes().fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
        // At most 15 digits: exact in an f64.
        return Some(n as f64);
    }
    s.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// A memory quantity string in bytes: binary suffixes `Ki`..`Ei`, decimal `k`/`K`/`M`/`G`/`T`/
/// `P`/`E`, milli `m`, or a bare number.
pub fn memory_bytes_str(s: &str) -> Option<f64> {
    for (suffix, factor) in MEMORY_SUFFIXES {
        if let Some(n) = s.strip_suffix(suffix) {
            return number(n).map(|n| n * factor);
        }
    }
    number(s)
}

/// A CPU quantity string in millicores: `500m`, or cores (`1`, `0.5`).
pub fn cpu_millis_str(s: &str) -> Option<f64> {
    match s.strip_suffix('m') {
        Some(n) => number(n),
        None => number(s).map(|n| n * 1000.0),
    }
}

/// A memory quantity as written in a manifest (a string, or a bare YAML number).
pub fn memory_bytes(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => memory_bytes_str(s),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// A CPU quantity as written in a manifest (a string, or a bare YAML number of cores).
pub fn cpu_millis(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => cpu_millis_str(s),
        Value::Number(n) => n.as_f64().map(|n| n * 1000.0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn memory_units() {
        assert_eq!(memory_bytes_str("128"), Some(128.0));
        assert_eq!(memory_bytes_str("1Ki"), Some(1024.0));
        assert_eq!(memory_bytes_str("64Mi"), Some(64.0 * 1_048_576.0));
        assert_eq!(memory_bytes_str("1.5Gi"), Some(1.5 * 1_073_741_824.0));
        assert_eq!(memory_bytes_str("1Ti"), Some(1_099_511_627_776.0));
        assert_eq!(memory_bytes_str("1Pi"), Some(1_125_899_906_842_624.0));
        assert_eq!(memory_bytes_str("1Ei"), Some(1_152_921_504_606_846_976.0));
        assert_eq!(memory_bytes_str("1k"), Some(1000.0));
        assert_eq!(memory_bytes_str("1K"), Some(1000.0));
        assert_eq!(memory_bytes_str("129M"), Some(129e6));
        assert_eq!(memory_bytes_str("1G"), Some(1e9));
        assert_eq!(memory_bytes_str("2T"), Some(2e12));
        assert_eq!(memory_bytes_str("1P"), Some(1e15));
        assert_eq!(memory_bytes_str("1E"), Some(1e18));
        assert_eq!(memory_bytes_str("1500m"), Some(1.5));
        assert_eq!(memory_bytes_str("1e3"), Some(1000.0));
        assert_eq!(
            memory_bytes_str("999999999999999"),
            Some(999_999_999_999_999.0)
        );
        assert_eq!(
            memory_bytes_str("1234567890123456789"),
            Some(1.234_567_890_123_456_8e18)
        );
        assert_eq!(memory_bytes_str("-1"), Some(-1.0));
        // 128Mi is more than 128M, less than 135M.
        assert!(memory_bytes_str("128Mi") > memory_bytes_str("128M"));
        assert!(memory_bytes_str("128Mi") < memory_bytes_str("135M"));
    }

    #[test]
    fn memory_garbage_is_none() {
        assert_eq!(memory_bytes_str(""), None);
        assert_eq!(memory_bytes_str("Mi"), None);
        assert_eq!(memory_bytes_str("12Xi"), None);
        assert_eq!(memory_bytes_str("lots"), None);
        assert_eq!(memory_bytes_str("inf"), None);
        assert_eq!(memory_bytes(&json!(null)), None);
        assert_eq!(memory_bytes(&json!(true)), None);
    }

    #[test]
    fn memory_numbers() {
        assert_eq!(memory_bytes(&json!(134217728)), Some(134_217_728.0));
        assert_eq!(memory_bytes(&json!("256Mi")), Some(256.0 * 1_048_576.0));
    }

    #[test]
    fn cpu_units() {
        assert_eq!(cpu_millis_str("250m"), Some(250.0));
        assert_eq!(cpu_millis_str("1"), Some(1000.0));
        assert_eq!(cpu_millis_str("0.5"), Some(500.0));
        assert_eq!(cpu_millis_str("2.5"), Some(2500.0));
        assert_eq!(cpu_millis_str("m"), None);
        assert_eq!(cpu_millis_str("1k"), None);
        assert_eq!(cpu_millis_str(""), None);
        assert_eq!(cpu_millis(&json!(2)), Some(2000.0));
        assert_eq!(cpu_millis(&json!(0.25)), Some(250.0));
        assert_eq!(cpu_millis(&json!("100m")), Some(100.0));
        assert_eq!(cpu_millis(&json!([1])), None);
    }
}
