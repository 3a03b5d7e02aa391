//! Single-object workload configuration: images and registries, credentials in env, labels, namespaces, deprecated or mismatched fields, known vulnerable images.

use crate::engine::Control;

/// The controls of this group.
pub fn controls() -> Vec<&'static dyn Control> {
    vec![]
}
