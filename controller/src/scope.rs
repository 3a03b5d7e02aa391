//! Which namespaces and objects are scanned, decided without I/O.
//!
//! A namespace is in scope when its name matches an `includeNamespaces` pattern (or that list is
//! empty), matches no `excludeNamespaces` pattern, and, when `namespaceSelector` is set, its labels
//! match the selector ([`NamespaceScope::in_scope`]). Patterns are globs: `*` matches any run of
//! characters, `?` one character, anything else itself ([`glob_match`]). An object carrying the
//! skip label (`kubevigil.io/skip: "true"` by default) is out of scope wherever it lives
//! ([`SkipLabel`]).
//!
//! Names alone decide unless a selector is set; then the controller watches Namespaces (metadata
//! only) and keeps their membership in a [`NamespaceTable`], whose published view is a
//! [`NamespaceView`]. A namespace whose labels move it in or out of scope bumps the view's
//! `epoch`: the watches of targets list again with the new scope, so the targets of a namespace
//! that left are deleted (their results with them) and those of one that came in are scanned.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use serde::Deserialize;

/// Whether `text` matches the glob `pattern` (`*`: any run of characters, `?`: one character).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    // Where the last `*` was, and the text position it currently stands for.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Why a namespace pattern is refused: namespace names are DNS labels, so a pattern may only hold
/// lowercase letters, digits, `-`, `*` and `?`.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("an empty pattern matches no namespace".into());
    }
    if let Some(c) = pattern
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '*' | '?')))
    {
        return Err(format!(
            "{pattern:?} holds {c:?}: a namespace pattern may only hold a-z, 0-9, '-', '*' and '?'"
        ));
    }
    Ok(())
}

/// The operators of `matchExpressions`.
const OPERATORS: [&str; 4] = ["In", "NotIn", "Exists", "DoesNotExist"];

/// Why a label selector is refused (an unknown operator, values where none are allowed or none
/// where some are needed), as the API server would refuse it.
pub fn check_selector(selector: &LabelSelector) -> Result<(), String> {
    for (i, r) in selector
        .match_expressions
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        let values = r.values.as_deref().unwrap_or(&[]);
        match r.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(format!(
                    "matchExpressions[{i}]: operator {} needs values",
                    r.operator
                ));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(format!(
                    "matchExpressions[{i}]: operator {} takes no values",
                    r.operator
                ));
            }
            op if !OPERATORS.contains(&op) => {
                return Err(format!(
                    "matchExpressions[{i}]: unknown operator {op:?} (one of {})",
                    OPERATORS.join(", ")
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn requirement_matches(r: &LabelSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&r.key);
    let listed = |v: &String| r.values.as_deref().unwrap_or(&[]).contains(v);
    match r.operator.as_str() {
        "In" => value.is_some_and(listed),
        "NotIn" => !value.is_some_and(listed),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        _ => false,
    }
}

/// Whether `selector` selects `labels` (an empty selector selects everything).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_none_or(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)))
        && selector
            .match_expressions
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .all(|r| requirement_matches(r, labels))
}

/// The label that takes an object out of scope (`skipLabel`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SkipLabel {
    /// Label key (`kubevigil.io/skip`).
    pub key: String,
    /// Label value (`"true"`).
    pub value: String,
}

impl SkipLabel {
    /// Whether an object with `labels` is skipped.
    pub fn skips(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        labels.and_then(|l| l.get(&self.key)) == Some(&self.value)
    }
}

/// The namespace scope of the configuration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NamespaceScope {
    /// `includeNamespaces` patterns (empty: every namespace).
    pub include: Vec<String>,
    /// `excludeNamespaces` patterns.
    pub exclude: Vec<String>,
    /// `namespaceSelector`, when set (an empty selector is taken as unset).
    pub selector: Option<LabelSelector>,
}

impl NamespaceScope {
    /// Whether the namespace's name alone is in scope (the selector aside).
    pub fn name_selected(&self, name: &str) -> bool {
        !self.exclude.iter().any(|p| glob_match(p, name))
            && (self.include.is_empty() || self.include.iter().any(|p| glob_match(p, name)))
    }

