//! What the controller may spawn is exactly a scan Job, enforced by the API server (issue 22),
//! through the chart on the local real cluster:
//!
//! - the install namespace enforces Pod Security `restricted` before the chart goes in, so the
//!   controller's pod and its scan pods must meet it (and the chart's notes do not warn);
//! - the controller's own scan Jobs are admitted: a workload of the test namespace gets its
//!   result;
//! - as the controller's ServiceAccount (impersonated), Jobs built by the controller's own Job
//!   builder from the release's live configuration, changed in one respect, are denied with
//!   the rule's message: another image, privileged, another ServiceAccount, a hostPath volume
//!   (and a plain `kubectl create job --as=...`); the unchanged Job is admitted. Every create is
//!   `dryRun=All`, so nothing runs even if a rule failed to deny;
//! - `helm upgrade` to another `scanJob.image.tag` updates the policy in the same release: a Job
//!   of the new tag is admitted, one of the old tag denied;
//! - `helm uninstall` removes the policy and its binding.
//!
//! Every denial message is printed (`--nocapture` shows them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use controller::config::Config;
use controller::error::ADMISSION_DENIAL_MARKER;
use controller::jobs::{BatchItem, build_job};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kind_tests::pipeline::{create_deployment, deployment};
use kind_tests::release::Release;
use kind_tests::scenario::{BoxError, Check, Error, TestCluster, wait_for, with_temp_ns};
use kind_tests::tools;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use kubevigil_crds::WorkloadConfigurationScanSummary;
use kubevigil_crds::target::TargetKey;
use serde_json::json;

/// The tag `helm upgrade` switches the scan Jobs to. The node has no such image: the upgraded
/// controller's own Jobs would not run, which this test does not need (its Jobs are dry runs).
const UPGRADED_TAG: &str = "0.1.0-admission-upgrade";

/// A client that sends every request as `user` (impersonation: the test's kubeconfig is
/// cluster-admin, which may impersonate).
async fn client_as(cluster: &TestCluster, user: &str) -> Result<Client, BoxError> {
    let kubeconfig = Kubeconfig::read_from(cluster.kubeconfig())?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    config.auth_info.impersonate = Some(user.to_owned());
    Ok(Client::try_from(config)?)
}

/// The controller's configuration as the release's ConfigMap holds it, parsed as the controller
/// parses it.
async fn live_config(client: &Client, release: &Release) -> Result<Config, BoxError> {
    let name = format!("{}-config", release.fullname());
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &release.namespace)
        .get(&name)
        .await?;
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get("config.yaml"))
        .ok_or_else(|| format!("configmap {name} has no config.yaml"))?;
    Ok(Config::parse(&name, text)?)
}

/// A scan Job for Deployment `ns/web` exactly as the controller builds it from `config`, owned
/// by the controller's Deployment, renamed `name` (so that the creates do not collide).
async fn scan_job(
    client: &Client,
    release: &Release,
    config: &Config,
    ns: &str,
    name: &str,
) -> Result<Job, BoxError> {
    let key = TargetKey::parse(&format!("apps/v1/deployments/Deployment/{ns}/web"))?;
    let batch = [BatchItem {
        key,
        fingerprint: "admission-test".into(),
        related_inputs: None,
    }];
    let mut job = build_job(&batch, 0, config, &release.namespace);
    let owner_name = format!("{}-controller", release.fullname());
    let owner = Api::<Deployment>::namespaced(client.clone(), &release.namespace)
        .get(&owner_name)
        .await?;
    job.metadata.name = Some(name.to_owned());
    job.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: owner_name,
        uid: owner.metadata.uid.unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    Ok(job)
}

/// `POST` of `job` with `dryRun=All` by `as_controller`: `Ok(())` when admitted, else the HTTP
/// status and message of the refusal.
async fn dry_run_create(
    as_controller: &Client,
    job: &Job,
) -> Result<Result<(), (u16, String)>, BoxError> {
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(as_controller.clone(), &namespace);
    let pp = PostParams {
        dry_run: true,
        field_manager: Some("kubevigil-controller".into()),
    };
    match api.create(&pp, job).await {
        Ok(_) => Ok(Ok(())),
        Err(kube::Error::Api(status)) => Ok(Err((status.code, status.message.clone()))),
        Err(e) => Err(e.into()),
    }
}

