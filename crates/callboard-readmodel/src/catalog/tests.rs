//! The catalog's fold, event by event.

use callboard_events::types::EventType;
use callboard_events::{CloudEvent, EventView};
use callboard_projection::StoredEvent;
use serde_json::{Value, json};

use super::*;
use crate::filter::Filter;
use crate::rows::FacetDelta;
use crate::search;

/// The changes of a batch.
fn project(batch: &[StoredEvent], loaded: Loaded) -> Changes {
    fold(batch, loaded).changes
}

/// An event about `component:default/<name>` at `time`, stored at offset `sequence`.
fn event(event_type: EventType, name: &str, sequence: u64, time: &str, data: Value) -> StoredEvent {
    let subject = format!("component:default/{name}");
    let mut event = CloudEvent::new(event_type, subject, sequence, "file:/c.yaml", "provider:test", data);
    event.time = time.into();
    stored(event, sequence as i64)
}

fn stored(event: CloudEvent, offset: i64) -> StoredEvent {
    StoredEvent {
        topic: "t".into(),
        partition: 0,
        offset,
        event: Some(EventView::from_bytes(&event.to_bytes()).expect("a CloudEvent")),
    }
}

fn upsert(name: &str, sequence: u64, owner: &str, time: &str) -> StoredEvent {
    let entity_ref = format!("component:default/{name}");
    let data = json!({
        "entityRef": entity_ref, "uid": format!("uid-{name}"), "contentHash": format!("h{sequence}"),
        "locationKey": "file:/c.yaml", "originLocation": "file:/c.yaml",
        "entity": {"apiVersion": "backstage.io/v1alpha1", "kind": "Component",
                   "metadata": {"name": name, "namespace": "default", "tags": ["java"]},
                   "spec": {"type": "service", "lifecycle": "production", "owner": owner}},
        "relations": [
            {"type": "ownedBy", "sourceRef": entity_ref, "targetRef": format!("group:default/{owner}")},
            {"type": "ownerOf", "sourceRef": format!("group:default/{owner}"), "targetRef": entity_ref},
        ],
    });
    event(EventType::EntityUpserted, name, sequence, time, data)
}

fn delete(name: &str, sequence: u64, time: &str) -> StoredEvent {
    let data = json!({"entityRef": format!("component:default/{name}"), "reason": "removed"});
    event(EventType::EntityDeleted, name, sequence, time, data)
}

/// What the store would load after `changes` for `name`.
fn loaded_after(changes: &Changes, name: &str) -> Loaded {
    let subject = format!("component:default/{name}");
    let mut loaded = Loaded::default();
    let last = changes.history.iter().rfind(|h| h.subject == subject).expect("history");
    loaded.applied.insert(subject.clone(), last.sequence);
    if let Some(row) = changes.entity_upserts.iter().find(|e| e.entity_ref == subject) {
        loaded.entities.insert(
            subject,
            Current {
                uid: row.uid.clone(),
                document: last.entity.clone().expect("document"),
                created_at: row.created_at.clone(),
                relations: row.relations.clone(),
            },
        );
    }
    loaded
}

