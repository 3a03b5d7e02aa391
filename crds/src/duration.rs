//! Go-style durations, as the chart's schema allows them: one parser for the controller's
//! configuration and the scan Jobs' reading of the same file.

use std::time::Duration;

/// Parses Go-style durations as the chart's schema allows them: `500ms`, `2s`, `10m`, `1h`, and
/// sums of them like `1h30m`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(s.parse().ok()?));
    }
    let mut rest = s;
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60)?),
            "h" => Duration::from_secs(n.checked_mul(3600)?),
            _ => return None,
        };
        total = total.checked_add(part)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2x"), None);
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(
            parse_duration("1m500ms"),
            Some(Duration::from_millis(60_500))
        );
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        for bad in ["", "h", "1h30", "m5", "1.5s", "-1s", "1 s"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }
}