    /// Whether membership depends on namespace labels (a selector is set).
    pub fn needs_labels(&self) -> bool {
        self.selector.is_some()
    }

    /// Whether the namespace `name` with `labels` is in scope.
    pub fn in_scope(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.name_selected(name)
            && self
                .selector
                .as_ref()
                .is_none_or(|s| selector_matches(s, labels))
    }
}

/// What the scope says of a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Membership {
    /// Scanned.
    In,
    /// Not scanned.
    Out,
    /// A selector is set and the namespace watch has not seen this namespace (yet).
    Unknown,
}

/// The published view of namespace membership, read by the watches of targets and by the
/// resync's scope.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NamespaceView {
    /// The configured scope.
    pub scope: NamespaceScope,
    /// Membership of each namespace seen by the namespace watch (only with a selector).
    members: HashMap<String, bool>,
    /// Last membership of namespaces deleted since the last list (their objects' last events
    /// may come after the namespace's own).
    gone: HashMap<String, bool>,
    /// Whether the namespace watch has listed once (always true without a selector).
    pub synced: bool,
    /// Bumped whenever an existing namespace moved in or out of scope: the watches of targets
    /// list again.
    pub epoch: u64,
}

impl NamespaceView {
    /// A view decided by names alone (no selector): synced from the start.
    pub fn static_scope(scope: NamespaceScope) -> Self {
        let synced = !scope.needs_labels();
        NamespaceView {
            scope,
            members: HashMap::new(),
            gone: HashMap::new(),
            synced,
            epoch: 0,
        }
    }

    /// What the scope says of `namespace`.
    pub fn membership(&self, namespace: &str) -> Membership {
        if !self.scope.name_selected(namespace) {
            return Membership::Out;
        }
        if !self.scope.needs_labels() {
            return Membership::In;
        }
        match self
            .members
            .get(namespace)
            .or_else(|| self.gone.get(namespace))
        {
            Some(true) => Membership::In,
            Some(false) => Membership::Out,
            None => Membership::Unknown,
        }
    }

    /// Whether `namespace` is in scope (an unknown one is not).
    pub fn selected(&self, namespace: &str) -> bool {
        self.membership(namespace) == Membership::In
    }

    /// How many namespaces seen by the namespace watch are in scope.
    pub fn in_scope_count(&self) -> usize {
        self.members.values().filter(|m| **m).count()
    }
}

/// Most deleted namespaces remembered between two lists.
const MAX_GONE: usize = 10_000;

/// The namespace watch's table: labels decide membership, and a change of membership of a
/// namespace already known bumps the epoch.
#[derive(Debug)]
pub struct NamespaceTable {
    view: NamespaceView,
    /// Names listed so far by a running (re-)list.
    relist: Option<HashMap<String, bool>>,
}

impl NamespaceTable {
    /// An empty table for `scope`.
    pub fn new(scope: NamespaceScope) -> Self {
        NamespaceTable {
            view: NamespaceView {
                scope,
                members: HashMap::new(),
                gone: HashMap::new(),
                synced: false,
                epoch: 0,
            },
            relist: None,
        }
    }

    /// The current view.
    pub fn view(&self) -> &NamespaceView {
        &self.view
    }

    /// A (re-)list starts.
    pub fn list_started(&mut self) {
        self.relist = Some(HashMap::new());
    }

    /// A namespace was listed or changed. Returns whether the view changed.
    pub fn applied(&mut self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        let member = self.view.scope.in_scope(name, labels);
        if let Some(listed) = &mut self.relist {
            listed.insert(name.to_string(), member);
            return false;
        }
        self.view.gone.remove(name);
        match self.view.members.insert(name.to_string(), member) {
            // A namespace already known moved in or out: its targets must be listed again.
            Some(before) if before != member => {
                self.view.epoch += 1;
                true
            }
            Some(_) => false,
            // A new namespace: its objects come after it, through the running watches.
            None => true,
        }
    }

