//! Namespace summaries: a ConfigurationScanSummary per namespace (cluster-scoped, named after
//! the namespace) with the sums of its WorkloadConfigurationScanSummaries, recomputed (debounced)
//! whenever results of that namespace change, and deleted when none are left.

use std::collections::BTreeMap;

use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::discovery::ApiResource;
use kube::{Api, Client};
use kubevigil_crds::identity::labels::{MANAGED_BY, MANAGED_BY_VALUE};
use kubevigil_crds::{
    ConfigurationScanSummary, ConfigurationScanSummarySpec, SeveritySummary, SummaryRef,
    WorkloadConfigurationScanSummary,
};

use crate::dispatch::FIELD_MANAGER;
use crate::error::{Error, is_not_found};
use crate::ops::Metrics;
use crate::slim::SummaryItem;

/// On a ConfigurationScanSummary: the install namespace of the installation that keeps it (whose
/// scope holds that namespace). After a scope change, an installation finds by it the namespaces
/// it scanned before and whose results it must delete ([`crate::state::Scope::dropped`]).
pub const INSTALLATION: &str = "kubevigil.io/installation";

/// Sums one namespace's summaries (given as `(name, severities)`).
pub fn namespace_summary(
    namespace: &str,
    items: impl IntoIterator<Item = (String, SeveritySummary)>,
) -> ConfigurationScanSummarySpec {
    let mut spec = ConfigurationScanSummarySpec::default();
    for (name, severities) in items {
        spec.severities.merge(&severities);
        spec.workloads += 1;
        spec.summary_ref.push(SummaryRef {
            kind: "WorkloadConfigurationScanSummary".into(),
            namespace: namespace.to_string(),
            name,
        });
    }
    spec.summary_ref.sort();
    spec
}

/// The API resource of WorkloadConfigurationScanSummary (listed through [`SummaryItem`], which
/// reads only names and severities, so that the control maps are never held in memory).
pub fn wcss_resource() -> ApiResource {
    ApiResource::erase::<WorkloadConfigurationScanSummary>(&())
}

/// What became of a namespace summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SummaryOutcome {
    /// Applied with this many workloads.
    Applied(u32),
    /// Already as computed (this many workloads): not written.
    Unchanged(u32),
    /// The namespace has no results: its summary was deleted.
    Deleted,
}

/// Recomputes the ConfigurationScanSummary of `namespace`, labelled with `installation` (the
/// install namespace: [`INSTALLATION`] tells which installation keeps it). A summary that cannot be read is
/// logged and counted (`kubevigil_malformed_objects_total`): it is still a workload of the
/// namespace and referenced, but its severities are unknown and add nothing to the sums.
pub async fn summarize(
    client: Client,
    namespace: &str,
    installation: &str,
    metrics: &Metrics,
) -> Result<SummaryOutcome, Error> {
    let resource = wcss_resource();
    let wcss: Api<DeserializeGuard<SummaryItem>> =
        Api::namespaced_with(client.clone(), namespace, &resource);
    let mut items = Vec::new();
    let mut posture = crate::posture::NamespacePosture::default();
    let mut lp = ListParams::default().limit(100);
    loop {
        let page = wcss.list(&lp).await.map_err(|source| Error::Summary {
            action: "list summaries for",
            name: namespace.to_string(),
            source,
        })?;
        for o in page.items {
            let item = match o.0 {
                Ok(o) => {
                    posture.add(&o);
                    (o.metadata.name.unwrap_or_default(), o.spec.severities)
                }
                Err(bad) => {
                    posture.add_unreadable();
                    metrics.malformed(&resource.plural, &bad);
                    (
                        bad.metadata.name.unwrap_or_default(),
                        SeveritySummary::default(),
                    )
                }
            };
            items.push(item);
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => break,
        }
    }
    let css: Api<ConfigurationScanSummary> = Api::all(client);
    if items.is_empty() {
        metrics.posture.remove(namespace);
        return match css.delete(namespace, &DeleteParams::default()).await {
            Ok(_) => Ok(SummaryOutcome::Deleted),
            Err(e) if is_not_found(&e) => Ok(SummaryOutcome::Deleted),
            Err(source) => Err(Error::Summary {
                action: "delete",
                name: namespace.to_string(),
                source,
            }),
        };
    }
    metrics.posture.set(namespace, posture);
    let spec = namespace_summary(namespace, items);
    let workloads = spec.workloads;
    let mut object = ConfigurationScanSummary::new(namespace, spec);
    object.metadata.labels = Some(BTreeMap::from([
        (MANAGED_BY.to_string(), MANAGED_BY_VALUE.to_string()),
        (INSTALLATION.to_string(), installation.to_string()),
    ]));
    // A resync or a restart recomputes every namespace's summary; one that is already as
    // computed is not written again (one GET instead of an apply).
    let current = css
        .get_opt(namespace)
        .await
        .map_err(|source| Error::Summary {
            action: "get",
            name: namespace.to_string(),
            source,
        })?;
    if current.is_some_and(|c| is_current(&c, &object)) {
        return Ok(SummaryOutcome::Unchanged(workloads));
    }
    css.patch(
        namespace,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&object),
    )
    .await
    .map_err(|source| Error::Summary {
        action: "apply",
        name: namespace.to_string(),
        source,
    })?;
    Ok(SummaryOutcome::Applied(workloads))
}

/// Whether the existing summary `current` already says what `new` says: the same spec and
/// kubevigil's labels.
fn is_current(current: &ConfigurationScanSummary, new: &ConfigurationScanSummary) -> bool {
    let labels = current.metadata.labels.clone().unwrap_or_default();
    current.spec == new.spec
        && new
            .metadata
            .labels
            .iter()
            .flatten()
            .all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_namespace_summary_is_current() {
        let spec = namespace_summary("shop", [("a".to_string(), SeveritySummary::default())]);
        let mut new = ConfigurationScanSummary::new("shop", spec.clone());
        new.metadata.labels = Some(BTreeMap::from([(
            MANAGED_BY.to_string(),
            MANAGED_BY_VALUE.to_string(),
        )]));
        let mut current = new.clone();
        current.metadata.resource_version = Some("7".into());
        assert!(is_current(&current, &new));
        current.metadata.labels = None;
        assert!(!is_current(&current, &new));
        let other = namespace_summary("shop", [("b".to_string(), SeveritySummary::default())]);
        let changed = ConfigurationScanSummary::new("shop", other);
        assert!(!is_current(&changed, &new));
    }

    #[test]
    fn sums_and_sorted_refs() {
        let sev = |c, h| SeveritySummary {
            critical: c,
            high: h,
            ..SeveritySummary::default()
        };
        let spec = namespace_summary(
            "shop",
            [
                ("deployment-web".to_string(), sev(1, 2)),
                ("deployment-api".to_string(), sev(0, 3)),
            ],
        );
        assert_eq!(spec.workloads, 2);
        assert_eq!(spec.severities, sev(1, 5));
        assert_eq!(spec.summary_ref[0].name, "deployment-api");
        assert_eq!(spec.summary_ref[1].kind, "WorkloadConfigurationScanSummary");
    }
}
