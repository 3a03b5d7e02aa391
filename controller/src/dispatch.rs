//! Creating a scan Job, with the collision rules of deterministic names.

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::{DeleteParams, PostParams};

use crate::error::{Error, is_conflict, is_not_found};
use crate::jobs::job_outcome;

/// Field manager of everything the controller writes.
pub const FIELD_MANAGER: &str = "kubevigil-controller";

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
