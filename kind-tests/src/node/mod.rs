//! The local node: containerd and runc run kubevigil's own images, the CNI bridge gives pods their
//! addresses, and Kubernetes' own kubelet, kube-proxy and kube-scheduler (the same Go multi-call
//! binary as the control plane) run it. [`crate::cluster`] boots and stops it with the control
//! plane; this module holds its layout, configuration and host changes.
//!
//! | path under `<state dir>/node` | what |
//! | --- | --- |
//! | `containerd/{config.toml,root,state,containerd.sock,hosts}` | containerd's own config, data, socket and registry hosts |
//! | `cni/{net.d,ipam}` | the CNI network and host-local's address allocations |
//! | `kubelet/{config.json,kubeconfig,root,pod-logs,plugins,resolv.conf}` | the kubelet |
//! | `proxy/{config.json,kubeconfig}`, `scheduler/kubeconfig` | kube-proxy, kube-scheduler |
//! | `host.json` | the host before boot (sysctls, network namespaces, links): `down` restores it and the clean-stop check compares with it |
//! | `images.json` | the image archives imported at boot |
//!
//! Networking: pods get addresses in [`net::POD_SUBNET`] on the bridge [`net::BRIDGE`]. The API
//! server listens on 127.0.0.1; `local-cluster forward` serves the same port on the bridge's
//! address, which kube-apiserver advertises, so the `kubernetes` Service (10.96.0.1:443, through
//! kube-proxy's rules) reaches it from pods and in-cluster configuration works as on any cluster.
//! The host has `unreachable` routes for the pod and service ranges and a FORWARD guard, so no
//! cluster packet takes the default route. There is no cluster DNS: nothing kubevigil runs
//! resolves names (in-cluster clients use `KUBERNETES_SERVICE_HOST`); pods' resolver is
//! [`net::CLUSTER_DNS`], where nothing answers, never the host's.

pub mod config;
pub mod forward;
pub mod host;
pub mod images;
pub mod net;

use std::path::{Path, PathBuf};

/// The directories and files of the node inside a cluster's state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDirs {
    root: PathBuf,
}

impl NodeDirs {
    /// The node of the cluster whose state directory is `state_root`.
    pub fn new(state_root: &Path) -> Self {
        Self {
            root: state_root.join("node"),
        }
    }
    /// `<state>/node`.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// containerd's directory.
    pub fn containerd(&self) -> PathBuf {
        self.root.join("containerd")
    }
    /// containerd's config file.
    pub fn containerd_config(&self) -> PathBuf {
        self.containerd().join("config.toml")
    }
    /// containerd's root.
    pub fn containerd_root(&self) -> PathBuf {
        self.containerd().join("root")
    }
    /// containerd's state.
    pub fn containerd_state(&self) -> PathBuf {
        self.containerd().join("state")
    }
    /// containerd's socket.
    pub fn containerd_socket(&self) -> PathBuf {
        self.containerd().join("containerd.sock")
    }
    /// Registry hosts configuration.
    pub fn registry_hosts(&self) -> PathBuf {
        self.containerd().join("hosts")
    }
    /// CNI configuration directory.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.root.join("cni/net.d")
    }
    /// host-local's allocations.
    pub fn cni_ipam_dir(&self) -> PathBuf {
        self.root.join("cni/ipam")
    }
    /// The kubelet's directory.
    pub fn kubelet(&self) -> PathBuf {
        self.root.join("kubelet")
    }
    /// The kubelet's `--root-dir`.
    pub fn kubelet_root(&self) -> PathBuf {
        self.kubelet().join("root")
    }
    /// Container logs.
    pub fn pod_logs(&self) -> PathBuf {
        self.kubelet().join("pod-logs")
    }
    /// kube-proxy's directory.
    pub fn proxy(&self) -> PathBuf {
        self.root.join("proxy")
    }
    /// kube-scheduler's directory.
    pub fn scheduler(&self) -> PathBuf {
        self.root.join("scheduler")
    }
    /// The host snapshot taken at boot.
    pub fn host_snapshot(&self) -> PathBuf {
        self.root.join("host.json")
    }
}

/// The node's ports (all picked free at boot).
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct NodePorts {
    /// The kubelet's HTTPS port on the bridge address.
    pub kubelet: u16,
    /// The kubelet's healthz port on 127.0.0.1.
    pub kubelet_healthz: u16,
    /// kube-proxy's healthz port on 127.0.0.1.
    pub proxy_healthz: u16,
    /// kube-proxy's metrics port on 127.0.0.1.
    pub proxy_metrics: u16,
}

/// Files that the node's processes read, written before they start.
pub struct NodeFiles<'a> {
    /// The layout.
    pub dirs: &'a NodeDirs,
    /// The node name.
    pub node_name: &'a str,
    /// The sandbox image reference.
    pub sandbox_image: &'a str,
    /// The API server's port on loopback.
    pub apiserver_port: u16,
    /// The ports.
    pub ports: NodePorts,
    /// The cluster PKI.
    pub pki: &'a crate::certs::PkiPaths,
}

