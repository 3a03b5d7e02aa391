//! Deleting results without a Job: for deleted targets, removed binding subjects, and orphans
//! found by the resync. Both objects of a result (the scan and its summary) go; a result that is
//! already gone is fine.

use std::collections::BTreeSet;

use kube::api::{DeleteParams, DynamicObject};
use kube::discovery::ApiResource;
use kube::{Api, Client};
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

/// Deletes the scan and the summary of each result.
pub async fn delete_results(client: Client, refs: &[ResultRef]) -> Deleted {
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
    let mut out = Deleted::default();
    for r in refs {
        for (kind, ar) in &kinds {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &r.namespace, ar);
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
