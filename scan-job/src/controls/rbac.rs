//! RBAC controls on (subject, role, binding) triplets and on bindings and ServiceAccounts themselves.

use crate::engine::Control;

/// The controls of this group.
pub fn controls() -> Vec<&'static dyn Control> {
    vec![]
}
