//! Live objects turned into engine objects, the roles bindings reference, and the identity of a
//! binding's triplet results. Pure.

use std::collections::HashSet;

use kube::api::{DynamicObject, TypeMeta};
use kube::discovery::ApiResource;
use kubevigil_crds::identity::{BindingRef, RoleRef, labels, sanitize_label_value};
use kubevigil_crds::target::TargetKey;

use kubevigil_engine::K8sObject;
use kubevigil_engine::object::str_at;

/// Converts a live object to an engine object: drops `metadata.managedFields` (large, never
/// inspected) and sets `apiVersion` and `kind` from the resource when missing (list items
/// usually lack them).
pub fn to_engine_object(mut obj: DynamicObject, ar: &ApiResource) -> Result<K8sObject, String> {
    obj.metadata.managed_fields = None;
    let typed = obj
        .types
        .as_ref()
        .is_some_and(|t| !t.api_version.is_empty() && !t.kind.is_empty());
    if !typed {
        obj.types = Some(TypeMeta {
            api_version: ar.api_version.clone(),
            kind: ar.kind.clone(),
        });
    }
    let value = serde_json::to_value(&obj).map_err(|e| e.to_string())?;
    K8sObject::from_value(value).map_err(|e| e.to_string())
}

/// What makes two objects the same object: API group, kind, namespace and name.
pub type ObjectKey = (String, String, Option<String>, String);

/// The identity key of an engine object (the version is left out: one object served at two
/// versions is still one object).
pub fn object_key(o: &K8sObject) -> ObjectKey {
    (
        o.group().to_string(),
        o.kind.clone(),
        o.namespace.clone(),
        o.name.clone(),
    )
}

fn is_rbac(o: &K8sObject) -> bool {
    o.group() == "rbac.authorization.k8s.io"
}

/// The role a RoleBinding or ClusterRoleBinding grants (a Role is always in the RoleBinding's
/// namespace; a ClusterRoleBinding can only grant a ClusterRole).
pub fn role_ref_of(binding: &K8sObject) -> Option<RoleRef> {
    if !is_rbac(binding) {
        return None;
    }
    let role_ref = binding.value.get("roleRef")?;
    let name = str_at(role_ref, "name")?;
    let namespace = Some(binding.namespace_or_default());
    match (binding.kind.as_str(), str_at(role_ref, "kind")?) {
        ("RoleBinding" | "ClusterRoleBinding", "ClusterRole") => {
            Some(RoleRef::new(true, name, namespace))
        }
        ("RoleBinding", "Role") => Some(RoleRef::new(false, name, namespace)),
        _ => None,
    }
}

/// The key of a Role or ClusterRole object; `None` for other objects.
pub fn role_key_of(role: &K8sObject) -> Option<RoleRef> {
    if !is_rbac(role) {
        return None;
    }
    let cluster = match role.kind.as_str() {
        "ClusterRole" => true,
        "Role" => false,
        _ => return None,
    };
    Some(RoleRef::new(
        cluster,
        &role.name,
        Some(role.namespace_or_default()),
    ))
}

/// The roles that the bindings among `objects` reference.
pub fn referenced_roles<'a>(objects: impl IntoIterator<Item = &'a K8sObject>) -> HashSet<RoleRef> {
    objects.into_iter().filter_map(role_ref_of).collect()
}

/// The binding identity of a RoleBinding or ClusterRoleBinding target.
pub fn binding_ref(key: &TargetKey) -> Option<BindingRef> {
    if !key.kind.is_binding() {
        return None;
    }
    let cluster = key.kind.kind == "ClusterRoleBinding";
    Some(BindingRef {
        cluster,
        name: key.name.clone(),
        namespace: if cluster {
            None
        } else {
            Some(key.namespace.clone().unwrap_or_else(|| "default".into()))
        },
    })
}

/// Label selector of the triplet results a binding may have produced. Labels are sanitised and
/// cut to 63 characters, so it can match other bindings' results too: check the resource ID
/// ([`resource_id_names_binding`]) before deleting.
pub fn triplet_selector(binding: &BindingRef) -> String {
    if binding.cluster {
        format!(
            "{}={}",
            labels::CLUSTERROLEBINDING_NAME,
            sanitize_label_value(&binding.name)
        )
    } else {
        format!(
            "{}={},{}={}",
            labels::ROLEBINDING_NAME,
            sanitize_label_value(&binding.name),
            labels::ROLEBINDING_NAMESPACE,
            sanitize_label_value(binding.namespace.as_deref().unwrap_or("default"))
        )
    }
}

