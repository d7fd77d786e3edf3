//! Given a state (built by applying earlier decisions), when a batch arrives, then these events.

use super::*;
use callboard_events::types::LocationRecord;
use callboard_model::validate;
use serde_json::json;

const ORIGIN: &str = "file:/cat/catalog-info.yaml";

fn component(name: &str, owner: &str) -> Box<Entity> {
    Box::new(
        validate(json!({
            "apiVersion": "backstage.io/v1alpha1", "kind": "Component",
            "metadata": {"name": name},
            "spec": {"type": "service", "lifecycle": "production", "owner": owner},
        }))
        .unwrap(),
    )
}

fn accepted(name: &str, owner: &str, file: &str) -> Scanned {
    Scanned::Accepted {
        entity: component(name, owner),
        location: format!("file:/cat/{file}"),
        index: Some(0),
        hash: None,
    }
}

#[test]
fn pending_upserts_serialise_as_the_events_they_become() {
    let mut session = SyncSession::new("file:/cat/a.yaml", "provider:test");
    let mut decided = session.feed(&State::default(), vec![accepted("a", "team-a", "a.yaml")]);
    assert_eq!(decided.len(), 1);
    let mut upsert = decided.remove(0);
    assert!(matches!(upsert, Outgoing::Upsert(_)));
    upsert.caused_by("command-1");
    let bytes = upsert.clone().into_bytes();
    let event = upsert.into_event();
    assert_eq!(bytes, event.to_bytes());
    assert_eq!(event.causationid.as_deref(), Some("command-1"));
    assert_eq!(event.data["relations"][0]["type"], "ownedBy");
    assert_eq!(event.data["locationKey"], "file:/cat/a.yaml");
}

fn rejected(entity_ref: Option<&str>, file: &str, index: u32, rule: &str) -> Scanned {
    Scanned::Rejected {
        entity_ref: entity_ref.map(str::to_owned),
        location: format!("file:/cat/{file}"),
        index: Some(index),
        problems: vec![ProblemRecord {
            rule: rule.into(),
            field: "spec".into(),
            message: "bad".into(),
            hint: None,
            line: Some(1),
            column: Some(1),
        }],
    }
}

fn batch(documents: Vec<Scanned>) -> SyncBatch {
    SyncBatch {
        origin: ORIGIN.into(),
        actor: "provider:test".into(),
        documents,
        protected: FastSet::default(),
        complete: true,
    }
}

/// Decides and applies, like the writer does after a successful append.
fn step(state: &mut State, batch: &SyncBatch) -> Vec<(String, String, u64)> {
    let decision = decide_sync(state, batch);
    let mut out = Vec::new();
    for event in &decision.entity_events {
        state.apply_entity_event(&event.to_bytes());
        out.push((
            event.event_type.trim_start_matches("dev.callboard.").to_owned(),
            event.subject.clone(),
            event.sequence,
        ));
    }
    out
}

fn kinds(events: &[(String, String, u64)]) -> Vec<&str> {
    events.iter().map(|e| e.0.as_str()).collect()
}

#[test]
fn full_sync_emits_only_differences() {
    let mut state = State::default();
    let first = step(
        &mut state,
        &batch(vec![
            accepted("a", "team-a", "a.yaml"),
            accepted("b", "team-a", "b.yaml"),
        ]),
    );
    assert_eq!(kinds(&first), ["entity.upserted.v1", "entity.upserted.v1"]);
    assert!(first.iter().all(|e| e.2 == 1));

    let again = step(
        &mut state,
        &batch(vec![
            accepted("a", "team-a", "a.yaml"),
            accepted("b", "team-a", "b.yaml"),
        ]),
    );
    assert!(again.is_empty(), "an unchanged re-scan emits nothing: {again:?}");

    let changed = step(
        &mut state,
        &batch(vec![
            accepted("a", "team-b", "a.yaml"),
            accepted("b", "team-a", "b.yaml"),
        ]),
    );
    assert_eq!(
        changed,
        [("entity.upserted.v1".into(), "component:default/a".into(), 2)]
    );

    let removed = step(&mut state, &batch(vec![accepted("a", "team-b", "a.yaml")]));
    assert_eq!(removed, [("entity.deleted.v1".into(), "component:default/b".into(), 2)]);
    assert!(state.subjects["component:default/b"].live.is_none());
}

