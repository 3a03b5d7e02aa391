//! SPEC's convergence invariant, computed from what the API server lists: every live target has
//! exactly one result set (a WorkloadConfigurationScan and a WorkloadConfigurationScanSummary),
//! that result is current (its fingerprint is the live object's), and no result exists without a
//! live target. Pure: the driver lists, this compares.
//!
//! The expected results are derived independently of the controller's event table, with the
//! crds crate's identity functions (result names, namespaces, fingerprints, `spec_hash` of the
//! scalable kinds), which are the same code the controller and the scan Job use:
//! - a target is an object of a watched kind, in a selected namespace (cluster-scoped objects
//!   always), not being deleted, whose controlling owner is not of a watched kind, and not one
//!   of kubevigil's own scan Jobs; Roles and ClusterRoles have no results of their own;
//! - a RoleBinding or ClusterRoleBinding has its own result plus one per (subject, role, binding)
//!   triplet when its role exists, all carrying the binding's and its role's fingerprint;
//! - a workload's result also carries the hash of its related inputs (the NetworkPolicies,
//!   Services, Ingresses, mounted PVCs and ConfigMaps that the engine's relations relate it to,
//!   by identity and resourceVersion: `kubevigil_engine::related`); a result whose hash differs
//!   is stale by relation.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubevigil_crds::identity::{
    BindingRef, ObjectRef, RoleRef, Subject, Target, binding_fingerprint, labels,
    object_fingerprint, object_fingerprint_with_spec, scalable_kind, spec_hash,
};
use kubevigil_engine::related::{PodFacts, RelatedFacts, find_kind, inputs_hash, related_to};
use serde_json::Value;

const RBAC: &str = "rbac.authorization.k8s.io";

/// The kinds of the chart's default `continuousScanning.matchingRules`, as (group, kind).
pub fn default_watched() -> BTreeSet<(String, String)> {
    [
        ("apps", "Deployment"),
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
        ("apps", "ReplicaSet"),
        ("batch", "Job"),
        ("batch", "CronJob"),
        ("", "Pod"),
        ("", "ReplicationController"),
        ("", "ServiceAccount"),
        ("", "Namespace"),
        (RBAC, "Role"),
        (RBAC, "ClusterRole"),
        (RBAC, "RoleBinding"),
        (RBAC, "ClusterRoleBinding"),
    ]
    .iter()
    .map(|(g, k)| ((*g).to_owned(), (*k).to_owned()))
    .collect()
}

/// Which objects and results belong to the installation under test.
#[derive(Clone, Debug)]
pub struct Scope {
    /// The install namespace (results of cluster-scoped targets).
    pub install_namespace: String,
    /// The selected namespaces (`includeNamespaces`).
    pub namespaces: BTreeSet<String>,
    /// The watched kinds, (group, kind).
    pub watched: BTreeSet<(String, String)>,
}

impl Scope {
    fn selected(&self, namespace: Option<&str>) -> bool {
        namespace.is_none_or(|ns| self.namespaces.contains(ns))
    }

    /// Whether a listed result is this installation's (the controller's own rule: a result of
    /// a cluster-scoped target when in the install namespace, else when its namespace is
    /// selected).
    pub fn owns_result(&self, namespace: &str, result_labels: &BTreeMap<String, String>) -> bool {
        let cluster_scoped =
            if result_labels.get(labels::RBAC_RESOURCE).map(String::as_str) == Some("true") {
                result_labels.contains_key(labels::CLUSTERROLEBINDING_NAME)
            } else {
                !result_labels.contains_key(labels::NAMESPACE)
            };
        if cluster_scoped {
            namespace == self.install_namespace
        } else {
            self.namespaces.contains(namespace)
        }
    }
}

/// A live object as listed: its kind and its JSON (`metadata` and the rest, as a
/// `DynamicObject` holds it).
#[derive(Clone, Debug)]
pub struct LiveObject {
    /// API group ("" for core).
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Its metadata.
    pub meta: ObjectMeta,
    /// Everything else (`spec`, `roleRef`, `subjects`...).
    pub data: Value,
}

