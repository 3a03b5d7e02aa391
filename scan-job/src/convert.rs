//! `scan-job exceptions convert`: Kubescape's postureExceptionPolicy list (JSON or YAML) turned
//! into `PostureException` and `ClusterPostureException` resources, for users moving over.
//! Pure: text in, objects and warnings out; the command prints them as YAML documents.
//!
//! How each part of a Kubescape policy maps:
//! - `posturePolicies[]`: `controlID` and `controlName` are regexes (full, case-insensitive),
//!   expanded against the catalog into the exact control IDs the resources list; `frameworkName`
//!   alone means the framework's controls; an empty list or entry means every control.
//! - `resources[].attributes`: `namespace` picks the kind: one literal namespace gives a
//!   `PostureException` there; several literals (`a|b`) a `ClusterPostureException` whose
//!   `namespaceSelector` names them (`kubernetes.io/metadata.name In [a, b]`); none or `.*` a
//!   `ClusterPostureException` for every namespace. `kind` and `name` become the resource's kind
//!   and name glob (`.*` is `*`, `.` is `?`; alternatives give one entry each); every other
//!   attribute is a label (`matchLabels`), except `cluster`, which is dropped with a warning.
//! - A regex that has no glob equivalent is an error naming the policy and field.
//! - `justification` is required by the CRDs and Kubescape has none: it says where the exception
//!   came from, unless `--justification` gives one.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use kubevigil_crds::{
    ClusterPostureException, ClusterPostureExceptionSpec, ExceptionResource, PostureException,
    PostureExceptionSpec,
};
use kubevigil_engine::Control;
use regex::RegexBuilder;
use serde_json::Value;

/// Why a policy list cannot be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The text is neither JSON nor YAML.
    #[error("cannot parse the exceptions file: {0}")]
    Parse(String),
    /// The document is not a list of policy objects.
    #[error("expected a list of postureExceptionPolicy objects, found {0}")]
    Shape(&'static str),
    /// A field cannot be expressed in the CRDs.
    #[error("policy {policy:?}: field `{field}`: {message}")]
    Field {
        /// The policy's name (or `#index`).
        policy: String,
        /// The field (`resources[0].attributes.name`).
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// One converted exception.
#[derive(Clone, Debug)]
pub enum Converted {
    /// A namespaced exception.
    Namespaced(PostureException),
    /// A cluster exception.
    Cluster(ClusterPostureException),
}

/// The conversion's output.
#[derive(Clone, Debug, Default)]
pub struct Conversion {
    /// The exceptions, in input order.
    pub exceptions: Vec<Converted>,
    /// What was dropped or guessed.
    pub warnings: Vec<String>,
}

/// Where one Kubescape resource entry lands.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    Namespace(String),
    Namespaces(Vec<String>),
    Everywhere,
}

/// Regex metacharacters that have no glob equivalent.
const UNSUPPORTED: &[char] = &['[', ']', '(', ')', '{', '}', '+', '^', '$', '|'];

/// A Kubescape regex as alternatives of globs; `None` when it matches anything (`.*`).
fn regex_to_globs(pattern: &str) -> Result<Option<Vec<String>>, String> {
    let pattern = pattern.trim();
    if pattern.is_empty() || pattern == ".*" {
        return Ok(None);
    }
    let mut out = Vec::new();
    for alt in pattern.split('|') {
        let mut glob = String::new();
        let mut chars = alt.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(e) if !e.is_alphanumeric() => glob.push(e),
                    _ => {
                        return Err(format!(
                            "regex {pattern:?} has an escape with no glob equivalent"
                        ));
                    }
                },
                '.' if chars.peek() == Some(&'*') => {
                    chars.next();
                    glob.push('*');
                }
                '.' => glob.push('?'),
                '*' | '?' => {
                    return Err(format!(
                        "regex {pattern:?}: `{c}` after something other than `.` has no glob equivalent"
                    ));
                }
                c if UNSUPPORTED.contains(&c) => {
                    return Err(format!(
                        "regex {pattern:?}: `{c}` has no glob equivalent; write the names out"
                    ));
                }
                c => glob.push(c),
            }
        }
        if glob.is_empty() {
            return Err(format!("regex {pattern:?} has an empty alternative"));
        }
        out.push(glob);
    }
    Ok(Some(out))
}

fn is_literal(glob: &str) -> bool {
    !glob.contains(['*', '?'])
}

