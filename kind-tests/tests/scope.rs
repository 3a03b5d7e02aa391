//! Issue 20, acceptance points 3 and 4: scope by glob pattern, by namespace label and by the skip
//! label, each with the deletion of the results that fall out of scope, and who can read results.
//!
//! - Globs: a release scans `<ns>-g*`; an upgrade to `include <ns>-*`, `exclude *-g2` deletes the
//!   results of `-g2` (and its ConfigurationScanSummary), scans `-other`, and leaves `-g1`'s
//!   results untouched (same uid).
//! - Namespace label: a release with `namespaceSelector` scans only the labelled namespace; the
//!   label moved to the other namespace scans that one and deletes the first one's results.
//! - Skip label: a Deployment created with `kubevigil.io/skip: "true"` is not scanned; adding the
//!   label to a scanned one deletes its results; removing it from the first scans it.
//! - Reading results: a user bound to `view` in a namespace may get and list its
//!   WorkloadConfigurationScanSummaries (and reads one), may not write them, and may not list the
//!   cluster-scoped ConfigurationScanSummaries until bound to the chart's summaries reader role.
//!
//! Each scenario has its own namespaces and its own release; every wait is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kind_tests::pipeline::{
    create_deployment, deployment, kubectl_names, kubectl_uid, wait_results,
};
use kind_tests::release::{Release, with_release};
use kind_tests::scenario::{
    BoxError, Check, Error, TestCluster, create_namespace, wait_for, with_temp_ns,
};
use kind_tests::tools;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

/// Bound of a scan (or a deletion) after the change that causes it.
const SETTLE: Duration = Duration::from_secs(90);

fn test_err(ns: &str, msg: String) -> Error {
    Error::Test {
        namespace: ns.to_owned(),
        source: msg.into(),
    }
}

/// Whether the ConfigurationScanSummary of namespace `ns` exists.
async fn css_exists(cluster: &TestCluster, ns: &str) -> Result<bool, Error> {
    let names = kubectl_names(cluster, "css", "default", &[]).await?;
    Ok(names.contains(ns))
}

/// Waits until the ConfigurationScanSummary of `ns` exists (`want`) or is gone.
async fn wait_css(cluster: &TestCluster, ns: &str, want: bool) -> Result<(), Error> {
    wait_for(
        SETTLE,
        &format!("configurationscansummary {ns} exists: {want}"),
        || async move {
            let exists = css_exists(cluster, ns).await?;
            Ok::<_, BoxError>(if exists == want {
                Check::Done(())
            } else {
                Check::NotYet(format!("exists: {exists}"))
            })
        },
    )
    .await
}

/// Creates namespaces `names` (test-labelled, as `with_temp_ns` does).
async fn create_namespaces(client: &Client, names: &[&str]) -> Result<(), Error> {
    for n in names {
        create_namespace(client, n).await?;
    }
    Ok(())
}

/// Deletes namespaces `names`, reporting (not returning) failures.
async fn delete_namespaces(client: &Client, names: &[&str]) {
    let api: Api<Namespace> = Api::all(client.clone());
    for n in names {
        if let Err(e) = api.delete(n, &DeleteParams::background()).await {
            eprintln!("warning: deleting namespace {n}: {e}");
        }
    }
}

/// Sets (`Some`) or removes (`None`) label `key` of namespace `ns` (merge patch).
async fn label_namespace(
    client: &Client,
    ns: &str,
    key: &str,
    value: Option<&str>,
) -> Result<(), Error> {
    Api::<Namespace>::all(client.clone())
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {key: value}}})),
        )
        .await
        .map_err(|e| Error::Kube {
            action: format!("labelling namespace {ns} {key}={value:?}"),
            source: e,
        })?;
    Ok(())
}

/// Sets or removes label `key` of Deployment `ns/name` with kubectl (`key=value` / `key-`).
async fn label_deployment(
    cluster: &TestCluster,
    ns: &str,
    name: &str,
    label: &str,
) -> Result<(), Error> {
    cluster
        .kubectl(["label", "deployment", name, "-n", ns, label, "--overwrite"])
        .await?;
    Ok(())
}

