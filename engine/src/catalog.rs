//! The catalog: the only place that lists every control.

use crate::Control;
use crate::controls;

/// Every implemented control, in ID order.
pub fn all() -> Vec<&'static dyn Control> {
    let mut all: Vec<&'static dyn Control> = Vec::new();
    all.extend(controls::pod_security::controls());
    all.extend(controls::workload_config::controls());
    all.extend(controls::relations::controls());
    all.extend(controls::rbac::controls());
    all.sort_by_key(|c| c.meta().id);
    all
}

/// Finds a control by ID (case-insensitive).
pub fn by_id(id: &str) -> Option<&'static dyn Control> {
    all()
        .into_iter()
        .find(|c| c.meta().id.eq_ignore_ascii_case(id))
}
