//! What the controller tracks and scan Jobs receive: kinds (resolved by discovery) and targets
//! (objects to scan), with the compact string form passed from the one to the other.

use std::fmt;
use std::sync::Arc;

use kube::discovery::ApiResource;

use crate::identity::{ObjectRef, Target};

/// A watched kind, as resolved by API discovery.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KindInfo {
    /// API group (empty for core).
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Plural resource name.
    pub plural: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
}

impl KindInfo {
    /// `group/version` or `version`.
    pub fn api_version(&self) -> String {
        crate::identity::join_api_version(&self.group, &self.version)
    }

    /// The resource for kube's dynamic API.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version: self.api_version(),
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }

    /// Whether this is a RoleBinding or ClusterRoleBinding.
    pub fn is_binding(&self) -> bool {
        self.group == "rbac.authorization.k8s.io"
            && (self.kind == "RoleBinding" || self.kind == "ClusterRoleBinding")
    }

    /// Whether this is a Role or ClusterRole.
    pub fn is_role(&self) -> bool {
        self.group == "rbac.authorization.k8s.io"
            && (self.kind == "Role" || self.kind == "ClusterRole")
    }
}

/// One object the controller scans (a workload, a ServiceAccount, a binding...).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetKey {
    /// Its kind.
    pub kind: Arc<KindInfo>,
    /// Its namespace; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
}

/// Errors parsing a target's string form.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid target {0:?}: expected group/version/plural/Kind/namespace/name")]
pub struct TargetParseError(pub String);

impl TargetKey {
    /// The identity used for result names.
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            group: self.kind.group.clone(),
            version: self.kind.version.clone(),
            kind: self.kind.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// The result identity of the object itself.
    pub fn target(&self) -> Target {
        Target::Object(self.object_ref())
    }

    /// Parses the string form written by `Display`.
    pub fn parse(s: &str) -> Result<Self, TargetParseError> {
        let parts: Vec<&str> = s.splitn(6, '/').collect();
        let [group, version, plural, kind, namespace, name] = parts.as_slice() else {
            return Err(TargetParseError(s.to_string()));
        };
        if version.is_empty() || plural.is_empty() || kind.is_empty() || name.is_empty() {
            return Err(TargetParseError(s.to_string()));
        }
        Ok(TargetKey {
            kind: Arc::new(KindInfo {
                group: (*group).to_string(),
                version: (*version).to_string(),
                kind: (*kind).to_string(),
                plural: (*plural).to_string(),
                namespaced: !namespace.is_empty(),
            }),
            namespace: (!namespace.is_empty()).then(|| (*namespace).to_string()),
            name: (*name).to_string(),
        })
    }
}

/// `group/version/plural/Kind/namespace/name` (empty group and namespace stay empty). Object
/// names never contain `/`, so the form is unambiguous.
impl fmt::Display for TargetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}/{}/{}",
            self.kind.group,
            self.kind.version,
            self.kind.plural,
            self.kind.kind,
            self.namespace.as_deref().unwrap_or(""),
            self.name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for s in [
            "apps/v1/deployments/Deployment/shop/web",
            "/v1/namespaces/Namespace//team-a",
        ] {
            assert_eq!(TargetKey::parse(s).unwrap().to_string(), s);
        }
        assert!(TargetKey::parse("apps/v1/deployments").is_err());
    }
}
