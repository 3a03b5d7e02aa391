//! The offline manifest parser on arbitrary text: YAML or JSON, several documents, `List`s,
//! shape checks. It may report errors; it must not panic, and every object it keeps has a kind
//! and a name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scan_job::manifests::{Loaded, load_str};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut loaded = Loaded::default();
    load_str("fuzz.yaml", text, &mut loaded);
    for obj in &loaded.objects {
        assert!(!obj.kind.is_empty() || obj.value.get("kind").is_some());
    }
    for e in &loaded.errors {
        assert_eq!(e.path, "fuzz.yaml");
    }
});
