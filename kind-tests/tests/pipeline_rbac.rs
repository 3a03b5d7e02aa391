//! Issue 5, acceptance point 3: RBAC triplets. A RoleBinding binding ServiceAccount `a` and User
//! `b` to Role `reader` yields one result per (subject, role, binding) triplet; removing `b`
//! from the binding deletes `b`'s; deleting the Role deletes nothing; deleting the binding
//! deletes `a`'s (by the controller: the results' ownerReferences are stripped first).
//! Assertions are on what `kubectl get wcs,wcss` prints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use kind_tests::pipeline::{kubectl_names, kubectl_uid};
use kind_tests::release::{Release, with_release};
use kind_tests::scenario::{BoxError, Check, Error, TestCluster, wait_for, with_temp_ns};
use kube::Client;

const A: &str = "serviceaccount-a-role-reader-rolebinding-rb";
const B: &str = "user-b-role-reader-rolebinding-rb";

const SENTINEL: &str = "user-c-role-sentinel-rolebinding-sentinel";

/// The triplet results (`-role-reader-rolebinding-rb`) that `kubectl get KIND` lists.
async fn triplets(cluster: &TestCluster, kind: &str, ns: &str) -> Result<BTreeSet<String>, Error> {
    Ok(kubectl_names(cluster, kind, ns, &[])
        .await?
        .into_iter()
        .filter(|n| n.contains("-role-reader-rolebinding-rb"))
        .collect())
}

/// Waits until both `kubectl get wcs` and `kubectl get wcss` list exactly `want` triplets.
async fn wait_triplets(cluster: &TestCluster, ns: &str, want: &[&str]) -> Result<(), Error> {
    let want: BTreeSet<String> = want.iter().map(|s| (*s).to_owned()).collect();
    wait_for(
        Duration::from_secs(60),
        &format!("triplet results {want:?}"),
        || {
            let want = want.clone();
            async move {
                let wcs = triplets(cluster, "wcs", ns).await?;
                let wcss = triplets(cluster, "wcss", ns).await?;
                Ok::<_, BoxError>(if wcs == want && wcss == want {
                    Check::Done(())
                } else {
                    Check::NotYet(format!("wcs {wcs:?}, wcss {wcss:?}"))
                })
            }
        },
    )
    .await
}

async fn apply(cluster: &TestCluster, ns: &str, manifest: &str) -> Result<(), Error> {
    let dir = std::env::temp_dir().join(format!("kv-rbac-{ns}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::Test {
        namespace: ns.to_owned(),
        source: e.into(),
    })?;
    let file = dir.join("manifest.yaml");
    std::fs::write(&file, manifest).map_err(|e| Error::Test {
        namespace: ns.to_owned(),
        source: e.into(),
    })?;
    cluster
        .kubectl(["apply", "-n", ns, "-f", &file.to_string_lossy()])
        .await?;
    Ok(())
}

fn binding(subjects: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: rb\n\
         roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: reader\n\
         subjects:\n{subjects}"
    )
}

const SUBJECT_A: &str = "  - kind: ServiceAccount\n    name: a\n";
const SUBJECT_B: &str = "  - kind: User\n    apiGroup: rbac.authorization.k8s.io\n    name: b\n";

async fn rbac(_client: Client, ns: String) -> Result<(), BoxError> {
    let cluster = TestCluster::shared().await?;
    let release = Release::new(&format!("{ns}-kv"), &[&ns]);
    with_release(cluster, &release, || async {
        apply(
            cluster,
            &ns,
            "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: reader\n\
             rules:\n  - apiGroups: [\"\"]\n    resources: [\"pods\"]\n    verbs: [\"get\", \"list\"]\n",
        )
        .await?;
        apply(cluster, &ns, &binding(&format!("{SUBJECT_A}{SUBJECT_B}"))).await?;

        // Both subjects get their triplet.
        wait_triplets(cluster, &ns, &[A, B]).await?;
        eprintln!(
            "kubectl get wcss:\n{}",
            cluster.kubectl(["get", "wcss", "-n", &ns]).await?
        );

        // Removing b deletes b's result (the binding lives on, so GC cannot have done it).
        apply(cluster, &ns, &binding(SUBJECT_A)).await?;
        wait_triplets(cluster, &ns, &[A]).await?;

        // Deleting the Role first deletes nothing. Checked after a positive signal: a Role
        // and a binding of User c to it, created after the delete, have their triplet result,
        // so the controller has handled the delete event (the Role watch delivers in order:
        // the triplet needs the sentinel Role's add, which comes after reader's delete).
        let a_uid = kubectl_uid(cluster, "wcss", &ns, A).await?;
        cluster
            .kubectl(["delete", "role", "reader", "-n", &ns, "--wait=true"])
            .await?;
        apply(
            cluster,
            &ns,
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: sentinel\n\
             rules:\n  - apiGroups: [\"\"]\n    resources: [\"configmaps\"]\n    verbs: [\"get\"]\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: sentinel\n\
             roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: sentinel\n\
             subjects:\n  - kind: User\n    apiGroup: rbac.authorization.k8s.io\n    name: c\n",
        )
        .await?;
        wait_for(
            Duration::from_secs(60),
            &format!("the sentinel triplet {SENTINEL}"),
            || async {
                let listed = kubectl_names(cluster, "wcss", &ns, &[]).await?;
                Ok::<_, BoxError>(if listed.contains(SENTINEL) {
                    Check::Done(())
                } else {
                    Check::NotYet(format!("{listed:?}"))
                })
            },
        )
        .await?;
        assert_eq!(
            kubectl_uid(cluster, "wcss", &ns, A).await?,
            a_uid,
            "deleting the Role must leave a's result alone"
        );
        let (wcs, wcss) = (
            triplets(cluster, "wcs", &ns).await?,
            triplets(cluster, "wcss", &ns).await?,
        );
        let want = BTreeSet::from([A.to_owned()]);
        if wcs != want || wcss != want {
            return Err(Error::Test {
                namespace: ns.clone(),
                source: format!(
                    "deleting the Role changed the triplet results: wcs {wcs:?}, wcss {wcss:?}"
                )
                .into(),
            });
        }

        // Deleting the binding deletes a's result; ownerReferences stripped so that only the
        // controller's own delete can remove it.
        for kind in ["wcs", "wcss"] {
            cluster
                .kubectl([
                    "patch",
                    kind,
                    A,
                    "-n",
                    &ns,
                    "--type=merge",
                    "-p",
                    r#"{"metadata":{"ownerReferences":null}}"#,
                ])
                .await?;
        }
        cluster
            .kubectl(["delete", "rolebinding", "rb", "-n", &ns, "--wait=true"])
            .await?;
        wait_triplets(cluster, &ns, &[]).await?;
        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn rbac_triplets_follow_their_binding() -> Result<(), Error> {
    with_temp_ns(rbac).await
}
