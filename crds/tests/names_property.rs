//! Property test: every generated identity gets a valid, unique result name and valid labels.

use std::collections::HashMap;

use kubevigil_crds::identity::{
    BindingRef, ObjectRef, RoleRef, Subject, SubjectKind, Target, is_dns1123_subdomain,
    is_label_value,
};
use proptest::prelude::*;

/// Names that stress the rules: `:`, `.`, `-`, uppercase, unicode, separator look-alikes, and
/// lengths up to 253.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?",
        "[a-zA-Z0-9:._-]{1,30}",
        "system:[a-z:-]{1,12}",
        "[a-z]{1,4}(-role-|-clusterrole-|-rolebinding-|-clusterrolebinding-)[a-z]{1,4}",
        "[a-zé日本ü:-]{1,12}",
        "[a-z0-9]{240,253}",
        "[a-z0-9-]{120,253}",
    ]
}

fn namespace() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,3}",
        Just("default".to_string()),
        "[a-z0-9-]{50,63}"
    ]
}

fn object() -> impl Strategy<Value = Target> {
    (
        prop::sample::select(vec![
            ("apps/v1", "Deployment"),
            ("apps/v1", "StatefulSet"),
            ("v1", "Pod"),
            ("v1", "ServiceAccount"),
            ("v1", "Namespace"),
            ("batch/v1", "CronJob"),
            ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ]),
        prop::option::of(namespace()),
        name(),
    )
        .prop_map(|((api, kind), ns, name)| {
            Target::Object(ObjectRef::new(api, kind, ns.as_deref(), &name))
        })
}

fn triplet() -> impl Strategy<Value = Target> {
    (
        prop::sample::select(vec![
            SubjectKind::ServiceAccount,
            SubjectKind::User,
            SubjectKind::Group,
        ]),
        name(),
        namespace(),
        any::<bool>(),
        name(),
        any::<bool>(),
        name(),
        namespace(),
        any::<bool>(),
    )
        .prop_map(
            |(
                kind,
                subject_name,
                subject_ns,
                same_ns,
                role_name,
                cluster_role,
                binding_name,
                binding_ns,
                cluster_binding,
            )| {
                let binding_namespace = (!cluster_binding).then(|| binding_ns.clone());
                let subject_namespace = (kind == SubjectKind::ServiceAccount).then(|| {
                    if same_ns {
                        binding_ns.clone()
                    } else {
                        subject_ns
                    }
                });
                Target::Triplet {
                    subject: Subject {
                        kind,
                        name: subject_name,
                        namespace: subject_namespace,
                    },
                    role: RoleRef {
                        cluster: cluster_role,
                        name: role_name,
                        namespace: (!cluster_role).then(|| binding_ns.clone()),
                    },
                    binding: BindingRef {
                        cluster: cluster_binding,
                        name: binding_name,
                        namespace: binding_namespace,
                    },
                }
            },
        )
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![object(), triplet()]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn names_and_labels_are_valid(t in target()) {
        let name = t.result_name();
        prop_assert!(name.len() <= 253, "{name} longer than 253");
        prop_assert!(is_dns1123_subdomain(&name), "{name:?} is not a DNS-1123 subdomain");
        for (key, value) in t.labels() {
            prop_assert!(is_label_value(&value), "label {key}={value:?} invalid");
        }
    }

}

proptest! {
    // 200 cases of 20..80 identities each: about 10,000 identities per run.
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn distinct_identities_get_distinct_names(targets in prop::collection::vec(target(), 20..80)) {
        let mut seen: HashMap<(String, String), Target> = HashMap::new();
        for t in targets {
            let key = (t.result_namespace("kubevigil").to_string(), t.result_name());
            if let Some(previous) = seen.get(&key) {
                prop_assert_eq!(previous, &t, "two identities share the name {:?}", key);
            }
            seen.insert(key, t);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn near_identical_pairs_differ(base in name(), other in name()) {
        // `system:foo` vs `system-foo`, `Foo` vs `foo`: sanitising must never merge them.
        prop_assume!(base != other);
        let a = Target::Object(ObjectRef::new("v1", "ServiceAccount", Some("ns"), &base));
        let b = Target::Object(ObjectRef::new("v1", "ServiceAccount", Some("ns"), &other));
        prop_assert_ne!(a.result_name(), b.result_name());
    }
}

#[test]
fn separator_lookalikes_do_not_collide() {
    let t = |s: &str, r: &str| Target::Triplet {
        subject: Subject {
            kind: SubjectKind::User,
            name: s.into(),
            namespace: None,
        },
        role: RoleRef {
            cluster: false,
            name: r.into(),
            namespace: Some("ns".into()),
        },
        binding: BindingRef {
            cluster: false,
            name: "d".into(),
            namespace: Some("ns".into()),
        },
    };
    assert_ne!(
        t("a-role-b", "c").result_name(),
        t("a", "b-role-c").result_name()
    );
    let sa = Target::Object(ObjectRef::new(
        "v1",
        "ServiceAccount",
        Some("ns"),
        "a-role-c-rolebinding-d",
    ));
    let trip = Target::Triplet {
        subject: Subject {
            kind: SubjectKind::ServiceAccount,
            name: "a".into(),
            namespace: Some("ns".into()),
        },
        role: RoleRef {
            cluster: false,
            name: "c".into(),
            namespace: Some("ns".into()),
        },
        binding: BindingRef {
            cluster: false,
            name: "d".into(),
            namespace: Some("ns".into()),
        },
    };
    assert_ne!(sa.result_name(), trip.result_name());
}
