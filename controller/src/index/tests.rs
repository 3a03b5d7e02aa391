//! The event table driven event by event: owners, bindings and their roles, deletes, the
//! resync's missing, stale and orphaned results.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::json;

use super::*;

const SCANNER: &str = "0.1.0";
const HASH: &str = "h1";

fn kind(group: &str, kind: &str, plural: &str, namespaced: bool) -> Arc<KindInfo> {
    Arc::new(KindInfo {
        group: group.into(),
        version: "v1".into(),
        kind: kind.into(),
        plural: plural.into(),
        namespaced,
    })
}

fn deployment() -> Arc<KindInfo> {
    kind("apps", "Deployment", "deployments", true)
}
fn replicaset() -> Arc<KindInfo> {
    kind("apps", "ReplicaSet", "replicasets", true)
}
fn pod() -> Arc<KindInfo> {
    kind("", "Pod", "pods", true)
}
fn service_account() -> Arc<KindInfo> {
    kind("", "ServiceAccount", "serviceaccounts", true)
}
fn rbac(k: &str, plural: &str, namespaced: bool) -> Arc<KindInfo> {
    kind("rbac.authorization.k8s.io", k, plural, namespaced)
}
fn role_binding() -> Arc<KindInfo> {
    rbac("RoleBinding", "rolebindings", true)
}
fn cluster_role() -> Arc<KindInfo> {
    rbac("ClusterRole", "clusterroles", false)
}

fn all_kinds() -> Vec<Arc<KindInfo>> {
    vec![
        deployment(),
        replicaset(),
        pod(),
        service_account(),
        role_binding(),
        rbac("ClusterRoleBinding", "clusterrolebindings", false),
        rbac("Role", "roles", true),
        cluster_role(),
    ]
}

fn index() -> Index {
    Index::new("kubevigil", &all_kinds(), SCANNER, HASH)
}

fn key(kind: &Arc<KindInfo>, ns: Option<&str>, name: &str) -> TargetKey {
    TargetKey {
        kind: kind.clone(),
        namespace: ns.map(str::to_string),
        name: name.into(),
    }
}

/// Metadata with a UID derived from the name, a generation and a resourceVersion.
fn meta(name: &str, generation: Option<i64>, rv: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        uid: Some(format!("uid-{name}")),
        generation,
        resource_version: Some(rv.into()),
        labels: Some(BTreeMap::from([("app".to_string(), name.to_string())])),
        ..ObjectMeta::default()
    }
}

fn owned_by(mut m: ObjectMeta, api_version: &str, kind: &str, name: &str) -> ObjectMeta {
    m.owner_references = Some(vec![OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        controller: Some(true),
        ..OwnerReference::default()
    }]);
    m
}

fn binding_spec(subjects: &[&str]) -> BindingSpec {
    let subjects: Vec<Value> = subjects
        .iter()
        .map(|s| json!({"kind": "ServiceAccount", "name": s}))
        .collect();
    BindingSpec::from_json(
        &json!({
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": subjects,
        }),
        Some("ci"),
    )
}

fn result(ns: &str, name: &str) -> ResultRef {
    ResultRef {
        namespace: ns.into(),
        name: name.into(),
    }
}

fn info(fp: &str) -> ResultInfo {
    ResultInfo {
        fingerprint: fp.into(),
        scanner_version: SCANNER.into(),
        controls_hash: HASH.into(),
        related_inputs: None,
        source: None,
    }
}

/// A binding `ci/ci-edit` granting ClusterRole `edit` (which exists) to the given
/// ServiceAccounts of namespace `ci`.
fn index_with_binding(subjects: &[&str]) -> (Index, TargetKey) {
    let mut idx = index();
    assert!(
        idx.applied(
            key(&cluster_role(), None, "edit"),
            &meta("edit", None, "1"),
            None
        )
        .is_empty()
    );
    let b = key(&role_binding(), Some("ci"), "ci-edit");
    let actions = idx.applied(
        b.clone(),
        &meta("ci-edit", None, "10"),
        Some(binding_spec(subjects)),
    );
    assert_eq!(actions, vec![Action::Scan(b.clone())]);
    (idx, b)
}

