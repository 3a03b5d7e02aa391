//! Result names, identity labels and annotations. Pure code: no I/O.
//!
//! A result is named after its target so that repeating a scan overwrites the same object and
//! the controller can compute what to delete from a delete event alone:
//! - ordinary targets: `<kind>-<name>` lowercased, in the target's namespace (cluster-scoped
//!   targets: in the install namespace);
//! - RBAC triplets: `<subjectkind>-<subjectname>-<rolekind>-<rolename>-<bindingkind>-<bindingname>`,
//!   in the binding's namespace (ClusterRoleBinding: the install namespace).
//!
//! Whenever that readable form would not identify the target uniquely (a character had to be
//! replaced, a ServiceAccount subject from another namespace, the name had to be truncated, or a
//! part could be mistaken for a separator) `-` and 8 hex characters of a SHA-256 of the full
//! identity are appended. Kubescape hashes only on truncation, so there `system:foo` and
//! `system-foo` collide.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

/// Prefix of every label and annotation key kubevigil writes.
pub const PREFIX: &str = "kubevigil.io/";

/// Longest valid object name (DNS-1123 subdomain).
pub const MAX_NAME_LEN: usize = 253;
/// Longest valid label value.
pub const MAX_LABEL_LEN: usize = 63;
const HASH_LEN: usize = 8;

/// Identity label keys (Kubescape's keys with kubevigil's prefix).
pub mod labels {
    /// API group of the target (empty for the core group).
    pub const API_GROUP: &str = "kubevigil.io/workload-api-group";
    /// API version of the target.
    pub const API_VERSION: &str = "kubevigil.io/workload-api-version";
    /// Kind of the target (the subject's kind for RBAC results).
    pub const KIND: &str = "kubevigil.io/workload-kind";
    /// Name of the target (the subject's name for RBAC results).
    pub const NAME: &str = "kubevigil.io/workload-name";
    /// Namespace of the target; absent for cluster-scoped targets.
    pub const NAMESPACE: &str = "kubevigil.io/workload-namespace";
    /// `"true"` on results of RBAC (subject, role, binding) triplets.
    pub const RBAC_RESOURCE: &str = "kubevigil.io/rbac-resource";
    /// Kind of the RBAC subject: `ServiceAccount`, `User` or `Group`.
    pub const SUBJECT_KIND: &str = "kubevigil.io/subject-kind";
    /// Name of the RBAC subject.
    pub const SUBJECT_NAME: &str = "kubevigil.io/subject-name";
    /// Namespace of a ServiceAccount subject.
    pub const SUBJECT_NAMESPACE: &str = "kubevigil.io/subject-namespace";
    /// Name of the bound Role.
    pub const ROLE_NAME: &str = "kubevigil.io/role-name";
    /// Namespace of the bound Role.
    pub const ROLE_NAMESPACE: &str = "kubevigil.io/role-namespace";
    /// Name of the bound ClusterRole.
    pub const CLUSTERROLE_NAME: &str = "kubevigil.io/clusterrole-name";
    /// Name of the RoleBinding.
    pub const ROLEBINDING_NAME: &str = "kubevigil.io/rolebinding-name";
    /// Namespace of the RoleBinding.
    pub const ROLEBINDING_NAMESPACE: &str = "kubevigil.io/rolebinding-namespace";
    /// Name of the ClusterRoleBinding.
    pub const CLUSTERROLEBINDING_NAME: &str = "kubevigil.io/clusterrolebinding-name";
    /// Marks every object kubevigil manages (results and Jobs).
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// Value of [`MANAGED_BY`].
    pub const MANAGED_BY_VALUE: &str = "kubevigil";
}

/// Annotation keys on every result.
pub mod annotations {
    /// UID of the scanned target object (the binding's UID for RBAC results).
    pub const TARGET_UID: &str = "kubevigil.io/target-uid";
    /// The full identity of the target, unsanitised (see [`super::Target::resource_id`]).
    pub const RESOURCE_ID: &str = "kubevigil.io/resource-id";
    /// Fingerprint of what was scanned (see [`super::fingerprint`]); a result whose fingerprint
    /// differs from the live target's is stale.
    pub const FINGERPRINT: &str = "kubevigil.io/fingerprint";
    /// Version of the scanner that wrote the result; a different version makes it stale.
    pub const SCANNER_VERSION: &str = "kubevigil.io/scanner-version";
    /// Hash of the control set and its configuration; a different hash makes it stale.
    pub const CONTROLS_HASH: &str = "kubevigil.io/controls-hash";
    /// RFC 3339 time of the scan.
    pub const SCAN_TIME: &str = "kubevigil.io/scan-time";
    /// Kubescape-style workload ID: `wlid://cluster-<cluster>/namespace-<ns>/<kind>-<name>`.
    pub const WLID: &str = "kubevigil.io/wlid";
    /// Hash of the result's `spec` (see [`super::outcome_hash`]): with the fingerprint and the
    /// controls hash, it tells from metadata alone whether a rescan found the same outcome, in
    /// which case the scan Job writes nothing.
    pub const OUTCOME_HASH: &str = "kubevigil.io/outcome-hash";
    /// Hash of the workload's related inputs when scanned (the identities and resourceVersions
    /// of the NetworkPolicies, Services, Ingresses, mounted PVCs and ConfigMaps... that controls
    /// relate it to; `kubevigil_engine::related::inputs_hash`); a different hash makes it stale.
    /// Only on results of workloads.
    pub const RELATED_INPUTS: &str = "kubevigil.io/related-inputs";
}

