//! Listing existing results (metadata only, paged) for the startup and periodic resync: what
//! each result says about the scan that wrote it, and which watched kind it belongs to.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::ListParams;
use kube::discovery::ApiResource;
use kube::{Api, Client};
use kubevigil_crds::identity::{annotations, labels};
use kubevigil_crds::{
    ConfigurationScanSummary, WorkloadConfigurationScan, WorkloadConfigurationScanSummary,
};

use crate::error::Error;
use crate::events::{ResultInfo, ResultRef, SourceKind};
use crate::slim::ResultMeta;

/// Page size of result lists (metadata with managed fields can be large).
const PAGE: u32 = 250;

/// Existing results and namespace summaries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResultsSnapshot {
    /// Every result (a WorkloadConfigurationScanSummary and/or WorkloadConfigurationScan).
    pub results: HashMap<ResultRef, ResultInfo>,
    /// Names of the existing ConfigurationScanSummaries (namespaces).
    pub summaries: BTreeSet<String>,
}

/// The watched kind a result belongs to, from its labels.
pub fn source_of(labels_map: &BTreeMap<String, String>) -> Option<SourceKind> {
    if labels_map.get(labels::RBAC_RESOURCE).map(String::as_str) == Some("true") {
        let kind = if labels_map.contains_key(labels::CLUSTERROLEBINDING_NAME) {
            "ClusterRoleBinding"
        } else {
            "RoleBinding"
        };
        return Some(SourceKind {
            group: "rbac.authorization.k8s.io".into(),
            kind: kind.into(),
        });
    }
    Some(SourceKind {
        group: labels_map
            .get(labels::API_GROUP)
            .cloned()
            .unwrap_or_default(),
        kind: labels_map.get(labels::KIND)?.clone(),
    })
}

/// A result's reference and what its annotations say.
pub fn result_from_meta(meta: &ObjectMeta) -> Option<(ResultRef, ResultInfo)> {
    let r = ResultRef {
        namespace: meta.namespace.clone()?,
        name: meta.name.clone()?,
    };
    let ann = |k: &str| {
        meta.annotations
            .as_ref()
            .and_then(|a| a.get(k))
            .cloned()
            .unwrap_or_default()
    };
    let info = ResultInfo {
        fingerprint: ann(annotations::FINGERPRINT),
        scanner_version: ann(annotations::SCANNER_VERSION),
        controls_hash: ann(annotations::CONTROLS_HASH),
        source: meta.labels.as_ref().and_then(source_of),
    };
    Some((r, info))
}

/// Merges scans and summaries, page by page, into one map: a result counts as current only when
/// both objects exist (a lone one is given an empty fingerprint, so that it is rescanned or, when
/// its target is gone, collected). Scans must be added before summaries.
#[derive(Debug, Default)]
pub struct Merge {
    scans: HashMap<ResultRef, Option<SourceKind>>,
    out: HashMap<ResultRef, ResultInfo>,
}

impl Merge {
    /// Adds a listed WorkloadConfigurationScan.
    pub fn add_scan(&mut self, meta: &ObjectMeta) {
        if let Some((r, info)) = result_from_meta(meta) {
            self.scans.insert(r, info.source);
        }
    }

    /// Adds a listed WorkloadConfigurationScanSummary.
    pub fn add_summary(&mut self, meta: &ObjectMeta) {
        if let Some((r, mut info)) = result_from_meta(meta) {
            if self.scans.remove(&r).is_none() {
                info.fingerprint.clear();
            }
            self.out.insert(r, info);
        }
    }

    /// The merged map.
    pub fn finish(self) -> HashMap<ResultRef, ResultInfo> {
        let mut out = self.out;
        for (r, source) in self.scans {
            out.entry(r).or_insert(ResultInfo {
                fingerprint: String::new(),
                scanner_version: String::new(),
                controls_hash: String::new(),
                source,
            });
        }
        out
    }
}

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

/// Lists every result kubevigil manages and every namespace summary.
pub async fn list_results(client: Client) -> Result<ResultsSnapshot, Error> {
    let selector = format!("{}={}", labels::MANAGED_BY, labels::MANAGED_BY_VALUE);
    let mut merge = Merge::default();
    list_pages(
        &client,
        ApiResource::erase::<WorkloadConfigurationScan>(&()),
        &selector,
        "workloadconfigurationscans in all namespaces",
        |m| merge.add_scan(&m),
    )
    .await?;
    list_pages(
        &client,
        ApiResource::erase::<WorkloadConfigurationScanSummary>(&()),
        &selector,
        "workloadconfigurationscansummaries in all namespaces",
        |m| merge.add_summary(&m),
    )
    .await?;
    let mut summaries = BTreeSet::new();
    list_pages(
        &client,
        ApiResource::erase::<ConfigurationScanSummary>(&()),
        "",
        "configurationscansummaries",
        |m| summaries.extend(m.name),
    )
    .await?;
    Ok(ResultsSnapshot {
        results: merge.finish(),
        summaries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(ns: &str, name: &str, fp: &str, labels_map: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            annotations: Some(BTreeMap::from([
                (annotations::FINGERPRINT.to_string(), fp.to_string()),
                (
                    annotations::SCANNER_VERSION.to_string(),
                    "0.1.0".to_string(),
                ),
                (annotations::CONTROLS_HASH.to_string(), "abc".to_string()),
            ])),
            labels: Some(
                labels_map
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn sources_from_labels() {
        let deploy = meta(
            "shop",
            "deployment-web",
            "f",
            &[(labels::API_GROUP, "apps"), (labels::KIND, "Deployment")],
        );
        let (r, info) = result_from_meta(&deploy).unwrap();
        assert_eq!(r.name, "deployment-web");
        assert_eq!(info.fingerprint, "f");
        assert_eq!(
            info.source,
            Some(SourceKind {
                group: "apps".into(),
                kind: "Deployment".into()
            })
        );
        let triplet = meta(
            "kubevigil",
            "user-x-clusterrole-y-clusterrolebinding-z",
            "f",
            &[
                (labels::RBAC_RESOURCE, "true"),
                (labels::KIND, "User"),
                (labels::CLUSTERROLEBINDING_NAME, "z"),
            ],
        );
        assert_eq!(
            result_from_meta(&triplet).unwrap().1.source.unwrap().kind,
            "ClusterRoleBinding"
        );
        assert_eq!(
            result_from_meta(&meta("a", "b", "f", &[]))
                .unwrap()
                .1
                .source,
            None
        );
    }

    #[test]
    fn a_result_needs_both_objects_to_be_current() {
        let both = meta("shop", "deployment-web", "f1", &[]);
        let summary_only = meta("shop", "deployment-api", "f2", &[]);
        let scan_only = meta("shop", "deployment-db", "f3", &[]);
        let mut merge = Merge::default();
        for m in [&both, &scan_only] {
            merge.add_scan(m);
        }
        for m in [&both, &summary_only] {
            merge.add_summary(m);
        }
        let merged = merge.finish();
        let fp = |n: &str| {
            merged[&ResultRef {
                namespace: "shop".into(),
                name: n.into(),
            }]
                .fingerprint
                .clone()
        };
        assert_eq!(merged.len(), 3);
        assert_eq!(fp("deployment-web"), "f1");
        assert_eq!(fp("deployment-api"), "");
        assert_eq!(fp("deployment-db"), "");
    }
}
