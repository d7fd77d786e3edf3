//! Entity reference parsing: never panics, and whatever parses prints back to itself.
#![no_main]

use callboard_model::{EntityRef, RefContext};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| {
    let context = RefContext { default_kind: Some("Component"), default_namespace: "default" };
    if let Ok(r) = EntityRef::parse(data, context) {
        let again: EntityRef = r.to_string().parse().unwrap();
        assert_eq!(again, r);
    }
});
