//! The control engine: objects, the inventory with its related-object index and RBAC triplets,
//! the `Control` trait, configuration inputs, exceptions, and the evaluator. It names no control;
//! the catalog is passed in.

pub mod control;
pub mod evaluate;
pub mod exceptions;
pub mod inputs;
pub mod inventory;
pub mod memo;
pub mod object;
pub mod pod_view;
pub mod selectors;
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
