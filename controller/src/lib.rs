//! The kubevigil controller: watches workloads, RBAC objects and ServiceAccounts and turns each
//! relevant change into a short-lived scan Job.
//!
//! Pure cores: [`index`] (the event table and what it knows of targets and results), [`queue`]
//! (debounce, coalescing, in-flight, backoff), [`related`] (which targets a related object's
//! change rescans, and the related-inputs hash), [`refresh`] (the `rescanAfter` sweep), [`jobs`]
//! (Job specs), [`scope`] (which namespaces and objects are scanned) and [`state`] (the main
//! loop's state machine: messages in, API effects out). Edges do the I/O around them:
//! [`watchers`], [`namespaces`], [`discovery`], [`dispatch`], [`cleanup`], [`resync`],
//! [`summaries`] (with the [`posture`] metrics they feed), [`lease`] and [`ops`]; [`run`] wires
//! them together.

pub mod cleanup;
pub mod cli;
pub mod config;
pub mod discovery;
pub mod dispatch;
pub mod error;
pub mod exception_watch;
pub mod exceptions;
pub mod index;
pub mod jobs;
pub mod lease;
pub mod namespaces;
pub mod ops;
pub mod posture;
pub mod queue;
pub mod ratelimit;
pub mod refresh;
pub mod related;
pub mod resync;
pub mod run;
pub mod scope;
pub mod slim;
pub mod state;
pub mod summaries;
pub mod watchers;