    /// A namespace was deleted (its objects are deleted with it). Returns whether the view
    /// changed.
    pub fn deleted(&mut self, name: &str) -> bool {
        if let Some(listed) = &mut self.relist {
            listed.remove(name);
            return false;
        }
        match self.view.members.remove(name) {
            Some(member) => {
                if self.view.gone.len() >= MAX_GONE {
                    self.view.gone.clear();
                }
                self.view.gone.insert(name.to_string(), member);
                true
            }
            None => false,
        }
    }

    /// A (re-)list is complete: the table becomes the listed namespaces. The epoch is bumped when
    /// a namespace known before changed membership meanwhile. Returns whether the view changed.
    pub fn list_done(&mut self) -> bool {
        let Some(listed) = self.relist.take() else {
            return false;
        };
        // A namespace known before that changed membership, or one that came in while the watch
        // was down (the watches of targets may have passed over its objects), lists targets
        // again.
        let flipped = self.view.synced
            && listed
                .iter()
                .any(|(name, member)| match self.view.members.get(name) {
                    Some(before) => before != member,
                    None => *member,
                });
        let changed = !self.view.synced || listed != self.view.members;
        self.view.members = listed;
        self.view.gone.clear();
        self.view.synced = true;
        if flipped {
            self.view.epoch += 1;
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn globs() {
        assert!(glob_match("team-*", "team-a"));
        assert!(glob_match("team-*", "team-"));
        assert!(!glob_match("team-*", "team"));
        assert!(glob_match("*-prod", "shop-prod"));
        assert!(!glob_match("*-prod", "shop-prod-2"));
        assert!(glob_match("a*b*c", "aXXbYYbc"));
        assert!(!glob_match("a*b*c", "aXXbYYb"));
        assert!(glob_match("ns-?", "ns-1"));
        assert!(!glob_match("ns-?", "ns-12"));
        assert!(glob_match("*", ""));
        assert!(glob_match("shop", "shop"));
        assert!(!glob_match("shop", "shop2"));
        assert!(!glob_match("", "x"));
    }

    #[test]
    fn patterns_are_checked() {
        assert!(check_pattern("team-*").is_ok());
        assert!(check_pattern("").is_err());
        let e = check_pattern("Team/*").unwrap_err();
        assert!(e.contains("'T'"), "{e}");
    }

    #[test]
    fn selectors_are_checked() {
        let req = |op: &str, values: Option<Vec<&str>>| LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "team".into(),
                operator: op.into(),
                values: values.map(|v| v.into_iter().map(String::from).collect()),
            }]),
            match_labels: None,
        };
        assert!(check_selector(&req("In", Some(vec!["a"]))).is_ok());
        assert!(check_selector(&req("Exists", None)).is_ok());
        assert!(
            check_selector(&req("In", None))
                .unwrap_err()
                .contains("needs values")
        );
        assert!(
            check_selector(&req("Exists", Some(vec!["a"])))
                .unwrap_err()
                .contains("takes no values")
        );
        assert!(
            check_selector(&req("Equals", None))
                .unwrap_err()
                .contains("unknown operator")
        );
    }

    #[test]
    fn include_exclude_and_selector() {
        let scope = NamespaceScope {
            include: vec!["team-*".into(), "shop".into()],
            exclude: vec!["*-tmp".into()],
            selector: Some(LabelSelector {
                match_labels: Some(labels(&[("scan", "yes")])),
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "NotIn".into(),
                    values: Some(vec!["dev".into()]),
                }]),
            }),
        };
        let yes = labels(&[("scan", "yes")]);
        assert!(scope.in_scope("team-a", &yes));
        assert!(scope.in_scope("shop", &yes));
        assert!(!scope.in_scope("team-a-tmp", &yes), "excluded by pattern");
        assert!(!scope.in_scope("other", &yes), "not included");
        assert!(!scope.in_scope("team-a", &labels(&[])), "selector");
        assert!(
            !scope.in_scope("team-a", &labels(&[("scan", "yes"), ("tier", "dev")])),
            "NotIn"
        );
        let everything = NamespaceScope::default();
        assert!(everything.in_scope("anything", &labels(&[])));
        assert!(!everything.needs_labels());
    }

    #[test]
    fn skip_label() {
        let skip = SkipLabel {
            key: "kubevigil.io/skip".into(),
            value: "true".into(),
        };
        assert!(skip.skips(Some(&labels(&[("kubevigil.io/skip", "true")]))));
        assert!(!skip.skips(Some(&labels(&[("kubevigil.io/skip", "false")]))));
        assert!(!skip.skips(None));
    }

    #[test]
    fn view_without_selector_is_static() {
        let view = NamespaceView::static_scope(NamespaceScope {
            include: vec!["a-*".into()],
            ..NamespaceScope::default()
        });
        assert!(view.synced);
        assert_eq!(view.membership("a-1"), Membership::In);
        assert_eq!(view.membership("b"), Membership::Out);
    }

    #[test]
    fn table_tracks_membership_and_bumps_epoch_on_flips_only() {
        let scope = NamespaceScope {
            include: Vec::new(),
            exclude: vec!["kube-*".into()],
            selector: Some(LabelSelector {
                match_labels: Some(labels(&[("scan", "yes")])),
                match_expressions: None,
            }),
        };
        let mut t = NamespaceTable::new(scope);
        assert!(!t.view().synced);
        t.list_started();
        assert!(!t.applied("a", &labels(&[("scan", "yes")])));
        assert!(!t.applied("b", &labels(&[])));
        assert!(!t.applied("kube-system", &labels(&[("scan", "yes")])));
        assert!(t.list_done());
        let v = t.view();
        assert!(v.synced);
        assert_eq!(v.epoch, 0);
        assert_eq!(v.membership("a"), Membership::In);
        assert_eq!(v.membership("b"), Membership::Out);
        assert_eq!(v.membership("kube-system"), Membership::Out);
        assert_eq!(v.membership("new"), Membership::Unknown);

        // A new namespace is learnt without a re-list of targets.
        assert!(t.applied("new", &labels(&[("scan", "yes")])));
        assert_eq!(t.view().epoch, 0);
        assert_eq!(t.view().membership("new"), Membership::In);
        // A label change that keeps membership changes nothing.
        assert!(!t.applied("a", &labels(&[("scan", "yes"), ("x", "y")])));
        // b comes in: the epoch moves.
        assert!(t.applied("b", &labels(&[("scan", "yes")])));
        assert_eq!(t.view().epoch, 1);
        // a goes out: again.
        assert!(t.applied("a", &labels(&[])));
        assert_eq!(t.view().epoch, 2);
        // A deleted namespace keeps its membership for its objects' last events.
        assert!(t.deleted("new"));
        assert_eq!(t.view().membership("new"), Membership::In);
        assert!(!t.deleted("never"));
        assert_eq!(t.view().membership("never"), Membership::Unknown);

        // A re-list that finds a flip missed while the watch was down bumps the epoch.
        t.list_started();
        t.applied("a", &labels(&[("scan", "yes")]));
        t.applied("b", &labels(&[("scan", "yes")]));
        assert!(t.list_done());
        assert_eq!(t.view().epoch, 3);
        // A re-list that finds nothing new does not.
        t.list_started();
        t.applied("a", &labels(&[("scan", "yes")]));
        t.applied("b", &labels(&[("scan", "yes")]));
        assert!(!t.list_done());
        assert_eq!(t.view().epoch, 3);
        // One that finds a namespace in scope created while it was down does; one out of scope
        // does not.
        t.list_started();
        t.applied("a", &labels(&[("scan", "yes")]));
        t.applied("b", &labels(&[("scan", "yes")]));
        t.applied("quiet", &labels(&[]));
        assert!(t.list_done());
        assert_eq!(t.view().epoch, 3);
        t.list_started();
        t.applied("a", &labels(&[("scan", "yes")]));
        t.applied("b", &labels(&[("scan", "yes")]));
        t.applied("quiet", &labels(&[]));
        t.applied("late", &labels(&[("scan", "yes")]));
        assert!(t.list_done());
        assert_eq!(t.view().epoch, 4);
    }
}
