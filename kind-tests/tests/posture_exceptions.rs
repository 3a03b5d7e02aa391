//! Issue 21, acceptance points 2, 3 and 4 on the real API server.
//!
//! - A `PostureException` for C-0017 on one Deployment turns that control `passed` /
//!   `w/exceptions` on that Deployment only, within 5 s, with the exception's name in the
//!   result; deleting it, or reaching its `expiresAt`, turns it back.
//! - A namespace `admin` may create one; a namespace `edit` user may not; neither may create a
//!   `ClusterPostureException`.
//! - `scan-job exceptions convert` (its library function, as the command calls it) on the
//!   Kubescape examples in `scan-job/tests/fixtures/` gives resources that
//!   `kubectl apply --dry-run=server` accepts.
//! - The release has OpenReports off (the default): with the OpenReports CRDs installed, no
//!   Report is written in the namespace and no RBAC for OpenReports exists.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use kind_tests::cluster::repo_root;
use kind_tests::openreports::install_crds;
use kind_tests::pipeline::{create_deployment, deployment};
use kind_tests::release::{Release, wait_control_status, with_release};
use kind_tests::scenario::{BoxError, Check, Error, TestCluster, wait_for, with_temp_ns};
use kube::{Api, Client};
use kubevigil_crds::{WorkloadConfigurationScan, WorkloadConfigurationScanSummary};

fn test_error(ns: &str, message: String) -> Error {
    Error::Test {
        namespace: ns.to_owned(),
        source: message.into(),
    }
}

async fn apply(
    cluster: &TestCluster,
    ns: &str,
    name: &str,
    text: &str,
    extra: &[&str],
) -> Result<String, Error> {
    let file = std::env::temp_dir().join(format!("kv-pex-{ns}-{name}.yaml"));
    std::fs::write(&file, text).map_err(|e| test_error(ns, e.to_string()))?;
    let path = file.to_string_lossy().to_string();
    let mut args = vec!["apply", "-n", ns, "-f", &path];
    args.extend_from_slice(extra);
    cluster.kubectl(args).await
}

