//! The control plane is a real Kubernetes 1.35 API server with real RBAC.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kind_tests::scenario::{Error, TestCluster, with_temp_ns};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

#[tokio::test]
async fn version_reports_1_35() -> Result<(), Error> {
    let cluster = TestCluster::shared().await?;
    let client = cluster.client().await?;
    let info = client.apiserver_version().await.expect("GET /version");
    assert_eq!((info.major.as_str(), info.minor.as_str()), ("1", "35"));
    assert!(
        info.git_version.starts_with("v1.35."),
        "{}",
        info.git_version
    );

    let raw = cluster.kubectl(["get", "--raw", "/version"]).await?;
    let v: serde_json::Value = serde_json::from_str(&raw).expect("/version is JSON");
    assert!(
        v["gitVersion"].as_str().unwrap().starts_with("v1.35."),
        "kubectl get --raw /version: {raw}"
    );
    Ok(())
}

/// `kubectl auth can-i` as the given subject: "yes" or "no".
async fn can_i(ns: &str, verb: &str, resource: &str, as_user: Option<&str>) -> String {
    let cluster = TestCluster::shared().await.unwrap();
    let mut args = vec!["auth", "can-i", verb, resource, "-n", ns];
    if let Some(user) = as_user {
        args.extend(["--as", user]);
    }
    let out = kind_tests::tools::kubectl_output(cluster.kubeconfig(), &args)
        .await
        .unwrap();
    // can-i exits 0 for yes and 1 for no; anything else is an error.
    let code = out.status.code();
    assert!(
        code == Some(0) || code == Some(1),
        "kubectl {args:?}: {:?} {}",
        out.status,
        out.stderr
    );
    out.stdout.trim().to_owned()
}

#[tokio::test]
async fn auth_can_i_answers_from_real_rbac() -> Result<(), Error> {
    with_temp_ns(|client, ns| async move {
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
        let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "fresh"}}))?;
        sas.create(&PostParams::default(), &sa).await?;
        let subject = format!("system:serviceaccount:{ns}:fresh");

        assert_eq!(can_i(&ns, "list", "secrets", None).await, "yes", "admin");
        assert_eq!(can_i(&ns, "list", "secrets", Some(&subject)).await, "no");
        assert_eq!(can_i(&ns, "get", "configmaps", Some(&subject)).await, "no");

        let role: Role = serde_json::from_value(json!({
            "metadata": {"name": "cm-get"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
        }))?;
        Api::<Role>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &role)
            .await?;
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": "fresh-cm-get"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-get"},
            "subjects": [{"kind": "ServiceAccount", "name": "fresh", "namespace": ns}],
        }))?;
        Api::<RoleBinding>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &binding)
            .await?;

        assert_eq!(can_i(&ns, "get", "configmaps", Some(&subject)).await, "yes");
        assert_eq!(can_i(&ns, "list", "configmaps", Some(&subject)).await, "no");
        assert_eq!(can_i(&ns, "list", "secrets", Some(&subject)).await, "no");
        Ok(())
    })
    .await
}
