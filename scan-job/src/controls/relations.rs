//! Controls that relate a workload to other objects: Services, Ingresses, NetworkPolicies, ServiceAccounts, bindings, volumes' sources.

use crate::engine::Control;

/// The controls of this group.
pub fn controls() -> Vec<&'static dyn Control> {
    vec![]
}
