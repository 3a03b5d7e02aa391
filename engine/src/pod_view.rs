//! The containers of a pod spec, found once per evaluated object.
//!
//! Most controls walk the same container lists and read the same fields of each container, of
//! its `securityContext`, of the pod spec and of the pod's `securityContext`. Manifests are raw
//! JSON, whose objects are sorted maps: every lookup walks or searches one. Finding those fields
//! in one pass per map and object (in the [`super::Memo`]) instead of once per control and
//! container removes most lookups: a control reads them through [`Viewed`] objects, with the
//! same `field("key")` calls as on plain JSON. The view holds only references into the object,
//! so it reports exactly what the JSON says.

use crate::object::Field;
use serde_json::{Map, Value};

use super::object::array;

/// The container lists of a pod spec, in the order the controls inspect them.
pub const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// One container of a pod spec (a JSON object entry of one of its lists). Small and `Copy`:
/// every container walk of every control passes these by value, so the looked-up fields stay in
/// the [`PodView`] and are borrowed.
#[derive(Clone, Copy, Debug)]
pub struct ContainerView<'a> {
    /// The container value (always a JSON object).
    pub value: &'a Value,
    /// `containers`, `initContainers` or `ephemeralContainers`.
    pub list: &'static str,
    /// Index in its list (non-object entries keep their place in the numbering).
    pub index: usize,
    /// The fields found once per object; `None` outside the memo (looked up on demand).
    fields: Option<&'a ContainerFields<'a>>,
}

/// A set of fields of one JSON object, found in one pass over its keys (see
/// [`known_fields!`]).
pub trait KnownFields<'a> {
    /// `Some(what the object holds at key)` when `key` is one of the set, else `None` (the
    /// caller then looks it up).
    fn by_key(&self, key: &str) -> Option<Option<&'a Value>>;
}

/// Declares a struct of the given `field => "key"` pairs with `of`, one walk over a map's keys
/// that fills them, and its [`KnownFields`] lookup by key name. A control reading
/// `sc.field("runAsUser")` through a [`Viewed`] then gets the field without searching the map
/// (`by_key` on a literal key folds to the field once inlined).
macro_rules! known_fields {
    ($(#[$doc:meta])* $name:ident { $($field:ident => $key:literal),* $(,)? }) => {
        $(#[$doc])*
        /// Each field is exactly what `value.get(key)` returns.
        #[derive(Clone, Copy, Debug, Default)]
        pub struct $name<'a> {
            $(
                #[doc = concat!("`", $key, "`.")]
                pub $field: Option<&'a Value>,
            )*
        }

        impl<'a> $name<'a> {
            /// One walk over the keys of `map`.
            pub fn of(map: &'a Map<String, Value>) -> Self {
                let mut fields = $name::default();
                for (key, value) in map {
                    let slot = match key.as_str() {
                        $($key => &mut fields.$field,)*
                        _ => continue,
                    };
                    *slot = Some(value);
                }
                fields
            }

            /// [`Self::of`] the value when it is an object; all fields `None` otherwise.
            pub fn of_value(value: &'a Value) -> Self {
                value.as_object().map(Self::of).unwrap_or_default()
            }
        }

        impl<'a> KnownFields<'a> for $name<'a> {
            #[inline]
            fn by_key(&self, key: &str) -> Option<Option<&'a Value>> {
                match key {
                    $($key => Some(self.$field),)*
                    _ => None,
                }
            }
        }
    };
}

known_fields! {
    /// The fields of a pod's or container's `securityContext` that the controls read.
    SecurityContextFields {
        run_as_non_root => "runAsNonRoot",
        run_as_user => "runAsUser",
        run_as_group => "runAsGroup",
        privileged => "privileged",
        allow_privilege_escalation => "allowPrivilegeEscalation",
        read_only_root_filesystem => "readOnlyRootFilesystem",
        capabilities => "capabilities",
        se_linux_options => "seLinuxOptions",
        seccomp_profile => "seccompProfile",
        proc_mount => "procMount",
        windows_options => "windowsOptions",
        fs_group => "fsGroup",
        fs_group_change_policy => "fsGroupChangePolicy",
        sysctls => "sysctls",
        supplemental_groups => "supplementalGroups",
    }
}