/// A Kubernetes object that is scanned as a whole (a workload, a ServiceAccount, a Namespace...).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    /// API group (empty for the core group).
    pub group: String,
    /// API version (`v1`).
    pub version: String,
    /// Kind (`Deployment`).
    pub kind: String,
    /// Namespace; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl ObjectRef {
    /// Builds a reference from an `apiVersion` string (`apps/v1` or `v1`).
    pub fn new(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Self {
        let (group, version) = split_api_version(api_version);
        ObjectRef {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
            namespace: namespace.filter(|ns| !ns.is_empty()).map(str::to_string),
            name: name.to_string(),
        }
    }

    /// `group/version`, or just `version` for the core group.
    pub fn api_version(&self) -> String {
        join_api_version(&self.group, &self.version)
    }

    /// Kubescape resource ID: `<group>/<version>/<namespace>/<kind>/<name>`.
    pub fn resource_id(&self) -> String {
        format!(
            "{}/{}/{}/{}/{}",
            self.group,
            self.version,
            self.namespace.as_deref().unwrap_or(""),
            self.kind,
            self.name
        )
    }
}

/// The kind of an RBAC subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubjectKind {
    /// A namespaced ServiceAccount.
    ServiceAccount,
    /// A user known to the authenticator.
    User,
    /// A group known to the authenticator.
    Group,
}

impl SubjectKind {
    /// Parses the `kind` of a binding subject.
    pub fn parse(kind: &str) -> Option<Self> {
        match kind {
            "ServiceAccount" => Some(SubjectKind::ServiceAccount),
            "User" => Some(SubjectKind::User),
            "Group" => Some(SubjectKind::Group),
            _ => None,
        }
    }

    /// The kind as written in a binding.
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::ServiceAccount => "ServiceAccount",
            SubjectKind::User => "User",
            SubjectKind::Group => "Group",
        }
    }
}

/// A subject of a binding.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject {
    /// ServiceAccount, User or Group.
    pub kind: SubjectKind,
    /// Name of the subject.
    pub name: String,
    /// Namespace of a ServiceAccount subject (defaults to the binding's); `None` otherwise.
    pub namespace: Option<String>,
}

impl Subject {
    /// One entry of a binding's `subjects` as JSON; `None` for an unknown kind or a missing
    /// name. A ServiceAccount without a namespace is in the binding's (or `default`), as the
    /// API server resolves it. The controller and the tests read subjects through this alone.
    pub fn from_json(subject: &serde_json::Value, binding_namespace: Option<&str>) -> Option<Self> {
        use serde_json::Value;
        let kind = SubjectKind::parse(subject.get("kind")?.as_str()?)?;
        let name = subject.get("name")?.as_str()?.to_string();
        let namespace = (kind == SubjectKind::ServiceAccount).then(|| {
            subject
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|ns| !ns.is_empty())
                .or(binding_namespace)
                .unwrap_or("default")
                .to_string()
        });
        Some(Subject {
            kind,
            name,
            namespace,
        })
    }
}

/// A Role or ClusterRole: the one key of a role, whether named by a binding's `roleRef` or read
/// from the role object itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoleRef {
    /// `true` for a ClusterRole.
    pub cluster: bool,
    /// Name of the role.
    pub name: String,
    /// Namespace of a Role (the binding's namespace); `None` for a ClusterRole.
    pub namespace: Option<String>,
}

impl RoleRef {
    /// A ClusterRole (`cluster`), or a Role in `namespace` (`default` when it has none).
    pub fn new(cluster: bool, name: &str, namespace: Option<&str>) -> Self {
        RoleRef {
            cluster,
            name: name.to_string(),
            namespace: (!cluster).then(|| namespace.unwrap_or("default").to_string()),
        }
    }
}

/// A RoleBinding or ClusterRoleBinding.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BindingRef {
    /// `true` for a ClusterRoleBinding.
    pub cluster: bool,
    /// Name of the binding.
    pub name: String,
    /// Namespace of a RoleBinding; `None` for a ClusterRoleBinding.
    pub namespace: Option<String>,
}

/// What a result describes: one object, or one RBAC (subject, role, binding) triplet.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// An object scanned as a whole.
    Object(ObjectRef),
    /// A subject bound to a role by a binding.
    Triplet {
        /// The bound subject.
        subject: Subject,
        /// The role the binding grants.
        role: RoleRef,
        /// The binding.
        binding: BindingRef,
    },
}

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

impl Target {
    /// The result's object name: readable when that identifies the target, hashed otherwise.
    pub fn result_name(&self) -> String {
        match self {
            Target::Object(o) => {
                let kind = o.kind.to_ascii_lowercase();
                let readable = format!("{kind}-{}", o.name);
                // A subject-kind object named like "x-role-y-rolebinding-z" would read as a triplet.
                let looks_like_triplet = SubjectKind::parse(&o.kind).is_some()
                    && contains_separator(&o.name, ROLE_SEPARATORS);
                finish_name(readable, looks_like_triplet, || self.identity_key())
            }
            Target::Triplet {
                subject,
                role,
                binding,
            } => {
                let readable = format!(
                    "{}-{}-{}-{}-{}-{}",
                    subject.kind.as_str().to_ascii_lowercase(),
                    subject.name,
                    role_kind(role).to_ascii_lowercase(),
                    role.name,
                    binding_kind(binding).to_ascii_lowercase(),
                    binding.name
                );
                // The readable form leaves out the subject's namespace, so it identifies a
                // ServiceAccount only when that is the namespace the result lives in.
                let foreign_subject = subject.kind == SubjectKind::ServiceAccount
                    && (binding.cluster || subject.namespace != binding.namespace);
                let ambiguous = contains_separator(&subject.name, ROLE_SEPARATORS)
                    || contains_separator(&role.name, BINDING_SEPARATORS);
                finish_name(readable, foreign_subject || ambiguous, || {
                    self.identity_key()
                })
            }
        }
    }

