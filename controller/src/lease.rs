//! Leader election through a `coordination.k8s.io/v1` Lease (used when `replicas > 1`).
//!
//! A candidate takes the Lease when it is free or when its record has not changed for a whole
//! lease duration (15 s) as observed by this process (no clock comparison between machines).
//! The leader renews it every 5 s; when it cannot renew for 10 s, or another holder appears, it
//! stops with an error so that the pod restarts as a candidate. On shutdown it releases the Lease
//! so that a successor takes over at once.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;

use crate::dispatch::FIELD_MANAGER;
use crate::error::{Error, is_conflict};

/// Lease timing.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This candidate's identity (the pod name).
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub duration: Duration,
    /// How often the leader renews.
    pub renew_every: Duration,
    /// How long the leader may fail to renew before it gives up.
    pub renew_deadline: Duration,
    /// How often a candidate tries to acquire.
    pub retry_every: Duration,
}

impl LeaseSettings {
    /// The defaults: 15 s lease, renewal every 5 s, 10 s renew deadline, 2 s retry.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        LeaseSettings {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            renew_deadline: Duration::from_secs(10),
            retry_every: Duration::from_secs(2),
        }
    }
}

/// What a candidate does about the current Lease record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// It holds the Lease: renew.
    Renew,
    /// The Lease is free or expired: take it.
    Take,
    /// Another holder's Lease is live: wait.
    Wait,
}

/// Decides from the Lease record and how long this process has seen it unchanged.
pub fn decide(
    spec: Option<&LeaseSpec>,
    identity: &str,
    unchanged_for: Duration,
    default_duration: Duration,
) -> Decision {
    let holder = spec
        .and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty());
    match holder {
        Some(h) if h == identity => Decision::Renew,
        None => Decision::Take,
        Some(_) => {
            let duration = spec
                .and_then(|s| s.lease_duration_seconds)
                .and_then(|s| u64::try_from(s).ok())
                .map_or(default_duration, Duration::from_secs);
            if unchanged_for >= duration {
                Decision::Take
            } else {
                Decision::Wait
            }
        }
    }
}

type Observed = (Option<String>, Option<MicroTime>, Option<i32>);

/// A Lease candidate and, once elected, leader.
pub struct LeaderElector {
    api: Api<Lease>,
    s: LeaseSettings,
    observed: Option<Observed>,
    observed_at: Instant,
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

impl LeaderElector {
    /// A candidate.
    pub fn new(client: Client, settings: LeaseSettings) -> Self {
        LeaderElector {
            api: Api::namespaced(client, &settings.namespace),
            s: settings,
            observed: None,
            observed_at: Instant::now(),
        }
    }

    fn lease_ref(&self) -> String {
        format!("{}/{}", self.s.namespace, self.s.name)
    }

    fn err(&self, action: &'static str, source: kube::Error) -> Error {
        Error::Lease {
            action,
            lease: self.lease_ref(),
            source,
        }
    }

    fn timeout_err(&self, action: &'static str) -> Error {
        Error::LeaseLost {
            lease: self.lease_ref(),
            reason: format!("{action} timed out after {REQUEST_TIMEOUT:?}"),
        }
    }

    fn observe(&mut self, spec: Option<&LeaseSpec>, now: Instant) {
        let record = (
            spec.and_then(|s| s.holder_identity.clone()),
            spec.and_then(|s| s.renew_time.clone()),
            spec.and_then(|s| s.lease_transitions),
        );
        if self.observed.as_ref() != Some(&record) {
            self.observed = Some(record);
            self.observed_at = now;
        }
    }