known_fields! {
    /// The pod-level fields of a pod spec that the controls read.
    PodSpecFields {
        host_network => "hostNetwork",
        host_pid => "hostPID",
        host_ipc => "hostIPC",
        volumes => "volumes",
        service_account_name => "serviceAccountName",
        service_account => "serviceAccount",
        automount_service_account_token => "automountServiceAccountToken",
        node_selector => "nodeSelector",
        os => "os",
        runtime_class_name => "runtimeClassName",
        security_context => "securityContext",
        containers => "containers",
        init_containers => "initContainers",
        ephemeral_containers => "ephemeralContainers",
    }
}

known_fields! {
    /// The sections of a container's `resources`.
    ResourceSections {
        limits => "limits",
        requests => "requests",
    }
}

known_fields! {
    /// The quantities of one section of a container's `resources`.
    ResourceQuantities {
        cpu => "cpu",
        memory => "memory",
    }
}

/// `resources.<section>.<name>` of a container for the sections `limits` and `requests` and the
/// names `cpu` and `memory` (the quantities the resource controls read, each several times).
#[derive(Clone, Copy, Debug, Default)]
struct Quantities<'a> {
    limits: ResourceQuantities<'a>,
    requests: ResourceQuantities<'a>,
}

impl<'a> Quantities<'a> {
    fn of(resources: &'a Value) -> Self {
        let sections = ResourceSections::of_value(resources);
        let quantities =
            |s: Option<&'a Value>| s.map(ResourceQuantities::of_value).unwrap_or_default();
        Quantities {
            limits: quantities(sections.limits),
            requests: quantities(sections.requests),
        }
    }

    /// `Some(the quantity)` for a known section and name, `None` for others.
    #[inline]
    fn get(&self, section: &str, name: &str) -> Option<Option<&'a Value>> {
        let section = match section {
            "limits" => &self.limits,
            "requests" => &self.requests,
            _ => return None,
        };
        section.by_key(name)
    }
}

/// A JSON object with some of its fields found beforehand: reads those from `fields`, any other
/// key from the object. Outside the memo there are no fields and every key is looked up.
#[derive(Debug)]
pub struct Viewed<'a, F> {
    /// The object (`Null` when absent).
    pub value: &'a Value,
    /// Its fields, when found beforehand.
    fields: Option<&'a F>,
}

impl<F> Clone for Viewed<'_, F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F> Copy for Viewed<'_, F> {}

impl<'a, F> Viewed<'a, F> {
    /// `value` with its fields found beforehand (`None`: look every key up).
    pub fn new(value: &'a Value, fields: Option<&'a F>) -> Self {
        Viewed { value, fields }
    }
}

impl<'a, F: KnownFields<'a>> Field<'a> for Viewed<'a, F> {
    #[inline]
    fn field(self, key: &str) -> Option<&'a Value> {
        match self.fields.and_then(|f| f.by_key(key)) {
            Some(found) => found,
            None => self.value.field(key),
        }
    }
}

/// A `securityContext` (pod or container) as the controls read it.
pub type SecurityContext<'a> = Viewed<'a, SecurityContextFields<'a>>;