#[test]
fn add_scans_and_status_only_change_does_nothing() {
    let mut idx = index();
    let d = key(&deployment(), Some("shop"), "web");
    assert_eq!(
        idx.applied(d.clone(), &meta("web", Some(1), "100"), None),
        vec![Action::Scan(d.clone())]
    );
    // Status update: new resourceVersion, same generation and labels.
    assert!(
        idx.applied(d.clone(), &meta("web", Some(1), "101"), None)
            .is_empty()
    );
    // Watch re-list: the same object again.
    assert!(
        idx.applied(d.clone(), &meta("web", Some(1), "101"), None)
            .is_empty()
    );
    // A spec change bumps the generation.
    assert_eq!(
        idx.applied(d.clone(), &meta("web", Some(2), "102"), None),
        vec![Action::Scan(d.clone())]
    );
    // A label change is a change too (controls inspect labels).
    let mut relabelled = meta("web", Some(2), "103");
    relabelled
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert("tier".into(), "front".into());
    assert_eq!(
        idx.applied(d.clone(), &relabelled, None),
        vec![Action::Scan(d)]
    );
}

#[test]
fn owned_child_is_not_scanned_but_orphan_and_foreign_owned_are() {
    let mut idx = index();
    let rs = key(&replicaset(), Some("shop"), "web-7d9f");
    let owned = owned_by(
        meta("web-7d9f", Some(1), "5"),
        "apps/v1",
        "Deployment",
        "web",
    );
    assert!(idx.applied(rs.clone(), &owned, None).is_empty());
    assert_eq!(idx.target_count(), 0);

    // A naked Pod is scanned.
    let p = key(&pod(), Some("shop"), "debug");
    assert_eq!(
        idx.applied(p.clone(), &meta("debug", None, "7"), None),
        vec![Action::Scan(p)]
    );
    // A Pod owned by a kind that is not watched is scanned itself.
    let p2 = key(&pod(), Some("shop"), "runner-0");
    let foreign = owned_by(
        meta("runner-0", None, "8"),
        "example.com/v1",
        "Runner",
        "runner",
    );
    assert_eq!(
        idx.applied(p2.clone(), &foreign, None),
        vec![Action::Scan(p2)]
    );
    // An owner reference that is not the controller does not count.
    let mut not_controller = owned_by(meta("web-x", Some(1), "9"), "apps/v1", "Deployment", "web");
    if let Some(refs) = not_controller.owner_references.as_mut() {
        refs[0].controller = None;
    }
    let rs2 = key(&replicaset(), Some("shop"), "web-x");
    assert_eq!(
        idx.applied(rs2.clone(), &not_controller, None),
        vec![Action::Scan(rs2)]
    );
}

#[test]
fn scaling_a_scalable_kind_is_not_a_change() {
    let mut idx = index();
    let d = key(&deployment(), Some("shop"), "web");
    let spec = |replicas: i64, image: &str| {
        kubevigil_crds::identity::spec_hash(&json!({
            "replicas": replicas,
            "template": {"spec": {"containers": [{"name": "c", "image": image}]}},
        }))
    };
    let first = spec(1, "web:1");
    assert_eq!(
        idx.applied_with_spec(d.clone(), &meta("web", Some(1), "1"), None, Some(&first)),
        vec![Action::Scan(d.clone())]
    );
    // `kubectl scale` bumps the generation; the spec without replicas is the same.
    let scaled = spec(5, "web:1");
    assert!(
        idx.applied_with_spec(d.clone(), &meta("web", Some(2), "2"), None, Some(&scaled))
            .is_empty()
    );
    // A new image is a change.
    let updated = spec(5, "web:2");
    assert_eq!(
        idx.applied_with_spec(d.clone(), &meta("web", Some(3), "3"), None, Some(&updated)),
        vec![Action::Scan(d)]
    );
}

#[test]
fn terminating_objects_are_not_scanned() {
    let mut idx = index();
    let p = key(&pod(), Some("shop"), "web-1");
    assert_eq!(
        idx.applied(p.clone(), &meta("web-1", None, "1"), None),
        vec![Action::Scan(p.clone())]
    );
    let mut terminating = meta("web-1", None, "2");
    terminating.labels = Some(BTreeMap::from([("app".into(), "changed".into())]));
    terminating.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
    ));
    assert!(idx.applied(p, &terminating, None).is_empty());
}