/// A name usable as a Kubernetes object name (DNS-1123 subdomain, at most 253 characters).
fn object_name(raw: &str, index: usize) -> String {
    let mut s: String = raw
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    s = s
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    s.truncate(240);
    let s = s
        .trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    if s.is_empty() {
        format!("kubescape-exception-{index}")
    } else {
        s
    }
}

/// The catalog's control IDs a policy's `posturePolicies` name.
fn controls_of(
    policy: &str,
    item: &Value,
    catalog: &[&dyn Control],
) -> Result<Vec<String>, ConvertError> {
    let entries = item
        .get("posturePolicies")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let all = || catalog.iter().map(|c| c.meta().id.to_string()).collect();
    if entries.is_empty() {
        return Ok(all());
    }
    let mut ids: Vec<String> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let get = |k: &str| {
            entry
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let regex = |field: &str, p: &str| {
            RegexBuilder::new(&format!("^(?:{p})$"))
                .case_insensitive(true)
                .build()
                .map_err(|e| ConvertError::Field {
                    policy: policy.to_string(),
                    field: format!("posturePolicies[{i}].{field}"),
                    message: format!("invalid regex {p:?}: {e}"),
                })
        };
        let id_re = get("controlID").or_else(|| get("controlId"));
        let id_re = id_re.map(|p| regex("controlID", p)).transpose()?;
        let name_re = get("controlName")
            .map(|p| regex("controlName", p))
            .transpose()?;
        let framework = get("frameworkName");
        if id_re.is_none() && name_re.is_none() && framework.is_none() {
            return Ok(all());
        }
        let before = ids.len();
        for c in catalog {
            let m = c.meta();
            let ok = id_re.as_ref().is_none_or(|r| r.is_match(m.id))
                && name_re.as_ref().is_none_or(|r| r.is_match(m.name))
                && framework.is_none_or(|f| m.in_framework(f));
            if ok && !ids.iter().any(|x| x == m.id) {
                ids.push(m.id.to_string());
            }
        }
        if ids.len() == before {
            return Err(ConvertError::Field {
                policy: policy.to_string(),
                field: format!("posturePolicies[{i}]"),
                message: "names no control of kubevigil's catalog".into(),
            });
        }
    }
    Ok(ids)
}