async fn globs(client: Client, ns: String) -> Result<(), BoxError> {
    let cluster = TestCluster::shared().await?;
    let (g1, g2, other) = (
        format!("{ns}-g1"),
        format!("{ns}-g2"),
        format!("{ns}-other"),
    );
    let names = [g1.as_str(), g2.as_str(), other.as_str()];
    create_namespaces(&client, &names).await?;
    let outcome = globs_in(cluster, &client, &ns, &g1, &g2, &other).await;
    delete_namespaces(&client, &names).await;
    outcome?;
    Ok(())
}

async fn globs_in(
    cluster: &'static TestCluster,
    client: &Client,
    ns: &str,
    g1: &str,
    g2: &str,
    other: &str,
) -> Result<(), Error> {
    let first = Release::new(&format!("{ns}-kv"), &[&format!("{ns}-g*")]);
    with_release(cluster, &first, || async {
        // `other` first: by the time the others' results exist, its Job would have run.
        create_deployment(client, other, &deployment("app", false, 0)?).await?;
        create_deployment(client, g1, &deployment("app", false, 0)?).await?;
        create_deployment(client, g2, &deployment("app", false, 0)?).await?;
        wait_results(cluster, g1, &["deployment-app"], &[], SETTLE).await?;
        wait_results(cluster, g2, &["deployment-app"], &[], SETTLE).await?;
        wait_css(cluster, g2, true).await?;
        let in_other = kubectl_names(cluster, "wcss", other, &[]).await?;
        if !in_other.is_empty() {
            return Err(test_err(
                ns,
                format!("{other} is not matched by {ns}-g* but has results: {in_other:?}"),
            ));
        }
        let g1_uid = kubectl_uid(cluster, "wcss", g1, "deployment-app").await?;
        println!("globs: {ns}-g* scans {g1} and {g2}, not {other}");

        // The upgrade: every `<ns>-*` but `*-g2`.
        let second =
            Release::new(&first.name, &[&format!("{ns}-*")]).set("excludeNamespaces={*-g2}");
        second.install(cluster).await?;
        wait_results(cluster, g2, &[], &["deployment-app"], SETTLE).await?;
        wait_css(cluster, g2, false).await?;
        wait_results(cluster, other, &["deployment-app"], &[], SETTLE).await?;
        wait_results(cluster, g1, &["deployment-app"], &[], SETTLE).await?;
        let g1_after = kubectl_uid(cluster, "wcss", g1, "deployment-app").await?;
        if g1_after != g1_uid {
            return Err(test_err(
                ns,
                format!(
                    "{g1} stayed in scope, but its result was replaced ({g1_uid} -> {g1_after})"
                ),
            ));
        }
        println!(
            "globs: after the upgrade to include {ns}-* exclude *-g2: {g2}'s results and summary \
             deleted, {other} scanned, {g1}'s result kept (same uid)"
        );
        Ok(())
    })
    .await
}

async fn namespace_label(client: Client, ns: String) -> Result<(), BoxError> {
    let cluster = TestCluster::shared().await?;
    let (a, b) = (format!("{ns}-a"), format!("{ns}-b"));
    let names = [a.as_str(), b.as_str()];
    create_namespaces(&client, &names).await?;
    let outcome = namespace_label_in(cluster, &client, &ns, &a, &b).await;
    delete_namespaces(&client, &names).await;
    outcome?;
    Ok(())
}

