//! Container and pod `securityContext`: C-0013, C-0016, C-0017, C-0046, C-0055, C-0057, C-0210
//! and C-0211 (which reuses the rules of C-0013, C-0016, C-0017 and C-0057 through the shared
//! `rule_*` functions below, and adds eleven rules of its own).

use crate::object::Field;
use crate::pod_view::SecurityContext;
use serde_json::Value;

use super::{
    ALL, MAIN, WITH_INIT, check_pod, pod_path, pod_path_parts, pod_sc, with_init_and_pod_ephemeral,
};
use crate::object::{array, get_path, has, is_false, is_true, str_at};
use crate::workload::{Container, PodSpec, WL7};
use crate::{
    Context, Control, ControlMeta, Finding, Inventory, K8sObject, Needs, Outcome, Resource,
};

/// Where a setting was found when resolved container first, then pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Container,
    Pod,
}

/// `securityContext.<key>` when set (not absent, not `null`).
fn set<'a>(sc: SecurityContext<'a>, key: &str) -> Option<&'a Value> {
    sc.field(key).filter(|v| !v.is_null())
}

/// A container's `securityContext.<key>`, else the pod-level value already looked up, with the
/// level it came from.
fn resolve<'a>(
    csc: SecurityContext<'a>,
    key: &str,
    pod_value: Option<&'a Value>,
) -> Option<(&'a Value, Level)> {
    set(csc, key)
        .map(|v| (v, Level::Container))
        .or_else(|| pod_value.map(|v| (v, Level::Pod)))
}

/// The path of `securityContext.<key>` at a level.
fn level_path(level: Level, c: &Container<'_>, pod: PodSpec<'_>, key: &str) -> String {
    match level {
        Level::Container => c.path_parts(&["securityContext.", key]),
        Level::Pod => pod_path_parts(pod, &["securityContext.", key]),
    }
}

/// Whether a JSON value is the number zero.
fn is_zero(v: &Value) -> bool {
    v.as_f64() == Some(0.0)
}

// ---------------------------------------------------------------------------------------------
// Shared rules

/// Rule `non-root-containers` (C-0013, C-0211). Per container and init container (and ephemeral
/// container of a Pod, reported without paths), settings resolved container first, then pod:
/// - user: fails when `runAsNonRoot` is not `true` (false or unset) and `runAsUser` is 0 or
///   unset; fix `runAsUser` = `1000` where it was set to 0, else
///   `<c>.securityContext.runAsNonRoot` = `true`;
/// - group: fails when `runAsGroup` is 0 or unset; fix `runAsGroup` = `1000` where it was 0,
///   else on the container.
fn rule_non_root(obj: &K8sObject, pod: PodSpec<'_>, out: &mut Vec<Finding>) {
    const RULE: &str = "non-root-containers";
    let psc = pod_sc(pod);
    let (pod_non_root, pod_user, pod_group) = (
        set(psc, "runAsNonRoot"),
        set(psc, "runAsUser"),
        set(psc, "runAsGroup"),
    );
    for c in pod.containers(with_init_and_pod_ephemeral(obj)) {
        let csc = c.sc();
        let non_root = resolve(csc, "runAsNonRoot", pod_non_root);
        let user = resolve(csc, "runAsUser", pod_user);
        let user_fails = non_root.is_none_or(|(v, _)| v.as_bool() == Some(false))
            && user.is_none_or(|(v, _)| is_zero(v));
        let group = resolve(csc, "runAsGroup", pod_group);
        let group_fails = group.is_none_or(|(v, _)| is_zero(v));
        if !user_fails && !group_fails {
            continue;
        }
        let mut f = Finding::new(RULE);
        if c.is_ephemeral() {
            out.push(f);
            continue;
        }
        if user_fails {
            f = match user {
                Some((_, level)) => f.fix(level_path(level, &c, pod, "runAsUser"), "1000"),
                None => f.fix(c.path("securityContext.runAsNonRoot"), "true"),
            };
        }
        if group_fails {
            f = match group {
                Some((_, level)) => f.fix(level_path(level, &c, pod, "runAsGroup"), "1000"),
                None => f.fix(c.path("securityContext.runAsGroup"), "1000"),
            };
        }
        out.push(f);
    }
}

/// Whether the scan holds PodSecurityPolicies and every one of them forbids privilege
/// escalation (`spec.allowPrivilegeEscalation: false`).
fn psps_forbid_escalation(inventory: &Inventory) -> bool {
    let mut psps = inventory.of_kind("PodSecurityPolicy").peekable();
    psps.peek().is_some()
        && psps.all(|p| {
            p.value
                .field("spec")
                .is_some_and(|s| is_false(s, "allowPrivilegeEscalation"))
        })
}