/// Waits until `job` is denied (the policy may take a moment to be in force after an install or
/// upgrade) and returns the denial, which must carry `expected`.
async fn expect_denied(
    as_controller: &Client,
    what: &str,
    job: &Job,
    expected: &str,
) -> Result<String, BoxError> {
    let (code, message) = wait_for(
        Duration::from_secs(60),
        &format!("{what} to be denied by the admission policy"),
        || async {
            Ok::<_, BoxError>(match dry_run_create(as_controller, job).await? {
                Ok(()) => Check::NotYet("admitted".to_owned()),
                Err((code, message)) if message.contains(ADMISSION_DENIAL_MARKER) => {
                    Check::Done((code, message))
                }
                Err((code, message)) => {
                    Check::NotYet(format!("refused otherwise: {code} {message}"))
                }
            })
        },
    )
    .await?;
    eprintln!("denied ({what}): HTTP {code}: {message}");
    if !matches!(code, 403 | 422) {
        return Err(
            format!("{what}: denied with HTTP {code}, expected 403 or 422: {message}").into(),
        );
    }
    if !message.contains(expected) {
        return Err(
            format!("{what}: denied with {message:?}, expected the rule {expected:?}").into(),
        );
    }
    Ok(message)
}

/// Waits until `job` is admitted (dry run).
async fn expect_admitted(as_controller: &Client, what: &str, job: &Job) -> Result<(), BoxError> {
    wait_for(
        Duration::from_secs(60),
        &format!("{what} to be admitted"),
        || async {
            Ok::<_, BoxError>(match dry_run_create(as_controller, job).await? {
                Ok(()) => Check::Done(()),
                Err((code, message)) => Check::NotYet(format!("{code}: {message}")),
            })
        },
    )
    .await?;
    eprintln!("admitted ({what})");
    Ok(())
}

fn pod_spec(job: &mut Job) -> &mut k8s_openapi::api::core::v1::PodSpec {
    job.spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .expect("the builder sets a pod spec")
}

