//! The `write-limit` phase: the API server's own limit for writing the results an initial scan
//! wrote.
//!
//! Right after an initial scan (same cluster, same run), it lists every result object that scan
//! wrote (WorkloadConfigurationScans and Summaries in the scale's namespaces and in the release's
//! install namespace, full objects) and writes copies of them into mirror namespaces (`kvb-07`
//! → `kvw-07`, same names, same labels, annotations and spec, so the same kinds, bytes and
//! count) from one client at the scan Jobs' total write concurrency
//! ([`SCAN_WRITE_CONCURRENCY`]), as `POST`s: the cheapest request for a new object. Its wall
//! time is the write limit for that work. Copies carry no owner references (their owners live
//! in the source namespaces; the garbage collector would delete copies owned by a UID missing
//! from their own namespace).
//!
//! With `alternatives`, it then measures the other write choices on the same objects:
//! the copies deleted, the same objects server-side applied as new objects; then applied again
//! unchanged (what a rescan with an unchanged outcome costs when it writes; not writing costs
//! nothing).

use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams,
    PostParams,
};
use kube::{Client, Resource as _};
use kubevigil_crds::{WorkloadConfigurationScan, WorkloadConfigurationScanSummary};
use tokio::time::Instant;

use super::stats::RequestCounts;
use super::{Error, kube_err};
use crate::scenario;

/// Writes in flight at once over all scan Jobs: the chart's `maxConcurrentJobs` (5) × the
/// targets a scan Job writes at once (`IN_FLIGHT`, 8, in `scan-job/src/cluster/batch.rs`) × 2
/// (a target's scan and summary are written together).
pub const SCAN_WRITE_CONCURRENCY: usize = 5 * 8 * 2;

/// The field manager of the benchmark's applies.
const MANAGER: &str = "kv-bench";

/// Figures of the write-limit phase at one scale.
#[derive(Clone, Debug, Default)]
pub struct WriteLimitFigures {
    /// Result objects written (scans + summaries).
    pub objects: usize,
    /// Of which WorkloadConfigurationScans.
    pub scans: usize,
    /// Bytes of the objects as sent (JSON).
    pub bytes: usize,
    /// Writes in flight.
    pub concurrency: usize,
    /// Wall time of creating every object (`POST`): the write limit.
    pub create: Duration,
    /// API server requests on the result kinds during the creates (by verb).
    pub create_requests: RequestCounts,
    /// Wall time of server-side applying every object as a new one.
    pub apply_new: Option<Duration>,
    /// Wall time of server-side applying every object again, unchanged.
    pub apply_unchanged: Option<Duration>,
}

/// `kvb-07` → `kvw-07`; any other namespace `ns` → `kvw-ns`.
pub fn mirror_namespace(ns: &str) -> String {
    match ns.strip_prefix("kvb-") {
        Some(rest) => format!("kvw-{rest}"),
        None => format!("kvw-{ns}"),
    }
}

/// The copy of a listed result: in the mirror namespace, with its name, labels, annotations and
/// body, without the server's fields and owner references.
pub fn copy_of(mut object: DynamicObject) -> DynamicObject {
    let meta = object.metadata;
    object.metadata = ObjectMeta {
        name: meta.name,
        namespace: meta.namespace.as_deref().map(mirror_namespace),
        labels: meta.labels,
        annotations: meta.annotations,
        ..ObjectMeta::default()
    };
    object
}

fn resources() -> [ApiResource; 2] {
    [
        ApiResource::erase::<WorkloadConfigurationScan>(&()),
        ApiResource::erase::<WorkloadConfigurationScanSummary>(&()),
    ]
}

/// Every result in `namespaces`, full objects, as copies for the mirror namespaces.
async fn result_copies(
    client: &Client,
    namespaces: &[String],
) -> Result<Vec<(ApiResource, DynamicObject)>, Error> {
    let mut out = Vec::new();
    for ns in namespaces {
        for ar in resources() {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
            let mut lp = ListParams::default().limit(500);
            loop {
                let page = api
                    .list(&lp)
                    .await
                    .map_err(kube_err(format!("listing {} in {ns}", ar.plural)))?;
                for o in page.items {
                    let mut copy = copy_of(o);
                    copy.types = Some(kube::api::TypeMeta {
                        api_version: ar.api_version.clone(),
                        kind: ar.kind.clone(),
                    });
                    out.push((ar.clone(), copy));
                }
                match page.metadata.continue_ {
                    Some(t) if !t.is_empty() => lp = lp.continue_token(&t),
                    _ => break,
                }
            }
        }
    }
    Ok(out)
}

/// How one pass writes an object.
#[derive(Clone, Copy, Debug)]
enum Write {
    Create,
    Apply,
}