#[test]
fn uid_is_stable_while_the_entity_lives() {
    let mut state = State::default();
    step(&mut state, &batch(vec![accepted("a", "team-a", "a.yaml")]));
    let uid = state.subjects["component:default/a"].live.clone().unwrap().uid;
    step(&mut state, &batch(vec![accepted("a", "team-b", "a.yaml")]));
    assert_eq!(state.subjects["component:default/a"].live.clone().unwrap().uid, uid);
    step(&mut state, &batch(vec![]));
    step(&mut state, &batch(vec![accepted("a", "team-b", "a.yaml")]));
    assert_ne!(
        state.subjects["component:default/a"].live.clone().unwrap().uid,
        uid,
        "re-created entities get a new uid"
    );
}

#[test]
fn first_claim_wins_and_the_second_is_rejected_naming_both() {
    let mut state = State::default();
    let events = step(
        &mut state,
        &batch(vec![
            accepted("a", "team-a", "one.yaml"),
            accepted("a", "team-b", "two.yaml"),
        ]),
    );
    assert_eq!(kinds(&events), ["entity.upserted.v1", "entity.rejected.v1"]);
    let decision = decide_sync(
        &State::default(),
        &batch(vec![
            accepted("a", "team-a", "one.yaml"),
            accepted("a", "team-b", "two.yaml"),
        ]),
    );
    let rejection: EntityRejected = serde_json::from_value(decision.entity_events[1].data.clone()).unwrap();
    assert_eq!(rejection.conflicts_with.as_deref(), Some("file:/cat/one.yaml"));
    assert!(
        rejection.problems[0].message.contains("file:/cat/one.yaml")
            && rejection.problems[0].message.contains("file:/cat/two.yaml")
    );
    // Another source cannot take it over either.
    let other = SyncBatch {
        origin: "file:/other.yaml".into(),
        ..batch(vec![accepted("a", "team-c", "x.yaml")])
    };
    assert_eq!(kinds(&step(&mut state, &other)), ["entity.rejected.v1"]);
    assert_eq!(
        &*state.subjects["component:default/a"].live.clone().unwrap().location_key,
        "file:/cat/one.yaml"
    );
}

#[test]
fn a_definition_moved_within_the_source_moves_with_it() {
    let mut state = State::default();
    step(
        &mut state,
        &batch(vec![
            accepted("a", "team-a", "old.yaml"),
            accepted("z", "team-a", "old.yaml"),
        ]),
    );
    let events = step(
        &mut state,
        &batch(vec![
            accepted("z", "team-a", "old.yaml"),
            accepted("a", "team-a", "new.yaml"),
        ]),
    );
    assert_eq!(events, [("entity.upserted.v1".into(), "component:default/a".into(), 2)]);
    assert_eq!(
        &*state.subjects["component:default/a"].live.clone().unwrap().location_key,
        "file:/cat/new.yaml"
    );
}

#[test]
fn a_definition_moved_to_a_file_read_earlier_moves_too() {
    let mut state = State::default();
    step(&mut state, &batch(vec![accepted("a", "team-a", "z-old.yaml")]));
    // The new file is read before the old one, which no longer defines `a`.
    let events = step(
        &mut state,
        &batch(vec![
            accepted("a", "team-a", "a-new.yaml"),
            accepted("b", "team-a", "z-old.yaml"),
        ]),
    );
    assert_eq!(kinds(&events), ["entity.upserted.v1", "entity.upserted.v1"]);
    assert_eq!(
        &*state.subjects["component:default/a"].live.clone().unwrap().location_key,
        "file:/cat/a-new.yaml"
    );
}

#[test]
fn conflicts_are_stable_whatever_the_reading_order() {
    for order in [["one.yaml", "two.yaml"], ["two.yaml", "one.yaml"]] {
        let mut state = State::default();
        step(&mut state, &batch(vec![accepted("a", "team-a", "one.yaml")]));
        let docs = || {
            order
                .iter()
                .map(|f| accepted("a", if *f == "one.yaml" { "team-a" } else { "team-b" }, f))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            kinds(&step(&mut state, &batch(docs()))),
            ["entity.rejected.v1"],
            "{order:?}"
        );
        assert!(
            step(&mut state, &batch(docs())).is_empty(),
            "{order:?}: an unchanged conflict is not repeated"
        );
        assert_eq!(
            &*state.subjects["component:default/a"].live.clone().unwrap().location_key,
            "file:/cat/one.yaml"
        );
        // The duplicate goes away: the rejection is cleared.
        let cleared = step(&mut state, &batch(vec![accepted("a", "team-a", "one.yaml")]));
        assert_eq!(
            kinds(&cleared),
            ["entity.upserted.v1"],
            "{order:?}: accepted again, ending the rejection"
        );
    }
}

