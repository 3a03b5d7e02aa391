//! A container's environment, as a node's kubelet computes it: `envFrom`, then `env` (`value` with
//! `$(VAR)` expansion, `fieldRef`, `resourceFieldRef`, `configMapKeyRef`, `secretKeyRef`), then
//! the `KUBERNETES_SERVICE_*` variables pointing at the local API server.
//!
//! Service links (`<SVC>_SERVICE_HOST` for every Service in the namespace) are not generated.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::{Api, Client};

/// The address pods use for the API server and as their own IP (everything runs on loopback).
pub const LOOPBACK: &str = "127.0.0.1";

/// ConfigMaps and Secrets of one namespace, fetched once per pod start.
pub(crate) struct ObjectCache {
    client: Client,
    namespace: String,
    configmaps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl ObjectCache {
    pub(crate) fn new(client: Client, namespace: &str) -> Self {
        Self {
            client,
            namespace: namespace.to_owned(),
            configmaps: HashMap::new(),
            secrets: HashMap::new(),
        }
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The ConfigMap `name`, `None` when it does not exist.
    pub(crate) async fn configmap(&mut self, name: &str) -> Result<Option<&ConfigMap>, String> {
        if !self.configmaps.contains_key(name) {
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
            let cm = api
                .get_opt(name)
                .await
                .map_err(|e| format!("reading configmap {}/{name}: {e}", self.namespace))?;
            self.configmaps.insert(name.to_owned(), cm);
        }
        Ok(self.configmaps.get(name).and_then(Option::as_ref))
    }

    /// The Secret `name`, `None` when it does not exist.
    pub(crate) async fn secret(&mut self, name: &str) -> Result<Option<&Secret>, String> {
        if !self.secrets.contains_key(name) {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
            let secret = api
                .get_opt(name)
                .await
                .map_err(|e| format!("reading secret {}/{name}: {e}", self.namespace))?;
            self.secrets.insert(name.to_owned(), secret);
        }
        Ok(self.secrets.get(name).and_then(Option::as_ref))
    }

    /// Every key of ConfigMap `name` (`data` and `binaryData`) as bytes.
    pub(crate) async fn configmap_entries(
        &mut self,
        name: &str,
        optional: bool,
    ) -> Result<Vec<(String, Vec<u8>)>, String> {
        let ns = self.namespace.clone();
        match self.configmap(name).await? {
            Some(cm) => {
                let mut entries: Vec<(String, Vec<u8>)> = cm
                    .data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
                    .collect();
                entries.extend(
                    cm.binary_data
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.0.clone())),
                );
                Ok(entries)
            }
            None if optional => Ok(Vec::new()),
            None => Err(format!("configmap {ns}/{name} not found")),
        }
    }

    /// Every key of Secret `name` as bytes.
    pub(crate) async fn secret_entries(
        &mut self,
        name: &str,
        optional: bool,
    ) -> Result<Vec<(String, Vec<u8>)>, String> {
        let ns = self.namespace.clone();
        match self.secret(name).await? {
            Some(secret) => Ok(secret
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect()),
            None if optional => Ok(Vec::new()),
            None => Err(format!("secret {ns}/{name} not found")),
        }
    }
}

/// An ordered environment where a later definition replaces an earlier one in place.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Env {
    vars: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl Env {
    /// Sets `name` (replacing an earlier value).
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.index.get(&name) {
            Some(i) => {
                if let Some(slot) = self.vars.get_mut(*i) {
                    slot.1 = value;
                }
            }
            None => {
                self.index.insert(name.clone(), self.vars.len());
                self.vars.push((name, value));
            }
        }
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.index
            .get(name)
            .and_then(|i| self.vars.get(*i))
            .map(|(_, v)| v.as_str())
    }

    /// The variables in definition order.
    pub fn vars(&self) -> &[(String, String)] {
        &self.vars
    }
}

/// Kubernetes' `$(VAR)` expansion: `$(NAME)` becomes the value when `NAME` is defined and stays
/// as written otherwise; `$$` becomes `$`.
pub fn expand(input: &str, env: &Env) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match env.get(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The value of a downward-API `fieldRef` path for `pod` on this node.
pub fn field_ref(pod: &Pod, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let map_key = |prefix: &str| -> Option<String> {
        path.strip_prefix(prefix)?
            .strip_suffix("']")
            .map(str::to_owned)
    };
    if let Some(key) = map_key("metadata.labels['") {
        return Ok(meta
            .labels
            .as_ref()
            .and_then(|l| l.get(&key).cloned())
            .unwrap_or_default());
    }
    if let Some(key) = map_key("metadata.annotations['") {
        return Ok(meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(&key).cloned())
            .unwrap_or_default());
    }
    let kv = |map: Option<&std::collections::BTreeMap<String, String>>| {
        map.into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect::<Vec<_>>()
            .join("\n")
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => kv(meta.labels.as_ref()),
        "metadata.annotations" => kv(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".to_owned()),
        "status.podIP" | "status.podIPs" | "status.hostIP" | "status.hostIPs" => {
            LOOPBACK.to_owned()
        }
        other => return Err(format!("fieldRef {other:?} is not supported")),
    })
}

