//! Listing existing results (metadata only, paged) for the startup and periodic resync. What a
//! list means (scope, merge, staleness) is decided on the pure side, in `state`.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::ListParams;
use kube::discovery::ApiResource;
use kube::{Api, Client};
use kubevigil_crds::identity::labels;
use kubevigil_crds::{
    ConfigurationScanSummary, WorkloadConfigurationScan, WorkloadConfigurationScanSummary,
};

use crate::error::Error;
use crate::slim::ResultMeta;
use crate::state::{Merge, ResultsSnapshot, Scope};

/// Page size of result lists (metadata with managed fields can be large).
const PAGE: u32 = 250;

/// Lists every object of a result kind, paged, parsing only names, labels and annotations, and
/// hands each one's metadata to `each` (no page is kept).
async fn list_pages(
    client: &Client,
    resource: ApiResource,
    selector: &str,
    what: &str,
    mut each: impl FnMut(ObjectMeta),
) -> Result<(), Error> {
    let api: Api<ResultMeta> = Api::all_with(client.clone(), &resource);
    let mut lp = ListParams::default().labels(selector).limit(PAGE);
    loop {
        let page = api.list(&lp).await.map_err(|source| Error::List {
            what: what.to_string(),
            source,
        })?;
        for item in page.items {
            each(item.metadata);
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => return Ok(()),
        }
    }
}

/// Lists every result and namespace summary of this installation (`scope`).
pub async fn list_results(client: Client, scope: &Scope) -> Result<ResultsSnapshot, Error> {
    let selector = format!("{}={}", labels::MANAGED_BY, labels::MANAGED_BY_VALUE);
    let mut merge = Merge::default();
    list_pages(
        &client,
        ApiResource::erase::<WorkloadConfigurationScan>(&()),
        &selector,
        "workloadconfigurationscans in all namespaces",
        |m| {
            if scope.owns_meta(&m) {
                merge.add_scan(&m);
            }
        },
    )
    .await?;
    list_pages(
        &client,
        ApiResource::erase::<WorkloadConfigurationScanSummary>(&()),
        &selector,
        "workloadconfigurationscansummaries in all namespaces",
        |m| {
            if scope.owns_meta(&m) {
                merge.add_summary(&m);
            }
        },
    )
    .await?;
    let mut summaries = BTreeSet::new();
    list_pages(
        &client,
        ApiResource::erase::<ConfigurationScanSummary>(&()),
        "",
        "configurationscansummaries",
        |m| summaries.extend(m.name.filter(|n| scope.owns_summary(n))),
    )
    .await?;
    Ok(ResultsSnapshot {
        results: merge.finish(),
        summaries,
    })
}
