//! Deleting results without a Job: for deleted targets, removed binding subjects, and orphans
//! found by the resync. Both objects of a result (the scan and its summary) go; a result that is
//! already gone is fine. With OpenReports output on, the result's `Report` goes too, and for a
//! result in the install namespace the `ClusterReport` of that name (cluster-scoped targets'
//! results live there; a name with no ClusterReport is a harmless 404).

use std::collections::BTreeSet;

use kube::api::{DeleteParams, DynamicObject};
use kube::discovery::ApiResource;
use kube::{Api, Client};
use kubevigil_crds::openreports::{ClusterReport, Report};
use kubevigil_crds::{WorkloadConfigurationScan, WorkloadConfigurationScanSummary};

use crate::error::{Error, is_not_found};
use crate::index::ResultRef;

/// What a batch of deletions did.
#[derive(Debug, Default)]
pub struct Deleted {
    /// Objects deleted (404s not counted).
    pub deleted: u64,
    /// Namespaces whose results changed or were found gone (their summaries are recomputed).
    pub namespaces: BTreeSet<String>,
    /// Deletions that failed (the next resync collects those results as orphans).
    pub errors: Vec<Error>,
}

/// Deletes the scan and the summary of each result; with `open_reports` (the install namespace,
/// when OpenReports output is on) its Report or ClusterReport too.
pub async fn delete_results(
    client: Client,
    refs: &[ResultRef],
    open_reports: Option<&str>,
) -> Deleted {
    let kinds: [(&'static str, ApiResource); 2] = [
        (
            "WorkloadConfigurationScan",
            ApiResource::erase::<WorkloadConfigurationScan>(&()),
        ),
        (
            "WorkloadConfigurationScanSummary",
            ApiResource::erase::<WorkloadConfigurationScanSummary>(&()),
        ),
    ];
    let report = ApiResource::erase::<Report>(&());
    let cluster_report = ApiResource::erase::<ClusterReport>(&());
    let mut out = Deleted::default();
    for r in refs {
        let mut apis: Vec<(&'static str, Api<DynamicObject>)> = kinds
            .iter()
            .map(|(kind, ar)| {
                (
                    *kind,
                    Api::namespaced_with(client.clone(), &r.namespace, ar),
                )
            })
            .collect();
        if let Some(install_namespace) = open_reports {
            apis.push((
                "Report",
                Api::namespaced_with(client.clone(), &r.namespace, &report),
            ));
            if r.namespace == install_namespace {
                apis.push((
                    "ClusterReport",
                    Api::all_with(client.clone(), &cluster_report),
                ));
            }
        }
        for (kind, api) in &apis {
            match api.delete(&r.name, &DeleteParams::background()).await {
                Ok(_) => {
                    out.deleted += 1;
                    out.namespaces.insert(r.namespace.clone());
                }
                // Gone already (garbage collection, the scan Job): the namespace's results
                // changed all the same.
                Err(e) if is_not_found(&e) => {
                    out.namespaces.insert(r.namespace.clone());
                }
                Err(source) => out.errors.push(Error::DeleteResult {
                    kind,
                    result: format!("{}/{}", r.namespace, r.name),
                    source,
                }),
            }
        }
    }
    out
}
