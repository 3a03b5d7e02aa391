//! Workloads, the one place of their vocabulary: which kinds are workloads (Kubescape's WL7 and
//! the `applies` lists built from it), where each kind keeps its pod template and pod spec, and
//! a pod spec's containers with the paths findings name them by.

use std::ops::Deref;
use std::ptr;

use serde_json::Value;

use super::object::{K8sObject, get_path};
use super::pod_view::{
    CONTAINER_LISTS, ContainerView, PodView, SecurityContext, Viewed, containers_of,
};
use crate::Applies;
use crate::object::Field;

/// Kubescape's WL7 (the seven workload kinds most controls inspect) followed by
/// ReplicationController, which the rules of some controls also match.
pub const WORKLOAD_KINDS_RC: &[&str] = &[
    "Pod",
    "Deployment",
    "ReplicaSet",
    "DaemonSet",
    "StatefulSet",
    "Job",
    "CronJob",
    "ReplicationController",
];

/// The seven workload kinds most controls inspect (Kubescape's WL7).
pub const WORKLOAD_KINDS: &[&str] = WORKLOAD_KINDS_RC.split_at(7).0;

/// The `applies` list of a control on the WL7 kinds.
pub const WL7: &[Applies] = WL7_RC.split_at(7).0;

/// The `applies` list of a control on the WL7 kinds and ReplicationController.
pub const WL7_RC: &[Applies] = &applies::<8>(&[], WORKLOAD_KINDS_RC);

/// An `applies` list of `N` entries: `first`, then `Applies::Kind` of each of `kinds` (so that
/// a control on WL7 and more kinds starts from [`WL7`] instead of listing its kinds again).
/// Evaluated at compile time; a wrong `N` does not compile.
pub const fn applies<const N: usize>(first: &[Applies], kinds: &[&'static str]) -> [Applies; N] {
    assert!(first.len() + kinds.len() == N, "N must count every entry");
    let mut out = [Applies::Subjects; N];
    let mut i = 0;
    while i < first.len() {
        out[i] = first[i];
        i += 1;
    }
    let mut k = 0;
    while k < kinds.len() {
        out[i + k] = Applies::Kind(kinds[k]);
        k += 1;
    }
    out
}

/// The dotted path of a workload kind's pod spec (`spec.template.spec`; `spec` for a Pod), or
/// `None` for a kind that is not a workload. The one table of where pod specs sit.
#[inline]
pub fn pod_spec_path(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some("spec"),
        "Deployment"
        | "ReplicaSet"
        | "DaemonSet"
        | "StatefulSet"
        | "Job"
        | "ReplicationController" => Some("spec.template.spec"),
        "CronJob" => Some("spec.jobTemplate.spec.template.spec"),
        _ => None,
    }
}

/// The dotted path of the pod template (its `metadata` and `spec` sit below it) for a kind, or
/// `""` for a Pod (whose own `metadata`/`spec` play that role). `None` for non-workloads.
pub fn template_path(kind: &str) -> Option<&'static str> {
    pod_spec_path(kind).map(|spec| spec.strip_suffix(".spec").unwrap_or(""))
}

/// The pod spec of a workload and its dotted path (`spec.template.spec`).
#[derive(Clone, Copy, Debug)]
pub struct PodSpec<'a> {
    /// The pod spec value.
    pub spec: &'a Value,
    /// Its path from the object root, e.g. `spec.template.spec` or `spec` for a Pod.
    pub path: &'static str,
    /// Its containers and security context, looked up once per evaluated object (set when the
    /// pod spec comes from the [`super::Memo`]; `None` means "look them up").
    pub view: Option<&'a PodView<'a>>,
}

impl<'a> PodSpec<'a> {
    /// The pod-level `securityContext` (`Null` when absent), with its fields when the view
    /// found them.
    pub fn security_context(self) -> SecurityContext<'a> {
        match self.view {
            Some(view) => view.security_context(),
            None => Viewed::new(
                self.spec.field("securityContext").unwrap_or(&Value::Null),
                None,
            ),
        }
    }

    /// The containers of `lists` (container lists, in [`CONTAINER_LISTS`] order, e.g.
    /// `["containers", "initContainers"]`), in list order; entries that are not objects are
    /// left out. From the precomputed view when there is one and `lists` is a prefix of
    /// [`CONTAINER_LISTS`], else looked up.
    pub fn containers_in(
        self,
        lists: &'static [&'static str],
    ) -> impl Iterator<Item = ContainerView<'a>> + 'a {
        let (viewed, direct) = match self.view {
            Some(view) if is_list_prefix(lists) => (Some(view.first_lists(lists.len())), None),
            _ => (None, Some(containers_of(self.spec, lists))),
        };
        viewed
            .into_iter()
            .flatten()
            .chain(direct.into_iter().flatten())
    }

    /// The containers of `lists` (see [`PodSpec::containers_in`]), each with what its paths
    /// are built from.
    pub fn containers(
        self,
        lists: &'static [&'static str],
    ) -> impl Iterator<Item = Container<'a>> + 'a {
        let pod_path = self.path;
        self.containers_in(lists)
            .map(move |view| Container { pod_path, view })
    }
}

