//! Table-driven control tests over the project's own fixtures.
//!
//! Layout: `tests/fixtures/<control ID>/<expectation>-<case>.yaml`, where the expectation is
//! - `fail`: the objects annotated `kubevigil.test/expect: fail` (or, for RBAC triplets, the
//!   subjects named in the binding annotation `kubevigil.test/expect-subjects: "Kind/name,..."`)
//!   fail the control, and nothing else does;
//! - `pass`: nothing fails the control;
//! - `skip`: every evaluated resource reports the control `skipped`.
//!
//! An optional `<case>.inputs.json` beside the file overrides control inputs (Kubescape's
//! `postureControlInputs` keys), and an optional `<case>.cloud-provider` holding `eks`, `gke` or
//! `aks` sets the managed-cloud provider, and an optional `<case>.exceptions.json` holds posture
//! exceptions (Kubescape's format). Every control in the catalog must have a `pass` and a
//! `fail` case, or a `skip` case when it can never be decided from objects.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kubevigil_crds::Status;
use kubevigil_engine::{
    ControlInputs, Evaluator, Exceptions, Inventory, K8sObject, Needs, catalog,
};
use rstest::rstest;
use serde::Deserialize as _;
use serde_json::Value;

const EXPECT: &str = "kubevigil.test/expect";
const EXPECT_SUBJECTS: &str = "kubevigil.test/expect-subjects";

/// The objects of a fixture file (multi-document YAML). The offline scanner's loader, with its
/// shape checks, reads the same files in scan-job's `engine_fixtures` test.
fn load(path: &Path) -> Vec<K8sObject> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .map(|v| K8sObject::from_value(v).unwrap())
        .collect()
}

fn expected_failures(inventory: &Inventory) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for o in inventory.objects() {
        let ann = o.metadata().get("annotations");
        if ann.and_then(|a| a.get(EXPECT)).and_then(|v| v.as_str()) == Some("fail") {
            out.insert((o.kind.clone(), o.name.clone()));
        }
        if let Some(subjects) = ann
            .and_then(|a| a.get(EXPECT_SUBJECTS))
            .and_then(|v| v.as_str())
        {
            for s in subjects.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let (kind, name) = s
                    .split_once('/')
                    .expect("expect-subjects entries are Kind/name");
                out.insert((kind.to_string(), name.to_string()));
            }
        }
    }
    out
}

#[rstest]
fn fixture(#[files("tests/fixtures/*/*.yaml")] path: PathBuf) {
    let control_id = path
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let file = path.file_name().unwrap().to_str().unwrap().to_string();
    let expectation = file.split('-').next().unwrap().to_string();
    let control = catalog::all()
        .into_iter()
        .find(|c| c.meta().id.eq_ignore_ascii_case(&control_id))
        .unwrap_or_else(|| panic!("{file}: control {control_id} is not in the catalog"));

    let inventory = Inventory::new(load(&path));
    let mut inputs = ControlInputs::default();
    let inputs_path = path.with_extension("inputs.json");
    if inputs_path.exists() {
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&inputs_path).unwrap()).unwrap();
        inputs.apply_overrides(&doc).unwrap();
    }
    let provider_path = path.with_extension("cloud-provider");
    let provider = provider_path.exists().then(|| {
        std::fs::read_to_string(&provider_path)
            .unwrap()
            .trim()
            .to_string()
    });
    let exceptions_path = path.with_extension("exceptions.json");
    let exceptions = if exceptions_path.exists() {
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&exceptions_path).unwrap()).unwrap();
        Exceptions::from_value(&doc).unwrap()
    } else {
        Exceptions::none()
    };
    let evaluator = Evaluator::new(vec![control], inputs, exceptions).with_cloud_provider(provider);
    let results = evaluator.evaluate_all(&inventory);
    let statuses: Vec<((String, String), Status)> = results
        .iter()
        .flat_map(|r| {
            let id = identity(r);
            r.controls.iter().map(move |c| (id.clone(), c.status))
        })
        .collect();
    let failing: BTreeSet<(String, String)> = statuses
        .iter()
        .filter(|(_, s)| *s == Status::Failed)
        .map(|(id, _)| id.clone())
        .collect();
    match expectation.as_str() {
        "fail" => {
            let want = expected_failures(&inventory);
            assert!(
                !want.is_empty(),
                "{control_id}/{file}: a fail fixture must annotate what fails"
            );
            assert_eq!(failing, want, "{control_id}/{file}: failing objects");
        }
        "pass" => {
            assert!(
                failing.is_empty(),
                "{control_id}/{file}: expected no failure, got {failing:?}"
            );
            assert!(
                !statuses.is_empty(),
                "{control_id}/{file}: the control evaluated nothing"
            );
        }
        "skip" => {
            assert!(
                !statuses.is_empty(),
                "{control_id}/{file}: the control evaluated nothing"
            );
            assert!(
                statuses.iter().all(|(_, s)| *s == Status::Skipped),
                "{control_id}/{file}: expected skipped, got {statuses:?}"
            );
        }
        other => panic!("{file}: unknown expectation {other:?} (use fail-, pass- or skip-)"),
    }
}

fn identity(r: &kubevigil_engine::ResourceResult) -> (String, String) {
    match &r.target {
        kubevigil_crds::identity::Target::Object(o) => (o.kind.clone(), o.name.clone()),
        kubevigil_crds::identity::Target::Triplet { subject, .. } => {
            (subject.kind.as_str().to_string(), subject.name.clone())
        }
    }
}

/// Every control has its own passing and failing case (or a skip case when it can never be
/// decided from objects).
#[test]
fn every_control_has_fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut missing = Vec::new();
    for c in catalog::all() {
        let m = c.meta();
        let files: Vec<String> = std::fs::read_dir(dir.join(m.id))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let has = |prefix: &str| {
            files
                .iter()
                .any(|f| f.starts_with(prefix) && f.ends_with(".yaml"))
        };
        let ok = match m.needs {
            Needs::Nothing => has("pass-") && has("fail-"),
            Needs::Integration | Needs::ManualReview => has("skip-"),
        };
        if !ok {
            missing.push(m.id);
        }
    }
    assert!(
        missing.is_empty(),
        "controls without their own pass and fail fixtures: {missing:?}"
    );
}
