//! The SDL in `schema/graphql/schema.graphql` is the schema the code serves: clients generate
//! types from it and reviewers read API changes in it. This test fails when it is stale;
//! `CALLBOARD_UPDATE_SCHEMA=1 cargo test -p callboard-api --test sdl` rewrites it.

#[test]
fn exported_sdl_is_current() {
    let path = callboard_testkit::workspace_root().join("schema/graphql/schema.graphql");
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