async fn namespace_label_in(
    cluster: &'static TestCluster,
    client: &Client,
    ns: &str,
    a: &str,
    b: &str,
) -> Result<(), Error> {
    const KEY: &str = "kubevigil-test/scan";
    label_namespace(client, a, KEY, Some("yes")).await?;
    let release = Release::new(&format!("{ns}-kv"), &[&format!("{ns}-*")]).set_json(&format!(
        r#"namespaceSelector={{"matchLabels":{{"{KEY}":"yes"}}}}"#
    ));
    with_release(cluster, &release, || async {
        create_deployment(client, b, &deployment("app", false, 0)?).await?;
        create_deployment(client, a, &deployment("app", false, 0)?).await?;
        wait_results(cluster, a, &["deployment-app"], &[], SETTLE).await?;
        let in_b = kubectl_names(cluster, "wcss", b, &[]).await?;
        if !in_b.is_empty() {
            return Err(test_err(
                ns,
                format!("{b} is not labelled but has results: {in_b:?}"),
            ));
        }
        println!("namespace label: only the labelled {a} is scanned");

        // The label moves: b comes in, a goes out.
        label_namespace(client, b, KEY, Some("yes")).await?;
        wait_results(cluster, b, &["deployment-app"], &[], SETTLE).await?;
        label_namespace(client, a, KEY, None).await?;
        wait_results(cluster, a, &[], &["deployment-app"], SETTLE).await?;
        wait_css(cluster, a, false).await?;
        println!(
            "namespace label: labelling {b} scanned it, unlabelling {a} deleted its results and \
             summary"
        );
        Ok(())
    })
    .await
}

async fn skip_label(client: Client, ns: String) -> Result<(), BoxError> {
    let cluster = TestCluster::shared().await?;
    let release = Release::new(&format!("{ns}-kv"), &[&ns]);
    with_release(cluster, &release, || async {
        let mut skipped = deployment("skipped", false, 0)?;
        skipped
            .metadata
            .labels
            .get_or_insert_default()
            .insert("kubevigil.io/skip".into(), "true".into());
        create_deployment(&client, &ns, &skipped).await?;
        create_deployment(&client, &ns, &deployment("kept", false, 0)?).await?;
        wait_results(
            cluster,
            &ns,
            &["deployment-kept"],
            &["deployment-skipped"],
            SETTLE,
        )
        .await?;
        let all = kubectl_names(cluster, "wcss", &ns, &[]).await?;
        if all.contains("deployment-skipped") {
            return Err(test_err(
                &ns,
                format!("the skipped Deployment has results: {all:?}"),
            ));
        }
        println!("skip label: a Deployment created with kubevigil.io/skip=true is not scanned");

        label_deployment(cluster, &ns, "kept", "kubevigil.io/skip=true").await?;
        wait_results(cluster, &ns, &[], &["deployment-kept"], SETTLE).await?;
        label_deployment(cluster, &ns, "skipped", "kubevigil.io/skip-").await?;
        wait_results(
            cluster,
            &ns,
            &["deployment-skipped"],
            &["deployment-kept"],
            SETTLE,
        )
        .await?;
        println!(
            "skip label: adding it deleted deployment-kept's results, removing it scanned \
             deployment-skipped"
        );
        Ok(())
    })
    .await
    .map_err(Into::into)
}

/// `kubectl auth can-i ARGS --as USER`: true for "yes" (kubectl exits 1 for "no").
async fn can_i(cluster: &TestCluster, user: &str, args: &[&str]) -> Result<bool, Error> {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--as", user]);
    let out = tools::kubectl_output(cluster.kubeconfig(), &all)
        .await
        .map_err(|e| test_err("", format!("kubectl auth can-i {args:?}: {e}")))?;
    Ok(out.stdout.trim() == "yes")
}

