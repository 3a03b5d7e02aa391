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