    /// The namespace the result lives in, given the namespace kubevigil is installed in.
    pub fn result_namespace<'a>(&'a self, install_namespace: &'a str) -> &'a str {
        match self {
            Target::Object(o) => o.namespace.as_deref().unwrap_or(install_namespace),
            Target::Triplet { binding, .. } => {
                binding.namespace.as_deref().unwrap_or(install_namespace)
            }
        }
    }

    /// Kubescape-style resource ID: the object's ID, or for a triplet the sorted IDs of the
    /// binding and role followed by the subject's ID, joined with `/`.
    pub fn resource_id(&self) -> String {
        match self {
            Target::Object(o) => o.resource_id(),
            Target::Triplet {
                subject,
                role,
                binding,
            } => {
                let mut related = [
                    format!(
                        "{RBAC_GROUP}/v1/{}/{}/{}",
                        binding.namespace.as_deref().unwrap_or(""),
                        binding_kind(binding),
                        binding.name
                    ),
                    format!(
                        "{RBAC_GROUP}/v1/{}/{}/{}",
                        role.namespace.as_deref().unwrap_or(""),
                        role_kind(role),
                        role.name
                    ),
                ];
                related.sort();
                let subject_group = match subject.kind {
                    SubjectKind::ServiceAccount => "v1",
                    _ => RBAC_GROUP,
                };
                format!(
                    "{}/{}/{subject_group}/{}/{}/{}",
                    related[0],
                    related[1],
                    subject.namespace.as_deref().unwrap_or(""),
                    subject.kind.as_str(),
                    subject.name
                )
            }
        }
    }

    /// Identity labels, values sanitised to valid label values.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut put = |key: &str, value: &str| {
            out.insert(key.to_string(), sanitize_label_value(value));
        };
        put(labels::MANAGED_BY, labels::MANAGED_BY_VALUE);
        match self {
            Target::Object(o) => {
                put(labels::API_GROUP, &o.group);
                put(labels::API_VERSION, &o.version);
                put(labels::KIND, &o.kind);
                put(labels::NAME, &o.name);
                if let Some(ns) = &o.namespace {
                    put(labels::NAMESPACE, ns);
                }
            }
            Target::Triplet {
                subject,
                role,
                binding,
            } => {
                let (group, version) = match subject.kind {
                    SubjectKind::ServiceAccount => ("", "v1"),
                    _ => (RBAC_GROUP, "v1"),
                };
                put(labels::API_GROUP, group);
                put(labels::API_VERSION, version);
                put(labels::KIND, subject.kind.as_str());
                put(labels::NAME, &subject.name);
                if let Some(ns) = &subject.namespace {
                    put(labels::NAMESPACE, ns);
                    put(labels::SUBJECT_NAMESPACE, ns);
                }
                put(labels::RBAC_RESOURCE, "true");
                put(labels::SUBJECT_KIND, subject.kind.as_str());
                put(labels::SUBJECT_NAME, &subject.name);
                if role.cluster {
                    put(labels::CLUSTERROLE_NAME, &role.name);
                } else {
                    put(labels::ROLE_NAME, &role.name);
                    if let Some(ns) = &role.namespace {
                        put(labels::ROLE_NAMESPACE, ns);
                    }
                }
                if binding.cluster {
                    put(labels::CLUSTERROLEBINDING_NAME, &binding.name);
                } else {
                    put(labels::ROLEBINDING_NAME, &binding.name);
                    if let Some(ns) = &binding.namespace {
                        put(labels::ROLEBINDING_NAMESPACE, ns);
                    }
                }
            }
        }
        out
    }

    /// Kubescape-style workload ID, `wlid://cluster-<cluster>/namespace-<ns>/<kind>-<name>`.
    pub fn wlid(&self, cluster: &str) -> String {
        let (ns, kind, name) = match self {
            Target::Object(o) => (
                o.namespace.as_deref().unwrap_or(""),
                o.kind.as_str(),
                &o.name,
            ),
            Target::Triplet { subject, .. } => (
                subject.namespace.as_deref().unwrap_or(""),
                subject.kind.as_str(),
                &subject.name,
            ),
        };
        format!(
            "wlid://cluster-{cluster}/namespace-{ns}/{}-{name}",
            kind.to_ascii_lowercase()
        )
    }

    /// A stable, unambiguous encoding of the full identity (the input of the name hash).
    fn identity_key(&self) -> String {
        // Length-prefixed fields: no choice of names can make two identities encode alike.
        let mut key = String::new();
        let mut field = |s: &str| {
            let _ = write!(key, "{}:{s};", s.len());
        };
        match self {
            Target::Object(o) => {
                field("object");
                field(&o.group);
                field(&o.kind);
                field(o.namespace.as_deref().unwrap_or(""));
                field(&o.name);
            }
            Target::Triplet {
                subject,
                role,
                binding,
            } => {
                field("triplet");
                field(subject.kind.as_str());
                field(subject.namespace.as_deref().unwrap_or(""));
                field(&subject.name);
                field(role_kind(role));
                field(role.namespace.as_deref().unwrap_or(""));
                field(&role.name);
                field(binding_kind(binding));
                field(binding.namespace.as_deref().unwrap_or(""));
                field(&binding.name);
            }
        }
        key
    }
}

fn role_kind(role: &RoleRef) -> &'static str {
    if role.cluster { "ClusterRole" } else { "Role" }
}

