//! Issue 5, acceptance points 1, 2 and 7, on one release:
//!
//! 1. A privileged Deployment yields wcss `deployment-<name>` within 10 s with C-0057 failed;
//!    fixing the spec updates the same object (same uid) and C-0057 passes; status-only
//!    updates (pod and ReplicaSet churn, Deployment status) and scaling start no scan Job
//!    (scalable kinds are fingerprinted by their spec without `replicas`).
//! 2. Deleting the Deployment removes its wcs and wcss within 5 s by the controller's own
//!    delete: the results' ownerReferences are stripped first, so garbage collection cannot.
//! 7. `kubectl get jobs -l app.kubernetes.io/component=scan-job` lists the scan Jobs and
//!    `kubectl describe job` shows the targets each one scanned.
//!
//! Every assertion is on what `kubectl get` / `kubectl describe` print.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kind_tests::pipeline::{
    JobStats, JobWatch, create_deployment, deployment, deployment_target, is_sentinel,
    kubectl_control_status, kubectl_names, kubectl_uid, sentinel, wait_gone,
};
use kind_tests::release::{Release, SCAN_JOB_SELECTOR, wait_control_status, with_release};
use kind_tests::scenario::{BoxError, Check, Error, TestCluster, wait_for, with_temp_ns};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use kubevigil_crds::{WorkloadConfigurationScan, WorkloadConfigurationScanSummary};
use serde_json::json;
use tokio::time::Instant;

fn test_err(ns: &str, msg: String) -> Error {
    Error::Test {
        namespace: ns.to_owned(),
        source: msg.into(),
    }
}

async fn wait_rolled_out(api: &Api<Deployment>, name: &str, replicas: i32) -> Result<(), Error> {
    wait_for(
        Duration::from_secs(120),
        &format!("deployment {name} rolled out with {replicas} available replicas"),
        || async move {
            let d = api.get(name).await?;
            let s = d.status.clone().unwrap_or_default();
            let done = s.observed_generation == d.metadata.generation
                && s.updated_replicas.unwrap_or(0) == replicas
                && s.available_replicas.unwrap_or(0) == replicas
                && s.replicas.unwrap_or(0) == replicas;
            Ok::<_, BoxError>(if done {
                Check::Done(())
            } else {
                Check::NotYet(format!("{s:?}"))
            })
        },
    )
    .await
}