/// The pod spec's own fields (`hostNetwork`, `volumes`...), from the view when there is one.
impl<'a> Field<'a> for PodSpec<'a> {
    #[inline]
    fn field(self, key: &str) -> Option<&'a Value> {
        Viewed::new(self.spec, self.view.map(|v| &v.fields)).field(key)
    }
}

/// Whether `lists` names the first `lists.len()` entries of [`CONTAINER_LISTS`].
fn is_list_prefix(lists: &[&str]) -> bool {
    lists.len() <= CONTAINER_LISTS.len()
        && lists
            .iter()
            .zip(CONTAINER_LISTS)
            .all(|(a, b)| (ptr::eq(a.as_ptr(), b.as_ptr()) && a.len() == b.len()) || *a == b)
}

/// The pod spec of a workload object, if it is a workload and has one.
pub fn pod_spec(obj: &K8sObject) -> Option<PodSpec<'_>> {
    let path = pod_spec_path(&obj.kind)?;
    get_path(&obj.value, path)
        .filter(|v| v.is_object())
        .map(|spec| PodSpec {
            spec,
            path,
            view: None,
        })
}

/// The labels the workload's pods get: a Pod's own labels, or the template's labels.
pub fn pod_labels(obj: &K8sObject) -> Option<&serde_json::Map<String, Value>> {
    let base = template_path(&obj.kind)?;
    let meta = if base.is_empty() {
        obj.value.field("metadata")
    } else {
        get_path(&obj.value, base).and_then(|t| t.field("metadata"))
    };
    meta.and_then(|m| m.field("labels"))
        .and_then(Value::as_object)
}

/// Which container lists a rule inspects. Kubescape's rules differ here (catalog quirk 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Containers {
    /// `containers` only.
    Main,
    /// `containers` and `initContainers`.
    WithInit,
    /// `containers`, `initContainers` and `ephemeralContainers`.
    All,
}

impl Containers {
    /// The container lists this choice covers: a prefix of [`CONTAINER_LISTS`] (so that
    /// [`PodSpec::containers_in`] serves it from the per-object view).
    pub fn lists(self) -> &'static [&'static str] {
        let n = match self {
            Containers::Main => 1,
            Containers::WithInit => 2,
            Containers::All => 3,
        };
        let all: &'static [&'static str] = &CONTAINER_LISTS;
        all.get(..n).unwrap_or(all)
    }
}

/// One container of a pod spec with what its paths are built from: the one family of
/// container paths. Paths are only formatted when a finding is reported. Reads as its
/// [`ContainerView`].
#[derive(Clone, Copy, Debug)]
pub struct Container<'a> {
    /// Path of the pod spec (`spec.template.spec`).
    pub pod_path: &'static str,
    /// The container, with its fields found once per object.
    pub view: ContainerView<'a>,
}

impl<'a> Deref for Container<'a> {
    type Target = ContainerView<'a>;

    #[inline]
    fn deref(&self) -> &ContainerView<'a> {
        &self.view
    }
}

impl<'a> Container<'a> {
    /// `<podspec>.<list>[<index>].<suffix>`.
    #[inline]
    pub fn path(&self, suffix: &str) -> String {
        container_field_path(self.pod_path, self.view.list, self.view.index, suffix)
    }

    /// [`Self::path`] of the suffix given in parts (no temporary string for the suffix).
    #[inline]
    pub fn path_parts(&self, suffix: &[&str]) -> String {
        container_field_path_parts(self.pod_path, self.view.list, self.view.index, suffix)
    }

    /// `<podspec>.<list>[<index>].<prefix>[<k>]`: a list entry of a container field.
    pub fn path_index(&self, prefix: &str, k: usize) -> String {
        let mut path = self.path(prefix);
        push_index(&mut path, k);
        path
    }

    /// `<podspec>.<list>[<index>].<field>[<entry>].<rest>` (no `.<rest>` when empty).
    #[inline]
    pub fn entry_path(&self, field: &str, entry: usize, rest: &str) -> String {
        container_entry_path(
            self.pod_path,
            self.view.list,
            self.view.index,
            field,
            entry,
            rest,
        )
    }

    /// The container's `securityContext` (`Null` when absent).
    pub fn sc(&self) -> SecurityContext<'a> {
        self.view.sc()
    }

    /// Whether this is an ephemeral container.
    pub fn is_ephemeral(&self) -> bool {
        self.view.list == "ephemeralContainers"
    }
}

