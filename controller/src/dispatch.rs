//! Scan Jobs at the edge: which Jobs are ours and running (the tracker), what a watched Job says
//! (its targets and outcome), and creating a Job with the collision rules.
//!
//! A Job is recorded in the tracker before it is created, so that its completion maps back to
//! its targets even when the create response is lost; after a restart, running Jobs are adopted
//! from their `kubevigil.io/targets` annotation.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kubevigil_crds::target::TargetKey;

use crate::error::{Error, is_conflict, is_not_found};
use crate::jobs::job_targets;

/// Field manager of everything the controller writes.
pub const FIELD_MANAGER: &str = "kubevigil-controller";

/// A scan Job the controller created or adopted and has not seen finish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRecord {
    /// The targets it scans.
    pub targets: Vec<TargetKey>,
    /// The attempt number of its targets (0 for first scans).
    pub attempt: u32,
    /// When it was recorded.
    pub created: Instant,
    /// The UID of the Job, once the API server has confirmed it (create answered, or found
    /// running). Until then, watch events for that name are of an older Job of the same name.
    pub uid: Option<String>,
}

/// The active scan Jobs, by name.
#[derive(Debug, Default)]
pub struct JobTracker {
    jobs: HashMap<String, JobRecord>,
}

impl JobTracker {
    /// Records a Job.
    pub fn insert(&mut self, name: String, record: JobRecord) {
        self.jobs.insert(name, record);
    }

    /// Forgets a Job, returning its record.
    pub fn remove(&mut self, name: &str) -> Option<JobRecord> {
        self.jobs.remove(name)
    }

    /// Whether a Job is recorded.
    pub fn contains(&self, name: &str) -> bool {
        self.jobs.contains_key(name)
    }

    /// Records the UID the API server gave a Job.
    pub fn confirm(&mut self, name: &str, uid: &str) {
        if let Some(r) = self.jobs.get_mut(name) {
            r.uid = Some(uid.to_string());
        }
    }

    /// A recorded Job.
    pub fn get(&self, name: &str) -> Option<&JobRecord> {
        self.jobs.get(name)
    }

    /// Number of active Jobs.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Whether no Job is active.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Confirmed Jobs recorded before `before` that are not in `seen` (a Job watch re-list
    /// did not return them: they were deleted while the watch was down).
    pub fn vanished(
        &self,
        seen: &std::collections::HashSet<String>,
        before: Instant,
    ) -> Vec<String> {
        let mut out: Vec<String> = self
            .jobs
            .iter()
            .filter(|(name, r)| r.uid.is_some() && r.created < before && !seen.contains(*name))
            .map(|(name, _)| name.clone())
            .collect();
        out.sort();
        out
    }

    /// Jobs recorded longer than `max_age` ago (their deadline passed long ago without a
    /// finished state being seen).
    pub fn overdue(&self, now: Instant, max_age: Duration) -> Vec<String> {
        let mut out: Vec<String> = self
            .jobs
            .iter()
            .filter(|(_, r)| now.saturating_duration_since(r.created) > max_age)
            .map(|(name, _)| name.clone())
            .collect();
        out.sort();
        out
    }
}

/// What the controller keeps of a watched scan Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobView {
    /// Name of the Job.
    pub name: String,
    /// UID of the Job (tells a Job from an older one of the same name).
    pub uid: String,
    /// Its targets (from the annotation).
    pub targets: Vec<TargetKey>,
    /// `Some(true)` when Complete, `Some(false)` when Failed, `None` while running.
    pub finished: Option<bool>,
    /// Whether it is being deleted.
    pub deleting: bool,
}

/// Whether a Job finished: `Some(true)` Complete, `Some(false)` Failed, `None` still running.
pub fn job_outcome(job: &Job) -> Option<bool> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let is_true = |t: &str| {
        conditions
            .iter()
            .any(|c| c.type_ == t && c.status == "True")
    };
    if is_true("Complete") {
        Some(true)
    } else if is_true("Failed") {
        Some(false)
    } else {
        None
    }
}

/// The controller's view of a watched Job.
pub fn job_view(job: &Job) -> JobView {
    JobView {
        name: job.metadata.name.clone().unwrap_or_default(),
        uid: job.metadata.uid.clone().unwrap_or_default(),
        targets: job_targets(job),
        finished: job_outcome(job),
        deleting: job.metadata.deletion_timestamp.is_some(),
    }
}

