//! The posture exceptions users write as resources (`PostureException`, `ClusterPostureException`),
//! read once per Job and added to the configured ones. Expired exceptions are left out by the
//! engine. When a cluster exception selects namespaces by labels, the labels of the targets'
//! namespaces are read too.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::Api;
use kubevigil_crds::{ClusterPostureException, PostureException};
use kubevigil_engine::Exceptions;
use kubevigil_engine::exceptions::ExceptionRule;
use tracing::{info, warn};

use super::api;

/// Why the exceptions could not be read: every target of the Job fails, since a scan without
/// them could report accepted risks as failures.
#[derive(Debug, thiserror::Error)]
#[error("failed to list {kind}: {source}")]
pub struct ReadError {
    /// `PostureException` or `ClusterPostureException`.
    pub kind: &'static str,
    /// The API error.
    pub source: kube::Error,
}

/// Adds the exception resources (and, when needed, the labels of `namespaces`) to `configured`.
/// A kind the API server does not serve (CRDs of an older chart) is skipped with a warning.
pub async fn read(
    client: &Client,
    configured: Exceptions,
    namespaces: &BTreeSet<String>,
) -> Result<Exceptions, ReadError> {
    let mut rules = Vec::new();
    let api: Api<PostureException> = Api::all(client.clone());
    match api::list_all(&api, None, "list PostureExceptions").await {
        Ok(items) => rules.extend(items.iter().map(ExceptionRule::from_namespaced)),
        Err(e) if api::is_unserved_resource(&e) => {
            warn!("PostureException is not served (CRD not installed); none applied");
        }
        Err(source) => {
            return Err(ReadError {
                kind: "PostureException",
                source,
            });
        }
    }
    let api: Api<ClusterPostureException> = Api::all(client.clone());
    match api::list_all(&api, None, "list ClusterPostureExceptions").await {
        Ok(items) => rules.extend(items.iter().map(ExceptionRule::from_cluster)),
        Err(e) if api::is_unserved_resource(&e) => {
            warn!("ClusterPostureException is not served (CRD not installed); none applied");
        }
        Err(source) => {
            return Err(ReadError {
                kind: "ClusterPostureException",
                source,
            });
        }
    }
    if !rules.is_empty() {
        info!(exceptions = rules.len(), "posture exception resources read");
    }
    let exceptions = configured.with_resources(rules, Timestamp::now());
    if !exceptions.needs_namespace_labels() {
        return Ok(exceptions);
    }
    let api: Api<Namespace> = Api::all(client.clone());
    let mut labels = Vec::new();
    for ns in namespaces {
        // A namespace that cannot be read keeps only its name label (the engine's fallback).
        match api::get_opt(&api, ns, &format!("get Namespace {ns}")).await {
            Ok(Some(n)) => {
                labels.push((ns.clone(), n.metadata.labels.unwrap_or_else(BTreeMap::new)))
            }
            Ok(None) => {}
            Err(e) => {
                warn!(namespace = %ns, error = %e, "cannot read the namespace's labels for namespace selectors")
            }
        }
    }
    Ok(exceptions.with_namespace_labels(labels))
}