/// `<pod_path>.<list>[<index>].<suffix>`: the path of a container field. Built by hand rather
/// than with `format!`, because every finding on a container builds one or more of these.
fn container_field_path(pod_path: &str, list: &str, index: usize, suffix: &str) -> String {
    container_field_path_parts(pod_path, list, index, &[suffix])
}

/// [`container_field_path`] with the suffix given in parts (`["securityContext.", key]`), so
/// that callers need no temporary `format!` for it.
fn container_field_path_parts(pod_path: &str, list: &str, index: usize, suffix: &[&str]) -> String {
    let suffix_len: usize = suffix.iter().map(|p| p.len()).sum();
    let mut out = String::with_capacity(pod_path.len() + list.len() + suffix_len + 8);
    out.push_str(pod_path);
    out.push('.');
    out.push_str(list);
    push_index(&mut out, index);
    out.push('.');
    for part in suffix {
        out.push_str(part);
    }
    out
}

/// `<pod_path>.<list>[<index>].<field>[<entry>]`, followed by `.<rest>` unless `rest` is empty:
/// the path of a list entry of a container (`env[2].name`), without temporary strings.
fn container_entry_path(
    pod_path: &str,
    list: &str,
    index: usize,
    field: &str,
    entry: usize,
    rest: &str,
) -> String {
    let mut out =
        String::with_capacity(pod_path.len() + list.len() + field.len() + rest.len() + 16);
    out.push_str(pod_path);
    out.push('.');
    out.push_str(list);
    push_index(&mut out, index);
    out.push('.');
    out.push_str(field);
    push_index(&mut out, entry);
    if !rest.is_empty() {
        out.push('.');
        out.push_str(rest);
    }
    out
}

/// Appends `[<index>]` to a path.
fn push_index(out: &mut String, index: usize) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut n = index;
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        start -= 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push('[');
    out.push_str(std::str::from_utf8(digits.get(start..).unwrap_or_default()).unwrap_or_default());
    out.push(']');
}

/// What other objects' controls read of a workload, as a new object: its identity (kind, API
/// version, name, namespace) and its pods' labels at the same place ([`pod_labels`]: a Pod's
/// `metadata.labels`, a controller's `spec.template.metadata.labels`, a CronJob's job-template
/// pod labels), nothing else. `None` for kinds that are not workloads ([`WORKLOAD_KINDS_RC`]).
///
/// Controls that relate objects read nothing else of a workload they did not evaluate (see the
/// table in `controls::relations`: C-0293 and C-0299 compare a Service's or NetworkPolicy's
/// selector with the pod labels of the workloads of its namespace, C-0300 looks an HPA's target
/// up by name; the workload controls read their own object). An inventory of these copies
/// lets a scan keep every object's relations in memory while evaluating the full objects one
/// at a time (`scan-job scan`'s streaming).
pub fn related_copy(obj: &K8sObject) -> Option<K8sObject> {
    let template = template_path(&obj.kind)?;
    let mut value = Value::Object(serde_json::Map::new());
    if let Some(labels) = pod_labels(obj) {
        // metadata.labels under the template path, built from the inside out.
        let mut node = Value::Object(
            [("labels".to_string(), Value::Object(labels.clone()))]
                .into_iter()
                .collect(),
        );
        node = Value::Object([("metadata".to_string(), node)].into_iter().collect());
        for part in template.split('.').filter(|p| !p.is_empty()).rev() {
            node = Value::Object([(part.to_string(), node)].into_iter().collect());
        }
        value = node;
    }
    Some(K8sObject {
        api_version: obj.api_version.clone(),
        kind: obj.kind.clone(),
        name: obj.name.clone(),
        namespace: obj.namespace.clone(),
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_field_paths() {
        assert_eq!(
            container_field_path(
                "spec.template.spec",
                "containers",
                0,
                "securityContext.privileged"
            ),
            "spec.template.spec.containers[0].securityContext.privileged"
        );
        assert_eq!(
            container_field_path("spec", "initContainers", 1234567, "image"),
            "spec.initContainers[1234567].image"
        );
        assert_eq!(
            container_entry_path("spec", "containers", 1, "env", 12, "name"),
            "spec.containers[1].env[12].name"
        );
        assert_eq!(
            container_entry_path("spec", "containers", 0, "volumeMounts", 3, ""),
            "spec.containers[0].volumeMounts[3]"
        );
        let mut s = String::from("a");
        push_index(&mut s, usize::MAX);
        assert_eq!(s, format!("a[{}]", usize::MAX));
        let mut s = String::new();
        push_index(&mut s, 10);
        assert_eq!(s, "[10]");
    }
}
