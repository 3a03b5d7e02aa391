//! The API calls of a scan Job, each retried on transient errors (the rule shared with the
//! controller, `kubevigil_crds::api_error`): reads of live objects (GETs, paginated LISTs of
//! targets and of related kinds), server-side apply of results, deletes.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use kube::api::{
    Api, DeleteParams, ListParams, ObjectList, PartialObjectMeta, Patch, PatchParams, PostParams,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::warn;

/// The field manager of every result a scan Job writes.
pub const FIELD_MANAGER: &str = "kubevigil-scan-job";

/// Attempts of one API call (the first one and the retries) before its error counts.
pub const ATTEMPTS: usize = 3;

/// Items per page of a LIST.
const PAGE_SIZE: u32 = 500;

fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(ATTEMPTS - 1)
        .with_jitter()
}

use kubevigil_crds::api_error::{is_conflict, is_not_found};
pub use kubevigil_crds::api_error::{is_transient, status_code};

/// Whether a failed server-side apply is worth sending again: a transient error, or a `409`
/// from two Jobs racing to create the same result (the apply restates the whole intent).
fn is_retryable_apply(e: &kube::Error) -> bool {
    is_transient(e) || is_conflict(e)
}

/// Runs `op`, retrying transient errors with exponential backoff.
async fn retrying<T, F, Fut>(what: &str, op: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    retrying_when(what, is_transient, op).await
}

/// Runs `op`, retrying the errors `when` accepts with exponential backoff.
async fn retrying_when<T, F, Fut>(
    what: &str,
    when: fn(&kube::Error) -> bool,
    op: F,
) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    op.retry(backoff())
        .when(when)
        .notify(|e, after| warn!(error = %e, "{what} failed, retrying in {after:?}"))
        .await
}

/// GETs one object; `None` when it does not exist (404).
pub async fn get_opt<K>(api: &Api<K>, name: &str, what: &str) -> Result<Option<K>, kube::Error>
where
    K: Clone + DeserializeOwned + Debug,
{
    retrying(what, || api.get_opt(name)).await
}

/// GETs the metadata of one object; `None` when it does not exist (404).
pub async fn get_metadata_opt<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
) -> Result<Option<PartialObjectMeta<K>>, kube::Error>
where
    K: Clone + DeserializeOwned + Debug,
{
    retrying(what, || api.get_metadata_opt(name)).await
}

/// LISTs every object (page by page), optionally by label selector.
pub async fn list_all<K>(
    api: &Api<K>,
    label_selector: Option<&str>,
    what: &str,
) -> Result<Vec<K>, kube::Error>
where
    K: Clone + DeserializeOwned + Debug,
{
    paginate(
        label_selector,
        what,
        |lp| async move { api.list(&lp).await },
    )
    .await
}

/// LISTs the metadata of every object (page by page), optionally by label selector: enough
/// to find objects to delete, and independent of the objects' schema.
pub async fn list_metadata_all<K>(
    api: &Api<K>,
    label_selector: Option<&str>,
    what: &str,
) -> Result<Vec<PartialObjectMeta<K>>, kube::Error>
where
    K: Clone + DeserializeOwned + Debug,
{
    paginate(label_selector, what, |lp| async move {
        api.list_metadata(&lp).await
    })
    .await
}

async fn paginate<T, F, Fut>(
    label_selector: Option<&str>,
    what: &str,
    mut fetch: F,
) -> Result<Vec<T>, kube::Error>
where
    T: Clone,
    F: FnMut(ListParams) -> Fut,
    Fut: Future<Output = Result<ObjectList<T>, kube::Error>>,
{
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(PAGE_SIZE);
        if let Some(selector) = label_selector {
            lp = lp.labels(selector);
        }
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = retrying(what, || fetch(lp.clone())).await?;
        items.extend(page.items);
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(items),
        }
    }
}

