//! The engine on arbitrary JSON as a workload: the value is scanned as a Pod spec, a Deployment
//! template, a whole object and (when it is a list) a set of objects, with every control, and
//! the results are mapped to the stored objects. No shape check runs first: the engine itself
//! must survive wrongly typed fields. Every result name must be valid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use kubevigil_engine::{ControlInputs, Evaluator, Exceptions, Inventory, K8sObject};
use kubevigil_engine::report::{self, ReportContext};
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let mut docs = vec![
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "n"}, "spec": value.clone()}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "n"},
               "spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": value.clone()}}}),
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c", "namespace": "n"},
               "spec": {"jobTemplate": {"spec": {"template": value.clone()}}}}),
    ];
    match value {
        Value::Array(items) => docs.extend(items),
        other => docs.push(other),
    }
    let objects: Vec<K8sObject> = docs
        .into_iter()
        .filter_map(|d| K8sObject::from_value(d).ok())
        .collect();
    let inventory = Inventory::new(objects);
    let evaluator = Evaluator::new(
        kubevigil_engine::catalog::all(),
        ControlInputs::default(),
        Exceptions::none(),
    );
    let cx = ReportContext {
        install_namespace: "kubevigil".into(),
        cluster_name: "fuzz".into(),
        controls_hash: report::controls_hash(&evaluator),
        scan_time: None,
    };
    for result in evaluator.evaluate_all(&inventory) {
        let name = result.target.result_name();
        assert!(
            kubevigil_crds::identity::is_dns1123_subdomain(&name),
            "invalid result name {name:?}"
        );
        let _ = report::build(&result, &inventory, &cx);
    }
});
