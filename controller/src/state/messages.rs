//! What the main loop receives ([`Msg`]: watch events and the outcomes of API tasks) and what
//! it asks the runner to do ([`Effect`]: API calls). Outcomes carry the controller's [`Error`],
//! whose category decides what the state does next.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher;
use kubevigil_crds::target::{KindInfo, TargetKey};
use kubevigil_engine::related::{PodFacts, RelatedFacts, RelatedKind};

use super::resync::ResultsSnapshot;
use crate::discovery::{Failure, KindSpec};
use crate::dispatch::CreateOutcome;
use crate::error::Error;
use crate::exceptions::ExceptionEvent;
use crate::index::{BindingSpec, ResultRef};
use crate::jobs::JobView;

/// An add, modify or delete as a watch task reports it.
#[derive(Debug)]
pub enum WatchEvent {
    /// The watch (re)starts listing.
    Init,
    /// An object was listed, added or modified.
    Apply {
        /// The object.
        key: TargetKey,
        /// Its trimmed metadata.
        meta: Box<ObjectMeta>,
        /// A binding's role reference and subjects.
        binding: Option<BindingSpec>,
        /// A scalable kind's spec hash (`kubevigil_crds::identity::spec_hash`), which stands in
        /// for the generation in its fingerprint so that scaling is not a change.
        spec_hash: Option<String>,
        /// A workload's pod labels and mounted volume sources, for related-object rescans.
        pod: Option<PodFacts>,
        /// Part of a (re-)list.
        init: bool,
    },
    /// An object was deleted.
    Delete {
        /// The object.
        key: TargetKey,
        /// A binding's last role reference and subjects.
        binding: Option<BindingSpec>,
    },
    /// The list is complete.
    InitDone,
    /// The watch failed (it is retried with backoff).
    Error(watcher::Error),
}

/// What a related-object watch reports.
#[derive(Debug)]
pub enum RelatedEvent {
    /// The watch (re)starts listing.
    Init,
    /// An object was listed, added or modified.
    Apply(RelatedFacts),
    /// An object was deleted.
    Delete(RelatedFacts),
    /// The list is complete.
    InitDone,
    /// The kind is not installed (an optional CRD): the watch has ended.
    Missing,
}

/// What the Job watch reports.
#[derive(Debug)]
pub enum JobEvent {
    /// The watch (re)starts listing.
    Init,
    /// A Job was listed, added or modified.
    Apply(JobView),
    /// A Job was deleted.
    Delete(JobView),
    /// The list is complete.
    InitDone,
    /// The watch failed (it is retried with backoff).
    Error(watcher::Error),
}

/// Messages to the main loop.
#[derive(Debug)]
pub enum Msg {
    /// A kind was resolved by discovery (after startup).
    KindFound(KindSpec, KindInfo),
    /// A kind's discovery failed again.
    KindFailed(KindSpec, Failure),
    /// A related-object watch event.
    Related {
        /// The related kind.
        kind: &'static RelatedKind,
        /// The event.
        event: RelatedEvent,
    },
    /// A watch event of a kind.
    Watch {
        /// The kind.
        kind: Arc<KindInfo>,
        /// The event.
        event: WatchEvent,
    },
    /// A scan Job event.
    Jobs(JobEvent),
    /// A posture exception resource event.
    Exception(ExceptionEvent),
    /// A Job create finished.
    JobCreated {
        /// Name of the Job.
        name: String,
        /// What happened.
        outcome: CreateOutcome,
    },
    /// A results list finished.
    ResultsListed(Result<ResultsSnapshot, Error>),
    /// Results were deleted.
    ResultsDeleted {
        /// Objects deleted.
        deleted: u64,
        /// Namespaces whose results changed.
        namespaces: BTreeSet<String>,
    },
    /// A namespace summary was recomputed.
    Summarized {
        /// The namespace.
        namespace: String,
        /// Whether it was written (or deleted, when the namespace has no results left).
        outcome: Result<(), Error>,
    },
}

/// API work for the runner.
#[derive(Debug)]
pub enum Effect {
    /// Start watching a kind.
    StartWatch(Arc<KindInfo>),
    /// Retry the discovery of a kind in the background.
    RetryDiscovery(KindSpec),
    /// The role watches have listed everything: binding watches may start.
    RolesSynced,
    /// Create a scan Job (answer: [`Msg::JobCreated`]).
    CreateJob(Box<Job>),
    /// Delete these results (answer: [`Msg::ResultsDeleted`]).
    DeleteResults(Vec<ResultRef>),
    /// List every result (answer: [`Msg::ResultsListed`]).
    ListResults,
    /// Recompute a namespace's summary (answer: [`Msg::Summarized`]).
    Summarize(String),
    /// Report a target that was given up (Kubernetes Event): it failed every attempt, or its
    /// scan Job was refused for good.
    ReportFailure {
        /// The target.
        key: TargetKey,
        /// Attempts made.
        attempts: u32,
        /// The last Job that scanned it (or was to).
        job: String,
        /// Why it was given up.
        reason: GiveUpReason,
    },
}

/// Why a target's scan was given up: the Event's message says what to do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GiveUpReason {
    /// Every attempt failed (retried at the next resync).
    Attempts,
    /// The API server refused its scan Job for good (403, 422...).
    Refused,
    /// Its scan Job's container was OOMKilled: the batch needs more than the memory limit.
    OomKilled,
}
