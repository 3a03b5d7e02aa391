//! The containers of a pod spec, found once per evaluated object.
//!
//! Most controls walk the same container lists and read each container's `securityContext`.
//! Manifests are raw JSON, whose objects are ordered maps: every `get` is a chain of string
//! comparisons. Looking the lists and security contexts up once per object (in the
//! [`super::Memo`]) instead of once per control and container removes most of them. The view
//! holds only references into the object, so it reports exactly what the JSON says.

use serde_json::Value;

use super::object::array;

/// The container lists of a pod spec, in the order the controls inspect them.
pub const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// One container of a pod spec (a JSON object entry of one of its lists), with the fields the
/// controls read most, found in one pass over the container's keys. Each field is exactly what
/// `value.get(key)` returns, so a control reads the same JSON either way.
#[derive(Clone, Copy, Debug)]
pub struct ContainerView<'a> {
    /// The container value (always a JSON object).
    pub value: &'a Value,
    /// `containers`, `initContainers` or `ephemeralContainers`.
    pub list: &'static str,
    /// Index in its list (non-object entries keep their place in the numbering).
    pub index: usize,
    /// Its `securityContext`, or `Null` when absent.
    pub security_context: &'a Value,
    /// `name`.
    pub name: Option<&'a Value>,
    /// `image`.
    pub image: Option<&'a Value>,
    /// `imagePullPolicy`.
    pub image_pull_policy: Option<&'a Value>,
    /// `env`.
    pub env: Option<&'a Value>,
    /// `envFrom`.
    pub env_from: Option<&'a Value>,
    /// `volumeMounts`.
    pub volume_mounts: Option<&'a Value>,
    /// `ports`.
    pub ports: Option<&'a Value>,
    /// `resources`.
    pub resources: Option<&'a Value>,
    /// `livenessProbe`.
    pub liveness_probe: Option<&'a Value>,
    /// `readinessProbe`.
    pub readiness_probe: Option<&'a Value>,
    /// `command`.
    pub command: Option<&'a Value>,
}

impl<'a> ContainerView<'a> {
    /// The view of one list entry, `None` for entries that are not JSON objects.
    fn of(value: &'a Value, list: &'static str, index: usize) -> Option<Self> {
        let map = value.as_object()?;
        let mut view = ContainerView {
            value,
            list,
            index,
            security_context: &Value::Null,
            name: None,
            image: None,
            image_pull_policy: None,
            env: None,
            env_from: None,
            volume_mounts: None,
            ports: None,
            resources: None,
            liveness_probe: None,
            readiness_probe: None,
            command: None,
        };
        // One walk over the keys instead of a map search per field and control.
        for (key, field) in map {
            let slot = match key.as_str() {
                "securityContext" => {
                    view.security_context = field;
                    continue;
                }
                "name" => &mut view.name,
                "image" => &mut view.image,
                "imagePullPolicy" => &mut view.image_pull_policy,
                "env" => &mut view.env,
                "envFrom" => &mut view.env_from,
                "volumeMounts" => &mut view.volume_mounts,
                "ports" => &mut view.ports,
                "resources" => &mut view.resources,
                "livenessProbe" => &mut view.liveness_probe,
                "readinessProbe" => &mut view.readiness_probe,
                "command" => &mut view.command,
                _ => continue,
            };
            *slot = Some(field);
        }
        Some(view)
    }

    /// The list at `field` (one of this view's fields), or an empty slice when it is absent or
    /// not a list.
    pub fn list_of(field: Option<&'a Value>) -> &'a [Value] {
        field
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The container's `name` if it is a string.
    pub fn name_str(&self) -> Option<&'a str> {
        self.name.and_then(Value::as_str)
    }

    /// The container's `image` if it is a string.
    pub fn image_str(&self) -> Option<&'a str> {
        self.image.and_then(Value::as_str)
    }
}

/// The containers of a pod spec: `containers`, then `initContainers`, then
/// `ephemeralContainers`, each in list order, non-object entries left out.
#[derive(Clone, Debug)]
pub struct PodView<'a> {
    /// The pod-level `securityContext`, or `Null` when absent.
    pub security_context: &'a Value,
    /// All containers, lists in [`CONTAINER_LISTS`] order.
    all: Vec<ContainerView<'a>>,
    /// End of `containers` in `all`.
    main_end: usize,
    /// End of `initContainers` in `all`.
    init_end: usize,
}

impl<'a> PodView<'a> {
    /// The view of a pod spec value.
    pub fn of(spec: &'a Value) -> Self {
        let lists = CONTAINER_LISTS.map(|list| array(spec, list));
        let mut all = Vec::with_capacity(lists.iter().map(|l| l.len()).sum());
        let mut ends = [0usize; 3];
        for ((list, values), end) in CONTAINER_LISTS.iter().zip(lists).zip(&mut ends) {
            all.extend(
                values
                    .iter()
                    .enumerate()
                    .filter_map(|(index, value)| ContainerView::of(value, list, index)),
            );
            *end = all.len();
        }
        PodView {
            security_context: spec.get("securityContext").unwrap_or(&Value::Null),
            all,
            main_end: ends[0],
            init_end: ends[1],
        }
    }

    /// The containers of the first `lists` lists of [`CONTAINER_LISTS`] (1: `containers`, 2: and
    /// `initContainers`, 3 or more: all three).
    pub fn first_lists(&self, lists: usize) -> &[ContainerView<'a>] {
        let end = match lists {
            0 => 0,
            1 => self.main_end,
            2 => self.init_end,
            _ => self.all.len(),
        };
        self.all.get(..end).unwrap_or_default()
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
            .filter_map(move |(index, value)| ContainerView::of(value, list, index))
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
            view.first_lists(n)
                .iter()
                .map(|c| (c.list, c.index))
                .collect()
        };
        assert_eq!(names(1), [("containers", 0), ("containers", 2)]);
        assert_eq!(
            names(2),
            [("containers", 0), ("containers", 2), ("initContainers", 1)]
        );
        assert_eq!(names(3).len(), 4);
        assert_eq!(
            view.first_lists(2)[2].security_context,
            &json!({"privileged": true})
        );
        assert!(view.first_lists(1)[0].security_context.is_null());
        let direct: Vec<_> = containers_of(&spec, &CONTAINER_LISTS)
            .map(|c| (c.list, c.index))
            .collect();
        assert_eq!(direct, names(3));
    }
}