/// Declares, from one list of `field => "key"` pairs, [`ContainerKeys`] (those keys and
/// `securityContext`, found by [`known_fields!`]) and the [`ContainerView`] accessors that read
/// them.
macro_rules! container_fields {
    ($($(#[$doc:meta])* $field:ident => $key:literal),* $(,)?) => {
        known_fields! {
            /// The keys of a container the controls read most.
            ContainerKeys {
                $($field => $key,)*
                security_context => "securityContext",
            }
        }

        impl<'a> ContainerView<'a> {
            $(
                $(#[$doc])*
                pub fn $field(&self) -> Option<&'a Value> {
                    self.keys().field($key)
                }
            )*
        }
    };
}

/// What the view finds once per container: its keys, and below them the fields of its
/// `securityContext` and its resource quantities.
#[derive(Clone, Copy, Debug, Default)]
struct ContainerFields<'a> {
    keys: ContainerKeys<'a>,
    security_context: SecurityContextFields<'a>,
    quantities: Quantities<'a>,
}

impl<'a> ContainerFields<'a> {
    fn of(map: &'a Map<String, Value>) -> Self {
        let keys = ContainerKeys::of(map);
        ContainerFields {
            keys,
            security_context: keys
                .security_context
                .map(SecurityContextFields::of_value)
                .unwrap_or_default(),
            quantities: keys.resources.map(Quantities::of).unwrap_or_default(),
        }
    }
}

container_fields! {
    /// `name`.
    name => "name",
    /// `image`.
    image => "image",
    /// `imagePullPolicy`.
    image_pull_policy => "imagePullPolicy",
    /// `env`.
    env => "env",
    /// `envFrom`.
    env_from => "envFrom",
    /// `volumeMounts`.
    volume_mounts => "volumeMounts",
    /// `ports`.
    ports => "ports",
    /// `resources`.
    resources => "resources",
    /// `livenessProbe`.
    liveness_probe => "livenessProbe",
    /// `readinessProbe`.
    readiness_probe => "readinessProbe",
    /// `command`.
    command => "command",
}

impl<'a> ContainerView<'a> {
    /// The view of one list entry without looked-up fields, `None` for entries that are not
    /// JSON objects.
    fn direct(value: &'a Value, list: &'static str, index: usize) -> Option<Self> {
        value.is_object().then_some(ContainerView {
            value,
            list,
            index,
            fields: None,
        })
    }

    /// The list at `field` (one of this view's fields), or an empty slice when it is absent or
    /// not a list.
    pub fn list_of(field: Option<&'a Value>) -> &'a [Value] {
        field
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The container's `securityContext` (`Null` when absent), with its fields when found
    /// beforehand.
    pub fn sc(&self) -> SecurityContext<'a> {
        Viewed::new(
            self.keys().field("securityContext").unwrap_or(&Value::Null),
            self.fields.map(|f| &f.security_context),
        )
    }

    /// The container's keys, found beforehand when the view has them.
    fn keys(&self) -> Viewed<'a, ContainerKeys<'a>> {
        Viewed::new(self.value, self.fields.map(|f| &f.keys))
    }

    /// `resources.<section>.<name>` of the container (`resources.limits.cpu`).
    pub fn resource(&self, section: &str, name: &str) -> Option<&'a Value> {
        match self.fields.and_then(|f| f.quantities.get(section, name)) {
            Some(found) => found,
            None => self.resources()?.field(section)?.field(name),
        }
    }

    /// The container's `image` if it is a string.
    pub fn image_str(&self) -> Option<&'a str> {
        self.image().and_then(Value::as_str)
    }
}

/// One container of the view: where it is, and its fields.
#[derive(Clone, Debug)]
struct Entry<'a> {
    value: &'a Value,
    list: &'static str,
    index: usize,
    fields: ContainerFields<'a>,
}

/// The containers of a pod spec: `containers`, then `initContainers`, then
/// `ephemeralContainers`, each in list order, non-object entries left out.
#[derive(Clone, Debug)]
pub struct PodView<'a> {
    /// The pod-level fields of the spec.
    pub fields: PodSpecFields<'a>,
    /// The fields of the pod-level `securityContext`.
    security_context: SecurityContextFields<'a>,
    /// All containers, lists in [`CONTAINER_LISTS`] order.
    all: Vec<Entry<'a>>,
    /// End of `containers` in `all`.
    main_end: usize,
    /// End of `initContainers` in `all`.
    init_end: usize,
}

impl<'a> PodView<'a> {
    /// The view of a pod spec value.
    pub fn of(spec: &'a Value) -> Self {
        let fields = PodSpecFields::of_value(spec);
        let lists = [
            fields.containers,
            fields.init_containers,
            fields.ephemeral_containers,
        ]
        .map(ContainerView::list_of);
        let mut all = Vec::with_capacity(lists.iter().map(|l| l.len()).sum());
        let mut ends = [0usize; 3];
        for ((list, values), end) in CONTAINER_LISTS.iter().zip(lists).zip(&mut ends) {
            all.extend(values.iter().enumerate().filter_map(|(index, value)| {
                value.as_object().map(|map| Entry {
                    value,
                    list,
                    index,
                    fields: ContainerFields::of(map),
                })
            }));
            *end = all.len();
        }
        PodView {
            security_context: fields
                .security_context
                .map(SecurityContextFields::of_value)
                .unwrap_or_default(),
            fields,
            all,
            main_end: ends[0],
            init_end: ends[1],
        }
    }