fn write(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)
}

impl NodeFiles<'_> {
    /// Writes every configuration file; returns the first failure with its path.
    pub fn write_all(&self) -> Result<(), (PathBuf, std::io::Error)> {
        let d = self.dirs;
        let kubelet_config = d.kubelet().join("config.json");
        let kubelet_kubeconfig = d.kubelet().join("kubeconfig");
        let resolv = d.kubelet().join("resolv.conf");
        let plugins = d.kubelet().join("plugins");
        let proxy_kubeconfig = d.proxy().join("kubeconfig");
        let (root, state, socket, hosts, cni, ipam, logs) = (
            d.containerd_root(),
            d.containerd_state(),
            d.containerd_socket(),
            d.registry_hosts(),
            d.cni_conf_dir(),
            d.cni_ipam_dir(),
            d.pod_logs(),
        );
        let settings = config::NodeSettings {
            node_name: self.node_name,
            containerd_root: &root,
            containerd_state: &state,
            containerd_socket: &socket,
            registry_hosts: &hosts,
            cni_conf_dir: &cni,
            cni_ipam_dir: &ipam,
            sandbox_image: self.sandbox_image,
            ca_cert: &self.pki.ca_cert,
            kubelet_serving: (
                &self.pki.kubelet_serving_cert,
                &self.pki.kubelet_serving_key,
            ),
            kubelet_port: self.ports.kubelet,
            kubelet_healthz_port: self.ports.kubelet_healthz,
            pod_logs_dir: &logs,
            volume_plugin_dir: &plugins,
            resolv_conf: &resolv,
            proxy_kubeconfig: &proxy_kubeconfig,
            proxy_healthz_port: self.ports.proxy_healthz,
            proxy_metrics_port: self.ports.proxy_metrics,
        };
        let port = self.apiserver_port;
        let ca = &self.pki.ca_cert;
        let files: Vec<(PathBuf, String)> = vec![
            (d.containerd_config(), config::containerd_toml(&settings)),
            (
                hosts.join("_default/hosts.toml"),
                config::default_registry_hosts_toml(),
            ),
            (
                cni.join("10-kubevigil.conflist"),
                config::cni_conflist(&settings),
            ),
            (kubelet_config, config::kubelet_config(&settings)),
            (
                kubelet_kubeconfig,
                config::kubeconfig(
                    port,
                    ca,
                    &format!("system:node:{}", self.node_name),
                    &self.pki.kubelet.cert,
                    &self.pki.kubelet.key,
                ),
            ),
            (
                resolv.clone(),
                "# No cluster DNS and no host resolver on the local node.\n".to_owned(),
            ),
            (
                d.proxy().join("config.json"),
                config::proxy_config(&settings),
            ),
            (
                proxy_kubeconfig,
                config::kubeconfig(
                    port,
                    ca,
                    "system:kube-proxy",
                    &self.pki.proxy.cert,
                    &self.pki.proxy.key,
                ),
            ),
            (
                d.scheduler().join("kubeconfig"),
                config::kubeconfig(
                    port,
                    ca,
                    "system:kube-scheduler",
                    &self.pki.scheduler.cert,
                    &self.pki.scheduler.key,
                ),
            ),
        ];
        for (path, text) in files {
            write(&path, &text).map_err(|e| (path.clone(), e))?;
        }
        for dir in [root, state, ipam, logs, plugins, d.kubelet_root()] {
            std::fs::create_dir_all(&dir).map_err(|e| (dir.clone(), e))?;
        }
        Ok(())
    }

    /// containerd's command line (after the program).
    pub fn containerd_args(&self) -> Vec<String> {
        vec![
            format!("--config={}", self.dirs.containerd_config().display()),
            "--log-level=warn".to_owned(),
        ]
    }

    /// The kubelet's command line (after the program).
    pub fn kubelet_args(&self) -> Vec<String> {
        let d = self.dirs;
        vec![
            "kubelet".to_owned(),
            format!("--config={}", d.kubelet().join("config.json").display()),
            format!("--kubeconfig={}", d.kubelet().join("kubeconfig").display()),
            format!("--root-dir={}", d.kubelet_root().display()),
            format!("--cert-dir={}", d.kubelet().join("pki").display()),
            format!("--hostname-override={}", self.node_name),
            format!("--node-ip={}", net::BRIDGE_IP),
            "--v=1".to_owned(),
        ]
    }

    /// kube-proxy's command line (after the program).
    pub fn proxy_args(&self) -> Vec<String> {
        vec![
            "proxy".to_owned(),
            format!(
                "--config={}",
                self.dirs.proxy().join("config.json").display()
            ),
        ]
    }

    /// kube-scheduler's command line (after the program).
    pub fn scheduler_args(&self) -> Vec<String> {
        let kubeconfig = self.dirs.scheduler().join("kubeconfig");
        vec![
            "scheduler".to_owned(),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--authentication-kubeconfig={}", kubeconfig.display()),
            format!("--authorization-kubeconfig={}", kubeconfig.display()),
            "--leader-elect=false".to_owned(),
            "--bind-address=127.0.0.1".to_owned(),
            "--secure-port=0".to_owned(),
        ]
    }
}