fn exception(name: &str, expires_at: Option<&str>) -> String {
    let expiry = expires_at
        .map(|t| format!("  expiresAt: \"{t}\"\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: kubevigil.io/v1beta1\nkind: PostureException\nmetadata:\n  name: {name}\n\
         spec:\n  controls: [C-0017]\n  resources:\n    - kind: Deployment\n      name: web\n\
         \x20 justification: the cache writes to its root filesystem until SEC-17 lands\n{expiry}"
    )
}

/// The status, sub-status and info of C-0017 in wcs `deployment-<name>`.
async fn c0017(
    scans: &Api<WorkloadConfigurationScan>,
    name: &str,
) -> Result<(String, String, String), BoxError> {
    let wcs = scans.get(&format!("deployment-{name}")).await?;
    let c = wcs.spec.controls.get("C-0017").ok_or("no C-0017")?;
    let v = serde_json::to_value(&c.status)?;
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    Ok((s("status"), s("subStatus"), s("info")))
}

async fn wait_c0017(
    scans: &Api<WorkloadConfigurationScan>,
    name: &str,
    status: &str,
    timeout: Duration,
) -> Result<(Duration, (String, String, String)), Error> {
    let start = Instant::now();
    let got = wait_for(timeout, &format!("C-0017 {status} on {name}"), || async {
        let got = c0017(scans, name).await?;
        Ok::<_, BoxError>(if got.0 == status {
            Check::Done(got)
        } else {
            Check::NotYet(format!("{got:?}"))
        })
    })
    .await?;
    Ok((start.elapsed(), got))
}

async fn exceptions_apply(client: Client, ns: String) -> Result<(), BoxError> {
    let cluster = TestCluster::shared().await?;
    install_crds(cluster).await?;
    let release = Release::new(&format!("{ns}-kv"), &[&ns]);
    with_release(cluster, &release, || async {
        for name in ["web", "api"] {
            create_deployment(&client, &ns, &deployment(name, false, 1)?).await?;
        }
        let summaries: Api<WorkloadConfigurationScanSummary> = Api::namespaced(client.clone(), &ns);
        let scans: Api<WorkloadConfigurationScan> = Api::namespaced(client.clone(), &ns);
        for name in ["web", "api"] {
            wait_control_status(
                &summaries,
                &format!("deployment-{name}"),
                "C-0017",
                "failed",
                Duration::from_secs(180),
            )
            .await?;
        }

        // Created: passed / w/exceptions on web only, with the exception's name.
        apply(cluster, &ns, "allow", &exception("allow-cache", None), &[]).await?;
        let (took, (_, sub, info)) =
            wait_c0017(&scans, "web", "passed", Duration::from_secs(60)).await?;
        println!("exception created: web C-0017 passed after {took:?} ({sub}, {info})");
        if sub != "w/exceptions" || !info.contains(&format!("PostureException {ns}/allow-cache")) {
            return Err(test_error(&ns, format!("C-0017 on web: {sub:?} {info:?}")));
        }
        if took > Duration::from_secs(5) {
            return Err(test_error(&ns, format!("the exception took {took:?} to apply (more than 5 s)")));
        }
        let api = c0017(&scans, "api").await.map_err(|e| test_error(&ns, e.to_string()))?;
        if api.0 != "failed" {
            return Err(test_error(&ns, format!("C-0017 on api changed: {api:?}")));
        }

        // Deleted: failed again.
        cluster
            .kubectl(["delete", "postureexception", "allow-cache", "-n", &ns])
            .await?;
        let (took, _) = wait_c0017(&scans, "web", "failed", Duration::from_secs(60)).await?;
        println!("exception deleted: web C-0017 failed again after {took:?}");

        // Expiring: applies until expiresAt, then the target is rescanned without it.
        let expires = k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_secs(20);
        let expires = expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        apply(cluster, &ns, "temp", &exception("temporary", Some(&expires)), &[]).await?;
        let (took, _) = wait_c0017(&scans, "web", "passed", Duration::from_secs(60)).await?;
        println!("expiring exception (expiresAt {expires}) applied after {took:?}");
        let (took, _) = wait_c0017(&scans, "web", "failed", Duration::from_secs(90)).await?;
        let now = k8s_openapi::jiff::Timestamp::now();
        println!("expired: web C-0017 failed again {took:?} later (at {now}, expiresAt {expires})");
        let expires_ts: k8s_openapi::jiff::Timestamp = expires.parse().map_err(|e| test_error(&ns, format!("{e}")))?;
        if now < expires_ts {
            return Err(test_error(&ns, "C-0017 failed again before expiresAt".into()));
        }

        // RBAC: namespace admin yes, edit no; the cluster kind for neither.
        cluster
            .kubectl(["create", "rolebinding", "alice-admin", "--clusterrole=admin", "--user=alice", "-n", &ns])
            .await?;
        cluster
            .kubectl(["create", "rolebinding", "bob-edit", "--clusterrole=edit", "--user=bob", "-n", &ns])
            .await?;
        // The aggregation controller fills `admin` asynchronously.
        wait_for(Duration::from_secs(60), "admin aggregating PostureException rights", || async {
            let out = cluster
                .kubectl(["auth", "can-i", "create", "postureexceptions.kubevigil.io", "-n", &ns, "--as=alice"])
                .await;
            Ok::<_, BoxError>(match out {
                Ok(s) if s.trim() == "yes" => Check::Done(()),
                other => Check::NotYet(format!("{other:?}")),
            })
        })
        .await?;
        apply(cluster, &ns, "alice", &exception("by-alice", None), &["--as=alice"]).await?;
        println!("namespace admin alice created PostureException by-alice");
        match apply(cluster, &ns, "bob", &exception("by-bob", None), &["--as=bob"]).await {
            Err(e) if e.to_string().contains("forbidden") => {
                println!("namespace edit bob: forbidden, as wanted");
            }
            other => return Err(test_error(&ns, format!("bob (edit) creating a PostureException: {other:?}"))),
        }
        let cluster_kind = "apiVersion: kubevigil.io/v1beta1\nkind: ClusterPostureException\nmetadata:\n  name: by-alice\nspec:\n  controls: [C-0017]\n  resources: [{kind: Deployment}]\n  justification: x\n";
        match apply(cluster, &ns, "alice-cluster", cluster_kind, &["--as=alice"]).await {
            Err(e) if e.to_string().contains("forbidden") => {
                println!("namespace admin alice: ClusterPostureException forbidden, as wanted");
            }
            other => return Err(test_error(&ns, format!("alice creating a ClusterPostureException: {other:?}"))),
        }

        // Acceptance 3: the converted Kubescape examples pass the API server's validation.
        let text = std::fs::read_to_string(repo_root().join("scan-job/tests/fixtures/kubescape-exceptions.json"))
            .map_err(|e| test_error(&ns, e.to_string()))?;
        let converted = scan_job::convert::convert(&text, &kubevigil_engine::catalog::all(), None)
            .map_err(|e| test_error(&ns, e.to_string()))?;
        let yaml = scan_job::convert::to_yaml(&converted).map_err(|e| test_error(&ns, e))?;
        // The example's namespace is `shop`; here, the test's.
        let yaml = yaml.replace("namespace: shop", &format!("namespace: {ns}"));
        let out = apply(cluster, &ns, "converted", &yaml, &["--dry-run=server"]).await?;
        println!("kubectl apply --dry-run=server of the converted examples:\n{out}");
        let accepted = out.lines().filter(|l| l.contains("(server dry run)")).count();
        if accepted != converted.exceptions.len() {
            return Err(test_error(&ns, format!("{accepted} of {} accepted", converted.exceptions.len())));
        }

        // Acceptance 4: OpenReports off: no Report in the namespace (the CRDs are installed, so
        // this is an answer, not an error), no RBAC for OpenReports.
        let reports = cluster.kubectl(["get", "reports", "-n", &ns, "-o", "name"]).await?;
        if !reports.trim().is_empty() {
            return Err(test_error(&ns, format!("OpenReports off, but reports exist: {reports}")));
        }
        let roles = cluster.kubectl(["get", "clusterroles", "-o", "name"]).await?;
        if let Some(r) = roles.lines().find(|r| r.contains(&release.fullname()) && r.contains("openreports")) {
            return Err(test_error(&ns, format!("OpenReports off, but {r} exists")));
        }
        println!("openReports off: no reports in {ns}, no openreports ClusterRole");
        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn posture_exceptions_apply_expire_and_follow_rbac() -> Result<(), Error> {
    with_temp_ns(exceptions_apply).await
}
