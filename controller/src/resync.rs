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
use crate::index::ResultRef;
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

/// Lists every result and namespace summary of this installation (`scope`), and the results of
/// the namespaces it scanned before that are out of its scope now ([`Scope::dropped`]).
pub async fn list_results(
    client: Client,
    scope: &Scope,
    metrics: &Metrics,
) -> Result<ResultsSnapshot, Error> {
    // Summaries first: they say which namespaces left the scope.
    let mut summaries = BTreeSet::new();
    let mut dropped = BTreeSet::new();
    list_pages(
        &client,
        ApiResource::erase::<ConfigurationScanSummary>(&()),
        "",
        "configurationscansummaries",
        metrics,
        |m| {
            let Some(name) = m.name else { return };
            if scope.owns_summary(&name) {
                summaries.insert(name);
            } else if scope.dropped(&name, m.labels.as_ref()) {
                dropped.insert(name);
            }
        },
    )
    .await?;
    let selector = format!("{}={}", labels::MANAGED_BY, labels::MANAGED_BY_VALUE);
    let mut merge = Merge::default();
    let mut out_of_scope = BTreeSet::new();
    let mut in_dropped = |m: &ObjectMeta| {
        if let (Some(ns), Some(name)) = (&m.namespace, &m.name)
            && dropped.contains(ns)
        {
            out_of_scope.insert(ResultRef {
                namespace: ns.clone(),
                name: name.clone(),
            });
        }
    };
    list_pages(
        &client,
        ApiResource::erase::<WorkloadConfigurationScan>(&()),
        &selector,
        "workloadconfigurationscans in all namespaces",
        metrics,
        |m| {
            if scope.owns_meta(&m) {
                merge.add_scan(&m);
            } else {
                in_dropped(&m);
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
            } else {
                in_dropped(&m);
            }
        },
    )
    .await?;
    Ok(ResultsSnapshot {
        results: merge.finish(),
        summaries,
        dropped_namespaces: dropped,
        out_of_scope,
    })
}
