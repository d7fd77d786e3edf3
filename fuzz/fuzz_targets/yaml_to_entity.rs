//! Arbitrary bytes through the whole descriptor path: YAML stream → documents → placeholders →
//! validation → relations. Nothing may panic, hang or overflow the stack.
#![no_main]

use callboard_descriptor::{Limits, LocationRef, Outcome, ReadError, Source, process_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let source = Source::new(LocationRef::parse("url:https://github.com/o/r/blob/main/catalog-info.yaml").unwrap());
    // Placeholder reads answer with the input itself, so placeholders exercise the parsers too.
    let reports = process_bytes(data, &source, &Limits::default(), |_| {
        if data.len() % 2 == 0 { Ok(data.to_vec()) } else { Err(ReadError::failed("no")) }
    });
    for report in reports {
        if let Outcome::Accepted(entity) = report.outcome {
            // Invariants of accepted entities.
            assert!(!entity.metadata().name.is_empty());
            let reparsed: callboard_model::EntityRef = entity.entity_ref().to_string().parse().unwrap();
            assert_eq!(&reparsed, entity.entity_ref());
            for relation in entity.relations() {
                assert!(relation.source == *entity.entity_ref() || relation.target == *entity.entity_ref());
            }
        }
    }
});