    /// The containers of the first `lists` lists of [`CONTAINER_LISTS`] (1: `containers`, 2: and
    /// `initContainers`, 3 or more: all three).
    pub fn first_lists<'s>(&'s self, lists: usize) -> impl Iterator<Item = ContainerView<'s>> + 's {
        let end = match lists {
            0 => 0,
            1 => self.main_end,
            2 => self.init_end,
            _ => self.all.len(),
        };
        self.all
            .get(..end)
            .unwrap_or_default()
            .iter()
            .map(|e| ContainerView {
                value: e.value,
                list: e.list,
                index: e.index,
                fields: Some(&e.fields),
            })
    }

    /// The pod-level `securityContext` (`Null` when absent), with its fields.
    pub fn security_context(&self) -> SecurityContext<'_> {
        Viewed::new(
            self.fields.security_context.unwrap_or(&Value::Null),
            Some(&self.security_context),
        )
    }
}

/// The containers of the given lists of `spec`, in list order, without a precomputed view (for
/// pod specs outside the memo). `lists` must be a prefix of [`CONTAINER_LISTS`].
pub fn containers_of<'a>(
    spec: &'a Value,
    lists: &'static [&'static str],
) -> impl Iterator<Item = ContainerView<'a>> {
    lists.iter().flat_map(move |list| {
        array(spec, list)
            .iter()
            .enumerate()
            .filter_map(move |(index, value)| ContainerView::direct(value, list, index))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lists_in_order_with_original_indexes() {
        let spec = json!({
            "ephemeralContainers": [{"name": "e"}],
            "initContainers": ["not an object", {"name": "i", "securityContext": {"privileged": true}}],
            "containers": [{"name": "a"}, null, {"name": "b"}]
        });
        let view = PodView::of(&spec);
        let names = |n: usize| -> Vec<(&str, usize)> {
            view.first_lists(n).map(|c| (c.list, c.index)).collect()
        };
        assert_eq!(names(1), [("containers", 0), ("containers", 2)]);
        assert_eq!(
            names(2),
            [("containers", 0), ("containers", 2), ("initContainers", 1)]
        );
        assert_eq!(names(3).len(), 4);
        let viewed: Vec<ContainerView<'_>> = view.first_lists(3).collect();
        assert_eq!(viewed[2].sc().value, &json!({"privileged": true}));
        assert!(viewed[0].sc().value.is_null());
        let direct: Vec<ContainerView<'_>> = containers_of(&spec, &CONTAINER_LISTS).collect();
        assert_eq!(
            direct.iter().map(|c| (c.list, c.index)).collect::<Vec<_>>(),
            names(3)
        );
        for (a, b) in viewed.iter().zip(&direct) {
            assert_eq!(a.sc().value, b.sc().value);
            assert_eq!(a.name(), b.name());
        }
    }

    #[test]
    fn looked_up_fields_are_what_get_returns() {
        let spec = json!({"containers": [{
            "name": "web", "image": "nginx:1", "imagePullPolicy": "Always",
            "env": [{"name": "A", "value": "1"}], "envFrom": [{"secretRef": {"name": "s"}}],
            "volumeMounts": [{"name": "v", "mountPath": "/v"}], "ports": [{"containerPort": 80}],
            "resources": {"limits": {"cpu": "1"}}, "livenessProbe": {"tcpSocket": {"port": 80}},
            "readinessProbe": null, "command": ["/bin/web"], "securityContext": {"runAsUser": 1},
            "args": ["--x"]
        }, {"name": "bare"}]});
        let view = PodView::of(&spec);
        let direct: Vec<ContainerView<'_>> = containers_of(&spec, &CONTAINER_LISTS).collect();
        for (c, d) in view.first_lists(3).zip(&direct) {
            let v = c.value;
            let pairs = [
                (c.name(), d.name(), v.field("name")),
                (c.image(), d.image(), v.field("image")),
                (
                    c.image_pull_policy(),
                    d.image_pull_policy(),
                    v.field("imagePullPolicy"),
                ),
                (c.env(), d.env(), v.field("env")),
                (c.env_from(), d.env_from(), v.field("envFrom")),
                (
                    c.volume_mounts(),
                    d.volume_mounts(),
                    v.field("volumeMounts"),
                ),
                (c.ports(), d.ports(), v.field("ports")),
                (c.resources(), d.resources(), v.field("resources")),
                (
                    c.liveness_probe(),
                    d.liveness_probe(),
                    v.field("livenessProbe"),
                ),
                (
                    c.readiness_probe(),
                    d.readiness_probe(),
                    v.field("readinessProbe"),
                ),
                (c.command(), d.command(), v.field("command")),
            ];
            for (viewed, looked_up, expected) in pairs {
                assert_eq!(viewed, expected);
                assert_eq!(looked_up, expected);
            }
            assert_eq!(c.sc().value, d.sc().value);
        }
        assert_eq!(view.first_lists(1).count(), 2);
    }

    #[test]
    fn viewed_objects_read_what_get_returns() {
        let spec = json!({
            "hostPID": true, "volumes": [{"name": "v"}], "serviceAccountName": "sa",
            "nodeSelector": {"kubernetes.io/os": "linux"}, "os": null, "schedulerName": "x",
            "securityContext": {"runAsUser": 0, "fsGroup": 1, "sysctls": [], "seccompProfile":
                {"type": "RuntimeDefault"}, "unknownField": 1},
            "containers": [{"name": "a", "securityContext": {"privileged": true,
                "capabilities": {"add": ["NET_ADMIN"]}, "windowsOptions": {"hostProcess": true}}},
                {"name": "b", "securityContext": "not an object"}]
        });
        let view = PodView::of(&spec);
        let pod_keys = [
            "hostNetwork",
            "hostPID",
            "hostIPC",
            "volumes",
            "serviceAccountName",
            "serviceAccount",
            "automountServiceAccountToken",
            "nodeSelector",
            "os",
            "runtimeClassName",
            "securityContext",
            "containers",
            "initContainers",
            "ephemeralContainers",
            "schedulerName",
            "missing",
        ];
        let pod = Viewed::new(&spec, Some(&view.fields));
        for key in pod_keys {
            assert_eq!(pod.field(key), spec.get(key), "pod {key}");
        }
        let sc_keys = [
            "runAsNonRoot",
            "runAsUser",
            "runAsGroup",
            "privileged",
            "allowPrivilegeEscalation",
            "readOnlyRootFilesystem",
            "capabilities",
            "seLinuxOptions",
            "seccompProfile",
            "procMount",
            "windowsOptions",
            "fsGroup",
            "fsGroupChangePolicy",
            "sysctls",
            "supplementalGroups",
            "unknownField",
            "missing",
        ];
        let pod_sc = view.security_context();
        let containers: Vec<ContainerView<'_>> = view.first_lists(1).collect();
        let direct: Vec<ContainerView<'_>> = containers_of(&spec, &CONTAINER_LISTS).collect();
        for key in sc_keys {
            assert_eq!(
                pod_sc.field(key),
                spec["securityContext"].get(key),
                "pod sc {key}"
            );
            for (c, d) in containers.iter().zip(&direct) {
                let expected = c.value.get("securityContext").and_then(|sc| sc.get(key));
                assert_eq!(c.sc().field(key), expected, "container sc {key}");
                assert_eq!(d.sc().field(key), expected, "looked-up container sc {key}");
            }
        }
    }

    #[test]
    fn resource_quantities_are_what_get_returns() {
        let spec = json!({"containers": [
            {"resources": {"limits": {"cpu": "1", "memory": null, "nvidia.com/gpu": 1},
                "requests": {"memory": "1Gi"}, "claims": [{"name": "c"}]}},
            {"resources": {"limits": "not an object"}},
            {"resources": null},
            {}
        ]});
        let view = PodView::of(&spec);
        let direct: Vec<ContainerView<'_>> = containers_of(&spec, &CONTAINER_LISTS).collect();
        for (c, d) in view.first_lists(1).zip(&direct) {
            for section in ["limits", "requests", "claims", "other"] {
                for name in ["cpu", "memory", "nvidia.com/gpu", "name"] {
                    let expected = c
                        .value
                        .get("resources")
                        .and_then(|r| r.get(section))
                        .and_then(|s| s.get(name));
                    assert_eq!(c.resource(section, name), expected, "{section}.{name}");
                    assert_eq!(d.resource(section, name), expected, "{section}.{name}");
                }
            }
        }
    }
}