/// Rule `rule-allow-privilege-escalation` (C-0016, C-0211). Per container: fails when
/// `securityContext.allowPrivilegeEscalation` is not `false`, unless the scan holds
/// PodSecurityPolicies that all forbid escalation. Fix paths `allowPrivilegeEscalation` =
/// `false` and `privileged` = `false`; a value set to `true` is also a review path.
fn rule_allow_privilege_escalation(cx: &Context<'_>, pod: PodSpec<'_>, out: &mut Vec<Finding>) {
    const RULE: &str = "rule-allow-privilege-escalation";
    let mut psp_ok: Option<bool> = None;
    for c in pod.containers(MAIN) {
        let sc = c.sc();
        if is_false(sc, "allowPrivilegeEscalation") {
            continue;
        }
        if *psp_ok.get_or_insert_with(|| psps_forbid_escalation(cx.inventory)) {
            return;
        }
        let path = c.path("securityContext.allowPrivilegeEscalation");
        let mut f = Finding::new(RULE);
        if is_true(sc, "allowPrivilegeEscalation") {
            f = f.review(path.clone());
        }
        out.push(
            f.fix(path, "false")
                .fix(c.path("securityContext.privileged"), "false"),
        );
    }
}

/// Rule `immutable-container-filesystem` (C-0017, C-0211). Per container and init container
/// (and ephemeral container of a Pod, without a fix path): fails when
/// `securityContext.readOnlyRootFilesystem` is not `true`; fix it to `true`.
fn rule_immutable_filesystem(obj: &K8sObject, pod: PodSpec<'_>, out: &mut Vec<Finding>) {
    const RULE: &str = "immutable-container-filesystem";
    for c in pod.containers(with_init_and_pod_ephemeral(obj)) {
        if is_true(c.sc(), "readOnlyRootFilesystem") {
            continue;
        }
        let f = Finding::new(RULE);
        out.push(if c.is_ephemeral() {
            f
        } else {
            f.fix(c.path("securityContext.readOnlyRootFilesystem"), "true")
        });
    }
}

/// Rule `rule-privilege-escalation` (C-0057, C-0211). Per container of every list: fails when
/// `securityContext.privileged` is `true` and/or `capabilities.add` holds `SYS_ADMIN`; delete
/// paths on each offending entry.
fn rule_privileged(pod: PodSpec<'_>, out: &mut Vec<Finding>) {
    const RULE: &str = "rule-privilege-escalation";
    for c in pod.containers(ALL) {
        let sc = c.sc();
        let adds = sc
            .field("capabilities")
            .map_or(&[][..], |caps| array(caps, "add"));
        let privileged = is_true(sc, "privileged");
        let sys_admin = adds.iter().any(|a| a.as_str() == Some("SYS_ADMIN"));
        if !privileged && !sys_admin {
            continue;
        }
        let mut f = Finding::new(RULE);
        for (k, a) in adds.iter().enumerate() {
            if a.as_str() == Some("SYS_ADMIN") {
                f = f.delete(c.path_index("securityContext.capabilities.add", k));
            }
        }
        if privileged {
            f = f.delete(c.path("securityContext.privileged"));
        }
        out.push(f);
    }
}

/// Appends the findings of a rule that C-0211 shares with another control, computed once per
/// evaluated object (see [`Context::shared_findings`]).
fn shared(
    cx: &Context<'_>,
    obj: &K8sObject,
    rule: &'static str,
    out: &mut Vec<Finding>,
    run: impl FnOnce(&mut Vec<Finding>),
) {
    let found = cx.shared_findings(obj, rule, || {
        let mut findings = Vec::new();
        run(&mut findings);
        findings
    });
    out.extend(found.iter().cloned());
}

/// [`rule_non_root`], shared by C-0013 and C-0211.
fn shared_non_root(cx: &Context<'_>, obj: &K8sObject, pod: PodSpec<'_>, out: &mut Vec<Finding>) {
    shared(cx, obj, "non-root-containers", out, |f| {
        rule_non_root(obj, pod, f);
    });
}

/// [`rule_allow_privilege_escalation`], shared by C-0016 and C-0211.
fn shared_allow_privilege_escalation(
    cx: &Context<'_>,
    obj: &K8sObject,
    pod: PodSpec<'_>,
    out: &mut Vec<Finding>,
) {
    shared(cx, obj, "rule-allow-privilege-escalation", out, |f| {
        rule_allow_privilege_escalation(cx, pod, f);
    });
}