async fn readers(client: Client, ns: String) -> Result<(), BoxError> {
    let cluster = TestCluster::shared().await?;
    let release = Release::new(&format!("{ns}-kv"), &[&ns]);
    let user = format!("jane-{ns}");
    let crb = format!("{ns}-summaries");
    let outcome = with_release(cluster, &release, || async {
        create_deployment(&client, &ns, &deployment("app", false, 0)?).await?;
        wait_results(cluster, &ns, &["deployment-app"], &[], SETTLE).await?;
        cluster
            .kubectl([
                "create",
                "rolebinding",
                "jane-view",
                "--clusterrole=view",
                &format!("--user={user}"),
                "-n",
                &ns,
            ])
            .await?;
        let get = [
            "get",
            "workloadconfigurationscansummaries.kubevigil.io",
            "-n",
            ns.as_str(),
        ];
        // The ClusterRole aggregation controller adds the chart's rules to `view` asynchronously.
        wait_for(
            Duration::from_secs(60),
            &format!("{user} may {get:?}"),
            || async {
                Ok::<_, BoxError>(if can_i(cluster, &user, &get).await? {
                    Check::Done(())
                } else {
                    Check::NotYet("no".into())
                })
            },
        )
        .await?;
        let expect: [(&[&str], bool); 7] = [
            (&get, true),
            (
                &["list", "workloadconfigurationscans.kubevigil.io", "-n", &ns],
                true,
            ),
            (
                &[
                    "watch",
                    "workloadconfigurationscansummaries.kubevigil.io",
                    "-n",
                    &ns,
                ],
                true,
            ),
            (
                &[
                    "delete",
                    "workloadconfigurationscansummaries.kubevigil.io",
                    "-n",
                    &ns,
                ],
                false,
            ),
            (
                &[
                    "patch",
                    "workloadconfigurationscans.kubevigil.io",
                    "-n",
                    &ns,
                ],
                false,
            ),
            (
                &[
                    "get",
                    "workloadconfigurationscansummaries.kubevigil.io",
                    "-n",
                    "default",
                ],
                false,
            ),
            (&["list", "configurationscansummaries.kubevigil.io"], false),
        ];
        let mut wrong = Vec::new();
        for (args, want) in expect {
            let got = can_i(cluster, &user, args).await?;
            println!(
                "kubectl auth can-i {} --as={user}: {}",
                args.join(" "),
                if got { "yes" } else { "no" }
            );
            if got != want {
                wrong.push(format!("can-i {}: {got}, want {want}", args.join(" ")));
            }
        }
        if !wrong.is_empty() {
            return Err(test_err(
                &ns,
                format!("a user bound to view in {ns}: {}", wrong.join("; ")),
            ));
        }
        // And the read itself, as that user.
        let read = cluster
            .kubectl([
                "get",
                "wcss",
                "deployment-app",
                "-n",
                &ns,
                "--as",
                &user,
                "-o",
                "name",
            ])
            .await?;
        if !read.contains("deployment-app") {
            return Err(test_err(
                &ns,
                format!("{user} could not read the result: {read}"),
            ));
        }
        // The summaries reader role, bound explicitly.
        cluster
            .kubectl([
                "create",
                "clusterrolebinding",
                &crb,
                &format!("--clusterrole={}-summaries-reader", release.fullname()),
                &format!("--user={user}"),
            ])
            .await?;
        let list_css = ["list", "configurationscansummaries.kubevigil.io"];
        let granted = can_i(cluster, &user, &list_css).await?;
        println!(
            "after binding {}-summaries-reader: can-i list configurationscansummaries: {granted}",
            release.fullname()
        );
        if !granted {
            return Err(test_err(
                &ns,
                "the summaries reader role does not grant list".into(),
            ));
        }
        Ok(())
    })
    .await;
    let _ = cluster
        .kubectl(["delete", "clusterrolebinding", &crb, "--ignore-not-found"])
        .await;
    outcome?;
    Ok(())
}

#[tokio::test]
async fn scope_by_glob_deletes_results_of_namespaces_that_fall_out() -> Result<(), Error> {
    with_temp_ns(globs).await
}

#[tokio::test]
async fn scope_by_namespace_label_follows_label_changes() -> Result<(), Error> {
    with_temp_ns(namespace_label).await
}

#[tokio::test]
async fn skip_label_takes_a_workload_out_of_scope_and_back() -> Result<(), Error> {
    with_temp_ns(skip_label).await
}

#[tokio::test]
async fn namespace_viewers_read_results_but_not_cluster_summaries() -> Result<(), Error> {
    with_temp_ns(readers).await
}