/// The `ctr` command for this node's containerd in the CRI namespace.
pub fn ctr(dirs: &NodeDirs, args: &[&str]) -> Result<String, host::CommandError> {
    let socket = dirs.containerd_socket().display().to_string();
    let mut all = vec!["--address", socket.as_str(), "--namespace", "k8s.io"];
    all.extend_from_slice(args);
    host::run("ctr", &all)
}

/// The PIDs of the running tasks of this node's containerd (from `ctr tasks ls`).
pub fn running_tasks(dirs: &NodeDirs) -> Result<Vec<(String, u32)>, host::CommandError> {
    let out = ctr(dirs, &["tasks", "ls"])?;
    Ok(parse_tasks(&out)
        .into_iter()
        .filter(|t| t.2 == "RUNNING")
        .map(|t| (t.0, t.1))
        .collect())
}

/// `ctr tasks ls` output: (container id, pid, status).
fn parse_tasks(out: &str) -> Vec<(String, u32, String)> {
    out.lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let id = f.next()?.to_owned();
            let pid = f.next()?.parse().ok()?;
            let status = f.next()?.to_owned();
            Some((id, pid, status))
        })
        .collect()
}

/// The host PID of a container's process, from its status's `containerd://<id>`.
pub fn container_pid(dirs: &NodeDirs, container_id: &str) -> Option<u32> {
    let id = container_id.strip_prefix("containerd://")?;
    let out = ctr(dirs, &["tasks", "ls"]).ok()?;
    parse_tasks(&out)
        .into_iter()
        .find(|t| t.0 == id && t.2 == "RUNNING")
        .map(|t| t.1)
}

/// Labels the CRI plugin puts on every container it creates for a pod.
const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";

/// The running containers named `container` in pods of `namespace`, as (container id, pid),
/// read from containerd itself: the API's container status waits for the kubelet's next relist,
/// and a scan container may have exited by then.
pub fn running_pod_containers(
    dirs: &NodeDirs,
    namespace: &str,
    container: &str,
) -> Result<Vec<(String, u32)>, host::CommandError> {
    let filter = format!(
        "labels.\"{POD_NAMESPACE_LABEL}\"=={namespace},labels.\"{CONTAINER_NAME_LABEL}\"=={container}"
    );
    let ids = ctr(dirs, &["containers", "ls", "--quiet", &filter])?;
    let ids: Vec<&str> = ids
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(running_tasks(dirs)?
        .into_iter()
        .filter(|(id, _)| ids.contains(&id.as_str()))
        .collect())
}

/// The name of the pod a container belongs to, from the labels containerd keeps for it.
pub fn container_pod_name(dirs: &NodeDirs, container_id: &str) -> Option<String> {
    let info = ctr(dirs, &["containers", "info", container_id]).ok()?;
    pod_name_from_info(&info)
}

/// `ctr containers info` JSON: the pod-name label.
fn pod_name_from_info(info: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(info).ok()?;
    v.get("Labels")?
        .get(POD_NAME_LABEL)?
        .as_str()
        .map(str::to_owned)
}

/// Makes image `target` another name of the imported image `source` on this node (`ctr images
/// tag --force`), so pods can use several tags of one image without a registry.
pub fn tag_image(dirs: &NodeDirs, source: &str, target: &str) -> Result<(), host::CommandError> {
    ctr(dirs, &["images", "tag", "--force", source, target]).map(|_| ())
}

/// Kills a container's task with SIGKILL through containerd (as an OOM kill or a crashed runtime
/// would end it); the kubelet sees the exit and restarts or fails it by the pod's policy.
pub fn kill_container(dirs: &NodeDirs, container_id: &str) -> Result<(), host::CommandError> {
    let id = container_id
        .strip_prefix("containerd://")
        .unwrap_or(container_id);
    ctr(dirs, &["tasks", "kill", "--signal", "SIGKILL", id]).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_pod_name_from_container_info() {
        let info = r#"{"ID":"abc","Labels":{"io.kubernetes.pod.name":"kubevigil-scan-1-x","io.kubernetes.container.name":"scan-job"}}"#;
        assert_eq!(
            pod_name_from_info(info).as_deref(),
            Some("kubevigil-scan-1-x")
        );
        assert_eq!(pod_name_from_info(r#"{"ID":"abc","Labels":{}}"#), None);
        assert_eq!(pod_name_from_info("not json"), None);
    }

    #[test]
    fn parses_ctr_task_lists() {
        let out = "TASK    PID     STATUS\nabc     1234    RUNNING\ndef     0       STOPPED\n";
        assert_eq!(
            parse_tasks(out),
            vec![
                ("abc".to_owned(), 1234, "RUNNING".to_owned()),
                ("def".to_owned(), 0, "STOPPED".to_owned())
            ]
        );
    }
}