#[test]
fn own_scan_jobs_are_never_scanned() {
    let mut idx = index();
    let job = kind("batch", "Job", "jobs", true);
    let labelled = |name: &str, labels: &[(&str, &str)]| {
        let mut m = meta(name, Some(1), "3");
        m.labels = Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        );
        m
    };
    let own = labelled(
        "kubevigil-scan-1a2b3c4d",
        &[
            (crate::jobs::COMPONENT_LABEL, crate::jobs::COMPONENT),
            (labels::MANAGED_BY, labels::MANAGED_BY_VALUE),
        ],
    );
    let own_key = key(&job, Some("kubevigil"), "kubevigil-scan-1a2b3c4d");
    assert!(idx.applied(own_key, &own, None).is_empty());
    // A user's Job that only shares the component label is a workload like any other.
    let theirs = labelled(
        "nightly",
        &[(crate::jobs::COMPONENT_LABEL, crate::jobs::COMPONENT)],
    );
    let their_key = key(&job, Some("shop"), "nightly");
    assert_eq!(
        idx.applied(their_key.clone(), &theirs, None),
        vec![Action::Scan(their_key)]
    );
}

#[test]
fn adopted_child_loses_its_own_result() {
    let mut idx = index();
    let rs = key(&replicaset(), Some("shop"), "lonely");
    assert_eq!(
        idx.applied(rs.clone(), &meta("lonely", Some(1), "1"), None),
        vec![Action::Scan(rs.clone())]
    );
    let adopted = owned_by(meta("lonely", Some(1), "2"), "apps/v1", "Deployment", "web");
    assert_eq!(
        idx.applied(rs.clone(), &adopted, None),
        vec![
            Action::DeleteResults(vec![result("shop", "replicaset-lonely")]),
            Action::Forget(rs)
        ]
    );
}

#[test]
fn delete_of_simple_resource_deletes_its_result() {
    let mut idx = index();
    let sa = key(&service_account(), Some("shop"), "builder");
    idx.applied(sa.clone(), &meta("builder", None, "1"), None);
    assert_eq!(
        idx.deleted(sa.clone(), None),
        vec![
            Action::DeleteResults(vec![result("shop", "serviceaccount-builder")]),
            Action::Forget(sa.clone())
        ]
    );
    // A second delete (or one for an object never seen) does nothing.
    assert!(idx.deleted(sa, None).is_empty());
    // Cluster-scoped targets' results live in the install namespace.
    let ns_kind = kind("", "Namespace", "namespaces", false);
    let team = key(&ns_kind, None, "team-a");
    idx.applied(team.clone(), &meta("team-a", None, "3"), None);
    assert_eq!(
        idx.deleted(team.clone(), None),
        vec![
            Action::DeleteResults(vec![result("kubevigil", "namespace-team-a")]),
            Action::Forget(team)
        ]
    );
}

#[test]
fn binding_subject_removed_deletes_that_subjects_result() {
    let (mut idx, b) = index_with_binding(&["ci-bot", "deployer"]);
    let actions = idx.applied(
        b.clone(),
        &meta("ci-edit", None, "11"),
        Some(binding_spec(&["ci-bot"])),
    );
    assert_eq!(
        actions,
        vec![
            Action::DeleteResults(vec![result(
                "ci",
                "serviceaccount-deployer-clusterrole-edit-rolebinding-ci-edit"
            )]),
            Action::Scan(b.clone()),
        ]
    );
    assert_eq!(
        idx.result_refs(&b),
        vec![
            result("ci", "rolebinding-ci-edit"),
            result(
                "ci",
                "serviceaccount-ci-bot-clusterrole-edit-rolebinding-ci-edit"
            ),
        ]
    );
}

#[test]
fn binding_delete_deletes_every_subjects_result() {
    let (mut idx, b) = index_with_binding(&["ci-bot", "deployer"]);
    let spec = binding_spec(&["ci-bot", "deployer"]);
    assert_eq!(
        idx.deleted(b.clone(), Some(spec.clone())),
        vec![
            Action::DeleteResults(vec![
                result("ci", "rolebinding-ci-edit"),
                result(
                    "ci",
                    "serviceaccount-ci-bot-clusterrole-edit-rolebinding-ci-edit"
                ),
                result(
                    "ci",
                    "serviceaccount-deployer-clusterrole-edit-rolebinding-ci-edit"
                ),
            ]),
            Action::Forget(b.clone()),
        ]
    );
    // A binding the controller never saw (added while it was down): the delete event's
    // last state is enough to compute the names.
    let mut fresh = index();
    fresh.applied(
        key(&cluster_role(), None, "edit"),
        &meta("edit", None, "1"),
        None,
    );
    let actions = fresh.deleted(b.clone(), Some(binding_spec(&["deployer"])));
    assert_eq!(
        actions,
        vec![
            Action::DeleteResults(vec![
                result("ci", "rolebinding-ci-edit"),
                result(
                    "ci",
                    "serviceaccount-deployer-clusterrole-edit-rolebinding-ci-edit"
                ),
            ]),
            Action::Forget(b),
        ]
    );
}