    /// One attempt to acquire or renew; `Ok(true)` when this candidate holds the Lease.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, Error> {
        let now = Instant::now();
        let stamp = MicroTime(Timestamp::now());
        let seconds = i32::try_from(self.s.duration.as_secs()).unwrap_or(15);
        let current = tokio::time::timeout(REQUEST_TIMEOUT, self.api.get_opt(&self.s.name))
            .await
            .map_err(|_| self.timeout_err("get"))?
            .map_err(|e| self.err("get", e))?;
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.s.name.clone()),
                    namespace: Some(self.s.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.s.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(stamp.clone()),
                    renew_time: Some(stamp),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            let pp = PostParams {
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..PostParams::default()
            };
            return match tokio::time::timeout(REQUEST_TIMEOUT, self.api.create(&pp, &lease))
                .await
                .map_err(|_| self.timeout_err("create"))?
            {
                Ok(_) => Ok(true),
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(self.err("create", e)),
            };
        };
        self.observe(lease.spec.as_ref(), now);
        let decision = decide(
            lease.spec.as_ref(),
            &self.s.identity,
            now.saturating_duration_since(self.observed_at),
            self.s.duration,
        );
        if decision == Decision::Wait {
            return Ok(false);
        }
        let mut spec = lease.spec.take().unwrap_or_default();
        if decision == Decision::Take {
            spec.acquire_time = Some(stamp.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.holder_identity = Some(self.s.identity.clone());
        spec.lease_duration_seconds = Some(seconds);
        spec.renew_time = Some(stamp);
        lease.spec = Some(spec);
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PostParams::default()
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, self.api.replace(&self.s.name, &pp, &lease))
            .await
            .map_err(|_| self.timeout_err("update"))?
        {
            Ok(updated) => {
                self.observe(updated.spec.as_ref(), Instant::now());
                Ok(true)
            }
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(self.err("update", e)),
        }
    }

    /// Waits until this candidate holds the Lease; `Ok(false)` when shutdown came first.
    pub async fn acquire(&mut self, shutdown: &mut watch::Receiver<bool>) -> Result<bool, Error> {
        let mut logged = false;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.s.name, identity = %self.s.identity, "became the leader");
                    return Ok(true);
                }
                Ok(false) if !logged => {
                    tracing::info!(lease = %self.s.name, holder = ?self.observed.as_ref().and_then(|o| o.0.clone()), "standby: another replica is the leader");
                    logged = true;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.s.retry_every) => {}
                _ = crate::ops::stopped(shutdown) => return Ok(false),
            }
        }
    }

    /// Renews the Lease until shutdown (`Ok`) or until leadership is lost (`Err`).
    pub async fn keep(&mut self, shutdown: &mut watch::Receiver<bool>) -> Result<(), Error> {
        let mut last_renew = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.s.renew_every) => {}
                _ = crate::ops::stopped(shutdown) => return Ok(()),
            }
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renew = Instant::now(),
                Ok(false) => {
                    return Err(Error::LeaseLost {
                        lease: self.lease_ref(),
                        reason: format!(
                            "another replica holds it ({:?})",
                            self.observed.as_ref().and_then(|o| o.0.clone())
                        ),
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the leader Lease failed");
                    if last_renew.elapsed() >= self.s.renew_deadline {
                        return Err(Error::LeaseLost {
                            lease: self.lease_ref(),
                            reason: format!(
                                "not renewed for {}s: {e}",
                                last_renew.elapsed().as_secs()
                            ),
                        });
                    }
                }
            }
        }
    }

    /// Gives the Lease up (best effort) so that another replica takes over at once.
    pub async fn release(&mut self) {
        let Ok(Ok(Some(mut lease))) =
            tokio::time::timeout(REQUEST_TIMEOUT, self.api.get_opt(&self.s.name)).await
        else {
            return;
        };
        let mut spec = lease.spec.take().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.s.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        lease.spec = Some(spec);
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PostParams::default()
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, self.api.replace(&self.s.name, &pp, &lease))
            .await
        {
            Ok(Ok(_)) => tracing::info!(lease = %self.s.name, "released the leader Lease"),
            Ok(Err(e)) => tracing::warn!(error = %e, "releasing the leader Lease failed"),
            Err(_) => tracing::warn!("releasing the leader Lease timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, seconds: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            lease_duration_seconds: seconds,
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decisions() {
        let d = Duration::from_secs(15);
        let s = |n| Duration::from_secs(n);
        assert_eq!(decide(None, "me", s(0), d), Decision::Take);
        assert_eq!(
            decide(Some(&spec(Some(""), None)), "me", s(0), d),
            Decision::Take
        );
        assert_eq!(
            decide(Some(&spec(Some("me"), Some(15))), "me", s(0), d),
            Decision::Renew
        );
        assert_eq!(
            decide(Some(&spec(Some("other"), Some(15))), "me", s(14), d),
            Decision::Wait
        );
        assert_eq!(
            decide(Some(&spec(Some("other"), Some(15))), "me", s(15), d),
            Decision::Take
        );
        // The record's own duration wins over the default.
        assert_eq!(
            decide(Some(&spec(Some("other"), Some(1))), "me", s(2), d),
            Decision::Take
        );
        assert_eq!(
            decide(Some(&spec(Some("other"), None)), "me", s(10), d),
            Decision::Wait
        );
    }
}