/// Writes every object with `how`, `concurrency` at a time; the wall time.
async fn write_all(
    client: &Client,
    objects: &[(ApiResource, DynamicObject)],
    how: Write,
    concurrency: usize,
) -> Result<Duration, Error> {
    let t0 = Instant::now();
    futures::stream::iter(objects.iter())
        .map(|(ar, o)| async move {
            let ns = o.metadata.namespace.as_deref().unwrap_or_default();
            let name = o.metadata.name.as_deref().unwrap_or_default();
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
            let what = format!("{how:?} {} {ns}/{name}", ar.kind);
            // A transient error is retried (it costs time, as it would in a scan Job).
            for attempt in 0..5 {
                let r = match how {
                    Write::Create => {
                        let pp = PostParams {
                            field_manager: Some(MANAGER.to_owned()),
                            ..PostParams::default()
                        };
                        api.create(&pp, o).await.map(|_| ())
                    }
                    Write::Apply => {
                        let pp = PatchParams::apply(MANAGER).force();
                        api.patch(name, &pp, &Patch::Apply(o)).await.map(|_| ())
                    }
                };
                match r {
                    Ok(()) => return Ok(()),
                    Err(kube::Error::Api(s))
                        if attempt < 4 && matches!(s.code, 429 | 500 | 503 | 504) =>
                    {
                        tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                    }
                    Err(e) => return Err(kube_err(what)(e)),
                }
            }
            Err(Error::Bench(format!(
                "{what}: still failing after 5 attempts"
            )))
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(t0.elapsed())
}

/// Deletes every copy in `mirrors` and waits until none is left.
async fn delete_copies(client: &Client, mirrors: &[String]) -> Result<(), Error> {
    for ns in mirrors {
        for ar in resources() {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
            api.delete_collection(&DeleteParams::default(), &ListParams::default())
                .await
                .map_err(kube_err(format!(
                    "deleting the {} copies in {ns}",
                    ar.plural
                )))?;
        }
    }
    let mirrors_ref = mirrors;
    scenario::wait_for(
        Duration::from_secs(600),
        "the write-limit copies to be deleted",
        || async move {
            let mut left = 0;
            for ns in mirrors_ref {
                for ar in resources() {
                    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
                    left += api
                        .list_metadata(&ListParams::default().limit(1))
                        .await?
                        .items
                        .len();
                }
            }
            Ok::<_, scenario::BoxError>(if left == 0 {
                scenario::Check::Done(())
            } else {
                scenario::Check::NotYet("copies left".to_string())
            })
        },
    )
    .await?;
    Ok(())
}

/// The phase at one scale: the results in `namespaces` (the scale's and the install
/// namespace) copied with `POST`s at `concurrency`; with `alternatives`, also applied as new and
/// applied unchanged. The mirror namespaces are deleted at the end.
pub async fn run(
    client: &Client,
    namespaces: &[String],
    concurrency: usize,
    alternatives: bool,
    requests: impl AsyncFn() -> Result<RequestCounts, Error>,
) -> Result<WriteLimitFigures, Error> {
    let objects = result_copies(client, namespaces).await?;
    let mut mirrors: Vec<String> = namespaces.iter().map(|n| mirror_namespace(n)).collect();
    mirrors.sort();
    mirrors.dedup();
    for ns in &mirrors {
        super::ensure_namespace(client, ns, "write-limit").await?;
    }
    // Copies of an earlier run are gone before the timing starts.
    delete_copies(client, &mirrors).await?;
    let bytes = objects
        .iter()
        .map(|(_, o)| serde_json::to_vec(o).map(|v| v.len()).unwrap_or(0))
        .sum();
    let scans = objects
        .iter()
        .filter(|(ar, _)| ar.kind == WorkloadConfigurationScan::kind(&()))
        .count();
    eprintln!(
        "kv-bench: write-limit: {} result objects ({scans} scans), {:.1} MB, {concurrency} in flight",
        objects.len(),
        bytes as f64 / 1e6
    );
    let before = requests().await?;
    let create = write_all(client, &objects, Write::Create, concurrency).await?;
    let create_requests = requests().await?.since(&before);
    eprintln!("kv-bench: write-limit: created in {create:?}");
    let mut figures = WriteLimitFigures {
        objects: objects.len(),
        scans,
        bytes,
        concurrency,
        create,
        create_requests,
        apply_new: None,
        apply_unchanged: None,
    };
    if alternatives {
        delete_copies(client, &mirrors).await?;
        let t = write_all(client, &objects, Write::Apply, concurrency).await?;
        eprintln!("kv-bench: write-limit: applied as new in {t:?}");
        figures.apply_new = Some(t);
        let t = write_all(client, &objects, Write::Apply, concurrency).await?;
        eprintln!("kv-bench: write-limit: applied unchanged in {t:?}");
        figures.apply_unchanged = Some(t);
    }
    let api: Api<Namespace> = Api::all(client.clone());
    for ns in &mirrors {
        let _ = api.delete(ns, &DeleteParams::background()).await;
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_go_to_mirror_namespaces_without_server_fields_or_owners() {
        assert_eq!(mirror_namespace("kvb-07"), "kvw-07");
        assert_eq!(mirror_namespace("kvb-r2k"), "kvw-r2k");
        assert_eq!(mirror_namespace("other"), "kvw-other");
        let o: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "kubevigil.io/v1beta1", "kind": "WorkloadConfigurationScan",
            "metadata": {"name": "deployment-w-001", "namespace": "kvb-07", "uid": "u",
                "resourceVersion": "9", "labels": {"a": "b"}, "annotations": {"c": "d"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                    "name": "w-001", "uid": "x"}],
                "managedFields": [{"manager": "m"}]},
            "spec": {"evaluatedControls": 3}
        }))
        .unwrap();
        let c = copy_of(o);
        assert_eq!(c.metadata.namespace.as_deref(), Some("kvw-07"));
        assert_eq!(c.metadata.name.as_deref(), Some("deployment-w-001"));
        assert_eq!(c.metadata.labels.unwrap()["a"], "b");
        assert_eq!(c.metadata.annotations.unwrap()["c"], "d");
        assert!(c.metadata.uid.is_none() && c.metadata.resource_version.is_none());
        assert!(c.metadata.owner_references.is_none() && c.metadata.managed_fields.is_none());
        assert_eq!(c.data["spec"]["evaluatedControls"], 3);
    }
}
