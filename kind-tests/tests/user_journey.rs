//! The README's user journey, replayed on the local real cluster through the real chart.
//!
//! The commands come from README.md itself (the blocks marked `<!-- journey: ... -->`), and their
//! output is compared with what the README shows, so the user guide cannot drift from the
//! product: install exactly as "Installation" says, apply `demo/k8s-bad-practices.yaml`, then the
//! seed's commands (whole cluster, by namespace, by workload), the scan Jobs and `describe`, least
//! privilege with `kubectl auth can-i`, a self-scan of the chart and of a live scan Job, `helm
//! upgrade` with a changed value, and `helm uninstall`.
//!
//! It uses the README's fixed names (release and namespace `kubevigil`, namespace
//! `k8s-bad-practices`), so it is the only test in this file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kind_tests::release::{SCAN_JOB_SELECTOR, chart_dir, controller_get, metric_value};
use kind_tests::scenario::{
    BoxError, Check, TestCluster, dump_namespace, wait_for, workspace_binary,
};
use kind_tests::tools;

const INSTALL_NS: &str = "kubevigil";
const DEMO_NS: &str = "k8s-bad-practices";
const CONTROLLER_SA: &str = "system:serviceaccount:kubevigil:kubevigil-controller";
const SCAN_JOB_SA: &str = "system:serviceaccount:kubevigil:kubevigil-scan-job";
const WORKLOAD: &str = "deployment-trusty-reverse-proxy";

fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The code block that follows `<!-- journey: NAME -->` in README.md.
fn readme_block(name: &str) -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let marker = format!("<!-- journey: {name} -->");
    let after = readme
        .split_once(&marker)
        .unwrap_or_else(|| panic!("README.md has no {marker}"))
        .1;
    let fence = after.find("```").expect("a code block after the marker");
    let body = &after[fence + 3..];
    let body = &body[body.find('\n').expect("fence line") + 1..];
    body[..body.find("```").expect("closing fence")].to_owned()
}

/// The rows of a `kubectl get` table without its last column (AGE, which differs every run).
fn table_rows(text: &str) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = text
        .lines()
        .filter(|l| !l.starts_with("$ ") && !l.trim().is_empty())
        .map(|l| {
            let mut cols: Vec<String> = l.split_whitespace().map(str::to_owned).collect();
            cols.pop();
            cols
        })
        .collect();
    rows.sort();
    rows
}

/// Lines of a README YAML excerpt that must appear, in order, in the live output: `...` stands
/// for omitted lines, and values that change with every scan or object are skipped.
fn excerpt_lines(block: &str) -> Vec<String> {
    const VOLATILE: [&str; 5] = [
        "kubevigil.io/fingerprint:",
        "kubevigil.io/outcome-hash:",
        "kubevigil.io/scan-time:",
        "kubevigil.io/target-uid:",
        "kubevigil.io/controls-hash:",
    ];
    block
        .lines()
        .filter(|l| !l.starts_with('#') && l.trim() != "...")
        .filter(|l| !VOLATILE.iter().any(|v| l.trim_start().starts_with(v)))
        .map(str::to_owned)
        .collect()
}

/// The first excerpt line not found in order in `live`, if any.
fn missing_in_order(excerpt: &[String], live: &str) -> Option<String> {
    let mut lines = live.lines();
    for want in excerpt {
        if !lines.any(|l| l == want) {
            return Some(want.clone());
        }
    }
    None
}

/// `kubectl auth can-i VERB RESOURCE [-n NS | -A] --as SA`: true for "yes".
async fn can_i(cluster: &TestCluster, sa: &str, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--as", sa]);
    let out = tools::kubectl_output(cluster.kubeconfig(), &all)
        .await
        .unwrap();
    out.stdout.trim() == "yes"
}