impl LiveObject {
    fn namespace(&self) -> Option<&str> {
        self.meta.namespace.as_deref().filter(|n| !n.is_empty())
    }

    fn name(&self) -> &str {
        self.meta.name.as_deref().unwrap_or_default()
    }

    fn describe(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name()),
            None => format!("{} {}", self.kind, self.name()),
        }
    }
}

/// A result (scan and summary share the name), by namespace and name.
pub type ResultKey = (String, String);

/// What a target's result must look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    /// The fingerprint it must carry.
    pub fingerprint: String,
    /// The related-inputs hash it must carry (workloads only).
    pub related_inputs: Option<String>,
    /// The target, for messages.
    pub target: String,
}

/// The results the live objects call for.
#[derive(Clone, Debug, Default)]
pub struct Expectation {
    /// Result → what it must carry.
    pub results: BTreeMap<ResultKey, Expected>,
    /// Targets by kind (a binding counts once, however many triplets it has).
    pub targets: BTreeMap<String, usize>,
    /// Objects being deleted (their delete event is still to come); the check waits for them.
    pub unsettled: Vec<String>,
}

impl Expectation {
    /// Number of targets.
    pub fn target_count(&self) -> usize {
        self.targets.values().sum()
    }
}

/// The subjects of a binding as the controller reads them (ServiceAccount, User, Group; a
/// ServiceAccount without a namespace is in the binding's, or `default`).
fn subjects(data: &Value, binding_namespace: Option<&str>) -> BTreeSet<Subject> {
    data.get("subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| Subject::from_json(s, binding_namespace))
        .collect()
}

/// The results `objects` call for in `scope`.
pub fn expected_results(objects: &[LiveObject], scope: &Scope) -> Expectation {
    let watched =
        |group: &str, kind: &str| scope.watched.contains(&(group.to_owned(), kind.to_owned()));
    // Role fingerprints: (namespace or None for ClusterRoles, name).
    let mut roles: BTreeMap<(Option<String>, String), String> = BTreeMap::new();
    for o in objects
        .iter()
        .filter(|o| o.group == RBAC && (o.kind == "Role" || o.kind == "ClusterRole"))
    {
        let ns = (o.kind == "Role").then(|| o.namespace().unwrap_or("default").to_owned());
        roles.insert((ns, o.name().to_owned()), object_fingerprint(&o.meta));
    }
    // The related objects of the selected namespaces and the cluster-wide ones, as the engine's
    // relations read them.
    let related_facts: Vec<RelatedFacts> = objects
        .iter()
        .filter(|o| scope.selected(o.namespace()))
        .filter_map(|o| {
            let kind = find_kind(&o.group, &o.kind).filter(|k| k.watched())?;
            Some(RelatedFacts::of(
                kind,
                o.namespace(),
                o.name(),
                o.meta.resource_version.as_deref().unwrap_or_default(),
                o.data.get("spec").unwrap_or(&Value::Null),
            ))
        })
        .collect();
    let related_inputs = |o: &LiveObject| -> Option<String> {
        let own: Option<serde_json::Map<String, Value>> = o.meta.labels.as_ref().map(|l| {
            l.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect()
        });
        let pod = PodFacts::of_parts(
            &o.kind,
            own.as_ref(),
            o.data.get("spec").unwrap_or(&Value::Null),
        )?;
        let ns = o.namespace().unwrap_or_default();
        let candidates: Vec<&RelatedFacts> = related_facts
            .iter()
            .filter(|f| f.namespace.is_none() || f.namespace.as_deref() == Some(ns))
            .collect();
        Some(inputs_hash(related_to(&pod, ns, &candidates)))
    };
    let mut out = Expectation::default();
    for o in objects {
        if !watched(&o.group, &o.kind) || !scope.selected(o.namespace()) {
            continue;
        }
        if o.group == RBAC && (o.kind == "Role" || o.kind == "ClusterRole") {
            continue;
        }
        let owned_by_watched = o
            .meta
            .owner_references
            .iter()
            .flatten()
            .filter(|r| r.controller == Some(true))
            .any(|r| {
                let group = kubevigil_crds::identity::split_api_version(&r.api_version).0;
                watched(group, &r.kind)
            });
        let own_scan_job = o.meta.labels.as_ref().is_some_and(|l| {
            l.get("app.kubernetes.io/component").map(String::as_str) == Some("scan-job")
                && l.get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGED_BY_VALUE)
        });
        if owned_by_watched || own_scan_job {
            continue;
        }
        if o.meta.deletion_timestamp.is_some() {
            // Its delete event is still to come; a child of a watched owner never counts.
            out.unsettled.push(o.describe());
            continue;
        }
        *out.targets.entry(o.kind.clone()).or_default() += 1;
        let api_version = if o.group.is_empty() {
            o.version.clone()
        } else {
            format!("{}/{}", o.group, o.version)
        };
        let own = Target::Object(ObjectRef::new(
            &api_version,
            &o.kind,
            o.namespace(),
            o.name(),
        ));
        let is_binding =
            o.group == RBAC && (o.kind == "RoleBinding" || o.kind == "ClusterRoleBinding");
        let workload_inputs = if matches!(o.group.as_str(), "" | "apps" | "batch") {
            related_inputs(o)
        } else {
            None
        };
        let mut push = |target: &Target, fingerprint: &str, what: String| {
            out.results.insert(
                (
                    target.result_namespace(&scope.install_namespace).to_owned(),
                    target.result_name(),
                ),
                Expected {
                    fingerprint: fingerprint.to_owned(),
                    related_inputs: workload_inputs.clone(),
                    target: what,
                },
            );
        };
        if !is_binding {
            let spec = scalable_kind(&o.group, &o.kind)
                .then(|| spec_hash(o.data.get("spec").unwrap_or(&Value::Null)));
            let fp = object_fingerprint_with_spec(&o.meta, spec.as_deref());
            push(&own, &fp, o.describe());
            continue;
        }
        let cluster_binding = o.kind == "ClusterRoleBinding";
        let role_ref = o.data.get("roleRef");
        let role_kind = role_ref
            .and_then(|r| r.get("kind"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let role_name = role_ref
            .and_then(|r| r.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let cluster_role = role_kind == "ClusterRole";
        let role_ns = (!cluster_role).then(|| o.namespace().unwrap_or_default().to_owned());
        let role_watched = watched(RBAC, if cluster_role { "ClusterRole" } else { "Role" });
        let role_fp = roles.get(&(role_ns.clone(), role_name.clone()));
        let fp = binding_fingerprint(&object_fingerprint(&o.meta), role_fp.map(String::as_str));
        push(&own, &fp, o.describe());
        if role_fp.is_none() && role_watched {
            continue;
        }
        for subject in subjects(&o.data, o.namespace()) {
            let triplet = Target::Triplet {
                subject: subject.clone(),
                role: RoleRef {
                    cluster: cluster_role,
                    name: role_name.clone(),
                    namespace: role_ns.clone(),
                },
                binding: BindingRef {
                    cluster: cluster_binding,
                    name: o.name().to_owned(),
                    namespace: (!cluster_binding)
                        .then(|| o.namespace().unwrap_or_default().to_owned()),
                },
            };
            let what = format!(
                "{} {} via {} ({role_kind} {role_name})",
                subject.kind.as_str(),
                subject.name,
                o.describe()
            );
            push(&triplet, &fp, what);
        }
    }
    out.unsettled.sort();
    out
}

/// Which of the two result kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ResultKind {
    /// WorkloadConfigurationScan.
    Scan,
    /// WorkloadConfigurationScanSummary.
    Summary,
}

impl ResultKind {
    /// `wcs` or `wcss`.
    pub fn short(self) -> &'static str {
        match self {
            ResultKind::Scan => "wcs",
            ResultKind::Summary => "wcss",
        }
    }
}

/// A listed result object.
#[derive(Clone, Debug)]
pub struct ObservedResult {
    /// Scan or summary.
    pub kind: ResultKind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its `kubevigil.io/fingerprint` annotation.
    pub fingerprint: Option<String>,
    /// Its `kubevigil.io/related-inputs` annotation.
    pub related_inputs: Option<String>,
}

/// The outcome of one check of the invariant.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Targets by kind.
    pub targets: BTreeMap<String, usize>,
    /// Result sets the targets call for.
    pub expected: usize,
    /// Result objects of the installation that were compared (scans plus summaries).
    pub results_checked: usize,
    /// Expected results without a scan or a summary.
    pub missing: Vec<String>,
    /// Results whose fingerprint is not the live object's, or whose related inputs are not the
    /// live related objects'.
    pub stale: Vec<String>,
    /// Of `stale`, those stale by relation only (fingerprint current, related inputs not).
    pub stale_by_relation: usize,
    /// Results no live target calls for.
    pub orphans: Vec<String>,
    /// Objects still being deleted.
    pub unsettled: Vec<String>,
}

