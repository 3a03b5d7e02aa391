//! The namespace watch, needed only when `namespaceSelector` is set: Namespaces' metadata (names
//! and labels) kept in a [`NamespaceTable`], whose view is published to the watches of targets and
//! to the resync. Membership itself is decided in [`crate::scope`].

use std::collections::BTreeMap;
use std::pin::pin;
use std::sync::Arc;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::scope::{NamespaceScope, NamespaceTable, NamespaceView};

/// Watches Namespaces (metadata only) until every receiver of `view` is gone, publishing each
/// change of membership. A failing watch is retried with kube's default backoff.
pub async fn watch_namespaces(
    client: Client,
    scope: NamespaceScope,
    view: watch::Sender<Arc<NamespaceView>>,
) {
    let api: Api<PartialObjectMeta<Namespace>> = Api::all(client);
    let mut table = NamespaceTable::new(scope);
    let stream = watcher::watcher(api, watcher::Config::default().page_size(500)).default_backoff();
    let mut stream = pin!(stream);
    let empty = BTreeMap::new();
    while let Some(item) = stream.next().await {
        let changed = match item {
            Ok(Event::Init) => {
                table.list_started();
                false
            }
            Ok(Event::InitApply(ns) | Event::Apply(ns)) => match ns.metadata.name.as_deref() {
                Some(name) => table.applied(name, ns.metadata.labels.as_ref().unwrap_or(&empty)),
                None => false,
            },
            Ok(Event::Delete(ns)) => ns
                .metadata
                .name
                .as_deref()
                .is_some_and(|name| table.deleted(name)),
            Ok(Event::InitDone) => {
                let before = view.borrow().epoch;
                let changed = table.list_done();
                let v = table.view();
                tracing::info!(
                    namespaces_in_scope = v.in_scope_count(),
                    rescope = v.epoch != before,
                    "namespaces listed"
                );
                changed
            }
            Err(e) => {
                tracing::warn!(error = %e, "namespace watch failed; retrying with backoff");
                false
            }
        };
        if changed {
            let before = view.borrow().epoch;
            let next = Arc::new(table.view().clone());
            if next.epoch != before {
                tracing::info!(
                    epoch = next.epoch,
                    "a namespace moved in or out of scope; the watches list again"
                );
            }
            if view.send(next).is_err() {
                return;
            }
        }
    }
}