fn binding_kind(binding: &BindingRef) -> &'static str {
    if binding.cluster {
        "ClusterRoleBinding"
    } else {
        "RoleBinding"
    }
}

/// The tokens that separate a subject name from a role kind in a triplet name.
const ROLE_SEPARATORS: &[&str] = &["-role-", "-clusterrole-"];
/// The tokens that separate a role name from a binding kind in a triplet name.
const BINDING_SEPARATORS: &[&str] = &["-rolebinding-", "-clusterrolebinding-"];

/// Whether `-name-` contains one of the separators, so that the joined name could be split at
/// a different place.
fn contains_separator(name: &str, separators: &[&str]) -> bool {
    let padded = format!("-{}-", name.to_ascii_lowercase());
    separators.iter().any(|sep| padded.contains(sep))
}

/// Returns the readable name when it is a valid name on its own and nothing forces a hash;
/// otherwise a sanitised, truncated form with the identity hash appended.
/// `identity` is only computed when the name needs the hash (most names do not).
fn finish_name(readable: String, force_hash: bool, identity: impl FnOnce() -> String) -> String {
    if !force_hash && readable.len() <= MAX_NAME_LEN && is_dns1123_subdomain(&readable) {
        return readable;
    }
    let mut base = String::with_capacity(readable.len());
    for c in readable.chars() {
        let c = c.to_ascii_lowercase();
        let mapped = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if mapped == '-' && base.ends_with('-') {
            continue;
        }
        base.push(mapped);
    }
    let limit = MAX_NAME_LEN - HASH_LEN - 1;
    base.truncate(limit);
    let base = base.trim_matches('-');
    let hash = short_hash(&identity());
    if base.is_empty() {
        hash
    } else {
        format!("{base}-{hash}")
    }
}

/// The [`annotations::OUTCOME_HASH`] of a result: the first 16 hex characters of the SHA-256 of
/// its `spec` serialized as JSON (the result types serialize their maps in key order, so the
/// same outcome always gives the same hash).
pub fn outcome_hash(spec_json: &[u8]) -> String {
    hex_prefix(&Sha256::digest(spec_json), 16)
}

/// First 8 hex characters of the SHA-256 of `input`.
pub fn short_hash(input: &str) -> String {
    hex_prefix(&Sha256::digest(input.as_bytes()), HASH_LEN)
}

fn hex_prefix(bytes: &[u8], chars: usize) -> String {
    let mut out = String::with_capacity(chars + 1);
    for b in bytes {
        if out.len() >= chars {
            break;
        }
        let _ = write!(out, "{b:02x}");
    }
    out.truncate(chars);
    out
}

/// Whether `s` is a valid DNS-1123 subdomain (the rule for most object names).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// Whether `s` is a valid label value: at most 63 characters of `[A-Za-z0-9._-]`, starting and
/// ending alphanumeric, or empty.
pub fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    b.is_empty()
        || (b.len() <= MAX_LABEL_LEN
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')))
}

/// Turns any string into a valid label value: invalid characters become `-`, the result is cut
/// to 63 characters and trimmed to start and end alphanumeric. Labels are for selection; the
/// exact identity is in the `kubevigil.io/resource-id` annotation.
pub fn sanitize_label_value(value: &str) -> String {
    if is_label_value(value) {
        return value.to_string();
    }
    let mapped: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(MAX_LABEL_LEN)
        .collect();
    mapped
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// Splits `apps/v1` into (`apps`, `v1`) and `v1` into (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.rsplit_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}

/// Joins a group and version into an `apiVersion` string.
pub fn join_api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// The dynamic API resource of a kind known by its names (the related kinds' table), as the
/// controller watches it and scan Jobs list it.
pub fn api_resource(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> kube::core::ApiResource {
    kube::core::ApiResource {
        group: group.to_string(),
        version: version.to_string(),
        api_version: join_api_version(group, version),
        kind: kind.to_string(),
        plural: plural.to_string(),
    }
}

/// What a scan's result depends on in an object's metadata, as seen by both the controller
/// (which watches metadata only) and the scan Job (which reads the full object).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FingerprintInput<'a> {
    /// The object's UID.
    pub uid: &'a str,
    /// `metadata.generation`, for kinds whose spec changes bump it (workloads).
    pub generation: Option<i64>,
    /// `metadata.resourceVersion`, used only for kinds without a generation.
    pub resource_version: &'a str,
    /// The object's labels (controls inspect them; the generation does not cover them).
    pub labels: Option<&'a BTreeMap<String, String>>,
    /// UID of the controlling owner, if any (a Pod losing its owner becomes a naked Pod).
    pub controller_uid: Option<&'a str>,
    /// [`spec_hash`] of a scalable kind's spec; replaces the generation, which scaling bumps
    /// although no control looks at `replicas`.
    pub spec: Option<&'a str>,
}

/// Fingerprint of one object: 16 hex characters over its UID, generation (or resourceVersion
/// when the kind has no generation), labels and controlling owner. Status-only updates, the
/// deployment controller's revision annotation and watch re-lists leave it unchanged.
pub fn fingerprint(input: &FingerprintInput<'_>) -> String {
    let labels = input.labels.into_iter().flatten();
    fingerprint_with_labels(input, labels.map(|(k, v)| (k.as_str(), v.as_str())))
}

/// [`fingerprint`] with the labels given apart (`input.labels` is not read), in key order as
/// a `BTreeMap` iterates them: for a caller that holds them in another map, so that they need
/// not be copied into a `BTreeMap` of their own first.
pub fn fingerprint_with_labels<'a>(
    input: &FingerprintInput<'_>,
    labels: impl Iterator<Item = (&'a str, &'a str)>,
) -> String {
    let mut h = Sha256::new();
    let mut field = |s: &[&[u8]]| {
        h.update(s.iter().map(|p| p.len()).sum::<usize>().to_le_bytes());
        for p in s {
            h.update(p);
        }
    };
    field(&[input.uid.as_bytes()]);
    match (input.spec, input.generation) {
        (Some(spec), _) => field(&[b"s", spec.as_bytes()]),
        (None, Some(g)) => field(&[format!("g{g}").as_bytes()]),
        (None, None) => field(&[b"rv", input.resource_version.as_bytes()]),
    }
    for (k, v) in labels {
        field(&[k.as_bytes()]);
        field(&[v.as_bytes()]);
    }
    field(&[input.controller_uid.unwrap_or("").as_bytes()]);
    hex_prefix(&h.finalize(), 16)
}

