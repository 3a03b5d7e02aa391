//! Issue 21, acceptance points 1 and 4: with `openReports.enabled`, the demo namespace's objects (the
//! README's `demo/k8s-bad-practices.yaml`, in the test's namespace) each get an OpenReports
//! `Report` whose pass/fail counts equal their WorkloadConfigurationScanSummary's, and the test
//! namespace's own (cluster-scoped) result gets a `ClusterReport`. The OpenReports CRDs come from
//! the OpenReports module (`scripts/openreports-crds.sh`), so the real API server validates every
//! report. Fixing a workload, deleting one and the RBAC subject cleanup change and delete the
//! reports exactly as they change and delete the summaries. Assertions are on what `kubectl get
//! reports,wcss -o json` returns; `kubectl get reports` is printed as a user sees it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use kind_tests::cluster::repo_root;
use kind_tests::openreports::install_crds;
use kind_tests::release::{Release, with_release};
use kind_tests::scenario::{BoxError, Check, Error, TestCluster, wait_for, with_temp_ns};
use kube::Client;
use serde_json::Value;

/// Name to (pass, fail) counts.
type Counts = BTreeMap<String, (u64, u64)>;

async fn get_json(cluster: &TestCluster, args: &[&str]) -> Result<Value, BoxError> {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend(["-o", "json"]);
    Ok(serde_json::from_str(&cluster.kubectl(all).await?)?)
}

/// Pass/fail counts of each WorkloadConfigurationScanSummary in `ns`, from its controls.
async fn wcss_counts(cluster: &TestCluster, ns: &str) -> Result<Counts, BoxError> {
    let list = get_json(cluster, &["wcss", "-n", ns]).await?;
    let mut out = Counts::new();
    for item in list["items"].as_array().cloned().unwrap_or_default() {
        let name = item["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let (mut pass, mut fail) = (0, 0);
        for c in item["spec"]["controls"]
            .as_object()
            .cloned()
            .unwrap_or_default()
            .values()
        {
            match c["status"]["status"].as_str() {
                Some("passed") => pass += 1,
                Some("failed") => fail += 1,
                _ => {}
            }
        }
        out.insert(name, (pass, fail));
    }
    Ok(out)
}

fn report_counts(list: &Value) -> Counts {
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            (
                r["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                (
                    r["summary"]["pass"].as_u64().unwrap_or(0),
                    r["summary"]["fail"].as_u64().unwrap_or(0),
                ),
            )
        })
        .collect()
}

/// Waits until the Reports of `ns` are exactly the summaries of `ns`, with equal counts, and
/// `extra` holds for the summaries.
async fn wait_equal(
    cluster: &TestCluster,
    ns: &str,
    what: &str,
    extra: impl Fn(&Counts) -> bool,
) -> Result<Counts, Error> {
    wait_for(Duration::from_secs(180), what, || {
        let extra = &extra;
        async move {
            let wcss = wcss_counts(cluster, ns).await?;
            let reports = report_counts(&get_json(cluster, &["reports", "-n", ns]).await?);
            Ok::<_, BoxError>(if !wcss.is_empty() && wcss == reports && extra(&wcss) {
                Check::Done(wcss)
            } else {
                Check::NotYet(format!("wcss {wcss:?}\nreports {reports:?}"))
            })
        }
    })
    .await
}

fn test_error(ns: &str, message: String) -> Error {
    Error::Test {
        namespace: ns.to_owned(),
        source: message.into(),
    }
}

async fn apply_manifest(cluster: &TestCluster, ns: &str, text: &str) -> Result<(), Error> {
    let file = std::env::temp_dir().join(format!("kv-openreports-{ns}.yaml"));
    std::fs::write(&file, text).map_err(|e| test_error(ns, e.to_string()))?;
    cluster
        .kubectl(["apply", "-n", ns, "-f", &file.to_string_lossy()])
        .await?;
    Ok(())
}

