//! The watches of `PostureException` and `ClusterPostureException` (the I/O around
//! [`crate::exceptions`]): each object becomes an [`ExceptionEvent`] whose expiry is turned from
//! wall-clock time into an [`Instant`] here, once.

use std::pin::pin;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use kubevigil_crds::{ClusterPostureException, PostureException};
use kubevigil_engine::exceptions::ExceptionRule;
use tokio::sync::mpsc;

use crate::exceptions::{ExceptionEvent, ExceptionKey};
use crate::state::Msg;

/// The instant of a wall-clock expiry (`now` when already past).
pub fn expiry_instant(expires_at: Timestamp, wall_now: Timestamp, now: Instant) -> Instant {
    let left = expires_at
        .as_millisecond()
        .saturating_sub(wall_now.as_millisecond());
    now + Duration::from_millis(u64::try_from(left).unwrap_or(0))
}

fn event(key: ExceptionKey, rule: ExceptionRule, init: bool) -> ExceptionEvent {
    let expires = rule
        .expires_at
        .map(|t| expiry_instant(t, Timestamp::now(), Instant::now()));
    ExceptionEvent::Apply {
        key,
        rule: Box::new(rule),
        expires,
        init,
    }
}

/// Watches the namespaced kind until the channel closes. A watch that fails (the CRD is not
/// installed, RBAC) is retried with backoff and logged.
pub async fn watch_namespaced(client: Client, tx: mpsc::Sender<Msg>) {
    let api: Api<PostureException> = Api::all(client);
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = pin!(stream);
    while let Some(item) = stream.next().await {
        let key = |e: &PostureException| ExceptionKey {
            namespace: e.metadata.namespace.clone(),
            name: e.metadata.name.clone().unwrap_or_default(),
        };
        let msg = match item {
            Ok(Event::InitApply(e)) => event(key(&e), ExceptionRule::from_namespaced(&e), true),
            Ok(Event::Apply(e)) => event(key(&e), ExceptionRule::from_namespaced(&e), false),
            Ok(Event::Delete(e)) => ExceptionEvent::Delete(key(&e)),
            Ok(Event::Init | Event::InitDone) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "watching PostureExceptions failed; retrying with backoff");
                continue;
            }
        };
        if tx.send(Msg::Exception(msg)).await.is_err() {
            return;
        }
    }
}

/// Watches the cluster kind until the channel closes.
pub async fn watch_cluster(client: Client, tx: mpsc::Sender<Msg>) {
    let api: Api<ClusterPostureException> = Api::all(client);
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = pin!(stream);
    while let Some(item) = stream.next().await {
        let key = |e: &ClusterPostureException| ExceptionKey {
            namespace: None,
            name: e.metadata.name.clone().unwrap_or_default(),
        };
        let msg = match item {
            Ok(Event::InitApply(e)) => event(key(&e), ExceptionRule::from_cluster(&e), true),
            Ok(Event::Apply(e)) => event(key(&e), ExceptionRule::from_cluster(&e), false),
            Ok(Event::Delete(e)) => ExceptionEvent::Delete(key(&e)),
            Ok(Event::Init | Event::InitDone) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "watching ClusterPostureExceptions failed; retrying with backoff");
                continue;
            }
        };
        if tx.send(Msg::Exception(msg)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_in_the_future_and_in_the_past() {
        let now = Instant::now();
        let wall: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let later: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        assert_eq!(
            expiry_instant(later, wall, now),
            now + Duration::from_secs(60)
        );
        assert_eq!(expiry_instant(wall, later, now), now);
    }
}
