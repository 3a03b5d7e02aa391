//! Result names and labels from arbitrary identities: every name is a DNS-1123 subdomain of at
//! most 253 characters, every label value is valid, and two different identities never share a
//! name (checked pairwise between an object and a triplet built from the same strings).
#![no_main]

use kubevigil_crds::identity::{
    BindingRef, ObjectRef, RoleRef, Subject, SubjectKind, Target, is_dns1123_subdomain,
    is_label_value,
};
use libfuzzer_sys::fuzz_target;

fn check(t: &Target) -> String {
    let name = t.result_name();
    assert!(
        name.len() <= 253 && is_dns1123_subdomain(&name),
        "invalid name {name:?} for {t:?}"
    );
    for (k, v) in t.labels() {
        assert!(is_label_value(&v), "label {k}={v:?} invalid for {t:?}");
    }
    let _ = t.resource_id();
    let _ = t.wlid("c");
    name
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Fields separated by NUL: kind, namespace, name, role, binding, flags.
    let mut parts = text.split('\0');
    let mut next = || parts.next().unwrap_or("").to_string();
    let (kind, ns, name, role, binding, flags) = (next(), next(), next(), next(), next(), next());
    let flags = flags.as_bytes();
    let flag = |i: usize| flags.get(i).is_some_and(|b| b & 1 == 1);
    let ns_opt = (!ns.is_empty()).then(|| ns.clone());
    let object = Target::Object(ObjectRef::new("apps/v1", &kind, ns_opt.as_deref(), &name));
    let subject_kind = match flags.first().map(|b| b % 3) {
        Some(0) => SubjectKind::ServiceAccount,
        Some(1) => SubjectKind::User,
        _ => SubjectKind::Group,
    };
    let triplet = Target::Triplet {
        subject: Subject {
            kind: subject_kind,
            name: name.clone(),
            namespace: (subject_kind == SubjectKind::ServiceAccount)
                .then(|| if flag(1) { kind.clone() } else { ns.clone() }),
        },
        role: RoleRef {
            cluster: flag(2),
            name: role.clone(),
            namespace: (!flag(2)).then(|| ns.clone()),
        },
        binding: BindingRef {
            cluster: flag(3),
            name: binding,
            namespace: (!flag(3)).then(|| ns.clone()),
        },
    };
    let a = check(&object);
    let b = check(&triplet);
    assert_ne!(a, b, "{object:?} and {triplet:?} share a name");
    // Names are deterministic.
    assert_eq!(a, object.result_name());
});