/// What became of a Job create.
#[derive(Debug)]
pub enum CreateOutcome {
    /// Created.
    Created {
        /// UID of the new Job.
        uid: String,
    },
    /// A Job of that name is running: its targets are in flight.
    Running {
        /// UID of the running Job.
        uid: String,
    },
    /// A finished Job of that name was in the way; it was deleted and the targets must be
    /// queued again.
    FinishedDeleted,
    /// The create failed.
    Failed(Error),
}

/// Creates a scan Job. On `409 AlreadyExists`: a finished (or vanishing) Job of that name is
/// deleted with background propagation; a running one is taken as scanning the same targets.
pub async fn create_job(client: kube::Client, namespace: &str, job: &Job) -> CreateOutcome {
    let name = job.metadata.name.clone().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(client, namespace);
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    let err = match api.create(&pp, job).await {
        Ok(created) => {
            return CreateOutcome::Created {
                uid: created.metadata.uid.unwrap_or_default(),
            };
        }
        Err(e) if is_conflict(&e) => e,
        Err(source) => {
            return CreateOutcome::Failed(Error::CreateJob {
                job: format!("{namespace}/{name}"),
                source,
            });
        }
    };
    tracing::debug!(job = %name, error = %err, "scan Job exists already");
    let existing = match api.get_opt(&name).await {
        Ok(existing) => existing,
        Err(source) => {
            return CreateOutcome::Failed(Error::Job {
                action: "get",
                job: format!("{namespace}/{name}"),
                source,
            });
        }
    };
    match existing {
        Some(j) if job_outcome(&j).is_none() && j.metadata.deletion_timestamp.is_none() => {
            CreateOutcome::Running {
                uid: j.metadata.uid.unwrap_or_default(),
            }
        }
        Some(_) => match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => CreateOutcome::FinishedDeleted,
            Err(e) if is_not_found(&e) => CreateOutcome::FinishedDeleted,
            Err(source) => CreateOutcome::Failed(Error::Job {
                action: "delete",
                job: format!("{namespace}/{name}"),
                source,
            }),
        },
        None => CreateOutcome::FinishedDeleted,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};

    use super::*;

    fn job_with(conditions: &[(&str, &str)]) -> Job {
        Job {
            status: Some(JobStatus {
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(t, s)| JobCondition {
                            type_: (*t).into(),
                            status: (*s).into(),
                            ..JobCondition::default()
                        })
                        .collect(),
                ),
                ..JobStatus::default()
            }),
            ..Job::default()
        }
    }

    #[test]
    fn outcomes_from_conditions() {
        assert_eq!(job_outcome(&Job::default()), None);
        assert_eq!(job_outcome(&job_with(&[("Complete", "True")])), Some(true));
        assert_eq!(
            job_outcome(&job_with(&[
                ("SuccessCriteriaMet", "True"),
                ("Complete", "True")
            ])),
            Some(true)
        );
        assert_eq!(job_outcome(&job_with(&[("Failed", "True")])), Some(false));
        // FailureTarget alone: pods are still being terminated, not finished yet.
        assert_eq!(job_outcome(&job_with(&[("FailureTarget", "True")])), None);
        assert_eq!(job_outcome(&job_with(&[("Complete", "False")])), None);
    }

    #[test]
    fn tracker_finds_vanished_and_overdue_jobs() {
        let t0 = Instant::now();
        let mut t = JobTracker::default();
        let rec = |uid: Option<&str>| JobRecord {
            targets: vec![],
            attempt: 0,
            created: t0,
            uid: uid.map(str::to_string),
        };
        t.insert("a".into(), rec(Some("ua")));
        t.insert("b".into(), rec(None));
        t.insert("c".into(), rec(Some("uc")));
        let seen = std::collections::HashSet::from(["c".to_string()]);
        let later = t0 + Duration::from_secs(30);
        assert_eq!(t.vanished(&seen, later), vec!["a".to_string()]);
        assert!(t.vanished(&seen, t0).is_empty());
        assert_eq!(
            t.overdue(later, Duration::from_secs(60)),
            Vec::<String>::new()
        );
        assert_eq!(t.overdue(later, Duration::from_secs(10)).len(), 3);
        t.confirm("b", "ub");
        assert_eq!(t.get("b").and_then(|r| r.uid.as_deref()), Some("ub"));
        assert!(t.remove("b").is_some());
        assert_eq!(t.len(), 2);
    }
}
