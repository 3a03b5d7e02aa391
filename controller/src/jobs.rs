//! Scan Job specs. Pure: a batch of targets and the configuration in, a Job out; and what a
//! watched Job says back (its targets and outcome).
//!
//! Names are deterministic (a hash of the targets, their fingerprints and the attempt), so a
//! duplicate create of the same batch collides instead of scanning twice.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapProjection, ConfigMapVolumeSource, Container, DownwardAPIProjection,
    DownwardAPIVolumeFile, EnvVar, KeyToPath, ObjectFieldSelector, Pod, PodSecurityContext,
    PodSpec, PodTemplateSpec, ProjectedVolumeSource, ResourceRequirements, SELinuxOptions,
    SeccompProfile, SecurityContext, ServiceAccountTokenProjection, Volume, VolumeMount,
    VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubevigil_crds::identity::labels::{MANAGED_BY, MANAGED_BY_VALUE};
use kubevigil_crds::identity::{sanitize_label_value, short_hash};
use kubevigil_crds::target::TargetKey;

use crate::config::Config;

/// Label selecting every scan Job and pod.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// Value of [`COMPONENT_LABEL`] on scan Jobs.
pub const COMPONENT: &str = "scan-job";
/// Annotation listing every target of a Job, one per line.
pub const TARGETS_ANNOTATION: &str = "kubevigil.io/targets";
/// Label with the kind of a one-target Job's target.
pub const TARGET_KIND_LABEL: &str = "kubevigil.io/target-kind";
/// Label with the namespace of a one-target Job's target.
pub const TARGET_NAMESPACE_LABEL: &str = "kubevigil.io/target-namespace";
/// Label with the name of a one-target Job's target.
pub const TARGET_NAME_LABEL: &str = "kubevigil.io/target-name";
/// Where the configuration ConfigMap is mounted in the scan pod.
pub const CONFIG_MOUNT: &str = "/etc/kubevigil";

/// Name of the volume holding the scan pod's API credentials.
pub const API_ACCESS_VOLUME: &str = "kube-api-access";
/// Where in-cluster clients look for the token, CA and namespace.
pub const API_ACCESS_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Lifetime of the scan pod's token: a scan is far shorter, and an hour is the API's default.
const TOKEN_EXPIRATION_SECONDS: i64 = 3607;

/// What `automountServiceAccountToken` would mount, made explicit: a short-lived token, the
/// cluster CA (`kube-root-ca.crt`, published in every namespace) and the namespace.
fn api_access_volume() -> Volume {
    Volume {
        name: API_ACCESS_VOLUME.into(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o444),
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".into(),
                        expiration_seconds: Some(TOKEN_EXPIRATION_SECONDS),
                        audience: None,
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "kube-root-ca.crt".into(),
                        items: Some(vec![KeyToPath {
                            key: "ca.crt".into(),
                            path: "ca.crt".into(),
                            mode: None,
                        }]),
                        optional: None,
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "namespace".into(),
                            field_ref: Some(ObjectFieldSelector {
                                api_version: Some("v1".into()),
                                field_path: "metadata.namespace".into(),
                            }),
                            ..DownwardAPIVolumeFile::default()
                        }]),
                    }),
                    ..VolumeProjection::default()
                },
            ]),
        }),
        ..Volume::default()
    }
}

/// One target of a batch with the fingerprint it was queued at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchItem {
    /// The target.
    pub key: TargetKey,
    /// Its fingerprint when queued (part of the Job name).
    pub fingerprint: String,
    /// A workload's related-inputs hash when queued (part of the Job name): a rescan for a
    /// related change gets a new name, so it is never taken for a running scan of the same
    /// targets that read the related objects before the change.
    pub related_inputs: Option<String>,
}

/// The deterministic Job name of a batch: `kubevigil-scan-<10 hex>`.
pub fn job_name(batch: &[BatchItem], attempt: u32) -> String {
    let mut items: Vec<String> = batch
        .iter()
        .map(|b| match &b.related_inputs {
            Some(r) => format!("{}@{}@{r}", b.key, b.fingerprint),
            None => format!("{}@{}", b.key, b.fingerprint),
        })
        .collect();
    items.sort();
    let digest = short_hash(&format!("{attempt}\n{}", items.join("\n")));
    format!("kubevigil-scan-{digest}")
}

