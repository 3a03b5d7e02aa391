//! The garbage collector removes a Deployment's ReplicaSet and pods on foreground deletion, and
//! the kubelet stops the pods' processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kind_tests::scenario::{
    Check, Error, TestCluster, probe_image, wait_for, wait_for_condition, with_temp_ns,
};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::conditions;
use serde_json::json;

#[tokio::test]
async fn foreground_deletion_removes_replicaset_and_pods() -> Result<(), Error> {
    with_temp_ns(|client, ns| async move {
        let cluster = TestCluster::shared().await?;
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "sleeper"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "sleeper"}},
                "template": {
                    "metadata": {"labels": {"app": "sleeper"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 10,
                        "containers": [{
                            "name": "sleeper",
                            "image": probe_image(),
                            "args": ["sleep"],
                        }],
                    },
                },
            },
        }))?;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let created = deployments
            .create(&PostParams::default(), &deployment)
            .await?;
        let uid = created.metadata.uid.clone().unwrap();

        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
        let lp = ListParams::default().labels("app=sleeper");
        let running = wait_for(Duration::from_secs(90), "2 Running sleeper pods", || {
            let (pods, lp) = (pods.clone(), lp.clone());
            async move {
                let phases: Vec<String> = pods
                    .list(&lp)
                    .await?
                    .items
                    .iter()
                    .map(|p| {
                        p.status
                            .as_ref()
                            .and_then(|s| s.phase.clone())
                            .unwrap_or_default()
                    })
                    .collect();
                Ok(
                    if phases.len() == 2 && phases.iter().all(|p| p == "Running") {
                        Check::Done(phases)
                    } else {
                        Check::NotYet(format!("phases: {phases:?}"))
                    },
                )
            }
        })
        .await?;
        assert_eq!(running.len(), 2);
        assert_eq!(replicasets.list(&lp).await?.items.len(), 1);
        // "Running" is reported when the process is spawned; the SIGTERM check below needs
        // each probe to have started and logged first.
        if let Some(state) = cluster.local_state() {
            let prefix = format!("{ns}_sleeper-");
            let pods_dir = state.pods();
            wait_for(
                Duration::from_secs(30),
                "both sleepers to log their start",
                || {
                    let (prefix, pods_dir) = (prefix.clone(), pods_dir.clone());
                    async move {
                        let started = std::fs::read_dir(&pods_dir)?
                            .flatten()
                            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                            .filter(|e| {
                                std::fs::read_to_string(e.path().join("sleeper.log"))
                                    .is_ok_and(|l| l.contains("sleeping until SIGTERM"))
                            })
                            .count();
                        Ok(if started == 2 {
                            Check::Done(())
                        } else {
                            Check::NotYet(format!("{started} of 2 started"))
                        })
                    }
                },
            )
            .await?;
        }

        deployments
            .delete("sleeper", &DeleteParams::foreground())
            .await?;
        // Foreground: the Deployment goes only after its dependents are gone.
        wait_for_condition(
            &deployments,
            "sleeper",
            Duration::from_secs(90),
            "the foreground deletion of Deployment sleeper to finish",
            conditions::is_deleted(&uid),
        )
        .await?;
        let rs_left = replicasets.list(&lp).await?.items.len();
        let pods_left: Vec<String> = pods
            .list(&lp)
            .await?
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        assert_eq!(rs_left, 0, "ReplicaSets left after foreground deletion");
        assert!(pods_left.is_empty(), "pods left: {pods_left:?}");

        // The kubelet stopped the processes with SIGTERM (the probe logs it).
        if let Some(state) = cluster.local_state() {
            let prefix = format!("{ns}_sleeper-");
            let dirs: Vec<_> = std::fs::read_dir(state.pods())?
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .collect();
            assert_eq!(dirs.len(), 2, "one local pod directory per pod");
            for dir in dirs {
                let log = std::fs::read_to_string(dir.path().join("sleeper.log"))?;
                assert!(
                    log.contains("got SIGTERM"),
                    "{}: {log}",
                    dir.path().display()
                );
            }
        }
        Ok(())
    })
    .await
}