/// The fingerprint of an object from its metadata (what the controller's metadata-only watches
/// see and what the scan Job writes into results).
pub fn object_fingerprint(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> String {
    object_fingerprint_with_spec(meta, None)
}

/// [`object_fingerprint`] with a scalable kind's [`spec_hash`] in place of its generation.
pub fn object_fingerprint_with_spec(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    spec_hash: Option<&str>,
) -> String {
    let controller_uid = meta
        .owner_references
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str());
    fingerprint(&FingerprintInput {
        uid: meta.uid.as_deref().unwrap_or(""),
        generation: meta.generation,
        resource_version: meta.resource_version.as_deref().unwrap_or(""),
        labels: meta.labels.as_ref(),
        controller_uid,
        spec: spec_hash,
    })
}

/// Kinds whose `spec.replicas` is changed by scaling (`kubectl scale`, autoscalers). Their
/// fingerprint covers the spec without `replicas` instead of the generation, so scaling does not
/// rescan them (no control reads `replicas`).
pub fn scalable_kind(group: &str, kind: &str) -> bool {
    matches!(
        (group, kind),
        ("apps", "Deployment" | "StatefulSet" | "ReplicaSet") | ("", "ReplicationController")
    )
}

/// A hash of `spec` without its top-level `replicas`, independent of key order (the controller
/// and the scan Job may see the same object through different clients).
///
/// The hash is SHA-256 over a canonical form: each value is a tag byte (`n`, `t`, `f`, `#` for
/// a number, `"` for a string, `[`, `{`), then for numbers, strings, arrays and objects its
/// length (bytes, items or entries) as an unsigned LEB128 varint, then its content; an object's
/// entries in key order, each key as its length (varint) and bytes, then its value. Lengths
/// make the form unambiguous; varints keep it short (one byte for nearly every length: a
/// Deployment's form is about half as long as with fixed 8-byte lengths, and the hashing, which
/// both the controller's watch and every scan of a scalable workload pay, about half as costly).
/// Changing the form changes every scalable workload's fingerprint, which rescans it once, as
/// a new scanner version does.
pub fn spec_hash(spec: &serde_json::Value) -> String {
    fn feed(out: &mut Canonical, v: &serde_json::Value, top: bool) {
        use serde_json::Value;
        match v {
            Value::Null => out.put(b"n"),
            Value::Bool(b) => out.put(if *b { b"t" } else { b"f" }),
            Value::Number(n) => {
                // Formatted on the stack (as `to_string` would write it) when it fits, as
                // every number does unless serde_json keeps numbers' text as it was read.
                let mut text = NumberText::default();
                let long;
                let digits = if text.integer(n) || write!(text, "{n}").is_ok() {
                    text.as_bytes()
                } else {
                    long = n.to_string();
                    long.as_bytes()
                };
                out.put_head(b'#', digits.len());
                out.put(digits);
            }
            Value::String(s) => {
                out.put_head(b'"', s.len());
                out.put(s.as_bytes());
            }
            Value::Array(items) => {
                out.put_head(b'[', items.len());
                for i in items {
                    feed(out, i, false);
                }
            }
            Value::Object(map) => {
                let skip = |k: &str| top && k == "replicas";
                let len = map.len() - usize::from(top && map.contains_key("replicas"));
                out.put_head(b'{', len);
                let entry = |out: &mut Canonical, k: &String, v: &Value| {
                    out.put_len(k.len());
                    out.put(k.as_bytes());
                    feed(out, v, false);
                };
                if map_iterates_sorted() {
                    for (k, v) in map.iter().filter(|(k, _)| !skip(k)) {
                        entry(out, k, v);
                    }
                } else {
                    let mut entries: Vec<(&String, &Value)> =
                        map.iter().filter(|(k, _)| !skip(k)).collect();
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                    for (k, v) in entries {
                        entry(out, k, v);
                    }
                }
            }
        }
    }
    let mut canonical = Canonical::default();
    feed(&mut canonical, spec, true);
    hex_prefix(canonical.finish().as_ref(), 16)
}

/// The hasher of [`spec_hash`]'s canonical form, fed through a buffer on the stack: the same
/// bytes in the same order as updating the hasher with each piece (so the same hash), without
/// the hasher's per-call bookkeeping for each of the hundreds of tiny pieces of a pod
/// template, and without building the whole form on the heap.
struct Canonical {
    hasher: Sha256,
    buf: [u8; 1024],
    len: usize,
}

impl Default for Canonical {
    fn default() -> Self {
        Canonical {
            hasher: Sha256::new(),
            buf: [0; 1024],
            len: 0,
        }
    }
}