/// The targets a Job scans, read back from its annotation (bad lines are skipped).
pub fn job_targets(job: &Job) -> Vec<TargetKey> {
    job.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TARGETS_ANNOTATION))
        .map(|s| {
            s.lines()
                .filter_map(|l| TargetKey::parse(l.trim()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// What the controller keeps of a watched scan Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobView {
    /// Name of the Job.
    pub name: String,
    /// UID of the Job (tells a Job from an older one of the same name).
    pub uid: String,
    /// Its targets (from the annotation).
    pub targets: Vec<TargetKey>,
    /// `Some(true)` when Complete, `Some(false)` when Failed, `None` while running.
    pub finished: Option<bool>,
    /// Whether it is being deleted.
    pub deleting: bool,
    /// Whether it failed because its container was OOMKilled (the watch reads the failed pod).
    pub oom_killed: bool,
}

/// The name of the scan Job's container.
pub const SCAN_JOB_CONTAINER: &str = "scan-job";

/// The exit code of a container killed by SIGKILL: the kernel's OOM killer, or anyone else.
pub const SIGKILL_EXIT_CODE: i32 = 137;

/// The failed pod a Job's pod failure policy names in its `Failed` condition ("Container
/// scan-job for pod NS/NAME failed with exit code 137 matching FailJob rule at index 0"), if the
/// Job failed that way.
pub fn failed_pod(job: &Job) -> Option<String> {
    let condition = job
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")?;
    if condition.reason.as_deref() != Some("PodFailurePolicy") {
        return None;
    }
    let message = condition.message.as_deref()?;
    let (_, rest) = message.split_once(" for pod ")?;
    let pod = rest.split_whitespace().next()?;
    let name = pod.rsplit_once('/').map_or(pod, |(_, name)| name);
    Some(name.to_owned())
}

/// Whether the scan-job container of `pod` was killed for exceeding its memory limit.
pub fn pod_oom_killed(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.name == SCAN_JOB_CONTAINER
                    && c.state
                        .as_ref()
                        .and_then(|s| s.terminated.as_ref())
                        .and_then(|t| t.reason.as_deref())
                        == Some("OOMKilled")
            })
        })
}

/// Whether a Job finished: `Some(true)` Complete, `Some(false)` Failed, `None` still running.
pub fn job_outcome(job: &Job) -> Option<bool> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let is_true = |t: &str| {
        conditions
            .iter()
            .any(|c| c.type_ == t && c.status == "True")
    };
    if is_true("Complete") {
        Some(true)
    } else if is_true("Failed") {
        Some(false)
    } else {
        None
    }
}

/// The controller's view of a watched Job.
pub fn job_view(job: &Job) -> JobView {
    JobView {
        name: job.metadata.name.clone().unwrap_or_default(),
        uid: job.metadata.uid.clone().unwrap_or_default(),
        targets: job_targets(job),
        finished: job_outcome(job),
        deleting: job.metadata.deletion_timestamp.is_some(),
        oom_killed: false,
    }
}