#[test]
fn an_upsert_makes_rows_and_a_second_one_a_diff() {
    let changes = project(
        &[
            upsert("a", 1, "team-a", "2026-01-01T00:00:00Z"),
            upsert("a", 2, "team-b", "2026-02-01T00:00:00Z"),
        ],
        Loaded::default(),
    );
    assert_eq!(changes.entity_upserts.len(), 1);
    let row = &changes.entity_upserts[0];
    assert_eq!((row.sequence, row.owner.as_deref()), (2, Some("group:default/team-b")));
    assert_eq!(
        row.created_at, "2026-01-01T00:00:00.000Z",
        "times are stored in one fixed format"
    );
    assert_eq!(row.relations, r#"[["ownedBy","group:default/team-b"]]"#);
    assert!(
        row.keys.contains(&search::key_hash("metadata.uid=uid-a")),
        "the uid is a filter key"
    );
    assert!(
        row.keys
            .contains(&search::key_hash(&search::endpoint_key("group:default/team-b")))
    );
    assert!(
        !row.keys
            .contains(&search::key_hash(&search::endpoint_key("group:default/team-a")))
    );
    assert_eq!(changes.history.len(), 2);
    let first = &changes.history[0];
    assert_eq!(first.uid.as_deref(), Some("uid-a"));
    let document: Value = serde_json::from_str(first.entity.as_deref().expect("document")).expect("JSON");
    assert_eq!(document["metadata"]["name"], "a");
    assert!(
        document["metadata"].get("uid").is_none(),
        "stored as the event carries it"
    );
    assert_eq!(
        first.relations.as_deref(),
        Some(r#"[["ownedBy","group:default/team-a"]]"#)
    );
    assert_eq!(
        changes.history[1].diff.as_deref(),
        Some(r#"[{"op":"replace","path":"/spec/owner","value":"team-b"}]"#)
    );
    assert!(changes.relations_changed);
    // Facet counts: +1 for the final values only.
    assert!(changes.facet_deltas.contains(&FacetDelta {
        key: "spec.owner".into(),
        value: "team-b".into(),
        delta: 1
    }));
    assert!(!changes.facet_deltas.iter().any(|d| d.value == "team-a"));
    // The same within the kind.
    assert!(changes.facet_deltas.contains(&FacetDelta {
        key: "component|spec.owner".into(),
        value: "team-b".into(),
        delta: 1
    }));
}

#[test]
fn facets_kept_per_kind_answer_kind_filters() {
    let kind = |k: &str| Filter::eq("kind", k);
    assert_eq!(counted_facet_key("spec.type", None).as_deref(), Some("spec.type"));
    assert_eq!(
        counted_facet_key("spec.type", Some(&kind("Component"))).as_deref(),
        Some("component|spec.type")
    );
    assert_eq!(counted_facet_key("metadata.name", None), None);
    assert_eq!(counted_facet_key("kind", Some(&kind("api"))), None);
    let two = Filter::All(vec![kind("component"), Filter::eq("spec.type", "service")]);
    assert_eq!(counted_facet_key("spec.lifecycle", Some(&two)), None);
}

#[test]
fn events_already_applied_are_skipped() {
    let mut loaded = Loaded::default();
    loaded.applied.insert("component:default/a".into(), 1);
    let folded = fold(&[upsert("a", 1, "team-a", "t1")], loaded);
    assert_eq!((folded.applied, folded.skipped), (0, 1));
    assert!(folded.changes.history.is_empty() && folded.changes.entity_upserts.is_empty());
}

#[test]
fn a_stored_version_is_diffed_and_uncounted() {
    let first = project(&[upsert("a", 1, "team-a", "t1")], Loaded::default());
    let second = project(&[upsert("a", 2, "team-b", "t2")], loaded_after(&first, "a"));
    assert!(second.relations_changed);
    assert_eq!(second.entity_upserts[0].created_at, first.entity_upserts[0].created_at);
    assert!(second.facet_deltas.contains(&FacetDelta {
        key: "spec.owner".into(),
        value: "team-a".into(),
        delta: -1
    }));
    assert!(second.history[0].diff.as_deref().is_some_and(|d| d.contains("team-b")));
    // The same relations again: the graph stays as it is.
    let third = project(&[upsert("a", 3, "team-b", "t3")], loaded_after(&second, "a"));
    assert!(!third.relations_changed);
}

#[test]
fn deletions_remove_stored_rows_and_recreations_start_a_new_life() {
    let first = project(&[upsert("a", 1, "team-a", "t1")], Loaded::default());
    let deleted = project(&[delete("a", 2, "t2")], loaded_after(&first, "a"));
    assert_eq!(deleted.entity_deletes, ["component:default/a"]);
    assert!(deleted.entity_upserts.is_empty() && deleted.relations_changed);
    assert_eq!(
        deleted.history[0].diff.as_deref(),
        Some(r#"[{"op":"replace","path":"","value":null}]"#)
    );
    // Deleted and created again in one batch: one new row, a new life.
    let again = project(
        &[delete("a", 2, "t2"), upsert("a", 3, "team-c", "t3")],
        loaded_after(&first, "a"),
    );
    assert!(again.entity_deletes.is_empty());
    assert_eq!(again.entity_upserts[0].created_at, "t3");
    // Never stored: nothing to delete.
    let fleeting = project(
        &[upsert("b", 1, "team-a", "t1"), delete("b", 2, "t2")],
        Loaded::default(),
    );
    assert!(fleeting.entity_deletes.is_empty() && fleeting.entity_upserts.is_empty());
    assert_eq!(fleeting.history.len(), 2);
}

#[test]
fn messages_that_are_not_cloud_events_are_skipped() {
    assert!(EventView::from_bytes(b"{\"id\": 1}").is_err());
    let mut event = serde_json::to_value(CloudEvent::new(
        EventType::EntityDeleted,
        "component:default/a",
        1,
        "s",
        "a",
        json!({}),
    ))
    .expect("JSON");
    event.as_object_mut().expect("object").remove("dataschema");
    assert!(
        EventView::from_bytes(event.to_string().as_bytes()).is_err(),
        "the envelope is required"
    );
}