/// Runs `scan-job scan --severity-threshold high -f FILE`: `Ok` when no High or Critical control
/// failed, else the report.
fn self_scan(file: &Path) -> Result<(), String> {
    let scan_job =
        workspace_binary("scan-job").unwrap_or_else(|e| panic!("{e} (cargo build --bins)"));
    let out = std::process::Command::new(&scan_job)
        .args(["scan", "--severity-threshold", "high", "-f"])
        .arg(file)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The README's install command as helm arguments, with the chart path made absolute.
fn readme_install_args() -> Vec<String> {
    let block = readme_block("install");
    let command = block.replace("\\\n", " ");
    let mut words: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
    assert_eq!(words.first().map(String::as_str), Some("helm"), "{block}");
    words.remove(0);
    for w in &mut words {
        if w == "./charts/kubevigil" {
            *w = chart_dir().to_string_lossy().into_owned();
        }
    }
    words.extend(["--timeout".to_owned(), "180s".to_owned()]);
    words
}

/// `kubectl get -o yaml` parsed.
async fn get_yaml(cluster: &TestCluster, args: &[&str]) -> Result<serde_json::Value, BoxError> {
    let text = cluster.kubectl(args).await?;
    Ok(serde_norway::from_str(&text)?)
}

fn item_names(list: &serde_json::Value, namespace: Option<&str>) -> Vec<String> {
    let mut names: Vec<String> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| namespace.is_none_or(|ns| i["metadata"]["namespace"] == ns))
        .map(|i| {
            i["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    names.sort();
    names
}

/// A metric of the README's controller, through the API server's service proxy.
async fn metric(name: &str) -> Result<f64, BoxError> {
    let cluster = TestCluster::shared().await?;
    let client = cluster.client().await?;
    let response = controller_get(
        &client,
        INSTALL_NS,
        "kubevigil-controller-metrics",
        "/metrics",
    )
    .await?;
    metric_value(&response.body, name).ok_or_else(|| format!("metric {name} not found").into())
}

/// Starts from a cluster without the release and the demo namespace (a rerun on a cluster
/// where the journey, or `make demo`, ran before).
async fn clean_slate(cluster: &TestCluster) -> Result<(), BoxError> {
    cluster
        .helm([
            "uninstall",
            "kubevigil",
            "-n",
            INSTALL_NS,
            "--ignore-not-found",
            "--wait",
        ])
        .await?;
    cluster
        .kubectl([
            "delete",
            "namespace",
            DEMO_NS,
            INSTALL_NS,
            "--ignore-not-found",
            "--wait",
            "--timeout=120s",
        ])
        .await?;
    Ok(())
}

async fn journey(cluster: &TestCluster) -> Result<(), BoxError> {
    clean_slate(cluster).await?;
    // Installation, exactly as the README says: the namespace with Pod Security `restricted`
    // enforced, then the chart (so the controller pod and every scan pod are admitted under it).
    for line in readme_block("namespace")
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.first(), Some(&"kubectl"), "{line}");
        cluster.kubectl(&words[1..]).await?;
    }
    let enforce = cluster
        .kubectl([
            "get",
            "namespace",
            INSTALL_NS,
            "-o",
            "jsonpath={.metadata.labels.pod-security\\.kubernetes\\.io/enforce}",
        ])
        .await?;
    assert_eq!(enforce.trim(), "restricted", "the README's namespace step");
    let notes = cluster.helm(readme_install_args()).await?;
    assert!(
        !notes.contains("WARNING: namespace"),
        "the notes warn about Pod Security on a labelled namespace:\n{notes}"
    );
    let demo = repo_root().join("demo/k8s-bad-practices.yaml");
    cluster
        .kubectl(["apply", "-f", &demo.to_string_lossy()])
        .await?;

    // By namespace: the README's table, row for row (all columns but AGE).
    let want_rows = table_rows(&readme_block("namespace-table"));
    let want_names: Vec<String> = want_rows.iter().skip(1).map(|r| r[0].clone()).collect();
    wait_for(
        Duration::from_secs(120),
        "the README's namespace table",
        || async {
            let live = cluster
                .kubectl(["get", "-n", DEMO_NS, "workloadconfigurationscansummaries"])
                .await?;
            let rows = table_rows(&live);
            Ok(if rows == want_rows {
                Check::Done(())
            } else {
                Check::NotYet(format!("live table:\n{live}"))
            })
        },
    )
    .await?;

    // For the whole cluster.
    let all = get_yaml(
        cluster,
        &[
            "get",
            "workloadconfigurationscansummaries",
            "-A",
            "-o",
            "yaml",
        ],
    )
    .await?;
    assert_eq!(all["kind"], "List");
    assert_eq!(item_names(&all, Some(DEMO_NS)), want_names);
    assert!(
        all["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["kind"] == "WorkloadConfigurationScanSummary")
    );
    // The namespace summary follows (debounced) and counts them all.
    let count = want_names.len().to_string();
    wait_for(
        Duration::from_secs(30),
        "the namespace summary to count every demo result",
        || async {
            let css = cluster
                .kubectl(["get", "configurationscansummaries", DEMO_NS])
                .await?;
            let counted = css
                .lines()
                .any(|l| l.starts_with(DEMO_NS) && l.split_whitespace().nth(1) == Some(&count));
            Ok(if counted {
                Check::Done(())
            } else {
                Check::NotYet(css)
            })
        },
    )
    .await?;

    // By namespace, as YAML.
    let ns = get_yaml(
        cluster,
        &[
            "get",
            "-n",
            DEMO_NS,
            "workloadconfigurationscansummaries",
            "-o",
            "yaml",
        ],
    )
    .await?;
    assert_eq!(item_names(&ns, None), want_names);

    // By workload: the README's excerpt, line for line, in order.
    let excerpt = excerpt_lines(&readme_block("workload-yaml"));
    let live = cluster
        .kubectl([
            "get",
            "-n",
            DEMO_NS,
            "workloadconfigurationscansummaries",
            WORKLOAD,
            "-o",
            "yaml",
        ])
        .await?;
    if let Some(line) = missing_in_order(&excerpt, &live) {
        panic!("README's by-workload excerpt line {line:?} is not in the live output:\n{live}");
    }
    let by_label = cluster
        .kubectl([
            "get",
            "-n",
            DEMO_NS,
            "wcss",
            "-l",
            "kubevigil.io/workload-name=trusty-reverse-proxy",
            "-o",
            "name",
        ])
        .await?;
    assert_eq!(
        by_label.trim(),
        format!("workloadconfigurationscansummary.kubevigil.io/{WORKLOAD}")
    );

    // Scan Jobs: the README's listing header, and `describe` naming the targets.
    let jobs = cluster
        .kubectl(["get", "jobs", "-n", INSTALL_NS, "-l", SCAN_JOB_SELECTOR])
        .await?;
    let readme_header = readme_block("jobs")
        .lines()
        .nth(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap();
    let live_header = jobs
        .lines()
        .next()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    assert_eq!(live_header, readme_header, "{jobs}");
    let target = format!("apps/v1/deployments/Deployment/{DEMO_NS}/trusty-reverse-proxy");
    let job_list = get_yaml(
        cluster,
        &[
            "get",
            "jobs",
            "-n",
            INSTALL_NS,
            "-l",
            SCAN_JOB_SELECTOR,
            "-o",
            "yaml",
        ],
    )
    .await?;
    let job_name = job_list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| {
            j["metadata"]["annotations"]["kubevigil.io/targets"]
                .as_str()
                .is_some_and(|t| t.lines().any(|l| l == target))
        })
        .and_then(|j| j["metadata"]["name"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no scan Job lists {target}:\n{jobs}"));
    let described = cluster
        .kubectl(["describe", "job", "-n", INSTALL_NS, &job_name])
        .await?;
    assert!(
        described.contains("kubevigil.io/targets") && described.contains(&target),
        "describe job {job_name} does not show its targets:\n{described}"
    );

    // "Inspecting scan Jobs": the scan Job's log, the kubelet's events on the controller pod, and
    // /readyz through the API server's service proxy, each as the README shows them.
    let job_log = cluster
        .kubectl(["logs", &format!("job/{job_name}"), "-n", INSTALL_NS])
        .await?;
    let readme_log = readme_block("job-logs");
    let first = readme_log
        .lines()
        .nth(1)
        .and_then(|l| l.split("uids=").next())
        .unwrap_or_default()
        .to_owned();
    assert!(
        !first.is_empty() && job_log.lines().any(|l| l.starts_with(&first)),
        "kubectl logs job/{job_name} has no line starting like the README's {first:?}:\n{job_log}"
    );
    let pod_description = cluster
        .kubectl([
            "describe",
            "pod",
            "-n",
            INSTALL_NS,
            "-l",
            "app.kubernetes.io/component=controller",
        ])
        .await?;
    for event in ["Scheduled", "Created", "Started"] {
        assert!(
            pod_description
                .lines()
                .any(|l| l.trim_start().starts_with("Normal") && l.contains(event)),
            "kubectl describe pod shows no {event} event:\n{pod_description}"
        );
    }
    let readme_readyz = readme_block("readyz");
    let readyz_command: Vec<String> = readme_readyz
        .lines()
        .find_map(|l| l.strip_prefix("$ kubectl "))
        .unwrap()
        .split_whitespace()
        .map(|w| w.trim_matches('"').to_owned())
        .collect();
    let readyz = cluster.kubectl(&readyz_command).await?;
    let readme_answer: Vec<&str> = readme_readyz
        .lines()
        .skip_while(|l| !l.starts_with("$ kubectl "))
        .skip(1)
        .filter(|l| !l.starts_with("```"))
        .collect();
    assert_eq!(
        readyz.lines().collect::<Vec<_>>(),
        readme_answer,
        "/readyz through the service proxy differs from the README"
    );

    // Quiet once done: no scan loops (a scan Job must never cause another). After the queue
    // drained and no Job is active, the count of started scans must stay put for three
    // debounce periods: any loop would start a new Job within one.
    let started = wait_for(Duration::from_secs(60), "an idle controller", || async {
        let depth = metric("kubevigil_queue_depth").await?;
        let active = metric("kubevigil_scan_jobs_active").await?;
        let started = metric("kubevigil_scans_started_total").await?;
        Ok(if depth == 0.0 && active == 0.0 {
            Check::Done(started)
        } else {
            Check::NotYet(format!("queue {depth}, active Jobs {active}"))
        })
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        metric("kubevigil_scans_started_total").await?,
        started,
        "scans started while nothing changed"
    );

    least_privilege(cluster).await;
    self_scans(cluster, &job_name).await?;
    upgrade(cluster, &want_names).await?;
    uninstall(cluster, &want_names).await?;
    Ok(())
}

async fn least_privilege(cluster: &TestCluster) {
    let mut wrong = Vec::new();
    let cases: &[(&str, &[&str], bool)] = &[
        // The controller: watches, results, its Jobs, Lease and Events — nothing else.
        (CONTROLLER_SA, &["list", "deployments", "-A"], true),
        (CONTROLLER_SA, &["watch", "rolebindings", "-A"], true),
        (CONTROLLER_SA, &["create", "jobs", "-n", INSTALL_NS], true),
        (CONTROLLER_SA, &["delete", "jobs", "-n", INSTALL_NS], true),
        (
            CONTROLLER_SA,
            &["delete", "workloadconfigurationscans.kubevigil.io", "-A"],
            true,
        ),
        (
            CONTROLLER_SA,
            &["patch", "configurationscansummaries.kubevigil.io"],
            true,
        ),
        (CONTROLLER_SA, &["update", "leases", "-n", INSTALL_NS], true),
        (CONTROLLER_SA, &["create", "events", "-n", DEMO_NS], true),
        (
            CONTROLLER_SA,
            &["get", "deployments/kubevigil-controller", "-n", INSTALL_NS],
            true,
        ),
        (CONTROLLER_SA, &["get", "secrets", "-A"], false),
        (CONTROLLER_SA, &["list", "secrets", "-n", INSTALL_NS], false),
        (CONTROLLER_SA, &["create", "pods", "-n", DEMO_NS], false),
        (CONTROLLER_SA, &["create", "pods", "-n", INSTALL_NS], false),
        (CONTROLLER_SA, &["create", "jobs", "-n", DEMO_NS], false),
        (
            CONTROLLER_SA,
            &["patch", "deployments", "-n", DEMO_NS],
            false,
        ),
        (
            CONTROLLER_SA,
            &[
                "delete",
                "deployments/kubevigil-controller",
                "-n",
                INSTALL_NS,
            ],
            false,
        ),
        (CONTROLLER_SA, &["escalate", "clusterroles"], false),
        (CONTROLLER_SA, &["bind", "clusterroles"], false),
        (CONTROLLER_SA, &["create", "clusterrolebindings"], false),
        (CONTROLLER_SA, &["impersonate", "users"], false),
        (CONTROLLER_SA, &["*", "*"], false),
        // The scan Jobs: read targets and related objects, write results.
        (SCAN_JOB_SA, &["get", "deployments", "-n", DEMO_NS], true),
        (SCAN_JOB_SA, &["list", "services", "-A"], true),
        (
            SCAN_JOB_SA,
            &["list", "networkpolicies.networking.k8s.io", "-A"],
            true,
        ),
        (
            SCAN_JOB_SA,
            &[
                "patch",
                "workloadconfigurationscans.kubevigil.io",
                "-n",
                DEMO_NS,
            ],
            true,
        ),
        (
            SCAN_JOB_SA,
            &[
                "create",
                "workloadconfigurationscansummaries.kubevigil.io",
                "-n",
                DEMO_NS,
            ],
            true,
        ),
        // A binding deleted before its scan ran: the Job lists its triplet results to delete
        // them (found by the chaos scenario: without list, such Jobs failed with 403).
        (
            SCAN_JOB_SA,
            &[
                "list",
                "workloadconfigurationscans.kubevigil.io",
                "-n",
                DEMO_NS,
            ],
            true,
        ),
        // Posture Events on the targets: create only.
        (
            SCAN_JOB_SA,
            &["create", "events.events.k8s.io", "-n", DEMO_NS],
            true,
        ),
        (
            SCAN_JOB_SA,
            &["patch", "events.events.k8s.io", "-n", DEMO_NS],
            false,
        ),
        (
            SCAN_JOB_SA,
            &["delete", "events.events.k8s.io", "-n", DEMO_NS],
            false,
        ),
        (SCAN_JOB_SA, &["get", "secrets", "-A"], false),
        (SCAN_JOB_SA, &["create", "pods", "-n", INSTALL_NS], false),
        (SCAN_JOB_SA, &["create", "pods", "-n", DEMO_NS], false),
        (SCAN_JOB_SA, &["create", "jobs", "-n", INSTALL_NS], false),
        (
            SCAN_JOB_SA,
            &["update", "deployments", "-n", DEMO_NS],
            false,
        ),
        (SCAN_JOB_SA, &["escalate", "roles", "-n", DEMO_NS], false),
        (SCAN_JOB_SA, &["bind", "clusterroles"], false),
        (SCAN_JOB_SA, &["*", "*"], false),
    ];
    for (sa, args, want) in cases {
        let got = can_i(cluster, sa, args).await;
        if got != *want {
            wrong.push(format!(
                "can-i {} as {sa}: {got}, want {want}",
                args.join(" ")
            ));
        }
    }
    assert!(wrong.is_empty(), "least privilege:\n{}", wrong.join("\n"));
    println!(
        "least privilege: {} `kubectl auth can-i` checks hold",
        cases.len()
    );
}

async fn self_scans(cluster: &TestCluster, job_name: &str) -> Result<(), BoxError> {
    let dir = std::env::temp_dir().join(format!("kubevigil-self-scan-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut template = vec!["template".to_owned(), "kubevigil".to_owned()];
    template.push(chart_dir().to_string_lossy().into_owned());
    template.extend(
        [
            "-n",
            INSTALL_NS,
            "--set",
            "clusterName=local",
            "--set",
            "capabilities.continuousScan=enable",
        ]
        .map(str::to_owned),
    );
    let rendered = cluster.helm(template).await?;
    let chart_file = dir.join("chart.yaml");
    std::fs::write(&chart_file, rendered)?;
    let job_yaml = cluster
        .kubectl(["get", "job", "-n", INSTALL_NS, job_name, "-o", "yaml"])
        .await?;
    let job_file = dir.join("job.yaml");
    std::fs::write(&job_file, job_yaml)?;
    let chart = self_scan(&chart_file);
    let job = self_scan(&job_file);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(chart.is_ok(), "helm template of the chart: {chart:?}");
    assert!(job.is_ok(), "the scan Job {job_name}: {job:?}");
    println!("self-scan: no failed High or Critical control in the chart or scan Job {job_name}");
    Ok(())
}

/// UID and scan time of each demo summary.
async fn summary_versions(cluster: &TestCluster) -> Result<BTreeMap<String, String>, BoxError> {
    let list = get_yaml(cluster, &["get", "-n", DEMO_NS, "wcss", "-o", "yaml"]).await?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            (
                i["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                i["metadata"]["uid"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect())
}

async fn upgrade(cluster: &TestCluster, names: &[String]) -> Result<(), BoxError> {
    let before = summary_versions(cluster).await?;
    assert_eq!(before.keys().cloned().collect::<Vec<_>>(), names);
    let pods_before = cluster
        .kubectl([
            "get",
            "pods",
            "-n",
            INSTALL_NS,
            "-l",
            "app.kubernetes.io/component=controller",
            "-o",
            "name",
        ])
        .await?;
    cluster
        .helm([
            "upgrade",
            "kubevigil",
            &chart_dir().to_string_lossy(),
            "-n",
            INSTALL_NS,
            "--reuse-values",
            "--set",
            "scanJob.batchSize=20",
            "--wait",
            "--timeout",
            "180s",
        ])
        .await?;
    let config = cluster
        .kubectl([
            "get",
            "configmap",
            "-n",
            INSTALL_NS,
            "kubevigil-config",
            "-o",
            "jsonpath={.data.config\\.yaml}",
        ])
        .await?;
    assert!(
        config.contains("batchSize: 20"),
        "the new batchSize is not in the controller's configuration:\n{config}"
    );
    cluster
        .kubectl([
            "rollout",
            "status",
            "-n",
            INSTALL_NS,
            "deployment/kubevigil-controller",
            "--timeout=120s",
        ])
        .await?;
    let pods_after = cluster
        .kubectl([
            "get",
            "pods",
            "-n",
            INSTALL_NS,
            "-l",
            "app.kubernetes.io/component=controller",
            "--field-selector=status.phase=Running",
            "-o",
            "name",
        ])
        .await?;
    assert!(
        !pods_after.trim().is_empty() && pods_after.lines().all(|p| !pods_before.contains(p)),
        "the controller pod did not restart with the new configuration: before {pods_before:?}, after {pods_after:?}"
    );
    // The new controller works: a change made after the upgrade is scanned (the summary's
    // fingerprint moves to the relabelled Deployment's).
    let fingerprint = || async {
        cluster
            .kubectl([
                "get",
                "-n",
                DEMO_NS,
                "wcss",
                WORKLOAD,
                "-o",
                "jsonpath={.metadata.annotations.kubevigil\\.io/fingerprint}",
            ])
            .await
    };
    let old = fingerprint().await?;
    cluster
        .kubectl([
            "label",
            "-n",
            DEMO_NS,
            "deployment/trusty-reverse-proxy",
            "journey=upgraded",
            "--overwrite",
        ])
        .await?;
    wait_for(
        Duration::from_secs(60),
        "the post-upgrade change to be scanned",
        || async {
            let now = fingerprint().await?;
            Ok(if now != old {
                Check::Done(())
            } else {
                Check::NotYet(format!("fingerprint still {now}"))
            })
        },
    )
    .await?;
    let after = summary_versions(cluster).await?;
    assert_eq!(before, after, "the upgrade replaced results (UIDs changed)");
    println!(
        "upgrade: batchSize 20 applied, controller restarted, {} results kept",
        after.len()
    );
    Ok(())
}

async fn uninstall(cluster: &TestCluster, names: &[String]) -> Result<(), BoxError> {
    cluster
        .helm(["uninstall", "kubevigil", "-n", INSTALL_NS, "--wait"])
        .await?;
    let deployments = cluster
        .kubectl(["get", "deployments", "-n", INSTALL_NS, "-o", "name"])
        .await?;
    assert!(
        deployments.trim().is_empty(),
        "left after uninstall: {deployments}"
    );
    wait_for(
        Duration::from_secs(90),
        "the scan Jobs to be garbage-collected after uninstall",
        || async {
            let jobs = cluster
                .kubectl([
                    "get",
                    "jobs",
                    "-n",
                    INSTALL_NS,
                    "-l",
                    SCAN_JOB_SELECTOR,
                    "-o",
                    "name",
                ])
                .await?;
            Ok(if jobs.trim().is_empty() {
                Check::Done(())
            } else {
                Check::NotYet(jobs)
            })
        },
    )
    .await?;
    // Results and CRDs stay (README: "CRDs and results stay").
    let kept = summary_versions(cluster).await?;
    assert_eq!(kept.keys().cloned().collect::<Vec<_>>(), names);
    cluster
        .kubectl([
            "get",
            "crd",
            "workloadconfigurationscansummaries.kubevigil.io",
        ])
        .await?;
    println!(
        "uninstall: controller and scan Jobs gone, {} results and the CRDs kept",
        kept.len()
    );
    Ok(())
}

#[tokio::test]
async fn readme_user_journey() -> Result<(), BoxError> {
    let cluster = TestCluster::shared().await?;
    let outcome = journey(cluster).await;
    if outcome.is_err() {
        let client = cluster.client().await?;
        eprintln!("{}", dump_namespace(cluster, &client, INSTALL_NS).await);
        eprintln!("{}", dump_namespace(cluster, &client, DEMO_NS).await);
    }
    let _ = cluster
        .helm(["uninstall", "kubevigil", "-n", INSTALL_NS, "--wait"])
        .await;
    for ns in [DEMO_NS, INSTALL_NS] {
        let _ = cluster
            .kubectl([
                "delete",
                "namespace",
                ns,
                "--ignore-not-found",
                "--wait=false",
            ])
            .await;
        let _ = cluster
            .kubectl([
                "delete",
                "configurationscansummary",
                ns,
                "--ignore-not-found",
            ])
            .await;
    }
    outcome
}