/// Builds the scan Job for a batch.
pub fn build_job(
    batch: &[BatchItem],
    attempt: u32,
    config: &Config,
    install_namespace: &str,
) -> Job {
    let sj = &config.scan_job;
    let mut labels: BTreeMap<String, String> = sj.labels.clone();
    labels.insert("app.kubernetes.io/name".into(), "kubevigil".into());
    labels.insert(COMPONENT_LABEL.into(), COMPONENT.into());
    labels.insert(MANAGED_BY.into(), MANAGED_BY_VALUE.into());
    let mut job_labels = labels.clone();
    if let [only] = batch {
        job_labels.insert(
            TARGET_KIND_LABEL.into(),
            sanitize_label_value(&only.key.kind.kind),
        );
        if let Some(ns) = &only.key.namespace {
            job_labels.insert(TARGET_NAMESPACE_LABEL.into(), sanitize_label_value(ns));
        }
        job_labels.insert(
            TARGET_NAME_LABEL.into(),
            sanitize_label_value(&only.key.name),
        );
    }
    let targets: Vec<String> = batch.iter().map(|b| b.key.to_string()).collect();
    let annotations = BTreeMap::from([(TARGETS_ANNOTATION.to_string(), targets.join("\n"))]);

    let mut args = vec![
        "run".to_string(),
        format!("--install-namespace={install_namespace}"),
        format!("--cluster-name={}", config.cluster_name),
    ];
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    if let Some(cm) = &sj.config_map_name {
        args.push(format!("--config={CONFIG_MOUNT}/config.yaml"));
        volumes.push(Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: cm.clone(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_MOUNT.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    args.extend(targets.iter().map(|t| format!("--target={t}")));
    volumes.push(api_access_volume());
    mounts.push(VolumeMount {
        name: API_ACCESS_VOLUME.into(),
        mount_path: API_ACCESS_MOUNT.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    });

    let resources: Option<ResourceRequirements> = serde_json::from_value(sj.resources.clone()).ok();
    let container = Container {
        name: SCAN_JOB_CONTAINER.into(),
        image: Some(sj.image.clone()),
        image_pull_policy: Some(sj.image_pull_policy.clone()),
        args: Some(args),
        env: Some(vec![EnvVar {
            name: "RUST_LOG".into(),
            value: Some(config.controller.log_level.clone()),
            ..EnvVar::default()
        }]),
        resources,
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(65532),
            run_as_group: Some(65532),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(batch, attempt)),
            namespace: Some(install_namespace.to_string()),
            labels: Some(job_labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            ttl_seconds_after_finished: Some(sj.ttl_seconds_after_finished),
            active_deadline_seconds: Some(sj.active_deadline_seconds),
            backoff_limit: Some(sj.backoff_limit),
            // A scan-job killed by SIGKILL (above all the kernel's OOM killer: its batch needs
            // more than the memory limit) fails the Job at once instead of being run again with
            // the same limit; the controller then reads the pod to tell an OOM kill apart.
            pod_failure_policy: Some(PodFailurePolicy {
                rules: vec![PodFailurePolicyRule {
                    action: "FailJob".into(),
                    on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                        container_name: Some(SCAN_JOB_CONTAINER.into()),
                        operator: "In".into(),
                        values: vec![SIGKILL_EXIT_CODE],
                    }),
                    on_pod_conditions: None,
                }],
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(sj.service_account_name.clone()),
                    // The token comes from the explicit projected volume instead (see
                    // `api_access_volume`), which Kubescape's C-0034/C-0190/C-0261 ask for.
                    automount_service_account_token: Some(false),
                    restart_policy: Some("Never".into()),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        run_as_group: Some(65532),
                        fs_group: Some(65532),
                        fs_group_change_policy: Some("OnRootMismatch".into()),
                        // The runtime's default confined type; ignored without SELinux.
                        se_linux_options: Some(SELinuxOptions {
                            type_: Some("container_t".into()),
                            ..SELinuxOptions::default()
                        }),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            localhost_profile: None,
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    volumes: (!volumes.is_empty()).then_some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// Splits ready targets into Job batches: first attempts together, up to `batch_size` per Job;
/// retries one per Job, so that one bad target cannot fail a whole batch again.
pub fn plan_batches<T: Clone>(ready: &[(T, u32)], batch_size: usize) -> Vec<(Vec<T>, u32)> {
    let mut out = Vec::new();
    let first: Vec<T> = ready
        .iter()
        .filter(|(_, a)| *a == 0)
        .map(|(t, _)| t.clone())
        .collect();
    for chunk in first.chunks(batch_size.max(1)) {
        out.push((chunk.to_vec(), 0));
    }
    for (t, a) in ready.iter().filter(|(_, a)| *a > 0) {
        out.push((vec![t.clone()], *a));
    }
    out
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};

    use super::*;
    use crate::config::Config;

    fn job_with(conditions: &[(&str, &str)]) -> Job {
        Job {
            status: Some(JobStatus {
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(t, s)| JobCondition {
                            type_: (*t).into(),
                            status: (*s).into(),
                            ..JobCondition::default()
                        })
                        .collect(),
                ),
                ..JobStatus::default()
            }),
            ..Job::default()
        }
    }

    #[test]
    fn outcomes_from_conditions() {
        assert_eq!(job_outcome(&Job::default()), None);
        assert_eq!(job_outcome(&job_with(&[("Complete", "True")])), Some(true));
        assert_eq!(
            job_outcome(&job_with(&[
                ("SuccessCriteriaMet", "True"),
                ("Complete", "True")
            ])),
            Some(true)
        );
        assert_eq!(job_outcome(&job_with(&[("Failed", "True")])), Some(false));
        // FailureTarget alone: pods are still being terminated, not finished yet.
        assert_eq!(job_outcome(&job_with(&[("FailureTarget", "True")])), None);
        assert_eq!(job_outcome(&job_with(&[("Complete", "False")])), None);
    }

    fn config() -> Config {
        Config::parse(
            "t",
            r#"
clusterName: demo
continuousScanning:
  matchingRules: [{apiGroups: [apps], apiVersions: [v1], resources: [deployments]}]
scanJob:
  image: ghcr.io/kubevigil/scan-job:0.1.0
  serviceAccountName: kubevigil-scan-job
  configMapName: kubevigil-config
  resources: {requests: {cpu: 50m, memory: 64Mi}, limits: {cpu: 500m, memory: 256Mi}}
  batchSize: 50
  maxConcurrentJobs: 5
  ttlSecondsAfterFinished: 300
  activeDeadlineSeconds: 300
  backoffLimit: 2
"#,
        )
        .unwrap()
    }

    fn item(name: &str, fp: &str) -> BatchItem {
        BatchItem {
            key: TargetKey::parse(&format!("apps/v1/deployments/Deployment/shop/{name}")).unwrap(),
            fingerprint: fp.into(),
            related_inputs: None,
        }
    }

    #[test]
    fn names_are_deterministic_and_change_with_content() {
        let a = [item("a", "1"), item("b", "1")];
        let b = [item("b", "1"), item("a", "1")];
        assert_eq!(job_name(&a, 0), job_name(&b, 0));
        assert_ne!(job_name(&a, 0), job_name(&a, 1));
        assert_ne!(
            job_name(&a, 0),
            job_name(&[item("a", "2"), item("b", "1")], 0)
        );
        assert!(job_name(&a, 0).starts_with("kubevigil-scan-"));
        let related = |h: &str| BatchItem {
            related_inputs: Some(h.into()),
            ..item("a", "1")
        };
        assert_ne!(job_name(&[related("r1")], 0), job_name(&[related("r2")], 0));
        assert_ne!(
            job_name(&[related("r1")], 0),
            job_name(&[item("a", "1")], 0)
        );
    }

    #[test]
    fn one_target_job_is_labelled_and_hardened() {
        let job = build_job(&[item("web", "f")], 0, &config(), "kubevigil");
        let labels = job.metadata.labels.clone().unwrap();
        assert_eq!(labels[COMPONENT_LABEL], "scan-job");
        assert_eq!(labels[TARGET_NAME_LABEL], "web");
        assert_eq!(job_targets(&job), vec![item("web", "f").key]);
        let spec = job.spec.unwrap();
        assert_eq!(spec.ttl_seconds_after_finished, Some(300));
        assert_eq!(spec.backoff_limit, Some(2));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some("kubevigil-scan-job")
        );
        let c = &pod.containers[0];
        let sc = c.security_context.clone().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(
            sc.capabilities.unwrap().drop.unwrap(),
            vec!["ALL".to_string()]
        );
        assert!(c.resources.as_ref().unwrap().limits.is_some());
        let args = c.args.clone().unwrap();
        assert!(args.contains(&"--target=apps/v1/deployments/Deployment/shop/web".to_string()));
        assert!(args.contains(&"--config=/etc/kubevigil/config.yaml".to_string()));
    }

    #[test]
    fn batching_keeps_retries_alone() {
        let ready: Vec<(u32, u32)> = (0..120)
            .map(|i| (i, 0))
            .chain([(500, 1), (501, 2)])
            .collect();
        let plan = plan_batches(&ready, 50);
        let sizes: Vec<usize> = plan.iter().map(|(b, _)| b.len()).collect();
        assert_eq!(sizes, vec![50, 50, 20, 1, 1]);
        assert_eq!(plan[4].1, 2);
    }
}