/// Parses a Kubernetes quantity (`500m`, `2`, `128Mi`, `1G`, `1e3`) into a number.
pub fn parse_quantity(q: &str) -> Option<f64> {
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("Ei", 1_152_921_504_606_846_976.0),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let q = q.trim();
    for (suffix, factor) in SUFFIXES {
        if let Some(num) = q.strip_suffix(suffix) {
            return num.parse::<f64>().ok().map(|n| n * factor);
        }
    }
    q.parse::<f64>().ok()
}

/// Node allocatable values used when a container sets no limit (they match the Node object).
pub const NODE_CPU: &str = "16";
/// See [`NODE_CPU`].
pub const NODE_MEMORY: &str = "64Gi";
/// See [`NODE_CPU`].
pub const NODE_EPHEMERAL_STORAGE: &str = "100Gi";
/// See [`NODE_CPU`].
pub const NODE_PODS: &str = "250";

/// The value of a `resourceFieldRef` (`limits.cpu`, `requests.memory`, ...) for `container`,
/// rounded up to whole `divisor`s as the kubelet does.
pub fn resource_field_ref(
    container: &Container,
    resource: &str,
    divisor: Option<&str>,
) -> Result<String, String> {
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| format!("resourceFieldRef {resource:?} is not LIMITS_OR_REQUESTS.NAME"))?;
    let resources = container.resources.as_ref();
    let set = match kind {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => return Err(format!("resourceFieldRef {resource:?} is not supported")),
    };
    let value = set.and_then(|m| m.get(name)).map(|q| q.0.clone());
    let value = match (value, kind, name) {
        (Some(v), _, _) => v,
        (None, "limits", "cpu") => NODE_CPU.to_owned(),
        (None, "limits", "memory") => NODE_MEMORY.to_owned(),
        (None, "limits", "ephemeral-storage") => NODE_EPHEMERAL_STORAGE.to_owned(),
        (None, _, _) => "0".to_owned(),
    };
    let amount =
        parse_quantity(&value).ok_or_else(|| format!("cannot parse quantity {value:?}"))?;
    let divisor = divisor.filter(|d| !d.is_empty()).unwrap_or("1");
    let div = parse_quantity(divisor).ok_or_else(|| format!("cannot parse divisor {divisor:?}"))?;
    // The API server defaults an unset divisor to "0", which means 1 (as in the kubelet).
    let div = if div == 0.0 { 1.0 } else { div };
    if div < 0.0 {
        return Err(format!("divisor {divisor:?} is negative"));
    }
    Ok(format!("{}", (amount / div).ceil()))
}