#[test]
fn a_broken_document_keeps_the_last_good_version() {
    let mut state = State::default();
    step(
        &mut state,
        &batch(vec![
            accepted("a", "team-a", "a.yaml"),
            accepted("b", "team-a", "b.yaml"),
        ]),
    );
    // `a` is still named but invalid; `b.yaml` does not even parse.
    let events = step(
        &mut state,
        &batch(vec![
            rejected(Some("component:default/a"), "a.yaml", 0, "schema.required"),
            rejected(None, "b.yaml", 0, "yaml.syntax"),
        ]),
    );
    assert_eq!(kinds(&events), ["entity.rejected.v1", "entity.rejected.v1"]);
    assert!(state.subjects["component:default/a"].live.is_some());
    assert!(
        state.subjects["component:default/b"].live.is_some(),
        "a file that does not parse keeps its entities"
    );

    // The same problems again: nothing new.
    let again = step(
        &mut state,
        &batch(vec![
            rejected(Some("component:default/a"), "a.yaml", 0, "schema.required"),
            rejected(None, "b.yaml", 0, "yaml.syntax"),
        ]),
    );
    assert!(again.is_empty(), "{again:?}");

    // Fixed: `a` is accepted again with unchanged content (an upsert ends its rejection), the
    // document-level rejection of b.yaml is cleared.
    let fixed = step(
        &mut state,
        &batch(vec![
            accepted("a", "team-a", "a.yaml"),
            accepted("b", "team-a", "b.yaml"),
        ]),
    );
    assert_eq!(
        fixed,
        [
            ("entity.upserted.v1".into(), "component:default/a".into(), 3),
            ("entity.rejection-cleared.v1".into(), "file:/cat/b.yaml#0".into(), 2),
        ]
    );
    assert!(
        step(
            &mut state,
            &batch(vec![
                accepted("a", "team-a", "a.yaml"),
                accepted("b", "team-a", "b.yaml")
            ])
        )
        .is_empty()
    );
}

#[test]
fn an_incomplete_scan_deletes_nothing() {
    let mut state = State::default();
    step(&mut state, &batch(vec![accepted("a", "team-a", "a.yaml")]));
    let incomplete = SyncBatch {
        complete: false,
        ..batch(vec![])
    };
    assert!(step(&mut state, &incomplete).is_empty());
    assert!(state.subjects["component:default/a"].live.is_some());
}

#[test]
fn unregistering_deletes_what_came_through_the_location() {
    let mut state = State::default();
    let location = LocationRecord {
        location_type: "file".into(),
        target: "/cat/catalog-info.yaml".into(),
    };
    for event in decide_register(&state, &location, "user:default/x").location_events {
        state.apply_location_event(&event.to_bytes());
    }
    assert!(
        decide_register(&state, &location, "user:default/x")
            .location_events
            .is_empty(),
        "registering twice is a no-op"
    );
    step(
        &mut state,
        &batch(vec![
            accepted("a", "team-a", "a.yaml"),
            rejected(None, "b.yaml", 0, "yaml.syntax"),
        ]),
    );
    let decision = decide_unregister(&state, &location, "user:default/x");
    assert_eq!(decision.location_events.len(), 1);
    let types: Vec<&str> = decision.entity_events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "dev.callboard.entity.deleted.v1",
            "dev.callboard.entity.rejection-cleared.v1"
        ]
    );
}

#[test]
fn pushed_entities_cannot_take_over_located_ones() {
    let mut state = State::default();
    step(&mut state, &batch(vec![accepted("a", "team-a", "a.yaml")]));
    assert!(matches!(
        decide_push_apply(&state, &component("a", "x"), "user:default/u", "callboard:api"),
        Err(PushRefusal::ManagedElsewhere(_))
    ));
    let created = decide_push_apply(&state, &component("p", "x"), "user:default/u", "callboard:api").unwrap();
    assert_eq!(created.entity_events.len(), 1);
    assert_eq!(created.entity_events[0].actor, "user:default/u");
    state.apply_entity_event(&created.entity_events[0].to_bytes());
    assert!(
        decide_push_apply(&state, &component("p", "x"), "user:default/u", "callboard:api")
            .unwrap()
            .entity_events
            .is_empty()
    );
    let deleted = decide_push_delete(&state, "component:default/p", "user:default/u", "callboard:api").unwrap();
    assert_eq!(deleted.entity_events.len(), 1);
    assert!(decide_push_delete(&state, "component:default/a", "user:default/u", "callboard:api").is_err());
}