/// Converts Kubescape's exception policies. `justification` replaces the default one.
pub fn convert(
    text: &str,
    catalog: &[&dyn Control],
    justification: Option<&str>,
) -> Result<Conversion, ConvertError> {
    let doc: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => serde_norway::from_str(text).map_err(|e| ConvertError::Parse(e.to_string()))?,
    };
    let items = doc.as_array().ok_or(ConvertError::Shape(match doc {
        Value::Object(_) => "a mapping",
        Value::Null => "nothing",
        _ => "a scalar",
    }))?;
    let mut out = Conversion::default();
    for (index, item) in items.iter().enumerate() {
        if !item.is_object() {
            return Err(ConvertError::Shape(
                "a list with an item that is not a mapping",
            ));
        }
        let raw_name = item.get("name").and_then(Value::as_str).unwrap_or_default();
        let policy = if raw_name.is_empty() {
            format!("#{index}")
        } else {
            raw_name.to_string()
        };
        let field_err = |field: String, message: String| ConvertError::Field {
            policy: policy.clone(),
            field,
            message,
        };
        if let Some(t) = item.get("policyType").and_then(Value::as_str)
            && t != "postureExceptionPolicy"
        {
            out.warnings.push(format!(
                "policy {policy:?}: policyType {t:?} is not postureExceptionPolicy; skipped"
            ));
            continue;
        }
        let controls = controls_of(&policy, item, catalog)?;
        let mut groups: BTreeMap<Scope, Vec<ExceptionResource>> = BTreeMap::new();
        let resources = item
            .get("resources")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if resources.is_empty() {
            return Err(field_err(
                "resources".into(),
                "no resources: Kubescape requires at least one".into(),
            ));
        }
        for (r, res) in resources.iter().enumerate() {
            let attrs = res
                .get("attributes")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let field = |k: &str| format!("resources[{r}].attributes.{k}");
            let mut labels = BTreeMap::new();
            let (mut kinds, mut names, mut scope) = (None, None, Scope::Everywhere);
            for (key, value) in &attrs {
                let Some(value) = value.as_str() else {
                    return Err(field_err(field(key), "expected a string".into()));
                };
                match key.as_str() {
                    "kind" => kinds = regex_to_globs(value).map_err(|m| field_err(field(key), m))?,
                    "name" => names = regex_to_globs(value).map_err(|m| field_err(field(key), m))?,
                    "namespace" => {
                        scope = match regex_to_globs(value).map_err(|m| field_err(field(key), m))? {
                            None => Scope::Everywhere,
                            Some(globs) if globs.iter().all(|g| is_literal(g)) => {
                                if let [one] = globs.as_slice() {
                                    Scope::Namespace(one.clone())
                                } else {
                                    Scope::Namespaces(globs)
                                }
                            }
                            Some(_) => {
                                return Err(field_err(
                                    field(key),
                                    format!(
                                        "namespace pattern {value:?}: only literal names (or `a|b`) or `.*` can be converted"
                                    ),
                                ));
                            }
                        }
                    }
                    "cluster" => out.warnings.push(format!(
                        "policy {policy:?}: {} ({value:?}) dropped: an exception resource applies to the cluster it is in",
                        field(key)
                    )),
                    _ => {
                        labels.insert(key.clone(), value.to_string());
                    }
                }
            }
            if let Some(kinds) = &kinds
                && let Some(bad) = kinds.iter().find(|k| !is_literal(k))
            {
                return Err(field_err(
                    field("kind"),
                    format!("kind pattern {bad:?}: kinds must be literal names (or `a|b`)"),
                ));
            }
            let selector = (!labels.is_empty()).then_some(LabelSelector {
                match_labels: Some(labels),
                match_expressions: None,
            });
            let kinds: Vec<Option<String>> = match kinds {
                None => vec![None],
                Some(ks) => ks.into_iter().map(Some).collect(),
            };
            let names: Vec<Option<String>> = match names {
                None => vec![None],
                Some(ns) => ns.into_iter().map(Some).collect(),
            };
            let entries = groups.entry(scope).or_default();
            for kind in &kinds {
                for name in &names {
                    entries.push(ExceptionResource {
                        kind: kind.clone(),
                        name: name.clone(),
                        selector: selector.clone(),
                    });
                }
            }
        }
        let justification = justification.map(str::to_string).unwrap_or_else(|| {
            format!(
                "Converted from Kubescape postureExceptionPolicy {policy:?}; replace with the reason the risk is accepted."
            )
        });
        let name = object_name(raw_name, index);
        for (scope, resources) in groups {
            out.exceptions.push(match scope {
                Scope::Namespace(ns) => Converted::Namespaced(PostureException {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(ns),
                        ..ObjectMeta::default()
                    },
                    spec: PostureExceptionSpec {
                        controls: controls.clone(),
                        resources,
                        justification: justification.clone(),
                        expires_at: None,
                    },
                }),
                Scope::Namespaces(list) => Converted::Cluster(cluster(
                    &name,
                    &controls,
                    resources,
                    &justification,
                    Some(LabelSelector {
                        match_labels: None,
                        match_expressions: Some(vec![LabelSelectorRequirement {
                            key: "kubernetes.io/metadata.name".into(),
                            operator: "In".into(),
                            values: Some(list),
                        }]),
                    }),
                )),
                Scope::Everywhere => {
                    Converted::Cluster(cluster(&name, &controls, resources, &justification, None))
                }
            });
        }
    }
    Ok(out)
}

fn cluster(
    name: &str,
    controls: &[String],
    resources: Vec<ExceptionResource>,
    justification: &str,
    namespace_selector: Option<LabelSelector>,
) -> ClusterPostureException {
    ClusterPostureException {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        spec: ClusterPostureExceptionSpec {
            controls: controls.to_vec(),
            resources,
            namespace_selector,
            justification: justification.to_string(),
            expires_at: None,
        },
    }
}

