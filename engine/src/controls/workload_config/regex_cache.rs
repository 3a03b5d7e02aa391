//! Compiled matchers for the user-configurable credential inputs (`sensitiveKeyNames`,
//! `sensitiveValues` and their allow-lists), kept with the inputs so that a scan compiles them
//! once, not once per object.

use std::sync::{Arc, OnceLock};

use aho_corasick::AhoCorasick;
use regex::Regex;

use crate::inputs::ControlInputs;

/// A compiled pattern list: one alternation of every valid pattern (faster than a `RegexSet`
/// for "does any match"), or the patterns one by one if the alternation is too large.
#[derive(Debug)]
pub(super) struct Patterns {
    joined: Option<Regex>,
    each: Vec<Regex>,
    /// For a list of ASCII literals matched ignoring case: an Aho-Corasick automaton, used on
    /// ASCII texts (where it agrees with the regex and is several times cheaper per call; a
    /// scan runs it on every env entry). Other texts go through the regex, whose Unicode case
    /// folding then matters.
    ascii_literals: Option<AhoCorasick>,
}

impl Patterns {
    /// Whether any pattern matches somewhere in `text`.
    pub(super) fn is_match(&self, text: &str) -> bool {
        if let Some(ac) = &self.ascii_literals
            && text.is_ascii()
        {
            return ac.is_match(text);
        }
        match &self.joined {
            Some(r) => r.is_match(text),
            None => self.each.iter().any(|r| r.is_match(text)),
        }
    }

    /// Regexes (unanchored, as Rego's `regex.match`), each under `(?i)` when
    /// `case_insensitive`. Patterns that do not compile never match (a Rego `regex.match` error
    /// makes the rule body undefined).
    fn regexes(patterns: &[String], case_insensitive: bool) -> Self {
        let flag = if case_insensitive { "(?i)" } else { "" };
        let valid: Vec<&String> = patterns
            .iter()
            .filter(|p| Regex::new(&format!("{flag}{p}")).is_ok())
            .collect();
        if valid.is_empty() {
            return Patterns {
                joined: None,
                each: Vec::new(),
                ascii_literals: None,
            };
        }
        let alternation = valid
            .iter()
            .map(|p| format!("(?:{p})"))
            .collect::<Vec<_>>()
            .join("|");
        match Regex::new(&format!("{flag}{alternation}")) {
            Ok(joined) => Patterns {
                joined: Some(joined),
                each: Vec::new(),
                ascii_literals: None,
            },
            Err(_) => Patterns {
                joined: None,
                each: valid
                    .iter()
                    .filter_map(|p| Regex::new(&format!("{flag}{p}")).ok())
                    .collect(),
                ascii_literals: None,
            },
        }
    }

    /// Case-insensitive substring search for any of `needles` (Rego's
    /// `contains(lower(x), lower(needle))`).
    fn substrings_ignore_case(needles: &[String]) -> Self {
        let escaped: Vec<String> = needles.iter().map(|n| regex::escape(n)).collect();
        let mut patterns = Patterns::regexes(&escaped, true);
        if !needles.is_empty() && needles.iter().all(|n| n.is_ascii()) {
            patterns.ascii_literals = AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(needles)
                .ok();
        }
        patterns
    }
}

/// The four credential matchers.
#[derive(Debug)]
pub(super) struct CredentialMatchers {
    /// A key name contains one of `sensitiveKeyNames` (ignoring case).
    pub(super) key_names: Patterns,
    /// A key name contains one of `sensitiveKeyNamesAllowed` (ignoring case).
    pub(super) key_names_allowed: Patterns,
    /// A value matches one of `sensitiveValues`.
    pub(super) values: Patterns,
    /// A value matches one of `sensitiveValuesAllowed` (as written).
    pub(super) values_allowed: Patterns,
}

impl CredentialMatchers {
    /// Compiles the four credential inputs; `sensitiveValues` are matched ignoring case when
    /// `values_case_insensitive` (the env rule prefixes them with `(?i)`, the ConfigMap rule
    /// does not).
    fn compile(inputs: &ControlInputs, values_case_insensitive: bool) -> Self {
        CredentialMatchers {
            key_names: Patterns::substrings_ignore_case(inputs.get("sensitiveKeyNames")),
            key_names_allowed: Patterns::substrings_ignore_case(
                inputs.get("sensitiveKeyNamesAllowed"),
            ),
            values: Patterns::regexes(inputs.get("sensitiveValues"), values_case_insensitive),
            values_allowed: Patterns::regexes(inputs.get("sensitiveValuesAllowed"), false),
        }
    }
}