impl Canonical {
    /// A node's tag and its length (see [`spec_hash`]); both in one copy of two bytes for a
    /// length under 128, as nearly every length is.
    #[inline(always)]
    fn put_head(&mut self, tag: u8, len: usize) {
        match u8::try_from(len) {
            Ok(small) if small < 0x80 => self.put_fixed([tag, small]),
            _ => {
                self.put_fixed([tag]);
                self.put_len(len);
            }
        }
    }

    /// A length as an unsigned LEB128 varint.
    #[inline(always)]
    fn put_len(&mut self, len: usize) {
        match u8::try_from(len) {
            Ok(small) if small < 0x80 => self.put_fixed([small]),
            _ => {
                let (bytes, n) = leb128(len);
                self.put(bytes.get(..n).unwrap_or_default());
            }
        }
    }

    /// `put` for a piece whose size is known at compile time: the copy is a few moves, not a
    /// call to `memcpy` (the canonical form of a pod template has about a thousand pieces).
    #[inline(always)]
    fn put_fixed<const N: usize>(&mut self, bytes: [u8; N]) {
        if let Some(room) = self.buf.get_mut(self.len..self.len + N) {
            room.copy_from_slice(&bytes);
            self.len += N;
        } else {
            self.put(&bytes);
        }
    }

    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        if let Some(room) = self.buf.get_mut(self.len..self.len + bytes.len()) {
            room.copy_from_slice(bytes);
            self.len += bytes.len();
            return;
        }
        self.flush();
        if let Some(room) = self.buf.get_mut(..bytes.len()) {
            room.copy_from_slice(bytes);
            self.len = bytes.len();
        } else {
            // Longer than the buffer: straight to the hasher.
            self.hasher.update(bytes);
        }
    }

    fn flush(&mut self) {
        self.hasher
            .update(self.buf.get(..self.len).unwrap_or_default());
        self.len = 0;
    }

    fn finish(mut self) -> impl AsRef<[u8]> {
        self.flush();
        self.hasher.finalize()
    }
}

/// `n` as an unsigned LEB128 varint: seven bits per byte, least significant first, the high
/// bit set on every byte but the last. Returns the bytes and how many are used (1 to 10).
fn leb128(mut n: usize) -> ([u8; 10], usize) {
    let mut out = [0u8; 10];
    let mut used = 0;
    for byte in &mut out {
        used += 1;
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            *byte = low;
            break;
        }
        *byte = low | 0x80;
    }
    (out, used)
}

/// A number's text, formatted without allocating: serde_json writes any `i64`, `u64` or
/// `f64` in at most 24 characters; writing more fails.
#[derive(Default)]
struct NumberText {
    buf: [u8; 32],
    len: usize,
}

impl NumberText {
    fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// Writes an integer's decimal digits, as its `Display` does, without the formatting
    /// machinery; `false` (nothing written) for a float.
    fn integer(&mut self, n: &serde_json::Number) -> bool {
        let (negative, mut magnitude) = match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => (false, u),
            (None, Some(i)) => (true, i.unsigned_abs()),
            (None, None) => return false,
        };
        // Digits from the end of a scratch buffer (a u64 has at most 20).
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            if let Some(d) = digits.get_mut(start) {
                *d = b'0' + (magnitude % 10) as u8;
            }
            magnitude /= 10;
            if magnitude == 0 || start == 0 {
                break;
            }
        }
        let mut len = 0;
        if negative {
            self.buf[0] = b'-';
            len = 1;
        }
        let digits = digits.get(start..).unwrap_or_default();
        if let Some(room) = self.buf.get_mut(len..len + digits.len()) {
            room.copy_from_slice(digits);
            self.len = len + digits.len();
        }
        true
    }
}

impl std::fmt::Write for NumberText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = self
            .buf
            .get_mut(self.len..self.len + s.len())
            .ok_or(std::fmt::Error)?;
        room.copy_from_slice(s.as_bytes());
        self.len += s.len();
        Ok(())
    }
}

/// Whether serde_json's maps iterate in key order, as they do unless its `preserve_order`
/// feature is on (any crate of a build may turn it on, and then they iterate in insertion
/// order). [`spec_hash`] sorts the keys itself only then. Checked once, on a map built out of
/// order.
fn map_iterates_sorted() -> bool {
    static SORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SORTED.get_or_init(|| {
        let mut probe = serde_json::Map::new();
        probe.insert("b".into(), serde_json::Value::Null);
        probe.insert("a".into(), serde_json::Value::Null);
        probe.keys().map(String::as_str).eq(["a", "b"])
    })
}

/// The fingerprint of a binding target: its own and its role's (`None` when the role does not
/// exist), so that a role change makes the binding's results stale.
pub fn binding_fingerprint(binding: &str, role: Option<&str>) -> String {
    combine_fingerprints(&[binding, role.unwrap_or("no-role")])
}