async fn workloads(client: Client, ns: String) -> Result<(), BoxError> {
    let cluster = TestCluster::shared().await?;
    let release = Release::new(&format!("{ns}-kv"), &[&ns]);
    with_release(cluster, &release, || async {
        let jobs = JobWatch::start(client.clone(), &release.namespace).await?;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let summaries: Api<WorkloadConfigurationScanSummary> = Api::namespaced(client.clone(), &ns);
        let scans: Api<WorkloadConfigurationScan> = Api::namespaced(client.clone(), &ns);
        let target = deployment_target(&ns, "web");

        // 1a. Privileged Deployment: failed C-0057 within 10 s of the create.
        let started = Instant::now();
        create_deployment(&client, &ns, &deployment("web", true, 1)?).await?;
        wait_control_status(
            &summaries,
            "deployment-web",
            "C-0057",
            "failed",
            Duration::from_secs(60),
        )
        .await?;
        let first_result = started.elapsed();
        eprintln!("create to failed C-0057: {first_result:?}");
        if first_result > Duration::from_secs(10) {
            return Err(test_err(
                &ns,
                format!("wcss deployment-web took {first_result:?} (bound: 10 s)"),
            ));
        }
        let listed = kubectl_names(cluster, "wcss", &ns, &[]).await?;
        assert!(
            listed.contains("deployment-web"),
            "kubectl get wcss: {listed:?}"
        );
        assert_eq!(
            kubectl_control_status(cluster, &ns, "deployment-web", "C-0057").await?,
            "failed"
        );
        let uid = kubectl_uid(cluster, "wcss", &ns, "deployment-web").await?;
        let wcs_uid = kubectl_uid(cluster, "wcs", &ns, "deployment-web").await?;
        assert!(!uid.is_empty() && !wcs_uid.is_empty());

        // 1b. Fixing the spec updates the same objects and C-0057 passes.
        let fixed = Instant::now();
        deployments
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                    {"name": "main", "securityContext": {"privileged": false}}
                ]}}}})),
            )
            .await
            .map_err(|e| Error::Kube {
                action: "fixing deployment web".into(),
                source: e,
            })?;
        wait_control_status(
            &summaries,
            "deployment-web",
            "C-0057",
            "passed",
            Duration::from_secs(60),
        )
        .await?;
        eprintln!("fix to passed C-0057: {:?}", fixed.elapsed());
        assert_eq!(
            kubectl_control_status(cluster, &ns, "deployment-web", "C-0057").await?,
            "passed"
        );
        assert_eq!(
            kubectl_uid(cluster, "wcss", &ns, "deployment-web").await?,
            uid,
            "the fix must update the same wcss, not recreate it"
        );
        assert_eq!(
            kubectl_uid(cluster, "wcs", &ns, "deployment-web").await?,
            wcs_uid,
            "the fix must update the same wcs, not recreate it"
        );

        // 1c. The fix's rollout (new ReplicaSet, pod churn, Deployment status updates) and
        // then a pod deleted and replaced start no scan Job. "Nothing happened" is checked
        // after a positive signal: sentinel objects created after the churn have their
        // results, so the controller has handled every earlier event of those watches.
        wait_rolled_out(&deployments, "web", 1).await?;
        sentinel(&client, &ns, 1).await?;
        let stats = jobs.stats();
        let after_fix = stats.created_scanning(&target);
        eprintln!("scan Jobs of web after create and fix: {after_fix:?}");
        if after_fix.len() != 2 {
            return Err(test_err(
                &ns,
                format!("expected 2 scan Jobs of web (create, fix), got {after_fix:?}"),
            ));
        }
        // Scans of this namespace's Deployments, ReplicaSets and Pods in Jobs created since
        // `before`, other than the sentinels' (and web's when `web_ok`). Other targets
        // (Namespaces, ClusterRoleBindings of scenarios running alongside) are not this
        // scenario's business.
        let unexpected = |stats: &JobStats, before: &BTreeSet<String>, web_ok: bool| {
            let mut out: Vec<String> = stats
                .created
                .difference(before)
                .filter_map(|j| stats.seen.get(j))
                .flatten()
                .filter(|t| {
                    let parts: Vec<&str> = t.split('/').collect();
                    matches!(
                        parts.get(2),
                        Some(&("deployments" | "replicasets" | "pods"))
                    ) && parts.get(4) == Some(&ns.as_str())
                        && !is_sentinel(t)
                        && !(web_ok && **t == target)
                })
                .cloned()
                .collect();
            out.sort();
            out
        };
        let others = unexpected(&stats, &BTreeSet::new(), true);
        if !others.is_empty() {
            return Err(test_err(
                &ns,
                format!("the fix's rollout started scans of other targets: {others:?}"),
            ));
        }
        let before_churn = stats.created.clone();
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        for p in pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .map_err(|e| Error::Kube {
                action: "listing pods of web".into(),
                source: e,
            })?
            .items
        {
            let name = p.metadata.name.clone().unwrap_or_default();
            pods.delete(&name, &DeleteParams::default())
                .await
                .map_err(|e| Error::Kube {
                    action: format!("deleting pod {name}"),
                    source: e,
                })?;
        }
        wait_rolled_out(&deployments, "web", 1).await?;
        sentinel(&client, &ns, 2).await?;
        let stats = jobs.stats();
        let churn = unexpected(&stats, &before_churn, false);
        eprintln!(
            "scan Jobs during the pod churn: {} (sentinels' and other scenarios'); of this \
             namespace's workloads: {churn:?}",
            stats.created.len() - before_churn.len()
        );
        if !churn.is_empty() {
            return Err(test_err(
                &ns,
                format!("pod and ReplicaSet churn started scan Jobs: {churn:?}"),
            ));
        }

        // 1d. Scaling (spec.replicas through the scale subresource). The API server bumps
        // metadata.generation, but a scalable kind's fingerprint covers its spec without
        // `replicas` instead: scaling up and back down starts no scan at all.
        let before_scale = jobs.stats().created;
        cluster
            .kubectl(["scale", "deployment", "web", "-n", &ns, "--replicas=2"])
            .await?;
        wait_rolled_out(&deployments, "web", 2).await?;
        cluster
            .kubectl(["scale", "deployment", "web", "-n", &ns, "--replicas=1"])
            .await?;
        wait_rolled_out(&deployments, "web", 1).await?;
        sentinel(&client, &ns, 3).await?;
        let stats = jobs.stats();
        let scale_jobs = unexpected(&stats, &before_scale, false);
        let scale_web = stats
            .created
            .difference(&before_scale)
            .filter(|j| stats.seen.get(*j).is_some_and(|ts| ts.contains(&target)))
            .count();
        let scale_jobs: Vec<String> = scale_jobs.into_iter().filter(|t| *t != target).collect();
        eprintln!(
            "scan Jobs of web after scaling it to 2 and back to 1: {scale_web}; of other \
             workloads: {scale_jobs:?}"
        );
        if scale_web > 0 || !scale_jobs.is_empty() {
            return Err(test_err(
                &ns,
                format!("scaling started {scale_web} scans of web and scans of {scale_jobs:?}"),
            ));
        }

        // 7. kubectl get jobs lists the scan Jobs; kubectl describe job shows their targets.
        let listed = cluster
            .kubectl([
                "get",
                "jobs",
                "-n",
                &release.namespace,
                "-l",
                SCAN_JOB_SELECTOR,
            ])
            .await?;
        eprintln!("kubectl get jobs -l {SCAN_JOB_SELECTOR}:\n{listed}");
        for job in &after_fix {
            assert!(listed.contains(job.as_str()), "{job} not in:\n{listed}");
            let described = cluster
                .kubectl(["describe", "job", job, "-n", &release.namespace])
                .await?;
            assert!(
                described.contains(&target),
                "kubectl describe job {job} does not show target {target}:\n{described}"
            );
            assert!(
                described.contains("kubevigil.io/targets"),
                "kubectl describe job {job} has no targets annotation:\n{described}"
            );
        }
        let one = &after_fix[0];
        eprintln!(
            "kubectl describe job {one}:\n{}",
            cluster
                .kubectl(["describe", "job", one, "-n", &release.namespace])
                .await?
        );

        // 2. Delete with the results' ownerReferences stripped: only the controller can
        // delete them now.
        for kind in ["wcs", "wcss"] {
            cluster
                .kubectl([
                    "patch",
                    kind,
                    "deployment-web",
                    "-n",
                    &ns,
                    "--type=json",
                    "-p",
                    r#"[{"op":"remove","path":"/metadata/ownerReferences"}]"#,
                ])
                .await?;
            let owners = cluster
                .kubectl([
                    "get",
                    kind,
                    "deployment-web",
                    "-n",
                    &ns,
                    "-o",
                    "jsonpath={.metadata.ownerReferences}",
                ])
                .await?;
            assert_eq!(owners.trim(), "", "{kind} still has ownerReferences");
        }
        let before_delete = jobs.stats().created_scanning(&target);
        let deleted = Instant::now();
        deployments
            .delete("web", &DeleteParams::background())
            .await
            .map_err(|e| Error::Kube {
                action: "deleting deployment web".into(),
                source: e,
            })?;
        let timeout = Duration::from_secs(30);
        wait_gone(&summaries, "deployment-web", timeout).await?;
        wait_gone(&scans, "deployment-web", timeout).await?;
        let gone = deleted.elapsed();
        eprintln!("delete to results gone (no ownerReferences): {gone:?}");
        let listed_wcs = kubectl_names(cluster, "wcs", &ns, &[]).await?;
        let listed_wcss = kubectl_names(cluster, "wcss", &ns, &[]).await?;
        assert!(
            !listed_wcs.contains("deployment-web") && !listed_wcss.contains("deployment-web"),
            "kubectl get still shows results: wcs {listed_wcs:?}, wcss {listed_wcss:?}"
        );
        if gone > Duration::from_secs(5) {
            return Err(test_err(
                &ns,
                format!("results of the deleted Deployment took {gone:?} to go (bound: 5 s)"),
            ));
        }
        // The controller deleted them itself, without a Job (checked after a sentinel: a
        // scan of web would have been dispatched by then).
        sentinel(&client, &ns, 4).await?;
        assert_eq!(
            jobs.stats().created_scanning(&target),
            before_delete,
            "the delete must not start a scan Job"
        );

        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn deployment_scan_fix_churn_delete_and_jobs() -> Result<(), Error> {
    with_temp_ns(workloads).await
}