/// Both compilations of the credential inputs, each made the first time a rule needs it (a
/// scan of workloads only never compiles the ConfigMap one). Kept with the inputs (see
/// [`ControlInputs::derived`]), so a scan compiles them once.
#[derive(Debug, Default)]
struct CredentialMatcherSet {
    /// `sensitiveValues` matched ignoring case (the env rule).
    values_ignore_case: OnceLock<Arc<CredentialMatchers>>,
    /// `sensitiveValues` matched as written (the ConfigMap rule).
    values_as_written: OnceLock<Arc<CredentialMatchers>>,
}

/// The compiled credential inputs of `inputs`; see [`CredentialMatchers::compile`] for
/// `values_case_insensitive`.
pub(super) fn credential_matchers(
    inputs: &ControlInputs,
    values_case_insensitive: bool,
) -> Arc<CredentialMatchers> {
    let set = inputs.derived(|_| CredentialMatcherSet::default());
    let cell = if values_case_insensitive {
        &set.values_ignore_case
    } else {
        &set.values_as_written
    };
    Arc::clone(
        cell.get_or_init(|| Arc::new(CredentialMatchers::compile(inputs, values_case_insensitive))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn compiles_once_and_skips_invalid() {
        let mut inputs = ControlInputs::empty();
        inputs.set("sensitiveKeyNames", list(&["password", "a.b"]));
        inputs.set(
            "sensitiveValues",
            list(&["Bearer", "AKIA[0-9A-Z]{16}", "(unclosed"]),
        );
        let a = credential_matchers(&inputs, true);
        let b = credential_matchers(&inputs, true);
        assert!(Arc::ptr_eq(&a, &b), "compiled once per inputs");
        assert!(a.key_names.is_match("DB_PASSWORD"));
        assert!(a.key_names.is_match("A.B"));
        assert!(
            !a.key_names.is_match("axb"),
            "key names are literals, not regexes"
        );
        assert!(!a.key_names_allowed.is_match("anything"));
        assert!(a.values.is_match("token: bearer abc"));
        assert!(a.values.is_match("AKIAIOSFODNN7EXAMPLE"));
        assert!(!a.values.is_match("hello"));
        let cs = credential_matchers(&inputs, false);
        assert!(!cs.values.is_match("bearer"));
        assert!(cs.values.is_match("Bearer"));

        inputs.set("sensitiveValues", list(&["hello"]));
        let changed = credential_matchers(&inputs, true);
        assert!(
            changed.values.is_match("HELLO") && !changed.values.is_match("bearer"),
            "a change of the inputs is compiled anew"
        );
        assert!(
            !Arc::ptr_eq(&credential_matchers(&inputs.clone(), true), &changed),
            "a clone compiles its own"
        );
    }

    #[test]
    fn alternatives_keep_their_own_scope() {
        // `a|b` must not swallow the next pattern, and inline flags stay local.
        let p = Patterns::regexes(&list(&["^x|y$", "(?-i)Q", "z"]), true);
        assert!(p.is_match("xa"));
        assert!(p.is_match("ay"));
        assert!(!p.is_match("q"));
        assert!(p.is_match("Q"));
        assert!(p.is_match("Z"));
        assert!(!Patterns::regexes(&list(&["(bad"]), false).is_match("(bad"));
        assert!(Patterns::substrings_ignore_case(&list(&[""])).is_match("x"));
    }

    #[test]
    fn ascii_literals_agree_with_the_regex() {
        let needles = list(&["password", "key", "aws_secret", "a.b"]);
        let fast = Patterns::substrings_ignore_case(&needles);
        assert!(fast.ascii_literals.is_some());
        let mut slow = Patterns::substrings_ignore_case(&needles);
        slow.ascii_literals = None;
        for text in [
            "DB_PASSWORD",
            "Api_Key",
            "AWS_SECRET_x",
            "A.B",
            "axb",
            "",
            "token",
            "pass word",
            // Non-ASCII texts take the regex: the Kelvin sign folds to `k`, as Go's ToLower does.
            "\u{212A}EY",
            "pässword",
        ] {
            assert_eq!(fast.is_match(text), slow.is_match(text), "{text:?}");
        }
        assert!(
            fast.is_match("\u{212A}EY"),
            "Unicode case folding is kept for non-ASCII text"
        );
        let non_ascii = Patterns::substrings_ignore_case(&list(&["pässword"]));
        assert!(non_ascii.ascii_literals.is_none());
        assert!(non_ascii.is_match("PÄSSWORD"));
    }
}