/// [`rule_immutable_filesystem`], shared by C-0017 and C-0211.
fn shared_immutable_filesystem(
    cx: &Context<'_>,
    obj: &K8sObject,
    pod: PodSpec<'_>,
    out: &mut Vec<Finding>,
) {
    shared(cx, obj, "immutable-container-filesystem", out, |f| {
        rule_immutable_filesystem(obj, pod, f);
    });
}

/// [`rule_privileged`], shared by C-0057 and C-0211.
fn shared_privileged(cx: &Context<'_>, obj: &K8sObject, pod: PodSpec<'_>, out: &mut Vec<Finding>) {
    shared(cx, obj, "rule-privilege-escalation", out, |f| {
        rule_privileged(pod, f)
    });
}

// ---------------------------------------------------------------------------------------------
// Controls with one rule

/// C-0013 Non-root containers: rule `non-root-containers` (see `rule_non_root`).
///
/// Quirk 1 (container coverage), compatible: containers and init containers; ephemeral
/// containers only on Pods, reported without fix paths (they cannot be edited in a manifest).
/// Quirk 2, compatible: an unset `runAsGroup` fails even with `runAsNonRoot: true`, because the
/// process then runs with the image's primary group, usually root (GID 0), which gives access
/// to root-group files.
pub struct NonRootContainers;

