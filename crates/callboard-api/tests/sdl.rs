//! The SDL in `schema/graphql/schema.graphql` is the schema the code serves: clients generate
//! types from it and reviewers read API changes in it. This test fails when it is stale;
//! `CALLBOARD_UPDATE_SCHEMA=1 cargo test -p callboard-api --test sdl` rewrites it.

use std::path::PathBuf;

#[test]
fn exported_sdl_is_current() {
    // The package folder as `cargo test` reports it when running, not as compiled in: clones share
    // a build folder, so this binary may have been built in another clone.
    let path = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"))
        .join("../../schema/graphql/schema.graphql");
    let current = format!(
        "# The Callboard GraphQL schema, exported from the code (crates/callboard-api).\n\
         # Do not edit: CALLBOARD_UPDATE_SCHEMA=1 cargo test -p callboard-api --test sdl\n\n{}",
        callboard_api::sdl()
    );
    if std::env::var_os("CALLBOARD_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &current).expect("write the SDL");
        return;
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        stored == current,
        "schema/graphql/schema.graphql is stale: run CALLBOARD_UPDATE_SCHEMA=1 cargo test -p callboard-api --test sdl"
    );
}