/// The exceptions as YAML documents separated by `---`.
pub fn to_yaml(conversion: &Conversion) -> Result<String, String> {
    let mut out = String::new();
    for e in &conversion.exceptions {
        let doc = match e {
            Converted::Namespaced(x) => serde_norway::to_string(x),
            Converted::Cluster(x) => serde_norway::to_string(x),
        }
        .map_err(|e| e.to_string())?;
        out.push_str("---\n");
        out.push_str(&doc);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use kubevigil_engine::catalog;

    use super::*;

    fn run(text: &str) -> Result<Conversion, ConvertError> {
        convert(text, &catalog::all(), None)
    }

    #[test]
    fn globs_from_regexes() {
        assert_eq!(regex_to_globs(".*"), Ok(None));
        assert_eq!(regex_to_globs("web"), Ok(Some(vec!["web".into()])));
        assert_eq!(regex_to_globs("web-.*"), Ok(Some(vec!["web-*".into()])));
        assert_eq!(
            regex_to_globs("a\\.b|c.d"),
            Ok(Some(vec!["a.b".into(), "c?d".into()]))
        );
        for bad in ["web-[0-9]+", "^web$", "(a|b)", "a*", "\\d"] {
            assert!(regex_to_globs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn converts_the_documented_shapes() {
        let text = include_str!("../tests/fixtures/kubescape-exceptions.json");
        let c = run(text).expect("converts");
        let yaml = to_yaml(&c).expect("yaml");
        assert!(
            yaml.starts_with("---\napiVersion: kubevigil.io/v1beta1\n"),
            "{yaml}"
        );
        // One literal namespace: a PostureException there.
        let Converted::Namespaced(ns) = &c.exceptions[0] else {
            panic!("{:?}", c.exceptions[0]);
        };
        assert_eq!(ns.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(
            ns.metadata.name.as_deref(),
            Some("legacy-cache-writes-to-disk")
        );
        assert_eq!(ns.spec.controls, ["C-0017"]);
        assert_eq!(ns.spec.resources[0].kind.as_deref(), Some("Deployment"));
        assert_eq!(ns.spec.resources[0].name.as_deref(), Some("legacy-cache"));
        assert!(ns.spec.justification.contains("Kubescape"));
        // kube-system with any name, by regex: a cluster exception naming the namespace.
        let Converted::Cluster(sys) = &c.exceptions[1] else {
            panic!("{:?}", c.exceptions[1]);
        };
        let sel = sys.spec.namespace_selector.as_ref().expect("selector");
        assert_eq!(
            sel.match_expressions.as_ref().unwrap()[0].values,
            Some(vec!["kube-system".to_string(), "kube-public".to_string()])
        );
        assert!(sys.spec.controls.len() > 1, "controlID regex expanded");
        assert!(sys.spec.controls.iter().all(|c| c.starts_with("C-00")));
        // Labels and every namespace: a cluster exception with a label selector.
        let Converted::Cluster(dev) = &c.exceptions[2] else {
            panic!("{:?}", c.exceptions[2]);
        };
        assert!(dev.spec.namespace_selector.is_none());
        let labels = dev.spec.resources[0]
            .selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .expect("labels");
        assert_eq!(labels["environment"], "dev");
        // A framework's controls.
        let Converted::Cluster(fw) = &c.exceptions[3] else {
            panic!("{:?}", c.exceptions[3]);
        };
        assert!(fw.spec.controls.len() > 5);
        let entries: Vec<_> = fw
            .spec
            .resources
            .iter()
            .map(|r| {
                format!(
                    "{}/{}",
                    r.kind.as_deref().unwrap_or("*"),
                    r.name.as_deref().unwrap_or("*")
                )
            })
            .collect();
        assert_eq!(
            entries,
            [
                "DaemonSet/node-exporter",
                "DaemonSet/kube-state-*",
                "Deployment/node-exporter",
                "Deployment/kube-state-*"
            ]
        );
        assert!(
            c.warnings.iter().any(|w| w.contains("cluster")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn errors_name_the_policy_and_field() {
        let e = run(
            r#"[{"name": "x", "resources": [{"attributes": {"name": "web-[0-9]+"}}],
                        "posturePolicies": [{"controlID": "C-0017"}]}]"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("\"x\"") && e.contains("resources[0].attributes.name"),
            "{e}"
        );
        let e = run(
            r#"[{"name": "y", "resources": [{"attributes": {"kind": "Pod"}}],
                        "posturePolicies": [{"controlID": "C-9999"}]}]"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("posturePolicies[0]") && e.contains("catalog"),
            "{e}"
        );
        assert!(run("{}").unwrap_err().to_string().contains("mapping"));
        let e = run(r#"[{"name": "z", "posturePolicies": [{"controlID": "C-0017"}]}]"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("resources"), "{e}");
    }

    #[test]
    fn names_are_valid_object_names() {
        assert_eq!(
            object_name("Exclude kube-system!", 0),
            "exclude-kube-system"
        );
        assert_eq!(object_name("", 3), "kubescape-exception-3");
        assert_eq!(object_name("--", 1), "kubescape-exception-1");
    }
}