static NON_ROOT_CONTAINERS: ControlMeta = ControlMeta {
    id: "C-0013",
    name: "Non-root containers",
    description: "Containers that may run as root user or root group make a container escape \
                  far more dangerous.",
    remediation: "Set runAsNonRoot: true (or a non-zero runAsUser) and a non-zero runAsGroup on \
                  the pod or on every container.",
    base_score: 6.0,
    frameworks: &[
        "NSA",
        "ArmoBest",
        "ClusterScan",
        "WorkloadScan",
        "security",
        "YAML",
    ],
    applies: WL7,
    rules: &["non-root-containers"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for NonRootContainers {
    fn meta(&self) -> &'static ControlMeta {
        &NON_ROOT_CONTAINERS
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        check_pod(resource, cx, |obj, pod, out| {
            shared_non_root(cx, obj, pod, out)
        })
    }
}

/// C-0016 Allow privilege escalation: rule `rule-allow-privilege-escalation` (see
/// `rule_allow_privilege_escalation`).
///
/// Quirk 1, compatible: only `containers` are inspected. Quirk 3, compatible: the finding also
/// proposes `privileged: false`, and when the scan holds PodSecurityPolicies the control passes
/// only if all of them forbid escalation (one permissive PSP is enough to admit the pod).
pub struct AllowPrivilegeEscalation;

static ALLOW_PRIVILEGE_ESCALATION: ControlMeta = ControlMeta {
    id: "C-0016",
    name: "Allow privilege escalation",
    description: "Containers that allow privilege escalation can gain more privileges than \
                  their parent process (setuid binaries, file capabilities).",
    remediation: "Set securityContext.allowPrivilegeEscalation: false on every container.",
    base_score: 6.0,
    frameworks: &["NSA", "ArmoBest", "WorkloadScan", "security", "YAML"],
    applies: WL7,
    rules: &["rule-allow-privilege-escalation"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for AllowPrivilegeEscalation {
    fn meta(&self) -> &'static ControlMeta {
        &ALLOW_PRIVILEGE_ESCALATION
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        check_pod(resource, cx, |obj, pod, out| {
            shared_allow_privilege_escalation(cx, obj, pod, out);
        })
    }
}

/// C-0017 Immutable container filesystem: rule `immutable-container-filesystem` (see
/// `rule_immutable_filesystem`).
///
/// Quirk 1, compatible: containers and init containers; ephemeral containers on Pods only,
/// without a fix path.
pub struct ImmutableFilesystem;

static IMMUTABLE_FILESYSTEM: ControlMeta = ControlMeta {
    id: "C-0017",
    name: "Immutable container filesystem",
    description: "A writable root filesystem lets an attacker drop and run tools or change the \
                  application inside the container.",
    remediation: "Set securityContext.readOnlyRootFilesystem: true and mount writable volumes \
                  only where needed.",
    base_score: 3.0,
    frameworks: &["NSA", "ArmoBest", "WorkloadScan", "security", "YAML"],
    applies: WL7,
    rules: &["immutable-container-filesystem"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for ImmutableFilesystem {
    fn meta(&self) -> &'static ControlMeta {
        &IMMUTABLE_FILESYSTEM
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        check_pod(resource, cx, |obj, pod, out| {
            shared_immutable_filesystem(cx, obj, pod, out);
        })
    }
}

/// C-0057 Privileged container: rule `rule-privilege-escalation` (see `rule_privileged`).
/// Quirk 1, compatible: containers, init containers and ephemeral containers. `SYS_ADMIN` is
/// matched exactly, as in Kubescape.
pub struct PrivilegedContainer;

static PRIVILEGED_CONTAINER: ControlMeta = ControlMeta {
    id: "C-0057",
    name: "Privileged container",
    description: "A privileged container (or one with SYS_ADMIN) has nearly all the powers of \
                  root on the node.",
    remediation: "Remove privileged: true and the SYS_ADMIN capability; grant only the specific \
                  capabilities needed.",
    base_score: 8.0,
    frameworks: &[
        "NSA",
        "MITRE",
        "ArmoBest",
        "ClusterScan",
        "WorkloadScan",
        "security",
        "YAML",
    ],
    applies: WL7,
    rules: &["rule-privilege-escalation"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for PrivilegedContainer {
    fn meta(&self) -> &'static ControlMeta {
        &PRIVILEGED_CONTAINER
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        check_pod(resource, cx, |obj, pod, out| {
            shared_privileged(cx, obj, pod, out)
        })
    }
}

/// C-0046 Insecure capabilities: per container and init container (and ephemeral container of a
/// Pod), fails when `securityContext.capabilities.add` holds an entry of `insecureCapabilities`
/// (exact, case-sensitive match); delete paths on each such entry. Compatible with Kubescape,
/// including quirk 1 (containers and init containers everywhere, ephemeral containers on Pods).
pub struct InsecureCapabilities;

static INSECURE_CAPABILITIES: ControlMeta = ControlMeta {
    id: "C-0046",
    name: "Insecure capabilities",
    description: "Dangerous Linux capabilities (SYS_ADMIN, NET_ADMIN, SYS_PTRACE, ALL...) give a \
                  container powers that enable a container escape.",
    remediation: "Remove the insecure capabilities from securityContext.capabilities.add.",
    base_score: 7.0,
    frameworks: &["NSA", "ArmoBest", "WorkloadScan", "security", "YAML"],
    applies: WL7,
    rules: &["insecure-capabilities"],
    inputs: &["insecureCapabilities"],
    configuration_required: true,
    needs: Needs::Nothing,
};

impl Control for InsecureCapabilities {
    fn meta(&self) -> &'static ControlMeta {
        &INSECURE_CAPABILITIES
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        let insecure = cx.inputs.get("insecureCapabilities");
        check_pod(resource, cx, |obj, pod, out| {
            for c in pod.containers(with_init_and_pod_ephemeral(obj)) {
                let Some(caps) = c.sc().field("capabilities") else {
                    continue;
                };
                let adds = array(caps, "add");
                let bad = |a: &Value| a.as_str().is_some_and(|a| insecure.iter().any(|i| i == a));
                if !adds.iter().any(bad) {
                    continue;
                }
                let mut f = Finding::new("insecure-capabilities");
                for (k, a) in adds.iter().enumerate() {
                    if bad(a) {
                        f = f.delete(c.path_index("securityContext.capabilities.add", k));
                    }
                }
                out.push(f);
            }
        })
    }
}

/// C-0055 Linux hardening: per container and init container, fails when neither the pod nor the
/// container sets `securityContext.seccompProfile`; fix path
/// `<c>.securityContext.seccompProfile` = `YOUR_VALUE`. Quirk 1, compatible: ephemeral
/// containers are not inspected.
///
/// Quirk 4, compatible: only seccomp is checked, as in Kubescape's current rule (AppArmor,
/// SELinux and dropped capabilities no longer count); seccomp is the hardening that applies to
/// every Linux node.
pub struct LinuxHardening;

static LINUX_HARDENING: ControlMeta = ControlMeta {
    id: "C-0055",
    name: "Linux hardening",
    description: "Containers without a seccomp profile can use every system call of the kernel, \
                  widening the attack surface of a container escape.",
    remediation: "Set securityContext.seccompProfile (RuntimeDefault or a Localhost profile) on \
                  the pod or on every container.",
    base_score: 4.0,
    frameworks: &["NSA", "ArmoBest", "WorkloadScan", "YAML"],
    applies: WL7,
    rules: &["linux-hardening"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for LinuxHardening {
    fn meta(&self) -> &'static ControlMeta {
        &LINUX_HARDENING
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        check_pod(resource, cx, |_, pod, out| {
            if has(pod_sc(pod), "seccompProfile") {
                return;
            }
            for c in pod.containers(WITH_INIT) {
                if !has(c.sc(), "seccompProfile") {
                    out.push(
                        Finding::new("linux-hardening")
                            .fix(c.path("securityContext.seccompProfile"), "YOUR_VALUE"),
                    );
                }
            }
        })
    }
}

/// The `seccompProfile.type` of a `securityContext`, when set.
fn seccomp_type(sc: SecurityContext<'_>) -> Option<&Value> {
    sc.field("seccompProfile")
        .and_then(|p| p.field("type"))
        .filter(|t| !t.is_null())
}

/// C-0210 (CIS 5.7.2) seccomp profile RuntimeDefault: per container, the container's
/// `seccompProfile.type` decides if set (RuntimeDefault passes, anything else fails with a review
/// path on it), else the pod's (same); when neither is set it fails with fix path
/// `<c>.securityContext.seccompProfile.type` = `RuntimeDefault`. Compatible with Kubescape:
/// `Localhost` profiles fail, since the CIS recommendation asks for the runtime default, and only
/// `containers` are inspected (quirk 1).
pub struct SeccompRuntimeDefault;

static SECCOMP_RUNTIME_DEFAULT: ControlMeta = ControlMeta {
    id: "C-0210",
    name: "Ensure that the seccomp profile is set to docker/default in your pod definitions",
    description: "The container runtime's default seccomp profile blocks dangerous system calls; \
                  without it every system call is allowed.",
    remediation: "Set securityContext.seccompProfile.type: RuntimeDefault on the pod or on every \
                  container.",
    base_score: 4.0,
    frameworks: &["cis-gke-v1.9.0", "cis-v1.10.0", "cis-v1.12.0"],
    applies: WL7,
    rules: &["set-seccomp-profile-RuntimeDefault"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for SeccompRuntimeDefault {
    fn meta(&self) -> &'static ControlMeta {
        &SECCOMP_RUNTIME_DEFAULT
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        const RULE: &str = "set-seccomp-profile-RuntimeDefault";
        check_pod(resource, cx, |_, pod, out| {
            let pod_type = seccomp_type(pod_sc(pod));
            for c in pod.containers(MAIN) {
                let f = match (seccomp_type(c.sc()), pod_type) {
                    (Some(t), _) if t.as_str() == Some("RuntimeDefault") => continue,
                    (Some(_), _) => {
                        Finding::new(RULE).review(c.path("securityContext.seccompProfile.type"))
                    }
                    (None, Some(t)) if t.as_str() == Some("RuntimeDefault") => continue,
                    (None, Some(_)) => Finding::new(RULE)
                        .review(pod_path(pod, "securityContext.seccompProfile.type")),
                    (None, None) => Finding::new(RULE).fix(
                        c.path("securityContext.seccompProfile.type"),
                        "RuntimeDefault",
                    ),
                };
                out.push(f);
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// C-0211 and its own rules

/// Whether the value at a `securityContext` sub-path is missing or the empty string (Rego's
/// `object.get(x, path, "") == ""`).
fn unset(sc: SecurityContext<'_>, path: &str) -> bool {
    let found = match path.split_once('.') {
        Some((first, rest)) => sc.field(first).and_then(|v| get_path(v, rest)),
        None => sc.field(path),
    };
    found.is_none_or(|v| v.is_null() || v.as_str() == Some(""))
}

/// Whether a pod spec targets Windows nodes (`os.name` or the `kubernetes.io/os` node selector).
fn is_windows(pod: PodSpec<'_>) -> bool {
    pod.field("os").and_then(|o| str_at(o, "name")) == Some("windows")
        || pod
            .spec
            .field("nodeSelector")
            .and_then(|n| str_at(n, "kubernetes.io/os"))
            == Some("windows")
}

/// Rules `set-seLinuxOptions`, `set-seccomp-profile`, `set-runasusername-value` and
/// `set-gmsacredentialspecname-value`: when the pod's `securityContext.<path>` is unset, every
/// container without it gets a fix path (`YOUR_VALUE`).
fn rule_pod_or_containers(
    rule: &'static str,
    path: &str,
    pod: PodSpec<'_>,
    out: &mut Vec<Finding>,
) {
    if !unset(pod_sc(pod), path) {
        return;
    }
    for c in pod.containers(MAIN) {
        if unset(c.sc(), path) {
            out.push(
                Finding::new(rule).fix(c.path_parts(&["securityContext.", path]), "YOUR_VALUE"),
            );
        }
    }
}

/// Rule `drop-capability-netraw`: per container, fails when `capabilities.drop` holds none of
/// `NET_RAW`, `ALL`, `all` (fix path `drop[<len>]` = `NET_RAW`), or when it drops all but
/// `capabilities.add` holds `NET_RAW` (delete path on `capabilities.add`).
fn rule_drop_net_raw(pod: PodSpec<'_>, out: &mut Vec<Finding>) {
    const RULE: &str = "drop-capability-netraw";
    for c in pod.containers(MAIN) {
        let caps = c.sc().field("capabilities").unwrap_or(&Value::Null);
        let drop = array(caps, "drop");
        let dropped = |name: &str| drop.iter().any(|d| d.as_str() == Some(name));
        let drops_all = dropped("ALL") || dropped("all");
        if !dropped("NET_RAW") && !drops_all {
            out.push(Finding::new(RULE).fix(
                c.path_index("securityContext.capabilities.drop", drop.len()),
                "NET_RAW",
            ));
        } else if drops_all
            && array(caps, "add")
                .iter()
                .any(|a| a.as_str() == Some("NET_RAW"))
        {
            out.push(Finding::new(RULE).delete(c.path("securityContext.capabilities.add")));
        }
    }
}

/// Whether a host-sensor `ControlPlaneInfo` shows the API server running with the
/// `ProcMountType=true` feature gate.
fn proc_mount_type_enabled(inventory: &Inventory) -> bool {
    inventory.of_kind("ControlPlaneInfo").any(|o| {
        o.api_version == "hostdata.kubescape.cloud/v1beta0"
            && get_path(&o.value, "data.APIServerInfo.cmdLine")
                .and_then(Value::as_str)
                .is_some_and(|cmd| {
                    cmd.contains("--feature-gates=")
                        && cmd
                            .split_whitespace()
                            .any(|a| a.contains("ProcMountType=true"))
                })
    })
}

/// Rule `set-procmount-default`: only when the `ProcMountType` feature gate is on, every container
/// whose `securityContext.procMount` is set to something other than `Default` fails; fix path
/// `Default`.
fn rule_proc_mount(cx: &Context<'_>, pod: PodSpec<'_>, out: &mut Vec<Finding>) {
    const RULE: &str = "set-procmount-default";
    let mut enabled: Option<bool> = None;
    for c in pod.containers(MAIN) {
        let Some(mount) = c.sc().field("procMount").filter(|v| !v.is_null()) else {
            continue;
        };
        if mount.as_str() == Some("Default") {
            continue;
        }
        if !*enabled.get_or_insert_with(|| proc_mount_type_enabled(cx.inventory)) {
            return;
        }
        out.push(Finding::new(RULE).fix(c.path("securityContext.procMount"), "Default"));
    }
}

/// Sysctls Kubernetes considers safe (namespaced, isolated); `pkg/kubelet/sysctl` upstream.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

/// The pod-level rules of C-0211: `set-fsgroup-value`, `set-fsgroupchangepolicy-value`,
/// `set-sysctls-params`, `set-supplementalgroups-values`.
fn rules_pod_level(pod: PodSpec<'_>, out: &mut Vec<Finding>) {
    let sc = pod_sc(pod);
    if !sc
        .field("fsGroup")
        .and_then(Value::as_f64)
        .is_some_and(|g| g >= 0.0)
    {
        out.push(
            Finding::new("set-fsgroup-value").failed(pod_path(pod, "securityContext.fsGroup")),
        );
    }
    if !matches!(
        str_at(sc, "fsGroupChangePolicy"),
        Some("Always" | "OnRootMismatch")
    ) {
        out.push(Finding::new("set-fsgroupchangepolicy-value").fix(
            pod_path(pod, "securityContext.fsGroupChangePolicy"),
            "Always",
        ));
    }
    let unsafe_sysctl = array(sc, "sysctls")
        .iter()
        .filter_map(|s| str_at(s, "name"))
        .any(|name| !SAFE_SYSCTLS.contains(&name));
    if unsafe_sysctl {
        let path = pod_path(pod, "securityContext.sysctls");
        out.push(
            Finding::new("set-sysctls-params")
                .failed(path.clone())
                .fix(path, "REMOVE_UNSAFE_SYSCTLS"),
        );
    }
    if array(sc, "supplementalGroups").iter().any(is_zero) {
        let path = pod_path(pod, "securityContext.supplementalGroups");
        out.push(
            Finding::new("set-supplementalgroups-values")
                .failed(path.clone())
                .fix(path, "REMOVE_GROUP_0"),
        );
    }
}

/// Rule `set-hostprocess-true`: the pod or any container (of every list) with
/// `securityContext.windowsOptions.hostProcess: true`; failed and fix path (`false`) on it.
fn rule_host_process(pod: PodSpec<'_>, out: &mut Vec<Finding>) {
    const RULE: &str = "set-hostprocess-true";
    const FIELD: &str = "securityContext.windowsOptions.hostProcess";
    let host_process = |sc: SecurityContext<'_>| {
        sc.field("windowsOptions")
            .is_some_and(|w| is_true(w, "hostProcess"))
    };
    if host_process(pod_sc(pod)) {
        let path = pod_path(pod, FIELD);
        out.push(Finding::new(RULE).failed(path.clone()).fix(path, "false"));
    }
    for c in pod.containers(ALL) {
        if host_process(c.sc()) {
            let path = c.path(FIELD);
            out.push(Finding::new(RULE).failed(path.clone()).fix(path, "false"));
        }
    }
}

/// The fifteen rules of C-0211, in catalog order.
const SECURITY_CONTEXT_RULES: &[&str] = &[
    "rule-privilege-escalation",
    "immutable-container-filesystem",
    "non-root-containers",
    "drop-capability-netraw",
    "set-seLinuxOptions",
    "set-seccomp-profile",
    "set-procmount-default",
    "set-fsgroup-value",
    "set-fsgroupchangepolicy-value",
    "set-sysctls-params",
    "set-supplementalgroups-values",
    "rule-allow-privilege-escalation",
    "set-gmsacredentialspecname-value",
    "set-hostprocess-true",
    "set-runasusername-value",
];

/// C-0211 (CIS 5.7.3) Apply Security Context to Your Pods and Containers: the union of fifteen
/// rules, failing when any fails.
/// - shared with other controls: `rule-privilege-escalation` (C-0057),
///   `immutable-container-filesystem` (C-0017), `non-root-containers` (C-0013),
///   `rule-allow-privilege-escalation` (C-0016, with its PodSecurityPolicy branch);
/// - `drop-capability-netraw`: containers must drop `NET_RAW` (or `ALL`/`all`, without adding
///   `NET_RAW` back);
/// - `set-seLinuxOptions`, `set-seccomp-profile`: set on the pod or on every container;
/// - `set-procmount-default`: `procMount` must be `Default`, only checked when a host-sensor
///   `ControlPlaneInfo` in the scan shows the `ProcMountType` feature gate (never offline);
/// - `set-fsgroup-value` (pod `fsGroup` set and ≥ 0), `set-fsgroupchangepolicy-value`
///   (`Always` or `OnRootMismatch`), `set-sysctls-params` (only the 12 safe sysctls),
///   `set-supplementalgroups-values` (no group 0);
/// - Windows pods only (`os.name` or `kubernetes.io/os` node selector = `windows`):
///   `set-gmsacredentialspecname-value`, `set-runasusername-value` (set on the pod or on every
///   container); any pod: `set-hostprocess-true` (no `windowsOptions.hostProcess: true`).
///
/// Quirks: those of C-0013 (quirk 2), C-0016 (quirk 3) and quirk 1 of each rule, all
/// compatible. The rule matches ControlPlaneInfo and PodSecurityPolicy objects as context only;
/// kubevigil evaluates the control on workloads and reads those objects from the inventory.
pub struct SecurityContextApplied;

static SECURITY_CONTEXT_APPLIED: ControlMeta = ControlMeta {
    id: "C-0211",
    name: "Apply Security Context to Your Pods and Containers",
    description: "A restrictive security context (non-root, no privilege escalation, read-only \
                  root filesystem, dropped capabilities, seccomp, safe sysctls) limits what a \
                  compromised container can do.",
    remediation: "Apply a restrictive securityContext to the pod and to every container, \
                  following the Pod Security Standards.",
    base_score: 8.0,
    frameworks: &[
        "security",
        "cis-aks-t1.2.0",
        "cis-aks-t1.8.0",
        "cis-gke-v1.9.0",
        "cis-v1.10.0",
        "cis-v1.12.0",
    ],
    applies: WL7,
    rules: SECURITY_CONTEXT_RULES,
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

impl Control for SecurityContextApplied {
    fn meta(&self) -> &'static ControlMeta {
        &SECURITY_CONTEXT_APPLIED
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        check_pod(resource, cx, |obj, pod, out| {
            shared_privileged(cx, obj, pod, out);
            shared_immutable_filesystem(cx, obj, pod, out);
            shared_non_root(cx, obj, pod, out);
            rule_drop_net_raw(pod, out);
            rule_pod_or_containers("set-seLinuxOptions", "seLinuxOptions", pod, out);
            rule_pod_or_containers("set-seccomp-profile", "seccompProfile", pod, out);
            rule_proc_mount(cx, pod, out);
            rules_pod_level(pod, out);
            shared_allow_privilege_escalation(cx, obj, pod, out);
            let windows = is_windows(pod);
            if windows {
                rule_pod_or_containers(
                    "set-gmsacredentialspecname-value",
                    "windowsOptions.gmsaCredentialSpecName",
                    pod,
                    out,
                );
            }
            rule_host_process(pod, out);
            if windows {
                rule_pod_or_containers(
                    "set-runasusername-value",
                    "windowsOptions.runAsUserName",
                    pod,
                    out,
                );
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::json;

    use super::super::test_support::{findings, fixes};
    use super::*;

    fn s(x: &str) -> String {
        x.to_string()
    }

    #[test]
    fn non_root_fix_paths_follow_the_level_that_was_wrong() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {
                "securityContext": {"runAsUser": 0},
                "containers": [
                    {"name": "a", "image": "x"},
                    {"name": "b", "image": "x", "securityContext": {"runAsNonRoot": true, "runAsGroup": 0}}
                ],
                "ephemeralContainers": [{"name": "dbg", "image": "x"}]
            }
        });
        let f = findings(&NonRootContainers, vec![pod]);
        assert_eq!(f.len(), 3, "{f:?}");
        assert_eq!(
            fixes(&f),
            vec![
                (
                    "non-root-containers",
                    s("spec.securityContext.runAsUser"),
                    s("1000")
                ),
                (
                    "non-root-containers",
                    s("spec.containers[0].securityContext.runAsGroup"),
                    s("1000")
                ),
                (
                    "non-root-containers",
                    s("spec.containers[1].securityContext.runAsGroup"),
                    s("1000")
                ),
            ]
        );
        // The ephemeral container is reported without paths.
        assert!(f[2].paths.is_empty());
    }

    #[test]
    fn non_root_unset_user_proposes_run_as_non_root() {
        let deploy = json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"spec": {
                "securityContext": {"runAsGroup": 10},
                "initContainers": [{"name": "i", "image": "x"}],
                "containers": [{"name": "c", "image": "x", "securityContext": {"runAsUser": 5}}]
            }}}
        });
        assert_eq!(
            fixes(&findings(&NonRootContainers, vec![deploy])),
            vec![(
                "non-root-containers",
                s("spec.template.spec.initContainers[0].securityContext.runAsNonRoot"),
                s("true")
            )]
        );
    }

    #[test]
    fn escalation_true_is_reviewed_and_fixed() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "image": "x",
                "securityContext": {"allowPrivilegeEscalation": true}}]}
        });
        let f = findings(&AllowPrivilegeEscalation, vec![pod]);
        assert_eq!(f.len(), 1);
        let review: Vec<_> = f[0]
            .paths
            .iter()
            .filter_map(|p| p.to_rule_path().review_path)
            .collect();
        assert_eq!(
            review,
            vec![s(
                "spec.containers[0].securityContext.allowPrivilegeEscalation"
            )]
        );
        assert_eq!(fixes(&f).len(), 2);
    }

    #[test]
    fn seccomp_runtime_default_paths() {
        let cron = json!({
            "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": {
                "securityContext": {"seccompProfile": {"type": "Localhost"}},
                "containers": [
                    {"name": "a", "image": "x"},
                    {"name": "b", "image": "x", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}
                ]
            }}}}}
        });
        let f = findings(&SeccompRuntimeDefault, vec![cron]);
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].paths[0].to_rule_path().review_path.as_deref(),
            Some("spec.jobTemplate.spec.template.spec.securityContext.seccompProfile.type")
        );
    }

    #[test]
    fn net_raw_fix_appends_to_the_drop_list() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "image": "x",
                "securityContext": {"capabilities": {"drop": ["CHOWN", "SETUID"]}}}]}
        });
        let f = findings(&SecurityContextApplied, vec![pod]);
        assert!(fixes(&f).contains(&(
            "drop-capability-netraw",
            s("spec.containers[0].securityContext.capabilities.drop[2]"),
            s("NET_RAW")
        )));
    }

    /// Every object of the C-0211 fail fixture breaks exactly one rule, named by the object.
    #[test]
    fn security_context_fixture_breaks_one_rule_per_object() {
        use serde::Deserialize as _;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/C-0211/fail-one-defect-each.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let objects: Vec<Value> = serde_norway::Deserializer::from_str(&text)
            .map(|doc| Value::deserialize(doc).unwrap())
            .filter(|v| !v.is_null())
            .collect();
        assert!(objects.len() > 1);
        for obj in objects {
            let name = obj["metadata"]["name"].clone();
            let f = findings(&SecurityContextApplied, vec![obj]);
            let rules: BTreeSet<&str> = f.iter().map(|f| f.rule).collect();
            assert_eq!(rules.len(), 1, "{name}: {rules:?}");
        }
    }
}
