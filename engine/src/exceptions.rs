//! Posture exceptions: accepted risks that turn a failure into `passed` / `w/exceptions`.
//!
//! The file format is Kubescape's: a list of `postureExceptionPolicy` objects, each with
//! `resources[].attributes` (`kind`, `name`, `namespace`, matched as case-insensitive full
//! regexes) and `posturePolicies[]` (`controlID`, also a case-insensitive regex; an empty list or
//! an empty entry means every control).
//!
//! Beside them, the exceptions users write as custom resources ([`ExceptionRule`], from
//! `PostureException` and `ClusterPostureException`): exact control IDs, resources by kind, name
//! glob and label selector, and for the cluster kind a namespace selector. An expired one is
//! left out when the set is built ([`Exceptions::with_resources`]). [`ExceptionRule::covers`] is
//! also what the controller uses to know which targets an exception adds or removes.

use std::collections::{BTreeMap, HashMap};

use crate::object::Field;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::jiff::Timestamp;
use kubevigil_crds::exception::glob_matches;
use kubevigil_crds::{ClusterPostureException, ExceptionResource, PostureException};
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
    /// `posture exception policy "<name>"`, as results name it.
    name: String,
    resources: Vec<ResourceMatcher>,
    /// `None`: every control.
    controls: Option<Vec<Regex>>,
}

/// A set of posture exceptions.
#[derive(Debug, Clone, Default)]
pub struct Exceptions {
    policies: Vec<Policy>,
    rules: Vec<ExceptionRule>,
    /// Labels of the namespaces that cluster exceptions select by, when known.
    namespace_labels: HashMap<String, BTreeMap<String, String>>,
}

/// What an exception is matched against: one scanned resource.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    /// Kind (of the object, or of the subject for an RBAC triplet).
    pub kind: &'a str,
    /// Name.
    pub name: &'a str,
    /// Namespace; `None` for cluster-scoped resources.
    pub namespace: Option<&'a str>,
    /// The resource's labels.
    pub labels: Option<&'a serde_json::Map<String, Value>>,
}

/// A `PostureException` or `ClusterPostureException`, ready to match.
#[derive(Debug, Clone, PartialEq)]
pub struct ExceptionRule {
    /// `PostureException <namespace>/<name>` or `ClusterPostureException <name>`: what results
    /// show, so that an auditor can find it.
    pub display: String,
    /// The exception's namespace (namespaced kind): it covers resources of this namespace only.
    pub namespace: Option<String>,
    /// The accepted control IDs (exact, case-insensitive).
    pub controls: Vec<String>,
    /// Resource entries; any one matching is enough.
    pub resources: Vec<ExceptionResource>,
    /// Cluster kind: the namespaces covered (`None`: every namespace and cluster-scoped
    /// resources).
    pub namespace_selector: Option<LabelSelector>,
    /// When it stops applying.
    pub expires_at: Option<Timestamp>,
}

/// The label a namespace always carries with its own name.
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

fn selector_value(selector: &LabelSelector) -> Value {
    serde_json::to_value(selector).unwrap_or(Value::Null)
}

fn selects(selector: &LabelSelector, labels: Option<&serde_json::Map<String, Value>>) -> bool {
    crate::selectors::selector_matches(&selector_value(selector), labels)
}

/// The exception rule of a manifest, when it is a `PostureException` or
/// `ClusterPostureException` of `kubevigil.io` (`None` for any other object); an error says what
/// is wrong with its spec. A namespaced exception without a namespace is in `default`, as
/// `kubectl apply` would create it.
pub fn rule_of_manifest(obj: &crate::K8sObject) -> Option<Result<ExceptionRule, String>> {
    let group = obj.api_version.split_once('/').map(|(g, _)| g);
    if group != Some(kubevigil_crds::GROUP) {
        return None;
    }
    match obj.kind.as_str() {
        "PostureException" => Some(
            serde_json::from_value::<PostureException>(obj.value.clone())
                .map(|mut e| {
                    e.metadata.namespace = Some(obj.namespace_or_default().to_string());
                    ExceptionRule::from_namespaced(&e)
                })
                .map_err(|e| format!("PostureException {}: {e}", obj.name)),
        ),
        "ClusterPostureException" => Some(
            serde_json::from_value::<ClusterPostureException>(obj.value.clone())
                .map(|e| ExceptionRule::from_cluster(&e))
                .map_err(|e| format!("ClusterPostureException {}: {e}", obj.name)),
        ),
        _ => None,
    }
}

impl ExceptionRule {
    /// The rule of a namespaced `PostureException`.
    pub fn from_namespaced(e: &PostureException) -> Self {
        let namespace = e.metadata.namespace.clone().unwrap_or_default();
        let name = e.metadata.name.clone().unwrap_or_default();
        ExceptionRule {
            display: format!("PostureException {namespace}/{name}"),
            namespace: Some(namespace),
            controls: e.spec.controls.clone(),
            resources: e.spec.resources.clone(),
            namespace_selector: None,
            expires_at: e.spec.expires_at.as_ref().map(|t| t.0),
        }
    }