/// The demo namespace's objects, in the test's namespace (its Namespace object left out).
async fn apply_demo(cluster: &TestCluster, ns: &str) -> Result<(), Error> {
    let demo = std::fs::read_to_string(repo_root().join("demo/k8s-bad-practices.yaml"))
        .map_err(|e| test_error(ns, e.to_string()))?;
    let demo: Vec<&str> = demo
        .split("\n---\n")
        .filter(|doc| !doc.contains("kind: Namespace\n"))
        .collect();
    let demo = demo.join("\n---\n").replace("k8s-bad-practices", ns);
    apply_manifest(cluster, ns, &demo).await
}

async fn reports_follow_results(_client: Client, ns: String) -> Result<(), BoxError> {
    let cluster = TestCluster::shared().await?;
    install_crds(cluster).await?;
    let release = Release::new(&format!("{ns}-kv"), &[&ns]).set("openReports.enabled=true");
    with_release(cluster, &release, || async {
        apply_demo(cluster, &ns).await?;

        let wanted = [
            "deployment-trusty-reverse-proxy",
            "daemonset-node-agent",
            "cronjob-nightly-backup",
            "pod-debug-shell",
            "serviceaccount-node-agent",
        ];
        let first = wait_equal(cluster, &ns, "one Report per summary, equal counts", |w| {
            wanted.iter().all(|n| w.contains_key(*n)) && w.keys().any(|k| k.starts_with("user-"))
        })
        .await?;
        let (_, proxy_failed) = first["deployment-trusty-reverse-proxy"];
        println!(
            "kubectl get reports -n {ns}:\n{}",
            cluster.kubectl(["get", "reports", "-n", &ns]).await?
        );
        println!("{} reports, equal to the summaries: {first:?}", first.len());

        // The test namespace's own result is a cluster-scoped target's: a ClusterReport.
        let own = format!("namespace-{ns}");
        let want_own = wait_for(Duration::from_secs(120), "the namespace's summary", || {
            let own = own.clone();
            let install = release.namespace.clone();
            async move {
                let counts = wcss_counts(cluster, &install).await?;
                Ok::<_, BoxError>(match counts.get(&own) {
                    Some(c) => Check::Done(*c),
                    None => Check::NotYet(format!("{:?}", counts.keys())),
                })
            }
        })
        .await?;
        wait_for(
            Duration::from_secs(60),
            "the namespace's ClusterReport",
            || async {
                let r = get_json(cluster, &["clusterreport", &own]).await?;
                let got = (
                    r["summary"]["pass"].as_u64().unwrap_or(0),
                    r["summary"]["fail"].as_u64().unwrap_or(0),
                );
                Ok::<_, BoxError>(if got == want_own && r["scope"]["kind"] == "Namespace" {
                    Check::Done(())
                } else {
                    Check::NotYet(format!("{got:?} vs {want_own:?}: {}", r["scope"]))
                })
            },
        )
        .await?;
        println!("ClusterReport {own}: pass/fail {want_own:?}");

        // Fixing: the proxy no longer privileged. Its summary and its Report change together.
        cluster
            .kubectl([
                "patch",
                "deployment",
                "trusty-reverse-proxy",
                "-n",
                &ns,
                "--type=json",
                "-p",
                r#"[{"op":"replace","path":"/spec/template/spec/containers/0/securityContext/privileged","value":false}]"#,
            ])
            .await?;
        let fixed = wait_equal(cluster, &ns, "the fixed proxy's Report", |w| {
            w.get("deployment-trusty-reverse-proxy")
                .is_some_and(|(_, f)| *f < proxy_failed)
        })
        .await?;
        println!(
            "fixed: deployment-trusty-reverse-proxy fail {proxy_failed} -> {}",
            fixed["deployment-trusty-reverse-proxy"].1
        );

        // RBAC subject cleanup: the User leaves the binding; its triplet result and Report go.
        cluster
            .kubectl([
                "patch",
                "rolebinding",
                "node-agent-everything",
                "-n",
                &ns,
                "--type=json",
                "-p",
                r#"[{"op":"remove","path":"/subjects/1"}]"#,
            ])
            .await?;
        wait_equal(cluster, &ns, "the removed subject's Report deleted", |w| {
            !w.keys().any(|k| k.starts_with("user-")) && w.contains_key("pod-debug-shell")
        })
        .await?;
        println!("subject cleanup: the user- triplet's summary and Report deleted");

        // Deleting a workload deletes both.
        cluster
            .kubectl(["delete", "pod", "debug-shell", "-n", &ns, "--wait=false"])
            .await?;
        let last = wait_equal(cluster, &ns, "the deleted pod's Report deleted", |w| {
            !w.contains_key("pod-debug-shell")
        })
        .await?;
        println!("deleted: pod-debug-shell gone from both; left {:?}", last.keys());
        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn reports_are_written_changed_and_deleted_with_the_results() -> Result<(), Error> {
    with_temp_ns(reports_follow_results).await
}

/// Acceptance point 4: with the switch off (the default), even where the OpenReports CRDs are
/// installed, the scan writes results but no Report, and neither ServiceAccount may write
/// reports or cluster reports.
async fn nothing_when_off(_client: Client, ns: String) -> Result<(), BoxError> {
    let cluster = TestCluster::shared().await?;
    install_crds(cluster).await?;
    let release = Release::new(&format!("{ns}-kv"), &[&ns]);
    with_release(cluster, &release, || async {
        apply_demo(cluster, &ns).await?;
        // Every demo workload scanned: the results are there.
        let scanned = wait_for(Duration::from_secs(120), "the demo's summaries", || async {
            let w = wcss_counts(cluster, &ns).await?;
            Ok::<_, BoxError>(
                if [
                    "deployment-trusty-reverse-proxy",
                    "daemonset-node-agent",
                    "pod-debug-shell",
                ]
                .iter()
                .all(|n| w.contains_key(*n))
                {
                    Check::Done(w.len())
                } else {
                    Check::NotYet(format!("{:?}", w.keys()))
                },
            )
        })
        .await?;
        let reports = get_json(cluster, &["reports", "-n", &ns])
            .await
            .map_err(|e| test_error(&ns, e.to_string()))?;
        let n = reports["items"].as_array().map_or(0, Vec::len);
        println!("switch off: {scanned} summaries in {ns}, {n} Reports");
        if n != 0 {
            return Err(test_error(
                &ns,
                format!("{n} Reports written with openReports off"),
            ));
        }
        // (ClusterReports are not checked by name: a release with the switch on elsewhere on
        // the cluster writes one for every Namespace, this test's too.)
        for user in [
            release.controller_user(),
            format!(
                "system:serviceaccount:{}:{}-scan-job",
                release.namespace,
                release.fullname()
            ),
        ] {
            for (verb, resource) in ["create", "patch", "delete"].into_iter().flat_map(|v| {
                [
                    (v, "reports.openreports.io"),
                    (v, "clusterreports.openreports.io"),
                ]
            }) {
                let args = ["auth", "can-i", verb, resource, "-n", &ns, "--as", &user];
                // can-i exits 0 for yes and 1 for no; anything else is an error.
                let out = kind_tests::tools::kubectl_output(cluster.kubeconfig(), &args).await?;
                if !matches!(out.status.code(), Some(0 | 1)) {
                    return Err(test_error(&ns, format!("kubectl {args:?}: {}", out.stderr)));
                }
                let answer = out.stdout.trim().to_owned();
                println!("kubectl auth can-i {verb} {resource} --as {user}: {answer}");
                if answer != "no" {
                    return Err(test_error(
                        &ns,
                        format!("{user} may {verb} {resource} with openReports off"),
                    ));
                }
            }
        }
        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn with_the_switch_off_nothing_of_openreports_is_written() -> Result<(), Error> {
    with_temp_ns(nothing_when_off).await
}
