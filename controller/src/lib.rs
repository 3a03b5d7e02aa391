//! The kubevigil controller: watches workloads, RBAC objects and ServiceAccounts and turns each
//! relevant change into a short-lived scan Job.
//!
//! Pure cores: [`events`] (the event table), [`queue`] (debounce, coalescing, in-flight,
//! backoff) and [`jobs`] (Job specs). Edges do the I/O around them.

pub mod cli;
pub mod config;
pub mod events;
pub mod jobs;
pub mod queue;
