//! The chart's RBAC for related objects agrees with the engine's one table of related kinds
//! (`kubevigil_engine::related`): the scan Jobs may list every kind their read plan lists, the
//! controller may list and watch every kind it watches for related-object rescans, and nobody
//! may read Secrets. Renders the chart with `helm template` (see `support`).
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;

use kubevigil_engine::related::{all_kinds, watched_kinds};
use serde_json::Value;

/// (group, resource, verb) triples a ClusterRole grants.
fn grants(role: &Value) -> BTreeSet<(String, String, String)> {
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().into_iter().flatten() {
        for g in strs(&rule["apiGroups"]) {
            for r in strs(&rule["resources"]) {
                for v in strs(&rule["verbs"]) {
                    out.insert((g.clone(), r.clone(), v));
                }
            }
        }
    }
    out
}

fn cluster_role<'a>(objects: &'a [Value], suffix: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| {
            o["kind"] == "ClusterRole"
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with(suffix))
        })
        .unwrap_or_else(|| panic!("no ClusterRole named *{suffix} in the rendered chart"))
}

fn missing(
    granted: &BTreeSet<(String, String, String)>,
    kinds: &[(&str, &str)],
    verbs: &[&str],
) -> Vec<String> {
    let mut out = Vec::new();
    for (group, plural) in kinds {
        for verb in verbs {
            if !granted.contains(&(group.to_string(), plural.to_string(), verb.to_string())) {
                out.push(format!("{verb} {group}/{plural}"));
            }
        }
    }
    out
}

#[test]
fn chart_rbac_covers_the_related_kinds_table_read_only() {
    let objects = support::render("audit", "security-scans", &[]);
    let scan_job = grants(cluster_role(&objects, "-scan-job"));
    let controller = grants(cluster_role(&objects, "-controller"));

    let read: Vec<(&str, &str)> = all_kinds().map(|k| (k.group, k.plural)).collect();
    let missing_scan = missing(&scan_job, &read, &["list"]);
    assert!(
        missing_scan.is_empty(),
        "the scan Job's ClusterRole lacks what its read plan lists: {missing_scan:?} (templates/_related.tpl)"
    );
    let watched: Vec<(&str, &str)> = watched_kinds().map(|k| (k.group, k.plural)).collect();
    let missing_ctl = missing(&controller, &watched, &["list", "watch"]);
    assert!(
        missing_ctl.is_empty(),
        "the controller's ClusterRole lacks what it watches: {missing_ctl:?} (templates/_related.tpl)"
    );

    // The related rules grant exactly the table's watched kinds: nothing beyond it, and read-only.
    let table: BTreeSet<(String, String)> = all_kinds()
        .map(|k| (k.group.to_string(), k.plural.to_string()))
        .collect();
    for (group, resource, verb) in scan_job.iter().chain(controller.iter()) {
        assert_ne!(resource, "secrets", "Secrets are never read");
        let related = watched_kinds().any(|k| k.group == group && k.plural == resource);
        if related {
            assert!(
                ["get", "list", "watch"].contains(&verb.as_str()),
                "related kind {group}/{resource} granted {verb}: related objects are read-only"
            );
        }
        assert!(
            !(resource.ends_with("ingresses")
                || resource.ends_with("policies")
                || resource.ends_with("routes"))
                || table.contains(&(group.clone(), resource.clone())),
            "{group}/{resource} is granted but is not in the related kinds table"
        );
    }
}