impl Report {
    /// Whether the invariant holds (and nothing is still being deleted).
    pub fn holds(&self) -> bool {
        self.missing.is_empty()
            && self.stale.is_empty()
            && self.orphans.is_empty()
            && self.unsettled.is_empty()
    }

    /// Number of targets.
    pub fn target_count(&self) -> usize {
        self.targets.values().sum()
    }

    /// One line of counts.
    pub fn counts(&self) -> String {
        format!(
            "targets checked {} {:?}, result sets expected {}, result objects checked {}, \
             missing {}, stale {} (by relation {}), orphans {}, being deleted {}",
            self.target_count(),
            self.targets,
            self.expected,
            self.results_checked,
            self.missing.len(),
            self.stale.len(),
            self.stale_by_relation,
            self.orphans.len(),
            self.unsettled.len()
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.counts())?;
        for (title, list) in [
            ("missing", &self.missing),
            ("stale", &self.stale),
            ("orphans", &self.orphans),
            ("being deleted", &self.unsettled),
        ] {
            for item in list {
                writeln!(f, "  {title}: {item}")?;
            }
        }
        Ok(())
    }
}

/// Compares the listed results with what the live objects call for.
pub fn check(expectation: &Expectation, observed: &[ObservedResult], scope: &Scope) -> Report {
    let mut report = Report {
        targets: expectation.targets.clone(),
        expected: expectation.results.len(),
        unsettled: expectation.unsettled.clone(),
        ..Report::default()
    };
    let mut seen: BTreeMap<(ResultKey, ResultKind), &ObservedResult> = BTreeMap::new();
    for r in observed
        .iter()
        .filter(|r| scope.owns_result(&r.namespace, &r.labels))
    {
        report.results_checked += 1;
        let key = (r.namespace.clone(), r.name.clone());
        match expectation.results.get(&key) {
            None => report.orphans.push(format!(
                "{} {}/{} (target {} {}/{})",
                r.kind.short(),
                r.namespace,
                r.name,
                r.labels.get(labels::KIND).map_or("?", String::as_str),
                r.labels.get(labels::NAMESPACE).map_or("-", String::as_str),
                r.labels.get(labels::NAME).map_or("?", String::as_str),
            )),
            Some(want) => {
                if r.fingerprint.as_deref() != Some(want.fingerprint.as_str()) {
                    report.stale.push(format!(
                        "{} {}/{}: fingerprint {:?}, live {} ({})",
                        r.kind.short(),
                        r.namespace,
                        r.name,
                        r.fingerprint,
                        want.fingerprint,
                        want.target
                    ));
                } else if want.related_inputs.is_some() && r.related_inputs != want.related_inputs {
                    report.stale_by_relation += 1;
                    report.stale.push(format!(
                        "{} {}/{}: related inputs {:?}, live {:?} ({})",
                        r.kind.short(),
                        r.namespace,
                        r.name,
                        r.related_inputs,
                        want.related_inputs,
                        want.target
                    ));
                }
            }
        }
        seen.insert((key, r.kind), r);
    }
    for (key, want) in &expectation.results {
        for kind in [ResultKind::Scan, ResultKind::Summary] {
            if !seen.contains_key(&(key.clone(), kind)) {
                report.missing.push(format!(
                    "{} {}/{} ({})",
                    kind.short(),
                    key.0,
                    key.1,
                    want.target
                ));
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
    use serde_json::json;

    const NS: &str = "chaos";
    const INSTALL: &str = "chaos-kv";

    fn scope() -> Scope {
        Scope {
            install_namespace: INSTALL.into(),
            namespaces: [NS.to_owned()].into(),
            watched: default_watched(),
        }
    }

    fn obj(group: &str, kind: &str, ns: Option<&str>, name: &str, data: Value) -> LiveObject {
        LiveObject {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            meta: ObjectMeta {
                name: Some(name.into()),
                namespace: ns.map(str::to_owned),
                uid: Some(format!("uid-{kind}-{name}")),
                resource_version: Some("7".into()),
                generation: Some(1),
                ..ObjectMeta::default()
            },
            data,
        }
    }

    fn owned(mut o: LiveObject, kind: &str, api_version: &str) -> LiveObject {
        o.meta.owner_references = Some(vec![OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: "owner".into(),
            uid: "uid-owner".into(),
            controller: Some(true),
            ..OwnerReference::default()
        }]);
        o
    }

    fn world() -> Vec<LiveObject> {
        let rb = |name: &str, role_kind: &str, role: &str| {
            obj(
                RBAC,
                "RoleBinding",
                Some(NS),
                name,
                json!({
                    "roleRef": {"apiGroup": RBAC, "kind": role_kind, "name": role},
                    "subjects": [
                        {"kind": "ServiceAccount", "name": "sa0"},
                        {"kind": "User", "apiGroup": RBAC, "name": "system:chaos"},
                        {"kind": "ServiceAccount", "name": "b", "namespace": "elsewhere"},
                    ],
                }),
            )
        };
        vec![
            obj(
                "apps",
                "Deployment",
                Some(NS),
                "d0",
                json!({"spec": {"replicas": 1}}),
            ),
            owned(
                obj(
                    "apps",
                    "ReplicaSet",
                    Some(NS),
                    "d0-abc",
                    json!({"spec": {}}),
                ),
                "Deployment",
                "apps/v1",
            ),
            owned(
                obj("", "Pod", Some(NS), "d0-abc-x", json!({})),
                "ReplicaSet",
                "apps/v1",
            ),
            obj("", "Pod", Some(NS), "naked", json!({})),
            obj("", "ServiceAccount", Some(NS), "sa0", json!({})),
            obj(RBAC, "Role", Some(NS), "r0", json!({"rules": []})),
            rb("rb0", "Role", "r0"),
            rb("rb1", "Role", "missing"),
            obj("", "Namespace", None, NS, json!({})),
            // Out of scope: another namespace's Deployment.
            obj(
                "apps",
                "Deployment",
                Some("other"),
                "d9",
                json!({"spec": {}}),
            ),
        ]
    }

    fn observe(expectation: &Expectation, objects: &[LiveObject]) -> Vec<ObservedResult> {
        let _ = objects;
        let mut out = Vec::new();
        for ((ns, name), want) in &expectation.results {
            for kind in [ResultKind::Scan, ResultKind::Summary] {
                let mut l = BTreeMap::new();
                if ns != INSTALL {
                    l.insert(labels::NAMESPACE.to_owned(), ns.clone());
                }
                out.push(ObservedResult {
                    kind,
                    namespace: ns.clone(),
                    name: name.clone(),
                    labels: l,
                    fingerprint: Some(want.fingerprint.clone()),
                    related_inputs: want.related_inputs.clone(),
                });
            }
        }
        out
    }

    #[test]
    fn targets_owners_bindings_and_roles() {
        let e = expected_results(&world(), &scope());
        let names: BTreeSet<String> = e
            .results
            .keys()
            .map(|(ns, n)| format!("{ns}/{n}"))
            .collect();
        let want: BTreeSet<String> = [
            format!("{NS}/deployment-d0"),
            format!("{NS}/pod-naked"),
            format!("{NS}/serviceaccount-sa0"),
            format!("{NS}/rolebinding-rb0"),
            format!("{NS}/rolebinding-rb1"),
            format!("{NS}/serviceaccount-sa0-role-r0-rolebinding-rb0"),
            format!("{INSTALL}/namespace-{NS}"),
        ]
        .into();
        // Plus two hashed triplet names (a user with ':' and a foreign ServiceAccount).
        assert!(want.is_subset(&names), "{names:?}");
        assert_eq!(names.len(), want.len() + 2, "{names:?}");
        assert_eq!(e.target_count(), 6, "{:?}", e.targets);
        // A binding's results carry its and its role's fingerprint; the triplets the same.
        let rb0 = &e.results[&(NS.to_owned(), "rolebinding-rb0".to_owned())];
        let t = &e.results[&(
            NS.to_owned(),
            "serviceaccount-sa0-role-r0-rolebinding-rb0".to_owned(),
        )];
        assert_eq!(rb0.fingerprint, t.fingerprint);
        let rb1 = &e.results[&(NS.to_owned(), "rolebinding-rb1".to_owned())];
        assert_ne!(rb0.fingerprint, rb1.fingerprint);
    }

    #[test]
    fn scaling_does_not_change_the_expected_fingerprint_but_the_template_does() {
        let fp = |spec: Value| {
            let o = vec![obj(
                "apps",
                "Deployment",
                Some(NS),
                "d",
                json!({ "spec": spec }),
            )];
            expected_results(&o, &scope()).results[&(NS.to_owned(), "deployment-d".to_owned())]
                .fingerprint
                .clone()
        };
        let base =
            fp(json!({"replicas": 0, "template": {"spec": {"containers": [{"image": "a"}]}}}));
        assert_eq!(
            base,
            fp(json!({"replicas": 3, "template": {"spec": {"containers": [{"image": "a"}]}}}))
        );
        assert_ne!(
            base,
            fp(json!({"replicas": 0, "template": {"spec": {"containers": [{"image": "b"}]}}}))
        );
    }

    #[test]
    fn exact_results_hold_and_each_kind_of_drift_is_named() {
        let objects = world();
        let s = scope();
        let e = expected_results(&objects, &s);
        let good = observe(&e, &objects);
        let r = check(&e, &good, &s);
        assert!(r.holds(), "{r}");
        assert_eq!(r.results_checked, 2 * e.results.len());

        // Missing: a summary deleted.
        let mut missing = good.clone();
        missing.retain(|o| !(o.name == "deployment-d0" && o.kind == ResultKind::Summary));
        let r = check(&e, &missing, &s);
        assert!(!r.holds());
        assert_eq!(r.missing.len(), 1, "{r}");
        assert!(
            r.missing[0].contains("wcss") && r.missing[0].contains("deployment-d0"),
            "{r}"
        );

        // Stale: an old fingerprint.
        let mut stale = good.clone();
        if let Some(o) = stale.iter_mut().find(|o| o.name == "rolebinding-rb0") {
            o.fingerprint = Some("0000".into());
        }
        let r = check(&e, &stale, &s);
        assert_eq!(
            (r.stale.len(), r.missing.len(), r.orphans.len()),
            (1, 0, 0),
            "{r}"
        );

        // Orphan: a result of a deleted Deployment; one of another installation is ignored.
        let mut orphan = good.clone();
        let mut l = BTreeMap::new();
        l.insert(labels::NAMESPACE.to_owned(), NS.to_owned());
        orphan.push(ObservedResult {
            kind: ResultKind::Scan,
            namespace: NS.into(),
            name: "deployment-gone".into(),
            labels: l.clone(),
            fingerprint: Some("x".into()),
            related_inputs: None,
        });
        orphan.push(ObservedResult {
            kind: ResultKind::Scan,
            namespace: "other".into(),
            name: "deployment-d9".into(),
            labels: l,
            fingerprint: Some("x".into()),
            related_inputs: None,
        });
        let r = check(&e, &orphan, &s);
        assert_eq!(
            (r.stale.len(), r.missing.len(), r.orphans.len()),
            (0, 0, 1),
            "{r}"
        );
        assert!(r.orphans[0].contains("deployment-gone"), "{r}");
    }

    #[test]
    fn objects_being_deleted_keep_the_check_waiting() {
        let mut objects = world();
        objects[0].meta.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        let e = expected_results(&objects, &scope());
        assert_eq!(e.unsettled, vec![format!("Deployment {NS}/d0")]);
        let r = check(&e, &[], &scope());
        assert!(!r.holds());
        // A child of a watched owner being deleted is no target: nothing to wait for.
        let mut objects = world();
        objects[2].meta.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        assert!(expected_results(&objects, &scope()).unsettled.is_empty());
    }

    #[test]
    fn own_scan_jobs_and_unwatched_kinds_are_not_targets() {
        let mut job = obj("batch", "Job", Some(NS), "kubevigil-scan-1", json!({}));
        job.meta.labels = Some(
            [
                (
                    "app.kubernetes.io/component".to_owned(),
                    "scan-job".to_owned(),
                ),
                (
                    labels::MANAGED_BY.to_owned(),
                    labels::MANAGED_BY_VALUE.to_owned(),
                ),
            ]
            .into(),
        );
        let cm = obj("", "ConfigMap", Some(NS), "c", json!({}));
        let user_job = obj("batch", "Job", Some(NS), "mine", json!({}));
        let e = expected_results(&[job, cm, user_job], &scope());
        assert_eq!(e.results.len(), 1);
        assert!(
            e.results
                .contains_key(&(NS.to_owned(), "job-mine".to_owned()))
        );
    }

    #[test]
    fn a_changed_related_object_makes_the_workloads_it_selects_stale_by_relation() {
        let s = scope();
        let deploy = |name: &str| {
            obj(
                "apps",
                "Deployment",
                Some(NS),
                name,
                json!({"spec": {"template": {"metadata": {"labels": {"app": name}}}}}),
            )
        };
        let policy = |rv: &str| {
            let mut o = obj(
                "networking.k8s.io",
                "NetworkPolicy",
                Some(NS),
                "np0",
                json!({"spec": {"podSelector": {"matchLabels": {"app": "d0"}}}}),
            );
            o.meta.resource_version = Some(rv.into());
            o
        };
        let before = vec![deploy("d0"), deploy("d1"), policy("7")];
        let e = expected_results(&before, &s);
        let observed = observe(&e, &before);
        assert!(check(&e, &observed, &s).holds());
        // The policy changes; the results still record the old inputs: d0's are stale, d1's not.
        let after = vec![deploy("d0"), deploy("d1"), policy("8")];
        let r = check(&expected_results(&after, &s), &observed, &s);
        assert_eq!(r.stale_by_relation, 2, "{r}");
        assert!(r.stale.iter().all(|l| l.contains("deployment-d0")), "{r}");
        // A result without the annotation (an older scanner) is stale too.
        let mut unannotated = observed.clone();
        for o in &mut unannotated {
            o.related_inputs = None;
        }
        assert_eq!(check(&e, &unannotated, &s).stale_by_relation, 4);
    }
}
