//! The kubevigil control engine: the Kubescape workload and RBAC controls, natively in Rust,
//! with everything that runs them and nothing that talks to a cluster. Used by the `scan-job`
//! binary (which reads objects and writes results) and by the controller (which checks the
//! settings and knows the controls hash results must carry).
//!
//! - The engine proper names no control: objects ([`object`]), where workloads keep their pod
//!   specs ([`workload`]), label selectors ([`selectors`]), the [`inventory`] with its
//!   related-object index and RBAC triplets, the [`Control`] trait ([`control`]), per-object
//!   views and memo ([`pod_view`], [`memo`]), control inputs ([`inputs`]), posture
//!   [`exceptions`] and the evaluator ([`evaluate`]).
//! - [`related`]: the one table of the related kinds a scan reads, how controls relate them to
//!   workloads, and the hash of a workload's related inputs.
//! - [`controls`]: one unit per control, grouped by what it inspects; controls use the engine,
//!   never each other.
//! - [`catalog`]: the only place that lists every control.
//! - [`report`]: engine results mapped to the result custom resources; [`openreports`]: a
//!   result mapped to an OpenReports `Report` or `ClusterReport`.
//! - [`settings`]: `controlsConfig` and `exceptions` of the configuration file, and the
//!   controls hash.

pub mod catalog;
pub mod control;
pub mod controls;
pub mod evaluate;
pub mod exceptions;
pub mod inputs;
pub mod inventory;
pub mod memo;
pub mod object;
pub mod openreports;
pub mod pod_view;
pub mod related;
pub mod report;
pub mod selectors;
pub mod settings;
pub mod workload;

pub use control::{
    Applies, Context, Control, ControlMeta, Finding, FindingPath, Needs, Outcome, PathKind,
    Resource,
};
pub use evaluate::{ControlResult, Evaluator, ResourceResult, RuleResult};
pub use exceptions::Exceptions;
pub use inputs::ControlInputs;
pub use inventory::{BINDING_PATH, Inventory, ROLE_PATH, Triplet};
pub use memo::Memo;
pub use object::K8sObject;
pub use settings::{Settings, controls_hash};
