//! Host access: host namespaces (C-0038, C-0041, C-0275, C-0276), host ports (C-0044) and host
//! paths (C-0020, C-0045, C-0048, C-0074).

use crate::object::Field;
use serde_json::Value;

use super::{MAIN, WITH_INIT, check_pod, pod_path};
use crate::object::{array, has, is_true, str_at};
use crate::pod_view::ContainerView;
use crate::workload::{PodSpec, WL7};
use crate::{Context, Control, ControlMeta, Finding, Needs, Outcome, Resource};

// ---------------------------------------------------------------------------------------------
// Host namespaces

/// Reports `<podspec>.<field>` for deletion when the pod spec sets it to `true`.
fn host_flag(rule: &'static str, field: &str, pod: PodSpec<'_>, out: &mut Vec<Finding>) {
    if is_true(pod, field) {
        out.push(Finding::new(rule).delete(pod_path(pod, field)));
    }
}

/// C-0041 HostNetwork access: a pod on the host network sees every interface of the node.
/// Compatible with Kubescape: fails when `hostNetwork` is `true`, delete path on it.
pub struct HostNetwork;

static HOST_NETWORK: ControlMeta = ControlMeta {
    id: "C-0041",
    name: "HostNetwork access",
    description: "Pods on the host network can reach every node interface and bypass network policies.",
    remediation: "Remove hostNetwork: true unless the workload really needs the node's network.",
    base_score: 7.0,
    frameworks: &[
        "NSA",
        "ArmoBest",
        "ClusterScan",
        "WorkloadScan",
        "security",
        "YAML",
        "cis-v1.10.0",
        "cis-v1.12.0",
    ],
    applies: WL7,
    rules: &["host-network-access"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for HostNetwork {
    fn meta(&self) -> &'static ControlMeta {
        &HOST_NETWORK
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        check_pod(resource, cx, |_, pod, out| {
            host_flag("host-network-access", "hostNetwork", pod, out);
        })
    }
}

/// C-0038 Host PID/IPC privileges: fails when the pod spec sets `hostPID` or `hostIPC` to
/// `true`, one finding each with a delete path on the field. Compatible with Kubescape.
pub struct HostPidIpc;

static HOST_PID_IPC: ControlMeta = ControlMeta {
    id: "C-0038",
    name: "Host PID/IPC privileges",
    description: "Containers sharing the host PID or IPC namespace can see and signal host processes \
                  and read shared memory of the node.",
    remediation: "Remove hostPID: true and hostIPC: true unless absolutely necessary.",
    base_score: 7.0,
    frameworks: &[
        "NSA",
        "ArmoBest",
        "ClusterScan",
        "WorkloadScan",
        "security",
        "YAML",
    ],
    applies: WL7,
    rules: &["host-pid-ipc-privileges"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for HostPidIpc {
    fn meta(&self) -> &'static ControlMeta {
        &HOST_PID_IPC
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        check_pod(resource, cx, |_, pod, out| {
            host_flag("host-pid-ipc-privileges", "hostPID", pod, out);
            host_flag("host-pid-ipc-privileges", "hostIPC", pod, out);
        })
    }
}

/// C-0275 (CIS 5.2.3): fails when the pod spec sets `hostPID: true`; delete path on it.
/// Compatible with Kubescape.
pub struct HostPid;

static HOST_PID: ControlMeta = ControlMeta {
    id: "C-0275",
    name: "Minimize the admission of containers wishing to share the host process ID namespace",
    description: "Containers in the host PID namespace can inspect and signal every process of the \
                  node.",
    remediation: "Do not set hostPID: true; admit such pods only through a dedicated policy.",
    base_score: 5.0,
    frameworks: &["cis-v1.10.0", "cis-v1.12.0"],
    applies: WL7,
    rules: &["host-pid-privileges"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for HostPid {
    fn meta(&self) -> &'static ControlMeta {
        &HOST_PID
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        check_pod(resource, cx, |_, pod, out| {
            host_flag("host-pid-privileges", "hostPID", pod, out);
        })
    }
}

/// C-0276 (CIS 5.2.4): fails when the pod spec sets `hostIPC: true`; delete path on it.
/// Compatible with Kubescape.
pub struct HostIpc;

static HOST_IPC: ControlMeta = ControlMeta {
    id: "C-0276",
    name: "Minimize the admission of containers wishing to share the host IPC namespace",
    description: "Containers in the host IPC namespace can read and write the node's shared memory \
                  and talk to host processes over IPC.",
    remediation: "Do not set hostIPC: true; admit such pods only through a dedicated policy.",
    base_score: 5.0,
    frameworks: &["cis-v1.10.0", "cis-v1.12.0"],
    applies: WL7,
    rules: &["host-ipc-privileges"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for HostIpc {
    fn meta(&self) -> &'static ControlMeta {
        &HOST_IPC
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        check_pod(resource, cx, |_, pod, out| {
            host_flag("host-ipc-privileges", "hostIPC", pod, out);
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Host ports

/// C-0044 Container hostPort: fails for every `ports[j].hostPort` set on a container, with a
/// delete path on it.
///
/// Quirk 1 (container coverage), compatible: only `containers` are inspected, as in Kubescape
/// (init containers rarely listen; ephemeral containers cannot declare ports).
pub struct ContainerHostPort;

static CONTAINER_HOST_PORT: ControlMeta = ControlMeta {
    id: "C-0044",
    name: "Container hostPort",
    description: "A hostPort binds the container to a port of the node, limiting scheduling and \
                  exposing the container on the node's address.",
    remediation: "Remove hostPort and expose the workload through a Service instead.",
    base_score: 4.0,
    frameworks: &[
        "NSA",
        "ArmoBest",
        "DevOpsBest",
        "WorkloadScan",
        "security",
        "YAML",
    ],
    applies: WL7,
    rules: &["container-hostPort"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for ContainerHostPort {
    fn meta(&self) -> &'static ControlMeta {
        &CONTAINER_HOST_PORT
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        check_pod(resource, cx, |_, pod, out| {
            for c in pod.containers(MAIN) {
                for (j, port) in ContainerView::list_of(c.view.ports()).iter().enumerate() {
                    if has(port, "hostPort") {
                        out.push(
                            Finding::new("container-hostPort")
                                .delete(c.path(&format!("ports[{j}].hostPort"))),
                        );
                    }
                }
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Host paths

/// The `hostPath.path` of a volume, if it is a hostPath volume with a path.
fn host_path(volume: &Value) -> Option<&str> {
    volume.field("hostPath").and_then(|h| str_at(h, "path"))
}

/// A volume's `name` when it can match a mount (present and not `null`); looked up once per
/// volume rather than once per mount compared with it.
fn volume_name(volume: &Value) -> Option<&Value> {
    volume.field("name").filter(|n| !n.is_null())
}

/// Whether a mount's `name` is the volume's name (from [`volume_name`]).
fn mounts(mount: &Value, volume_name: Option<&Value>) -> bool {
    volume_name.is_some_and(|v| mount.field("name") == Some(v))
}

/// Adds delete paths for `<podspec>.volumes[i]` and for every mount of that volume in the
/// containers of `lists`.
fn volume_with_mounts(
    mut finding: Finding,
    pod: PodSpec<'_>,
    i: usize,
    volume: &Value,
    lists: &'static [&'static str],
) -> Finding {
    finding = finding.delete(pod_path(pod, &format!("volumes[{i}]")));
    let name = volume_name(volume);
    for c in pod.containers(lists) {
        for (k, mount) in ContainerView::list_of(c.view.volume_mounts())
            .iter()
            .enumerate()
        {
            if mounts(mount, name) {
                finding = finding.delete(c.path_index("volumeMounts", k));
            }
        }
    }
    finding
}

/// Whether some container of `lists` carries a `volumeMounts` list (Kubescape's host-path rules
/// only produce an alert by iterating such containers).
fn some_container_mounts(pod: PodSpec<'_>, lists: &'static [&'static str]) -> bool {
    pod.containers(lists)
        .any(|c| c.view.volume_mounts().is_some_and(Value::is_array))
}

/// C-0048 HostPath mount: fails for every volume with a `hostPath.path`, with delete paths on
/// `<podspec>.volumes[i]` and on every `volumeMounts[k]` of containers and init containers that
/// mount it (quirk 1, compatible: ephemeral containers are not inspected).
///
/// Quirk (compatible): Kubescape's rule only alerts while iterating containers or init
/// containers that have a `volumeMounts` list, so a hostPath volume in a pod where no container
/// mounts anything passes. Such a volume is never reachable from a container, so the finding
/// would only be noise.
pub struct HostPathMount;

static HOST_PATH_MOUNT: ControlMeta = ControlMeta {
    id: "C-0048",
    name: "HostPath mount",
    description: "Mounting a host directory into a container can expose sensitive node data and \
                  give persistence on the node.",
    remediation: "Remove hostPath volumes; use persistent volumes, configMaps or emptyDir instead.",
    base_score: 7.0,
    frameworks: &["MITRE", "ClusterScan", "WorkloadScan", "security", "YAML"],
    applies: WL7,
    rules: &["alert-any-hostpath"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for HostPathMount {
    fn meta(&self) -> &'static ControlMeta {
        &HOST_PATH_MOUNT
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        check_pod(resource, cx, |_, pod, out| {
            let volumes = array(pod, "volumes");
            if !volumes.iter().any(|v| host_path(v).is_some())
                || !some_container_mounts(pod, WITH_INIT)
            {
                return;
            }
            for (i, volume) in volumes.iter().enumerate() {
                if host_path(volume).is_some() {
                    out.push(volume_with_mounts(
                        Finding::new("alert-any-hostpath"),
                        pod,
                        i,
                        volume,
                        WITH_INIT,
                    ));
                }
            }
        })
    }
}

/// C-0045 Writable hostPath mount: fails for every mount of a hostPath volume, in containers and
/// init containers, whose `readOnly` is not `true`; fix path `<c>.volumeMounts[k].readOnly` =
/// `true`. Quirk 1, compatible: init containers included, ephemeral containers not (they cannot
/// declare volume mounts of their own in a manifest).
pub struct WritableHostPath;

static WRITABLE_HOST_PATH: ControlMeta = ControlMeta {
    id: "C-0045",
    name: "Writable hostPath mount",
    description: "A writable hostPath mount lets a container change files of the node, which \
                  can give persistence and lateral movement.",
    remediation: "Remove the hostPath volume, or mount it with readOnly: true.",
    base_score: 8.0,
    frameworks: &["MITRE", "WorkloadScan", "security", "YAML"],
    applies: WL7,
    rules: &["alert-rw-hostpath"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for WritableHostPath {
    fn meta(&self) -> &'static ControlMeta {
        &WRITABLE_HOST_PATH
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        check_pod(resource, cx, |_, pod, out| {
            for volume in array(pod, "volumes") {
                if !has(volume, "hostPath") {
                    continue;
                }
                let name = volume_name(volume);
                for c in pod.containers(WITH_INIT) {
                    for (k, mount) in ContainerView::list_of(c.view.volume_mounts())
                        .iter()
                        .enumerate()
                    {
                        if mounts(mount, name) && !is_true(mount, "readOnly") {
                            out.push(
                                Finding::new("alert-rw-hostpath")
                                    .fix(c.path(&format!("volumeMounts[{k}].readOnly")), "true"),
                            );
                        }
                    }
                }
            }
        })
    }
}

/// Container-runtime sockets that C-0074 looks for (exact `hostPath.path`).
const RUNTIME_SOCKETS: &[&str] = &[
    "/var/run/docker.sock",
    "/var/run/docker",
    "/run/containerd/containerd.sock",
    "/var/run/crio/crio.sock",
];

/// C-0074 Container runtime socket mounted: fails for every volume whose `hostPath.path` is
/// exactly a Docker, containerd or CRI-O socket path, with delete paths on the volume and on the
/// mounts of it in containers and init containers (quirk 1, compatible). Compatible with
/// Kubescape: exact match only, so `/run/docker.sock` or a trailing `/` is not recognised.
pub struct ContainerRuntimeSocket;

static CONTAINER_RUNTIME_SOCKET: ControlMeta = ControlMeta {
    id: "C-0074",
    name: "Container runtime socket mounted",
    description: "A container with the container-runtime socket can start privileged containers \
                  and take over the node.",
    remediation: "Remove the hostPath volume of the container runtime socket.",
    base_score: 5.0,
    frameworks: &["DevOpsBest", "security", "YAML"],
    applies: WL7,
    rules: &["containers-mounting-docker-socket"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for ContainerRuntimeSocket {
    fn meta(&self) -> &'static ControlMeta {
        &CONTAINER_RUNTIME_SOCKET
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        check_pod(resource, cx, |_, pod, out| {
            for (i, volume) in array(pod, "volumes").iter().enumerate() {
                if host_path(volume).is_some_and(|p| RUNTIME_SOCKETS.contains(&p)) {
                    out.push(volume_with_mounts(
                        Finding::new("containers-mounting-docker-socket"),
                        pod,
                        i,
                        volume,
                        WITH_INIT,
                    ));
                }
            }
        })
    }
}

/// Host paths where managed clouds keep credentials, per provider (C-0020).
fn credential_paths(provider: &str) -> &'static [&'static str] {
    if provider.eq_ignore_ascii_case("eks") {
        &["/.aws/", "/.aws/config/", "/.aws/credentials/"]
    } else if provider.eq_ignore_ascii_case("aks") {
        &[
            "/etc/",
            "/etc/kubernetes/",
            "/etc/kubernetes/azure.json",
            "/.azure/",
            "/.azure/credentials/",
        ]
    } else if provider.eq_ignore_ascii_case("gke") {
        &[
            "/.config/gcloud/",
            "/.config/",
            "/gcloud/",
            "/.config/gcloud/application_default_credentials.json",
            "/gcloud/application_default_credentials.json",
        ]
    } else {
        &[]
    }
}

/// Whether a path looks like a file: a word character or `-` right before a `.` (what
/// Kubescape's `[\w-]+\.` is meant to match).
fn looks_like_file(path: &str) -> bool {
    path.as_bytes()
        .windows(2)
        .any(|w| w[1] == b'.' && (w[0].is_ascii_alphanumeric() || w[0] == b'_' || w[0] == b'-'))
}

/// Whether a hostPath, normalised with a trailing `/` unless it is a file or already ends in
/// one, is `entry`.
fn credential_path_matches(entry: &str, path: &str) -> bool {
    if path.ends_with('/') || looks_like_file(path) {
        entry == path
    } else {
        entry.len() == path.len() + 1 && entry.starts_with(path) && entry.ends_with('/')
    }
}

/// C-0020 Mount service principal: on a managed cloud (`eks`, `aks`, `gke`), fails for every
/// volume whose `hostPath.path` is a known credentials location of that cloud, with delete
/// paths on the volume and on the mounts of it in containers. Without a known provider (offline
/// scans) it passes, as in Kubescape.
///
/// Quirk (corrected): Kubescape appends `/` to the path unless it "looks like a file", but its
/// file regex is double-escaped and never matches, so file entries such as
/// `/etc/kubernetes/azure.json` (the AKS service principal) or
/// `application_default_credentials.json` can never be detected. kubevigil applies the intended
/// test (`[\w-]+\.`), so those files are found.
///
/// Quirk (compatible): as in Kubescape, only `containers` are inspected for mounts, and a
/// matching volume fails only when some container has a `volumeMounts` list.
pub struct MountServicePrincipal;

static MOUNT_SERVICE_PRINCIPAL: ControlMeta = ControlMeta {
    id: "C-0020",
    name: "Mount service principal",
    description: "A container that mounts the node's cloud credentials can act as the node's \
                  cloud identity.",
    remediation: "Do not mount host paths that hold cloud credentials; use workload identity.",
    base_score: 4.0,
    frameworks: &["MITRE", "YAML"],
    applies: WL7,
    rules: &["alert-mount-potential-credentials-paths"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for MountServicePrincipal {
    fn meta(&self) -> &'static ControlMeta {
        &MOUNT_SERVICE_PRINCIPAL
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        let unsafe_paths = cx.cloud_provider.map(credential_paths).unwrap_or(&[]);
        check_pod(resource, cx, |_, pod, out| {
            if unsafe_paths.is_empty() || !some_container_mounts(pod, MAIN) {
                return;
            }
            for (i, volume) in array(pod, "volumes").iter().enumerate() {
                let Some(path) = host_path(volume) else {
                    continue;
                };
                if unsafe_paths
                    .iter()
                    .any(|e| credential_path_matches(e, path))
                {
                    out.push(volume_with_mounts(
                        Finding::new("alert-mount-potential-credentials-paths"),
                        pod,
                        i,
                        volume,
                        MAIN,
                    ));
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_path_normalisation() {
        assert!(credential_path_matches("/.aws/", "/.aws"));
        assert!(credential_path_matches("/.aws/", "/.aws/"));
        assert!(credential_path_matches(
            "/.aws/credentials/",
            "/.aws/credentials"
        ));
        assert!(!credential_path_matches("/.aws/", "/.awsx"));
        assert!(!credential_path_matches("/.aws/", "/home/.aws"));
        assert!(credential_path_matches(
            "/etc/kubernetes/azure.json",
            "/etc/kubernetes/azure.json"
        ));
        assert!(credential_path_matches(
            "/gcloud/application_default_credentials.json",
            "/gcloud/application_default_credentials.json"
        ));
        assert!(!looks_like_file("/.config/gcloud"));
        assert!(looks_like_file("/etc/kubernetes/azure.json"));
    }

    #[test]
    fn providers() {
        assert!(credential_paths("EKS").contains(&"/.aws/"));
        assert!(credential_paths("aks").contains(&"/etc/"));
        assert!(credential_paths("gke").contains(&"/gcloud/"));
        assert!(credential_paths("").is_empty());
        assert!(credential_paths("openshift").is_empty());
    }
}
