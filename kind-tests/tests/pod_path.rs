//! The whole pod path: a Job's pod runs with its ServiceAccount's token mounted, in-cluster
//! config works, RBAC is enforced for that ServiceAccount, the Job completes, its log is readable
//! through the API (`kubectl logs`, served by the node's kubelet), and its TTL removes it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kind_tests::scenario::{
    Check, Error, TestCluster, probe_image, wait_for, wait_for_condition, with_temp_ns,
};
use kube::api::{ListParams, PostParams};
use kube::runtime::conditions;
use kube::{Api, Client};
use serde_json::json;

async fn create<K>(client: &Client, ns: &str, value: serde_json::Value) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let obj: K = serde_json::from_value(value).unwrap();
    Api::<K>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap()
}

#[tokio::test]
async fn job_pod_uses_its_service_account_and_is_cleaned_up_by_ttl() -> Result<(), Error> {
    with_temp_ns(|client, ns| async move {
        let cluster = TestCluster::shared().await?;
        create::<ConfigMap>(&client, &ns, json!({
            "metadata": {"name": "settings"},
            "data": {"color": "blue"},
        }))
        .await;
        create::<ServiceAccount>(&client, &ns, json!({"metadata": {"name": "reader"}})).await;
        create::<Role>(&client, &ns, json!({
            "metadata": {"name": "configmap-get"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
        }))
        .await;
        create::<RoleBinding>(&client, &ns, json!({
            "metadata": {"name": "reader-configmap-get"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmap-get"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
        }))
        .await;
        let job = create::<Job>(&client, &ns, json!({
            "metadata": {"name": "probe"},
            "spec": {
                "backoffLimit": 0,
                // Long enough to read the log through the API before the pod goes.
                "ttlSecondsAfterFinished": 20,
                "template": {
                    "metadata": {"labels": {"app": "probe"}},
                    "spec": {
                        "serviceAccountName": "reader",
                        "restartPolicy": "Never",
                        "containers": [{
                            "name": "probe",
                            "image": probe_image(),
                            "args": ["rbac"],
                            "env": [{"name": "PROBE_CONFIGMAP", "value": "settings"}],
                        }],
                    },
                },
            },
        }))
        .await;
        let job_uid = job.metadata.uid.clone().unwrap();

        let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
        wait_for_condition(
            &jobs,
            "probe",
            Duration::from_secs(120),
            "Job probe to be Complete",
            conditions::is_job_completed(),
        )
        .await?;

        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let lp = ListParams::default().labels("app=probe");
        let pod_name = pods.list(&lp).await?.items[0]
            .metadata
            .name
            .clone()
            .unwrap();
        let log = cluster.pod_log(&client, &ns, &pod_name).await?;
        let expected = [
            format!("authenticated as system:serviceaccount:{ns}:reader"),
            format!("configmap {ns}/settings read: color=blue"),
            format!("list secrets in {ns} forbidden (403)"),
        ];
        for line in &expected {
            assert!(log.contains(line.as_str()), "log of {pod_name} lacks {line:?}:\n{log}");
        }

        // ttlSecondsAfterFinished removes the Job, and the garbage collector its pod.
        wait_for_condition(
            &jobs,
            "probe",
            Duration::from_secs(90),
            "the TTL controller to delete Job probe",
            conditions::is_deleted(&job_uid),
        )
        .await?;
        wait_for(Duration::from_secs(90), "the Job's pod to be deleted", || {
            let (pods, lp) = (pods.clone(), lp.clone());
            async move {
                let left: Vec<String> = pods
                    .list(&lp)
                    .await?
                    .items
                    .into_iter()
                    .filter_map(|p| p.metadata.name)
                    .collect();
                Ok(if left.is_empty() {
                    Check::Done(())
                } else {
                    Check::NotYet(format!("pods left: {left:?}"))
                })
            }
        })
        .await?;
        Ok(())
    })
    .await
}