async fn scenario(
    cluster: &TestCluster,
    client: &Client,
    ns: &str,
    release: &Release,
) -> Result<(), BoxError> {
    let policy_name = format!("{}-scan-job-admission", release.fullname());
    // The install namespace enforces Pod Security `restricted` before the chart goes in.
    release.prepare_namespace(cluster).await?;
    let notes = cluster.helm(release.install_args()).await?;
    if notes.contains("does not enforce the Pod Security Standard") {
        return Err(
            format!("the notes warn although the namespace enforces restricted:\n{notes}").into(),
        );
    }
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    policies.get(&policy_name).await?;
    bindings.get(&policy_name).await?;

    // The controller's own Jobs are admitted, and their pods run under `restricted`.
    create_deployment(client, ns, &deployment("web", false, 0)?).await?;
    let summaries: Api<WorkloadConfigurationScanSummary> = Api::namespaced(client.clone(), ns);
    wait_for(
        Duration::from_secs(180),
        "the controller's scan Job to write wcss deployment-web",
        || async {
            Ok::<_, BoxError>(match summaries.get_opt("deployment-web").await? {
                Some(_) => Check::Done(()),
                None => Check::NotYet("no result yet".to_owned()),
            })
        },
    )
    .await?;
    eprintln!("the controller's own scan Job was admitted and wrote deployment-web");

    let user = release.controller_user();
    let as_controller = client_as(cluster, &user).await?;
    let config = live_config(client, release).await?;
    let sj = &config.scan_job;

    // Another image.
    let mut job = scan_job(client, release, &config, ns, "admission-other-image").await?;
    pod_spec(&mut job).containers[0].image = Some(kind_tests::scenario::probe_image());
    expect_denied(
        &as_controller,
        "another image",
        &job,
        &format!(
            "{ADMISSION_DENIAL_MARKER}the scan Job must run image {}",
            sj.image
        ),
    )
    .await?;

    // Privileged (the API server itself refuses privileged with allowPrivilegeEscalation: false).
    let mut job = scan_job(client, release, &config, ns, "admission-privileged").await?;
    let sc = pod_spec(&mut job).containers[0]
        .security_context
        .as_mut()
        .expect("the builder sets a security context");
    sc.privileged = Some(true);
    sc.allow_privilege_escalation = None;
    expect_denied(
        &as_controller,
        "privileged",
        &job,
        &format!("{ADMISSION_DENIAL_MARKER}no privileged containers"),
    )
    .await?;

    // Another ServiceAccount.
    let mut job = scan_job(client, release, &config, ns, "admission-other-sa").await?;
    pod_spec(&mut job).service_account_name = Some("default".into());
    expect_denied(
        &as_controller,
        "another ServiceAccount",
        &job,
        &format!(
            "{ADMISSION_DENIAL_MARKER}the scan Job must run as ServiceAccount {}",
            sj.service_account_name
        ),
    )
    .await?;

    // A hostPath volume.
    let mut job = scan_job(client, release, &config, ns, "admission-host-path").await?;
    let host: k8s_openapi::api::core::v1::Volume =
        serde_json::from_value(json!({"name": "host", "hostPath": {"path": "/"}}))?;
    pod_spec(&mut job)
        .volumes
        .get_or_insert_with(Vec::new)
        .push(host);
    expect_denied(
        &as_controller,
        "a hostPath volume",
        &job,
        &format!("{ADMISSION_DENIAL_MARKER}no hostPath volumes"),
    )
    .await?;

    // The issue's own command: kubectl create job --as=<controller>.
    let out = tools::kubectl_output(
        cluster.kubeconfig(),
        [
            "create",
            "job",
            "admission-kubectl",
            "-n",
            &release.namespace,
            "--image=busybox",
            "--dry-run=server",
            &format!("--as={user}"),
        ],
    )
    .await?;
    eprintln!(
        "kubectl create job admission-kubectl --image=busybox --as={user}: exit {}: {}",
        out.status,
        out.stderr.trim()
    );
    if out.status.success() || !out.stderr.contains(ADMISSION_DENIAL_MARKER) {
        return Err(format!("kubectl create job --as={user} was not denied by the policy").into());
    }

    // The Job exactly as the controller builds it is admitted.
    let job = scan_job(client, release, &config, ns, "admission-scan-job").await?;
    expect_admitted(&as_controller, "the builder's scan Job", &job).await?;
    // Only the controller is bound: the cluster admin may create the other-image Job.
    let mut other = scan_job(client, release, &config, ns, "admission-admin").await?;
    pod_spec(&mut other).containers[0].image = Some(kind_tests::scenario::probe_image());
    if let Err((code, message)) = dry_run_create(client, &other).await? {
        return Err(
            format!("the policy applies to the cluster admin too: {code} {message}").into(),
        );
    }

    // helm upgrade to another tag: the policy follows in the same release.
    let upgraded = release
        .clone()
        .set(&format!("scanJob.image.tag={UPGRADED_TAG}"));
    cluster.helm(upgraded.install_args()).await?;
    let new_config = live_config(client, release).await?;
    if !new_config
        .scan_job
        .image
        .ends_with(&format!(":{UPGRADED_TAG}"))
    {
        return Err(format!(
            "after the upgrade the controller runs {}",
            new_config.scan_job.image
        )
        .into());
    }
    let new_job = scan_job(client, release, &new_config, ns, "admission-new-tag").await?;
    expect_admitted(&as_controller, "a Job of the new tag", &new_job).await?;
    let old_job = scan_job(client, release, &config, ns, "admission-old-tag").await?;
    expect_denied(
        &as_controller,
        "a Job of the old tag after the upgrade",
        &old_job,
        &format!(
            "{ADMISSION_DENIAL_MARKER}the scan Job must run image {}",
            new_config.scan_job.image
        ),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn the_api_server_admits_only_scan_jobs_from_the_controller() -> Result<(), Error> {
    with_temp_ns(|client, ns| async move {
        let cluster = TestCluster::shared().await?;
        let release = Release::new(&format!("{ns}-kv"), &[&ns]).with_pod_security("restricted");
        let outcome = scenario(cluster, &client, &ns, &release).await;
        if outcome.is_err() {
            eprintln!("{}", release.dump(cluster).await);
        }
        release.uninstall(cluster).await;
        outcome?;

        // helm uninstall removed the policy and its binding.
        let name = format!("{}-scan-job-admission", release.fullname());
        let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
        let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
        wait_for(
            Duration::from_secs(60),
            &format!("ValidatingAdmissionPolicy and binding {name} to be gone"),
            || async {
                let policy = policies.get_opt(&name).await?.is_some();
                let binding = bindings.get_opt(&name).await?.is_some();
                Ok::<_, BoxError>(if policy || binding {
                    Check::NotYet(format!(
                        "policy exists: {policy}, binding exists: {binding}"
                    ))
                } else {
                    Check::Done(())
                })
            },
        )
        .await?;
        eprintln!("helm uninstall removed ValidatingAdmissionPolicy and binding {name}");
        Ok(())
    })
    .await
}