/// Server-side applies the whole object with kubevigil's field manager, forcing ownership:
/// the object replaces what this manager wrote before (fields and labels it no longer sets are
/// removed).
///
/// Forcing only takes back the fields kubevigil sets. When someone else wrote into the result
/// (a hand edit adding a control or a label), their fields survive an apply, so the object is
/// then replaced once more with exactly what was applied and with kubevigil's field ownership
/// only: a result always says what the last scan found and nothing else.
pub async fn apply<K>(api: &Api<K>, name: &str, obj: &K, what: &str) -> Result<(), kube::Error>
where
    K: Clone + DeserializeOwned + Serialize + Debug + kube::Resource,
{
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let patch = Patch::Apply(obj);
    let applied = retrying_when(what, is_retryable_apply, || api.patch(name, &pp, &patch)).await?;
    let Some(ours) = only_own_fields(applied.meta()) else {
        return Ok(());
    };
    warn!(
        "{what}: the result was changed by another field manager; replacing it with the scan's result"
    );
    let mut replacement = obj.clone();
    let meta = replacement.meta_mut();
    meta.resource_version = applied.meta().resource_version.clone();
    meta.managed_fields = Some(ours);
    let post = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    match api.replace(name, &post, &replacement).await {
        Ok(_) => Ok(()),
        // Someone wrote again meanwhile; the next scan replaces it.
        Err(e) if is_conflict(&e) => {
            warn!(error = %e, "{what}: replacing the hand-edited result conflicted");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// When fields of the object are owned by another manager than kubevigil's apply, the managed
/// fields entries of kubevigil's apply alone (what the replacement keeps); `None` when only
/// kubevigil owns fields.
pub fn only_own_fields(
    meta: &kube::core::ObjectMeta,
) -> Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry>> {
    let entries = meta.managed_fields.as_ref()?;
    let is_ours = |e: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry| {
        e.manager.as_deref() == Some(FIELD_MANAGER) && e.operation.as_deref() == Some("Apply")
    };
    if entries.iter().all(is_ours) {
        return None;
    }
    Some(entries.iter().filter(|e| is_ours(e)).cloned().collect())
}

/// A 404 without a Status body: the API server has no such resource at all (a missing CRD),
/// unlike the `NotFound` Status of a missing object or namespace.
pub fn is_unserved_resource(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 && s.message.contains("page not found"))
}

/// Deletes one object; `Ok(false)` when it did not exist.
pub async fn delete<K>(api: &Api<K>, name: &str, what: &str) -> Result<bool, kube::Error>
where
    K: Clone + DeserializeOwned + Debug,
{
    let dp = DeleteParams::default();
    match retrying(what, || api.delete(name, &dp)).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(Status::failure("x", "y").with_code(code).boxed())
    }

    #[test]
    fn a_missing_crd_is_told_from_a_missing_object() {
        let page = kube::Error::Api(
            Status::failure("404 page not found", "Failed to parse error data")
                .with_code(404)
                .boxed(),
        );
        assert!(is_unserved_resource(&page));
        assert!(!is_unserved_resource(&api_error(404)));
        assert!(!is_unserved_resource(&api_error(500)));
    }

    #[test]
    fn transient_and_permanent_errors() {
        for code in [408, 429, 500, 503, 504] {
            assert!(is_transient(&api_error(code)), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 410, 422] {
            assert!(!is_transient(&api_error(code)), "{code}");
        }
        // An apply that lost a create race is sent again.
        assert!(is_retryable_apply(&api_error(409)));
        assert!(!is_retryable_apply(&api_error(422)));
        assert!(is_transient(&kube::Error::Service(
            "connection reset".into()
        )));
        assert!(!is_transient(&kube::Error::LinesCodecMaxLineLengthExceeded));
        assert_eq!(status_code(&api_error(404)), Some(404));
        assert_eq!(status_code(&kube::Error::TlsRequired), None);
    }

    #[test]
    fn foreign_field_managers_are_detected() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
        let entry = |manager: &str, op: &str| ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(op.into()),
            ..ManagedFieldsEntry::default()
        };
        let mut meta = kube::core::ObjectMeta::default();
        assert_eq!(only_own_fields(&meta), None);
        meta.managed_fields = Some(vec![entry(FIELD_MANAGER, "Apply")]);
        assert_eq!(only_own_fields(&meta), None);
        meta.managed_fields = Some(vec![
            entry(FIELD_MANAGER, "Apply"),
            entry("kubectl-edit", "Update"),
            entry(FIELD_MANAGER, "Update"),
        ]);
        assert_eq!(
            only_own_fields(&meta),
            Some(vec![entry(FIELD_MANAGER, "Apply")])
        );
    }
}