/// Combines the fingerprints of several objects (an RBAC triplet's binding and role) into one.
pub fn combine_fingerprints(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.len().to_le_bytes());
        h.update(p.as_bytes());
    }
    hex_prefix(&h.finalize(), 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(kind: &str, ns: Option<&str>, name: &str) -> Target {
        let api = match kind {
            "Deployment" => "apps/v1",
            _ => "v1",
        };
        Target::Object(ObjectRef::new(api, kind, ns, name))
    }

    fn ci_bot_triplet() -> Target {
        Target::Triplet {
            subject: Subject {
                kind: SubjectKind::ServiceAccount,
                name: "ci-bot".into(),
                namespace: Some("ci".into()),
            },
            role: RoleRef {
                cluster: true,
                name: "edit".into(),
                namespace: None,
            },
            binding: BindingRef {
                cluster: false,
                name: "ci-edit".into(),
                namespace: Some("ci".into()),
            },
        }
    }

    /// Golden names: these must never change between versions, or upgrades orphan results.
    #[test]
    fn golden_names() {
        assert_eq!(
            object("Deployment", Some("default"), "nginx").result_name(),
            "deployment-nginx"
        );
        assert_eq!(
            ci_bot_triplet().result_name(),
            "serviceaccount-ci-bot-clusterrole-edit-rolebinding-ci-edit"
        );
        let colon = Target::Triplet {
            subject: Subject {
                kind: SubjectKind::User,
                name: "system:foo".into(),
                namespace: None,
            },
            role: RoleRef {
                cluster: true,
                name: "view".into(),
                namespace: None,
            },
            binding: BindingRef {
                cluster: true,
                name: "foo-view".into(),
                namespace: None,
            },
        };
        let dash = match colon.clone() {
            Target::Triplet {
                mut subject,
                role,
                binding,
            } => {
                subject.name = "system-foo".into();
                Target::Triplet {
                    subject,
                    role,
                    binding,
                }
            }
            other => other,
        };
        assert_eq!(
            colon.result_name(),
            "user-system-foo-clusterrole-view-clusterrolebinding-foo-view-19da0bcf"
        );
        assert_eq!(
            dash.result_name(),
            "user-system-foo-clusterrole-view-clusterrolebinding-foo-view"
        );
        assert_eq!(
            object("ServiceAccount", Some("ns"), "system:foo").result_name(),
            "serviceaccount-system-foo-888451bc"
        );
    }

    #[test]
    fn cross_namespace_service_account_is_hashed() {
        let mut t = ci_bot_triplet();
        if let Target::Triplet { subject, .. } = &mut t {
            subject.namespace = Some("other".into());
        }
        let name = t.result_name();
        assert!(name.starts_with("serviceaccount-ci-bot-clusterrole-edit-rolebinding-ci-edit-"));
        assert_eq!(
            name.len(),
            "serviceaccount-ci-bot-clusterrole-edit-rolebinding-ci-edit".len() + 9
        );
    }

    #[test]
    fn result_namespaces() {
        assert_eq!(
            object("Namespace", None, "team-a").result_namespace("kubevigil"),
            "kubevigil"
        );
        assert_eq!(
            object("Pod", Some("web"), "p").result_namespace("kubevigil"),
            "web"
        );
        assert_eq!(ci_bot_triplet().result_namespace("kubevigil"), "ci");
    }

    #[test]
    fn triplet_labels_and_ids() {
        let t = ci_bot_triplet();
        let l = t.labels();
        assert_eq!(l[labels::RBAC_RESOURCE], "true");
        assert_eq!(l[labels::SUBJECT_KIND], "ServiceAccount");
        assert_eq!(l[labels::CLUSTERROLE_NAME], "edit");
        assert_eq!(l[labels::ROLEBINDING_NAMESPACE], "ci");
        assert!(!l.contains_key(labels::ROLE_NAME));
        assert_eq!(
            t.resource_id(),
            "rbac.authorization.k8s.io/v1//ClusterRole/edit/rbac.authorization.k8s.io/v1/ci/RoleBinding/ci-edit/v1/ci/ServiceAccount/ci-bot"
        );
        assert_eq!(
            object("Deployment", Some("default"), "nginx").wlid("kind"),
            "wlid://cluster-kind/namespace-default/deployment-nginx"
        );
    }

    #[test]
    fn label_sanitising() {
        assert_eq!(
            sanitize_label_value("system:authenticated"),
            "system-authenticated"
        );
        assert_eq!(sanitize_label_value(":x:"), "x");
        assert!(is_label_value(&sanitize_label_value(&"a".repeat(300))));
        assert_eq!(sanitize_label_value("ok.value_1"), "ok.value_1");
    }

    /// The fingerprint as first written (a `format!` per field): stored fingerprints must not
    /// change with the implementation.
    fn fingerprint_reference(input: &FingerprintInput<'_>) -> String {
        let mut h = Sha256::new();
        let mut field = |s: &str| {
            h.update(s.len().to_le_bytes());
            h.update(s.as_bytes());
        };
        field(input.uid);
        match (input.spec, input.generation) {
            (Some(spec), _) => field(&format!("s{spec}")),
            (None, Some(g)) => field(&format!("g{g}")),
            (None, None) => field(&format!("rv{}", input.resource_version)),
        }
        if let Some(labels) = input.labels {
            for (k, v) in labels {
                field(k);
                field(v);
            }
        }
        field(input.controller_uid.unwrap_or(""));
        hex_prefix(&h.finalize(), 16)
    }

    #[test]
    fn fingerprint_is_the_reference_fingerprint() {
        let labels = BTreeMap::from([
            ("app".to_string(), "x".to_string()),
            ("b".to_string(), String::new()),
        ]);
        let base = FingerprintInput {
            uid: "u-1",
            generation: Some(-3),
            resource_version: "10",
            labels: Some(&labels),
            controller_uid: Some("owner"),
            spec: None,
        };
        let inputs = [
            base.clone(),
            FingerprintInput {
                spec: Some("0123456789abcdef"),
                ..base.clone()
            },
            FingerprintInput {
                generation: None,
                labels: None,
                controller_uid: None,
                ..base.clone()
            },
        ];
        for input in &inputs {
            assert_eq!(fingerprint(input), fingerprint_reference(input));
        }
    }

    #[test]
    fn fingerprint_ignores_resource_version_when_generation_known() {
        let labels = BTreeMap::from([("app".to_string(), "x".to_string())]);
        let a = FingerprintInput {
            uid: "u",
            generation: Some(3),
            resource_version: "10",
            labels: Some(&labels),
            controller_uid: None,
            spec: None,
        };
        let b = FingerprintInput {
            resource_version: "11",
            ..a.clone()
        };
        assert_eq!(fingerprint(&a), fingerprint(&b));
        let c = FingerprintInput {
            generation: Some(4),
            ..a.clone()
        };
        assert_ne!(fingerprint(&a), fingerprint(&c));
        let d = FingerprintInput {
            generation: None,
            ..a.clone()
        };
        let e = FingerprintInput {
            generation: None,
            resource_version: "12",
            ..a
        };
        assert_ne!(fingerprint(&d), fingerprint(&e));
    }

    /// [`spec_hash`]'s definition, written plainly: the hasher fed piece by piece, keys
    /// sorted, numbers through `to_string`, lengths through a varint encoder of its own. The fast
    /// path must give the same hash.
    fn spec_hash_reference(spec: &serde_json::Value) -> String {
        fn varint(mut n: usize) -> Vec<u8> {
            let mut out = Vec::new();
            loop {
                let low = (n % 128) as u8;
                n /= 128;
                if n == 0 {
                    out.push(low);
                    return out;
                }
                out.push(low + 128);
            }
        }
        fn feed(h: &mut Sha256, v: &serde_json::Value, top: bool) {
            use serde_json::Value;
            match v {
                Value::Null => h.update(b"n"),
                Value::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
                Value::Number(n) => {
                    let s = n.to_string();
                    h.update(b"#");
                    h.update(varint(s.len()));
                    h.update(s.as_bytes());
                }
                Value::String(s) => {
                    h.update(b"\"");
                    h.update(varint(s.len()));
                    h.update(s.as_bytes());
                }
                Value::Array(items) => {
                    h.update(b"[");
                    h.update(varint(items.len()));
                    for i in items {
                        feed(h, i, false);
                    }
                }
                Value::Object(map) => {
                    let mut keys: Vec<&String> = map
                        .keys()
                        .filter(|k| !(top && k.as_str() == "replicas"))
                        .collect();
                    keys.sort();
                    h.update(b"{");
                    h.update(varint(keys.len()));
                    for k in keys {
                        h.update(varint(k.len()));
                        h.update(k.as_bytes());
                        if let Some(v) = map.get(k) {
                            feed(h, v, false);
                        }
                    }
                }
            }
        }
        let mut h = Sha256::new();
        feed(&mut h, spec, true);
        hex_prefix(&h.finalize(), 16)
    }

    #[test]
    fn leb128_encodes_lengths() {
        for (n, want) in [
            (0usize, vec![0u8]),
            (1, vec![1]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (300, vec![0xac, 0x02]),
            (16_383, vec![0xff, 0x7f]),
            (16_384, vec![0x80, 0x80, 0x01]),
        ] {
            let (bytes, used) = leb128(n);
            assert_eq!(&bytes[..used], want.as_slice(), "{n}");
        }
        let (bytes, used) = leb128(usize::MAX);
        assert_eq!(used, 10);
        assert_eq!(bytes[9], 0x01);
    }

    #[test]
    fn spec_hash_is_the_reference_hash() {
        use serde_json::json;
        let long = "x".repeat(5000);
        let specs = [
            json!(null),
            json!({}),
            json!({"replicas": 3}),
            json!({"replicas": 3, "a": {"replicas": 2, "b": [0, 1, -2, 10, -10, 2.5, 1e300, u64::MAX, i64::MIN, i64::MAX]}}),
            json!({"z": true, "a": false, "m": null, "s": long, "t": ["é", "", {"k": "v"}]}),
            json!({"k".repeat(127): 1, "k".repeat(128): "v".repeat(128), "l": (0..300).collect::<Vec<_>>()}),
            json!({"template": {"spec": {"containers": (0..200)
                .map(|i| json!({"name": format!("c{i}"), "image": "nginx:1.27", "ports": [{"containerPort": 80 + i}]}))
                .collect::<Vec<_>>()}}}),
        ];
        for spec in &specs {
            assert_eq!(spec_hash(spec), spec_hash_reference(spec), "{spec}");
        }
    }

    #[test]
    fn spec_hash_ignores_replicas_and_key_order_only() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
        let a = serde_json::json!({"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}});
        let scaled = serde_json::json!({"template": {"spec": {"containers": [{"image": "x", "name": "c"}]}}, "replicas": 5});
        assert_eq!(spec_hash(&a), spec_hash(&scaled));
        let changed = serde_json::json!({"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": "y"}]}}});
        assert_ne!(spec_hash(&a), spec_hash(&changed));
        // Only the top-level replicas is ignored.
        let nested = serde_json::json!({"replicas": 1, "template": {"replicas": 2}});
        let nested2 = serde_json::json!({"replicas": 1, "template": {"replicas": 3}});
        assert_ne!(spec_hash(&nested), spec_hash(&nested2));
        let meta = ObjectMeta {
            uid: Some("u".into()),
            generation: Some(1),
            ..ObjectMeta::default()
        };
        let bumped = ObjectMeta {
            generation: Some(2),
            ..meta.clone()
        };
        let h = spec_hash(&a);
        assert_eq!(
            object_fingerprint_with_spec(&meta, Some(&h)),
            object_fingerprint_with_spec(&bumped, Some(&h))
        );
        assert_ne!(object_fingerprint(&meta), object_fingerprint(&bumped));
        assert_eq!(
            object_fingerprint_with_spec(&meta, None),
            object_fingerprint(&meta)
        );
        assert!(scalable_kind("apps", "Deployment") && !scalable_kind("apps", "DaemonSet"));
    }
}