#[test]
fn role_change_and_role_delete_rescan_its_bindings_and_delete_nothing() {
    let (mut idx, b) = index_with_binding(&["ci-bot"]);
    let other = key(&role_binding(), Some("ci"), "unrelated");
    let unrelated_spec = BindingSpec::from_json(
        &json!({"roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [{"kind": "User", "name": "alice"}]}),
        Some("ci"),
    );
    idx.applied(
        other.clone(),
        &meta("unrelated", None, "3"),
        Some(unrelated_spec),
    );
    let role = key(&cluster_role(), None, "edit");
    // Same role again (re-list): nothing.
    assert!(
        idx.applied(role.clone(), &meta("edit", None, "1"), None)
            .is_empty()
    );
    // The role's rules changed (new resourceVersion): its binding is rescanned, the other not.
    assert_eq!(
        idx.applied(role.clone(), &meta("edit", None, "2"), None),
        vec![Action::Scan(b.clone())]
    );
    let fp_before = idx.expected_fingerprint(&b).map(str::to_string);
    // Deleted: no result is deleted, but its binding is rescanned (its fingerprint covered
    // the role's); the other binding is untouched.
    assert_eq!(
        idx.deleted(role.clone(), None),
        vec![Action::Scan(b.clone())]
    );
    let fp_without = idx.expected_fingerprint(&b).map(str::to_string);
    assert_ne!(fp_without, fp_before);
    assert_eq!(
        fp_without.as_deref(),
        Some(
            binding_fingerprint(
                &kubevigil_crds::identity::object_fingerprint(&meta("ci-edit", None, "10")),
                None
            )
            .as_str()
        ),
        "what a scan Job writes for a binding whose role is gone"
    );
    // Deleting it again (a re-list after a watch restart) does nothing more.
    assert!(idx.deleted(role.clone(), None).is_empty());
    // Recreated: rescanned with the new role's fingerprint.
    assert_eq!(
        idx.applied(role, &meta("edit", None, "5"), None),
        vec![Action::Scan(b)]
    );
}

/// Found by the chaos scenario: a binding whose role was deleted kept the fingerprint of
/// its role, so its results (describing the deleted role's rules) counted as current for
/// as long as the controller ran, while a restarted controller rescanned them.
#[test]
fn a_running_controller_and_a_restarted_one_agree_after_a_role_delete() {
    let (mut running, b) = index_with_binding(&["ci-bot"]);
    running.deleted(key(&cluster_role(), None, "edit"), None);
    let mut restarted = index();
    restarted.applied(
        b.clone(),
        &meta("ci-edit", None, "10"),
        Some(binding_spec(&["ci-bot"])),
    );
    assert_eq!(
        running.expected_fingerprint(&b),
        restarted.expected_fingerprint(&b)
    );
}

#[test]
fn binding_deleted_after_its_role_deletes_every_subjects_result() {
    let (mut idx, b) = index_with_binding(&["ci-bot"]);
    idx.deleted(key(&cluster_role(), None, "edit"), None);
    assert_eq!(
        idx.deleted(b.clone(), Some(binding_spec(&["ci-bot"]))),
        vec![
            Action::DeleteResults(vec![
                result("ci", "rolebinding-ci-edit"),
                result(
                    "ci",
                    "serviceaccount-ci-bot-clusterrole-edit-rolebinding-ci-edit"
                ),
            ]),
            Action::Forget(b),
        ]
    );
}

#[test]
fn startup_with_current_results_starts_no_scan() {
    let mut idx = index();
    let d = key(&deployment(), Some("shop"), "web");
    let m = meta("web", Some(3), "50");
    let fp = kubevigil_crds::identity::object_fingerprint(&m);
    idx.set_results(HashMap::from([(
        result("shop", "deployment-web"),
        info(&fp),
    )]));
    assert!(idx.applied(d.clone(), &m, None).is_empty());
    // The same result written by an older scanner is stale.
    let mut idx = index();
    let mut old = info(&fp);
    old.scanner_version = "0.0.9".into();
    idx.set_results(HashMap::from([(result("shop", "deployment-web"), old)]));
    assert_eq!(idx.applied(d.clone(), &m, None), vec![Action::Scan(d)]);
}

#[test]
fn resync_finds_orphans_missing_and_stale() {
    let mut idx = index();
    let current = key(&deployment(), Some("shop"), "current");
    let missing = key(&deployment(), Some("shop"), "missing");
    let stale = key(&deployment(), Some("shop"), "stale");
    let rehashed = key(&deployment(), Some("shop"), "rehashed");
    for k in [&current, &missing, &stale, &rehashed] {
        idx.applied((*k).clone(), &meta(&k.name, Some(1), "1"), None);
    }
    let fp = |k: &TargetKey| idx.expected_fingerprint(k).unwrap_or_default().to_string();
    let mut other_hash = info(&fp(&rehashed));
    other_hash.controls_hash = "h0".into();
    idx.set_results(HashMap::from([
        (result("shop", "deployment-current"), info(&fp(&current))),
        (result("shop", "deployment-stale"), info("0000000000000000")),
        (result("shop", "deployment-rehashed"), other_hash),
        (result("shop", "deployment-gone"), info("1111111111111111")),
        (
            result("kubevigil", "namespace-gone"),
            info("2222222222222222"),
        ),
    ]));
    let (scans, orphans) = idx.resync();
    assert_eq!(scans, {
        let mut v = vec![missing, stale, rehashed];
        v.sort();
        v
    });
    assert_eq!(
        orphans,
        vec![
            result("kubevigil", "namespace-gone"),
            result("shop", "deployment-gone")
        ]
    );
}

#[test]
fn resync_expects_binding_triplets_only_when_the_role_exists() {
    let (mut idx, b) = index_with_binding(&["ci-bot"]);
    let fp = idx.expected_fingerprint(&b).unwrap_or_default().to_string();
    let triplet = result(
        "ci",
        "serviceaccount-ci-bot-clusterrole-edit-rolebinding-ci-edit",
    );
    idx.set_results(HashMap::from([
        (result("ci", "rolebinding-ci-edit"), info(&fp)),
        (triplet.clone(), info(&fp)),
    ]));
    assert_eq!(idx.resync(), (vec![], vec![]));
    // Role deleted behind the controller's back (its results listed as they were): the
    // binding grants nothing, its triplet results are orphans, and its own result (with
    // the deleted role's fingerprint) is stale.
    idx.deleted(key(&cluster_role(), None, "edit"), None);
    idx.set_results(HashMap::from([
        (result("ci", "rolebinding-ci-edit"), info(&fp)),
        (triplet.clone(), info(&fp)),
    ]));
    assert_eq!(idx.resync(), (vec![b], vec![triplet]));
}

#[test]
fn version_mismatches_are_counted() {
    let mut idx = index();
    let mut other = info("f");
    other.controls_hash = "h0".into();
    idx.set_results(HashMap::from([
        (result("a", "x"), info("f")),
        (result("a", "y"), other.clone()),
        (result("a", "z"), other),
    ]));
    let (n, example) = idx.version_mismatches();
    assert_eq!(n, 2);
    assert_eq!(example.map(|i| i.controls_hash.as_str()), Some("h0"));
}

#[test]
fn keys_of_kind_lists_targets_and_roles() {
    let (mut idx, b) = index_with_binding(&["ci-bot"]);
    let d = key(&deployment(), Some("shop"), "web");
    idx.applied(d.clone(), &meta("web", Some(1), "1"), None);
    assert_eq!(idx.keys_of_kind(&deployment()), vec![d]);
    assert_eq!(idx.keys_of_kind(&role_binding()), vec![b]);
    assert_eq!(
        idx.keys_of_kind(&cluster_role()),
        vec![key(&cluster_role(), None, "edit")]
    );
    assert!(idx.keys_of_kind(&pod()).is_empty());
}

#[test]
fn binding_spec_defaults_service_account_namespace() {
    let spec = BindingSpec::from_json(
        &json!({
            "roleRef": {"kind": "Role", "name": "r"},
            "subjects": [
                {"kind": "ServiceAccount", "name": "a"},
                {"kind": "ServiceAccount", "name": "b", "namespace": "other"},
                {"kind": "Group", "name": "system:authenticated"},
                {"kind": "Unknown", "name": "x"},
            ],
        }),
        Some("ns1"),
    );
    assert!(!spec.cluster_role);
    assert_eq!(spec.role_name, "r");
    let ns: Vec<Option<&str>> = spec
        .subjects
        .iter()
        .map(|s| s.namespace.as_deref())
        .collect();
    assert_eq!(ns, vec![Some("ns1"), Some("other"), None]);
}