/// Whether a triplet result's `kubevigil.io/resource-id` annotation names this binding. The ID
/// starts with the binding's and the role's IDs (sorted), five `/`-separated fields each; names
/// never contain `/`, so each field is compared exactly.
pub fn resource_id_names_binding(resource_id: &str, binding: &BindingRef) -> bool {
    let fields: Vec<&str> = resource_id.split('/').collect();
    if fields.len() < 10 {
        return false;
    }
    let kind = if binding.cluster {
        "ClusterRoleBinding"
    } else {
        "RoleBinding"
    };
    let namespace = binding.namespace.as_deref().unwrap_or("");
    fields.chunks(5).take(2).any(|id| {
        id[0] == "rbac.authorization.k8s.io"
            && id[2] == namespace
            && id[3] == kind
            && id[4] == binding.name
    })
}

#[cfg(test)]
mod tests {
    use kubevigil_crds::identity::{RoleRef, Subject, SubjectKind, Target};
    use serde_json::json;

    use super::*;

    fn object(v: serde_json::Value) -> K8sObject {
        K8sObject::from_value(v).unwrap()
    }

    #[test]
    fn list_items_get_their_type_and_lose_managed_fields() {
        let ar = ApiResource {
            group: "".into(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "ServiceAccount".into(),
            plural: "serviceaccounts".into(),
        };
        let item: DynamicObject = serde_json::from_value(json!({
            "metadata": {"name": "default", "namespace": "shop",
                         "managedFields": [{"manager": "kube-controller-manager"}]},
            "automountServiceAccountToken": false
        }))
        .unwrap();
        let o = to_engine_object(item, &ar).unwrap();
        assert_eq!(
            (o.api_version.as_str(), o.kind.as_str()),
            ("v1", "ServiceAccount")
        );
        assert_eq!(o.value["automountServiceAccountToken"], json!(false));
        assert!(o.metadata().get("managedFields").is_none());
        assert_eq!(
            object_key(&o),
            (
                "".into(),
                "ServiceAccount".into(),
                Some("shop".into()),
                "default".into()
            )
        );

        // An object that carries its type keeps it.
        let typed: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}
        }))
        .unwrap();
        let o = to_engine_object(typed, &ar).unwrap();
        assert_eq!(
            (o.api_version.as_str(), o.kind.as_str()),
            ("apps/v1", "Deployment")
        );
    }

    #[test]
    fn role_references() {
        let rb = object(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "b", "namespace": "ci"},
            "roleRef": {"kind": "Role", "name": "deployer"}
        }));
        let crb_role = object(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "bad"},
            "roleRef": {"kind": "Role", "name": "deployer"}
        }));
        let crb = object(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "admins"},
            "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"}
        }));
        let role = object(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "deployer", "namespace": "ci"}
        }));
        let other_ns_role = object(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "deployer", "namespace": "prod"}
        }));
        let cluster_admin = object(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "cluster-admin"}
        }));
        let refs = referenced_roles([&rb, &crb_role, &crb, &role]);
        assert_eq!(refs.len(), 2);
        assert!(refs.contains(&role_key_of(&role).unwrap()));
        assert!(refs.contains(&role_key_of(&cluster_admin).unwrap()));
        assert!(!refs.contains(&role_key_of(&other_ns_role).unwrap()));
        assert_eq!(role_key_of(&rb), None);
    }

    fn triplet(binding: BindingRef) -> Target {
        Target::Triplet {
            subject: Subject {
                kind: SubjectKind::ServiceAccount,
                name: "bot".into(),
                namespace: Some("ci".into()),
            },
            role: RoleRef {
                cluster: true,
                name: "edit".into(),
                namespace: None,
            },
            binding,
        }
    }

    #[test]
    fn binding_results_are_recognised_by_resource_id() {
        let key =
            TargetKey::parse("rbac.authorization.k8s.io/v1/rolebindings/RoleBinding/ci/ci-edit")
                .unwrap();
        let b = binding_ref(&key).unwrap();
        assert_eq!(
            triplet_selector(&b),
            "kubevigil.io/rolebinding-name=ci-edit,kubevigil.io/rolebinding-namespace=ci"
        );
        let id = triplet(b.clone()).resource_id();
        assert!(resource_id_names_binding(&id, &b), "{id}");

        let mut other = b.clone();
        other.name = "ci-edit-2".into();
        assert!(!resource_id_names_binding(&id, &other));
        let mut other_ns = b.clone();
        other_ns.namespace = Some("prod".into());
        assert!(!resource_id_names_binding(&id, &other_ns));
        assert!(!resource_id_names_binding(
            "apps/v1/ci/Deployment/ci-edit",
            &b
        ));

        let ckey = TargetKey::parse(
            "rbac.authorization.k8s.io/v1/clusterrolebindings/ClusterRoleBinding//admins",
        )
        .unwrap();
        let cb = binding_ref(&ckey).unwrap();
        assert_eq!(
            triplet_selector(&cb),
            "kubevigil.io/clusterrolebinding-name=admins"
        );
        assert!(resource_id_names_binding(
            &triplet(cb.clone()).resource_id(),
            &cb
        ));
        assert!(!resource_id_names_binding(&id, &cb));

        let deploy = TargetKey::parse("apps/v1/deployments/Deployment/shop/web").unwrap();
        assert_eq!(binding_ref(&deploy), None);
    }
}
