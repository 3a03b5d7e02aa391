//! The engine's control fixtures (`engine/tests/fixtures/<control>/*.yaml`) are valid input for
//! the offline loader: the engine's fixture tests read them with a plain YAML parser, so the
//! loader's shape checks (types the API server would reject) and duplicate detection are applied
//! to them here.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

use rstest::rstest;
use scan_job::manifests;

#[rstest]
fn fixture_loads_cleanly(#[files("../engine/tests/fixtures/*/*.yaml")] path: PathBuf) {
    let loaded = manifests::load_paths(std::slice::from_ref(&path));
    assert!(loaded.errors.is_empty(), "{path:?}: {:?}", loaded.errors);
    assert!(
        loaded.warnings.is_empty(),
        "{path:?}: {:?}",
        loaded.warnings
    );
    assert!(!loaded.objects.is_empty(), "{path:?}: no object");
}
