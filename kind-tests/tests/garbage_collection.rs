//! The garbage collector removes a Deployment's ReplicaSet and pods on foreground deletion, and
//! the kubelet stops the pods' containers.
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
        // Both probes have started (their logs, read through the API as `kubectl logs` does),
        // and on the local node each has a running containerd task.
        let names: Vec<String> = pods
            .list(&lp)
            .await?
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        for name in &names {
            wait_for(
                Duration::from_secs(30),
                &format!("sleeper {name} to log its start"),
                || async {
                    let log = cluster.pod_log(&client, &ns, name).await?;
                    Ok(if log.contains("sleeping until SIGTERM") {
                        Check::Done(())
                    } else {
                        Check::NotYet(format!("log: {log:?}"))
                    })
                },
            )
            .await?;
        }
        let mut containers = Vec::new();
        if let Some(state) = cluster.local_state() {
            for pod in pods.list(&lp).await?.items {
                let id = pod
                    .status
                    .and_then(|s| s.container_statuses)
                    .and_then(|cs| cs.into_iter().find_map(|c| c.container_id))
                    .expect("a running pod has a container ID");
                let pid = kind_tests::node::container_pid(&state.node(), &id)
                    .unwrap_or_else(|| panic!("containerd runs no task for {id}"));
                containers.push((id, pid));
            }
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

        // The kubelet stopped the containers: containerd runs no task for them, and their
        // processes are gone.
        if let Some(state) = cluster.local_state() {
            for (id, pid) in &containers {
                assert_eq!(
                    kind_tests::node::container_pid(&state.node(), id),
                    None,
                    "containerd still runs {id}"
                );
                assert!(
                    !kind_tests::procs::is_alive(*pid),
                    "process {pid} of {id} still runs"
                );
            }
        }
        Ok(())
    })
    .await
}
