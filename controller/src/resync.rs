//! Listing existing results (metadata only, paged) for the startup and periodic resync. What a
//! list means (scope, merge, staleness) is decided on the pure side, in `state`.
//!
//! Each listed object is read through kube's [`DeserializeGuard`]: one malformed result is
//! logged and counted (`kubevigil_malformed_objects_total`) and skipped, instead of failing the
//! whole list.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, ObjectList};
use kube::core::{DeserializeGuard, Request};
use kube::discovery::ApiResource;
use kube::{Client, Resource};
use kubevigil_crds::identity::labels;
use kubevigil_crds::{
    ConfigurationScanSummary, WorkloadConfigurationScan, WorkloadConfigurationScanSummary,
};

use crate::error::Error;
use crate::ops::Metrics;
use crate::slim::ResultMeta;
use crate::state::{Merge, ResultsSnapshot, Scope};

/// Page size of result lists (metadata with managed fields can be large).
const PAGE: u32 = 250;

/// Lists every object of a result kind, paged, through metadata-only requests that parse only
/// names, labels and annotations, and hands each one's metadata to `each` (no page is kept).
async fn list_pages(
    client: &Client,
    resource: ApiResource,
    selector: &str,
    what: &str,
    metrics: &Metrics,
    mut each: impl FnMut(ObjectMeta),
) -> Result<(), Error> {
    let failed = |source| Error::List {
        what: what.to_string(),
        source,
    };
    // `Api<DeserializeGuard<_>>` would lose the metadata-only Accept header (the guard does not
    // forward `Resource::metadata_api`), so the request is built as `Api::list` builds it.
    let request = Request::new(ResultMeta::url_path(&resource, None));
    let mut lp = ListParams::default().labels(selector).limit(PAGE);
    loop {
        let mut req = request
            .list_metadata(&lp)
            .map_err(|e| failed(kube::Error::BuildRequest(e)))?;
        req.extensions_mut().insert("list");
        let page: ObjectList<DeserializeGuard<ResultMeta>> =
            client.request(req).await.map_err(failed)?;
        for item in page.items {
            match item.0 {
                Ok(o) => each(o.metadata),
                Err(bad) => metrics.malformed(&resource.plural, &bad),
            }
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => return Ok(()),
        }
    }
}

/// Lists every result and namespace summary of this installation (`scope`).
pub async fn list_results(
    client: Client,
    scope: &Scope,
    metrics: &Metrics,
) -> Result<ResultsSnapshot, Error> {
    let selector = format!("{}={}", labels::MANAGED_BY, labels::MANAGED_BY_VALUE);
    let mut merge = Merge::default();
    list_pages(
        &client,
        ApiResource::erase::<WorkloadConfigurationScan>(&()),
        &selector,
        "workloadconfigurationscans in all namespaces",
        metrics,
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
        metrics,
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
        metrics,
        |m| summaries.extend(m.name.filter(|n| scope.owns_summary(n))),
    )
    .await?;
    Ok(ResultsSnapshot {
        results: merge.finish(),
        summaries,
    })
}