/// Resolves the environment of `container` in `pod`, then adds the `KUBERNETES_SERVICE_*`
/// variables for the API server on 127.0.0.1:`apiserver_port`.
pub(crate) async fn container_env(
    cache: &mut ObjectCache,
    pod: &Pod,
    container: &Container,
    apiserver_port: u16,
) -> Result<Env, String> {
    let mut env = Env::default();
    let port = apiserver_port.to_string();
    // Service variables come first so that `$(KUBERNETES_SERVICE_HOST)` expands, and the pod's
    // own definitions may override them.
    env.set("KUBERNETES_SERVICE_HOST", LOOPBACK);
    env.set("KUBERNETES_SERVICE_PORT", port.clone());
    env.set("KUBERNETES_SERVICE_PORT_HTTPS", port.clone());
    env.set("KUBERNETES_PORT", format!("tcp://{LOOPBACK}:{port}"));

    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let entries = if let Some(cm) = &from.config_map_ref {
            cache
                .configmap_entries(&cm.name, cm.optional.unwrap_or(false))
                .await?
        } else if let Some(secret) = &from.secret_ref {
            cache
                .secret_entries(&secret.name, secret.optional.unwrap_or(false))
                .await?
        } else {
            continue;
        };
        for (key, value) in entries {
            env.set(
                format!("{prefix}{key}"),
                String::from_utf8_lossy(&value).into_owned(),
            );
        }
    }

    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (_, Some(from)) => {
                if let Some(field) = &from.field_ref {
                    Some(field_ref(pod, &field.field_path)?)
                } else if let Some(res) = &from.resource_field_ref {
                    Some(resource_field_ref(
                        container,
                        &res.resource,
                        res.divisor.as_ref().map(|d| d.0.as_str()),
                    )?)
                } else if let Some(sel) = &from.config_map_key_ref {
                    let optional = sel.optional.unwrap_or(false);
                    let entries = cache.configmap_entries(&sel.name, optional).await?;
                    match entries.into_iter().find(|(k, _)| *k == sel.key) {
                        Some((_, v)) => Some(String::from_utf8_lossy(&v).into_owned()),
                        None if optional => None,
                        None => {
                            return Err(format!(
                                "env {}: key {:?} not found in configmap {}",
                                var.name, sel.key, sel.name
                            ));
                        }
                    }
                } else if let Some(sel) = &from.secret_key_ref {
                    let optional = sel.optional.unwrap_or(false);
                    let entries = cache.secret_entries(&sel.name, optional).await?;
                    match entries.into_iter().find(|(k, _)| *k == sel.key) {
                        Some((_, v)) => Some(String::from_utf8_lossy(&v).into_owned()),
                        None if optional => None,
                        None => {
                            return Err(format!(
                                "env {}: key {:?} not found in secret {}",
                                var.name, sel.key, sel.name
                            ));
                        }
                    }
                } else {
                    return Err(format!("env {}: unsupported valueFrom", var.name));
                }
            }
            (Some(value), None) => Some(expand(value, &env)),
            (None, None) => Some(String::new()),
        };
        if let Some(value) = value {
            env.set(var.name.clone(), value);
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use kube::api::ObjectMeta;
    use rstest::rstest;

    fn env(vars: &[(&str, &str)]) -> Env {
        let mut env = Env::default();
        for (k, v) in vars {
            env.set(*k, *v);
        }
        env
    }

    #[rstest]
    #[case::plain("hello", "hello")]
    #[case::defined("x=$(A)", "x=1")]
    #[case::two("$(A)$(B)", "12")]
    #[case::undefined("$(C)", "$(C)")]
    #[case::escaped("$$(A)", "$(A)")]
    #[case::dollar_alone("cost $5", "cost $5")]
    #[case::unclosed("$(A", "$(A")]
    #[case::trailing("a$", "a$")]
    fn expansion(#[case] input: &str, #[case] output: &str) {
        assert_eq!(expand(input, &env(&[("A", "1"), ("B", "2")])), output);
    }

    #[test]
    fn later_definitions_replace_in_place() {
        let mut e = env(&[("A", "1"), ("B", "2")]);
        e.set("A", "3");
        assert_eq!(
            e.vars(),
            &[
                ("A".to_owned(), "3".to_owned()),
                ("B".to_owned(), "2".to_owned())
            ]
        );
    }

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                uid: Some("u-1".into()),
                labels: Some([("app".to_owned(), "x".to_owned())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("kubevigil-local".into()),
                service_account_name: Some("sa".into()),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[rstest]
    #[case::name("metadata.name", "p")]
    #[case::namespace("metadata.namespace", "ns")]
    #[case::uid("metadata.uid", "u-1")]
    #[case::label("metadata.labels['app']", "x")]
    #[case::missing_label("metadata.labels['nope']", "")]
    #[case::labels("metadata.labels", "app=\"x\"")]
    #[case::node("spec.nodeName", "kubevigil-local")]
    #[case::sa("spec.serviceAccountName", "sa")]
    #[case::pod_ip("status.podIP", "127.0.0.1")]
    fn field_refs(#[case] path: &str, #[case] value: &str) {
        assert_eq!(field_ref(&pod(), path).unwrap(), value);
    }

    #[test]
    fn unknown_field_ref_is_an_error() {
        assert!(field_ref(&pod(), "spec.nope").is_err());
    }

    #[rstest]
    #[case::milli("500m", 0.5)]
    #[case::whole("2", 2.0)]
    #[case::mebi("128Mi", 134_217_728.0)]
    #[case::giga("1G", 1e9)]
    fn quantities(#[case] q: &str, #[case] n: f64) {
        assert_eq!(parse_quantity(q), Some(n));
    }

    #[test]
    fn resource_field_refs_round_up_and_default_to_the_node() {
        let c = Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                limits: Some(
                    [
                        ("cpu".to_owned(), Quantity("500m".into())),
                        ("memory".to_owned(), Quantity("128Mi".into())),
                    ]
                    .into(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(resource_field_ref(&c, "limits.cpu", None).unwrap(), "1");
        assert_eq!(
            resource_field_ref(&c, "limits.memory", Some("1Mi")).unwrap(),
            "128"
        );
        assert_eq!(resource_field_ref(&c, "requests.cpu", None).unwrap(), "0");
        assert_eq!(
            resource_field_ref(&c, "limits.cpu", Some("0")).unwrap(),
            "1"
        );
        let bare = Container::default();
        assert_eq!(resource_field_ref(&bare, "limits.cpu", None).unwrap(), "16");
    }
}