    /// The rule of a `ClusterPostureException`.
    pub fn from_cluster(e: &ClusterPostureException) -> Self {
        let name = e.metadata.name.clone().unwrap_or_default();
        ExceptionRule {
            display: format!("ClusterPostureException {name}"),
            namespace: None,
            controls: e.spec.controls.clone(),
            resources: e.spec.resources.clone(),
            namespace_selector: e.spec.namespace_selector.clone(),
            expires_at: e.spec.expires_at.as_ref().map(|t| t.0),
        }
    }

    /// Whether it has expired at `now`.
    pub fn expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// Whether it accepts this control.
    pub fn accepts(&self, control_id: &str) -> bool {
        self.controls
            .iter()
            .any(|c| c.trim().eq_ignore_ascii_case(control_id))
    }

    /// Whether it covers the resource. `namespace_labels` are the labels of the resource's
    /// namespace; when unknown (`None`), a namespace selector sees only the
    /// `kubernetes.io/metadata.name` label every namespace carries.
    pub fn covers(
        &self,
        c: &Candidate<'_>,
        namespace_labels: Option<&BTreeMap<String, String>>,
    ) -> bool {
        let namespace_ok = match (&self.namespace, c.namespace) {
            (Some(own), Some(ns)) => own == ns,
            (Some(_), None) => false,
            (None, ns) => match (&self.namespace_selector, ns) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(sel), Some(ns)) => {
                    let mut labels = serde_json::Map::new();
                    if let Some(known) = namespace_labels {
                        for (k, v) in known {
                            labels.insert(k.clone(), Value::String(v.clone()));
                        }
                    }
                    labels
                        .entry(NAME_LABEL.to_string())
                        .or_insert_with(|| Value::String(ns.to_string()));
                    selects(sel, Some(&labels))
                }
            },
        };
        namespace_ok
            && self.resources.iter().any(|r| {
                r.kind
                    .as_deref()
                    .is_none_or(|k| k.eq_ignore_ascii_case(c.kind))
                    && r.name.as_deref().is_none_or(|n| glob_matches(n, c.name))
                    && r.selector.as_ref().is_none_or(|s| selects(s, c.labels))
            })
    }
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

    /// Whether there are no policies and no exception resources.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty() && self.rules.is_empty()
    }

    /// Adds the exceptions written as custom resources, leaving out those expired at `now`.
    pub fn with_resources(
        mut self,
        rules: impl IntoIterator<Item = ExceptionRule>,
        now: Timestamp,
    ) -> Self {
        self.rules
            .extend(rules.into_iter().filter(|r| !r.expired(now)));
        self
    }

    /// Records the labels of namespaces, for cluster exceptions' namespace selectors.
    pub fn with_namespace_labels(
        mut self,
        labels: impl IntoIterator<Item = (String, BTreeMap<String, String>)>,
    ) -> Self {
        self.namespace_labels.extend(labels);
        self
    }

    /// Whether some exception resource selects namespaces by their labels (the scanner then
    /// reads the labels of the namespaces it scans in).
    pub fn needs_namespace_labels(&self) -> bool {
        self.rules.iter().any(|r| r.namespace_selector.is_some())
    }

    /// The exception resources.
    pub fn rules(&self) -> &[ExceptionRule] {
        &self.rules
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
                name: format!("posture exception policy {label:?}"),
                resources,
                controls,
            });
        }
        Ok(Exceptions {
            policies,
            ..Exceptions::default()
        })
    }

    /// What excepts `control_id` on the resource, as results name it: the first exception
    /// resource that covers it (`PostureException shop/legacy-cache`), else the first
    /// configured policy (`posture exception policy "allow-monitoring"`).
    pub fn find(&self, control_id: &str, c: &Candidate<'_>) -> Option<&str> {
        if let Some(rule) = self.rules.iter().find(|r| {
            r.accepts(control_id)
                && r.covers(c, c.namespace.and_then(|ns| self.namespace_labels.get(ns)))
        }) {
            return Some(&rule.display);
        }
        let (kind, name, namespace) = (c.kind, c.name, c.namespace);
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

#[cfg(test)]
mod tests {
    use kubevigil_crds::{ClusterPostureExceptionSpec, PostureExceptionSpec};
    use serde_json::json;

    use super::*;

    fn namespaced(ns: &str, name: &str, spec: Value) -> ExceptionRule {
        let mut e = PostureException::new(
            name,
            serde_json::from_value::<PostureExceptionSpec>(spec).expect("spec"),
        );
        e.metadata.namespace = Some(ns.into());
        ExceptionRule::from_namespaced(&e)
    }

    fn cluster(name: &str, spec: Value) -> ExceptionRule {
        ExceptionRule::from_cluster(&ClusterPostureException::new(
            name,
            serde_json::from_value::<ClusterPostureExceptionSpec>(spec).expect("spec"),
        ))
    }

    fn labels(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn namespaced_exceptions_match_kind_name_glob_labels_and_own_namespace() {
        let rule = namespaced(
            "shop",
            "legacy",
            json!({
                "controls": ["C-0017"],
                "resources": [{"kind": "deployment", "name": "web-*",
                               "selector": {"matchLabels": {"tier": "front"}}}],
                "justification": "ticket SEC-1"
            }),
        );
        let front = labels(json!({"tier": "front"}));
        let back = labels(json!({"tier": "back"}));
        let c = |kind, name, ns, l| Candidate {
            kind,
            name,
            namespace: ns,
            labels: l,
        };
        let ex = Exceptions::none().with_resources([rule], at("2026-01-01T00:00:00Z"));
        assert_eq!(
            ex.find(
                "C-0017",
                &c("Deployment", "web-1", Some("shop"), Some(&front))
            ),
            Some("PostureException shop/legacy")
        );
        assert_eq!(
            ex.find(
                "c-0017",
                &c("Deployment", "web-1", Some("shop"), Some(&front))
            ),
            Some("PostureException shop/legacy")
        );
        for miss in [
            ("C-0016", "Deployment", "web-1", Some("shop"), Some(&front)),
            ("C-0017", "StatefulSet", "web-1", Some("shop"), Some(&front)),
            ("C-0017", "Deployment", "api", Some("shop"), Some(&front)),
            ("C-0017", "Deployment", "web-1", Some("other"), Some(&front)),
            ("C-0017", "Deployment", "web-1", None, Some(&front)),
            ("C-0017", "Deployment", "web-1", Some("shop"), Some(&back)),
            ("C-0017", "Deployment", "web-1", Some("shop"), None),
        ] {
            assert_eq!(
                ex.find(miss.0, &c(miss.1, miss.2, miss.3, miss.4)),
                None,
                "{miss:?}"
            );
        }
    }

    #[test]
    fn cluster_exceptions_select_namespaces_by_labels_or_name() {
        let rule = cluster(
            "monitoring",
            json!({
                "controls": ["C-0057"],
                "resources": [{"kind": "DaemonSet"}],
                "namespaceSelector": {"matchLabels": {"team": "obs"}},
                "justification": "node exporter needs it"
            }),
        );
        let c = Candidate {
            kind: "DaemonSet",
            name: "node-exporter",
            namespace: Some("mon"),
            labels: None,
        };
        let team: BTreeMap<String, String> = [("team".to_string(), "obs".to_string())].into();
        assert!(rule.covers(&c, Some(&team)));
        assert!(!rule.covers(&c, None));
        assert!(!rule.covers(
            &Candidate {
                namespace: None,
                ..c
            },
            Some(&team)
        ));
        let by_name = cluster(
            "by-name",
            json!({
                "controls": ["C-0057"],
                "resources": [{}],
                "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name",
                    "operator": "In", "values": ["mon"]}]},
                "justification": "x"
            }),
        );
        assert!(by_name.covers(&c, None));
        let everywhere = cluster(
            "all",
            json!({"controls": ["C-0057"], "resources": [{"kind": "ClusterRole"}], "justification": "x"}),
        );
        assert!(everywhere.covers(
            &Candidate {
                kind: "ClusterRole",
                name: "admin",
                namespace: None,
                labels: None
            },
            None
        ));
        let ex = Exceptions::none()
            .with_resources([rule], at("2026-01-01T00:00:00Z"))
            .with_namespace_labels([("mon".to_string(), team)]);
        assert!(ex.needs_namespace_labels());
        assert_eq!(
            ex.find("C-0057", &c),
            Some("ClusterPostureException monitoring")
        );
    }

    #[test]
    fn expired_exceptions_are_left_out() {
        let rule = namespaced(
            "shop",
            "temp",
            json!({"controls": ["C-0017"], "resources": [{}], "justification": "x",
                   "expiresAt": "2026-06-01T00:00:00Z"}),
        );
        assert!(!rule.expired(at("2026-05-31T23:59:59Z")));
        assert!(rule.expired(at("2026-06-01T00:00:00Z")));
        let c = Candidate {
            kind: "Deployment",
            name: "web",
            namespace: Some("shop"),
            labels: None,
        };
        let before = Exceptions::none().with_resources([rule.clone()], at("2026-05-01T00:00:00Z"));
        assert!(before.find("C-0017", &c).is_some());
        let after = Exceptions::none().with_resources([rule], at("2026-07-01T00:00:00Z"));
        assert!(after.is_empty());
        assert_eq!(after.find("C-0017", &c), None);
    }

    #[test]
    fn policies_keep_their_display() {
        let ex = Exceptions::from_value(&json!([{
            "name": "allow",
            "resources": [{"attributes": {"kind": "Deployment"}}],
            "posturePolicies": [{"controlID": "C-00.*"}]
        }]))
        .expect("policies");
        let c = Candidate {
            kind: "Deployment",
            name: "web",
            namespace: Some("shop"),
            labels: None,
        };
        assert_eq!(
            ex.find("C-0017", &c),
            Some("posture exception policy \"allow\"")
        );
    }
}
