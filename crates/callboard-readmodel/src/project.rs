//! The projection: events and the rows they touch become row changes.
//!
//! Determinism is the invariant everything rests on. A subject's rows (its entity row, the
//! relation rows its fields produce, its rejection, its history) change only through the
//! subject's own events, which sit in one partition in order; facet counts are sums. So the
//! final rows do not depend on how partitions interleave — one projector or several, live or
//! replayed — and times come from events, never from the clock.

use std::collections::{BTreeMap, HashMap, HashSet};

use callboard_events::CloudEvent;
use callboard_events::types::EventType;
use serde_json::{Value, json};

use crate::diff::diff;
use crate::filter::Filter;
use crate::rows::{
    EntityRow, FacetDelta, HistoryRow, LocationRow, PartitionOffset, RejectionRow, RelationKey, SpanRow,
};
use crate::search;

/// Keys whose value counts are kept up to date as entities change, so facets over them are
/// instant. Facets over other keys are counted when asked.
pub const COUNTED_FACETS: [&str; 8] = [
    "kind",
    "metadata.namespace",
    "metadata.tags",
    "spec.type",
    "spec.lifecycle",
    "spec.owner",
    "spec.system",
    "apiversion",
];

/// An event read from the log, with where it was.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// The event, or `None` when the message was not a CloudEvent (it is skipped).
    pub event: Option<CloudEvent>,
}

/// What the store knows now about the subjects of a batch.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// Highest history sequence per subject.
    pub applied: HashMap<String, i64>,
    /// Current entity rows.
    pub entities: HashMap<String, EntityRow>,
    /// Open relation rows per origin.
    pub open: HashMap<String, Vec<(RelationKey, i64)>>,
    /// Subjects with a rejection row.
    pub rejections: HashSet<String>,
}

/// The row changes of a batch, to be written in one transaction with the positions.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// New history rows.
    pub history: Vec<HistoryRow>,
    /// Entity rows to insert or replace.
    pub entity_upserts: Vec<EntityRow>,
    /// Entity rows to delete.
    pub entity_deletes: Vec<String>,
    /// Open relation rows (stored before the batch) to close at a time.
    pub span_closes: Vec<(RelationKey, i64, String)>,
    /// New relation rows (open, or opened and closed within the batch).
    pub span_opens: Vec<SpanRow>,
    /// Rejection rows to insert or replace.
    pub rejection_upserts: Vec<RejectionRow>,
    /// Rejection rows to delete.
    pub rejection_deletes: Vec<String>,
    /// Changes to counted facets.
    pub facet_deltas: Vec<FacetDelta>,
    /// Locations registered.
    pub location_upserts: Vec<LocationRow>,
    /// Locations unregistered.
    pub location_deletes: Vec<String>,
    /// Last offset per (topic, partition) of the batch.
    pub positions: Vec<(String, PartitionOffset)>,
    /// Event time of the last event per (topic, partition), for lag.
    pub last_times: Vec<(String, i32, String)>,
    /// True when relation rows changed (the graph must be recomputed).
    pub relations_changed: bool,
    /// Events applied, and skipped (already applied, or not CloudEvents).
    pub applied: usize,
    /// Events skipped.
    pub skipped: usize,
}

/// The subjects whose rows a batch needs loaded.
pub fn subjects(batch: &[StoredEvent]) -> Vec<String> {
    let mut out: Vec<String> = batch
        .iter()
        .filter_map(|e| e.event.as_ref().map(|e| e.subject.clone()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Canonical kind, namespace and name of a ref.
fn ref_parts(entity_ref: &str) -> (String, String, String) {
    let (kind, rest) = entity_ref.split_once(':').unwrap_or(("", entity_ref));
    let (namespace, name) = rest.split_once('/').unwrap_or(("default", rest));
    (kind.to_owned(), namespace.to_owned(), name.to_owned())
}

fn lower_string(document: &Value, pointer: &str) -> Option<String> {
    document.pointer(pointer).and_then(Value::as_str).map(str::to_lowercase)
}

/// The entity row an upsert event makes, and its counted-facet pairs (both from one flattening
/// of the document).
fn entity_row(
    event: &CloudEvent,
    time: &str,
    previous: Option<&EntityRow>,
) -> Option<(EntityRow, Vec<(String, String)>)> {
    let data = &event.data;
    let entity_ref = data.get("entityRef")?.as_str()?.to_owned();
    let uid = data.get("uid")?.as_str()?.to_owned();
    let mut document = data.get("entity")?.clone();
    if let Some(Value::Object(metadata)) = document.get_mut("metadata") {
        metadata.insert("uid".into(), Value::String(uid.clone()));
    }
    let (kind, namespace, name) = ref_parts(&entity_ref);
    let owner = data.get("relations").and_then(Value::as_array).and_then(|relations| {
        relations
            .iter()
            .find(|r| r["type"] == "ownedBy" && r["sourceRef"] == entity_ref.as_str())
            .and_then(|r| r["targetRef"].as_str().map(str::to_owned))
    });
    let pairs = search::pairs(&document);
    let facets = facet_pairs_of(&document, &pairs);
    let row = EntityRow {
        uid,
        kind,
        namespace,
        name,
        sequence: event.sequence as i64,
        content_hash: text(data, "contentHash"),
        location_key: text(data, "locationKey"),
        origin: text(data, "originLocation"),
        created_at: previous.map_or_else(|| time.to_owned(), |p| p.created_at.clone()),
        updated_at: time.to_owned(),
        owner,
        title: document
            .pointer("/metadata/title")
            .and_then(Value::as_str)
            .map(str::to_owned),
        spec_type: lower_string(&document, "/spec/type"),
        lifecycle: lower_string(&document, "/spec/lifecycle"),
        search_keys: search::keys(&pairs),
        search_text: search::text(&document),
        document,
        entity_ref,
    };
    Some((row, facets))
}

/// The counted-facet pairs of a document, `(key, original value)`: each counted key over the
/// whole catalog, and again within the document's kind (see [`counted_facet_key`]).
fn facet_pairs(document: &Value) -> Vec<(String, String)> {
    facet_pairs_of(document, &search::pairs(document))
}

/// [`facet_pairs`] from the document's flattened pairs.
fn facet_pairs_of(document: &Value, pairs: &[search::Pair]) -> Vec<(String, String)> {
    let kind = document.get("kind").and_then(Value::as_str).map(str::to_lowercase);
    let mut out = Vec::new();
    for pair in pairs {
        if !COUNTED_FACETS.contains(&pair.key.as_str()) {
            continue;
        }
        let Some((_, original)) = &pair.value else { continue };
        if let Some(kind) = &kind
            && pair.key != "kind"
        {
            out.push((kind_facet_key(kind, &pair.key), original.clone()));
        }
        out.push((pair.key.clone(), original.clone()));
    }
    out
}

/// The stored key of a counted facet within one kind (`component|spec.type`). Counted keys are a
/// fixed list of dotted paths, so the separator never collides with one.
fn kind_facet_key(kind: &str, key: &str) -> String {
    format!("{kind}|{key}")
}

/// The stored key whose maintained counts answer facets of `key` (lowercased) over `filter`:
/// a counted key over everything, or over one kind (`kind=component`, what catalog pages ask
/// for). `None`: count from the documents.
pub fn counted_facet_key(key: &str, filter: Option<&Filter>) -> Option<String> {
    if !COUNTED_FACETS.contains(&key) {
        return None;
    }
    match filter {
        None => Some(key.to_owned()),
        Some(Filter::Field { key: on, values }) if on == "kind" && values.len() == 1 && key != "kind" => {
            Some(kind_facet_key(&values[0], key))
        }
        Some(_) => None,
    }
}

fn relations_of(event: &CloudEvent) -> Vec<RelationKey> {
    let mut out: Vec<RelationKey> = event
        .data
        .get("relations")
        .and_then(Value::as_array)
        .map(|relations| {
            relations
                .iter()
                .filter_map(|r| {
                    Some(RelationKey {
                        origin: event.subject.clone(),
                        source: r.get("sourceRef")?.as_str()?.to_owned(),
                        relation_type: r.get("type")?.as_str()?.to_owned(),
                        target: r.get("targetRef")?.as_str()?.to_owned(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.dedup();
    out
}

/// The event's time in the one format stored rows use (fixed width, so strings compare as times).
fn time_of(event: &CloudEvent) -> String {
    callboard_events::cloudevent::normalize_time(&event.time).unwrap_or_else(|| event.time.clone())
}

fn short_type(event_type: &str) -> String {
    event_type
        .strip_prefix("dev.callboard.")
        .unwrap_or(event_type)
        .to_owned()
}

/// Projects a batch onto the loaded rows.
pub fn project(batch: &[StoredEvent], loaded: Loaded) -> Changes {
    let mut changes = Changes::default();
    let Loaded {
        mut applied,
        entities: stored_entities,
        open: stored_open,
        rejections: stored_rejections,
    } = loaded;
    // Overlays: the rows as the batch leaves them.
    let mut entities: HashMap<String, Option<EntityRow>> = HashMap::new();
    let mut open: HashMap<String, BTreeMap<RelationKey, (i64, bool)>> = HashMap::new(); // (from_sequence, stored)
    let mut new_spans: BTreeMap<(RelationKey, i64), SpanRow> = BTreeMap::new();
    let mut rejections: HashMap<String, Option<RejectionRow>> = HashMap::new();
    let mut facets: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut positions: BTreeMap<(String, i32), (i64, Option<String>)> = BTreeMap::new();

    for stored in batch {
        let slot = positions
            .entry((stored.topic.clone(), stored.partition))
            .or_insert((stored.offset, None));
        slot.0 = slot.0.max(stored.offset);
        let Some(event) = &stored.event else {
            changes.skipped += 1;
            continue;
        };
        // Normalised once: every row of the event carries this time.
        let time = time_of(event);
        slot.1 = Some(time.clone());
        let kind = event.known_type();
        if matches!(
            kind,
            Some(EventType::LocationRegistered | EventType::LocationUnregistered)
        ) {
            project_location(event, kind == Some(EventType::LocationRegistered), &mut changes);
            changes.applied += 1;
            continue;
        }
        let subject = event.subject.clone();
        let sequence = event.sequence as i64;
        if applied.get(&subject).is_some_and(|a| *a >= sequence) {
            changes.skipped += 1;
            continue;
        }
        applied.insert(subject.clone(), sequence);
        changes.applied += 1;

        let current: Option<EntityRow> = entities
            .get(&subject)
            .cloned()
            .unwrap_or_else(|| stored_entities.get(&subject).cloned());
        let mut history = HistoryRow {
            subject: subject.clone(),
            sequence,
            event_id: event.id.clone(),
            event_type: short_type(&event.event_type),
            time: time.clone(),
            source: event.source.clone(),
            actor: event.actor.clone(),
            causation: event.causationid.clone(),
            entity: None,
            diff: None,
            detail: None,
        };
        // The relation rows this subject's fields produce, as the batch has them so far.
        let origin_rows = open.entry(subject.clone()).or_insert_with(|| {
            stored_open
                .get(&subject)
                .map(|rows| rows.iter().map(|(k, s)| (k.clone(), (*s, true))).collect())
                .unwrap_or_default()
        });
        match kind {
            Some(EventType::EntityUpserted) => {
                let Some((row, row_facets)) = entity_row(event, &time, current.as_ref()) else {
                    changes.skipped += 1;
                    continue;
                };
                if let Some(previous) = &current {
                    history.diff = Some(diff(&previous.document, &row.document));
                    for pair in facet_pairs(&previous.document) {
                        *facets.entry(pair).or_default() -= 1;
                    }
                }
                for pair in row_facets {
                    *facets.entry(pair).or_default() += 1;
                }
                history.entity = Some(row.document.clone());
                let wanted = relations_of(event);
                let changed = apply_relations(
                    origin_rows,
                    &wanted,
                    sequence,
                    &time,
                    &mut changes.span_closes,
                    &mut new_spans,
                );
                changes.relations_changed |= changed;
                entities.insert(subject.clone(), Some(row));
                // A good version ends a pending rejection.
                rejections.insert(subject.clone(), None);
            }
            Some(EventType::EntityDeleted) => {
                if let Some(previous) = &current {
                    history.diff = Some(diff(&previous.document, &Value::Null));
                    for pair in facet_pairs(&previous.document) {
                        *facets.entry(pair).or_default() -= 1;
                    }
                }
                history.detail = Some(event.data.clone());
                let changed = apply_relations(
                    origin_rows,
                    &[],
                    sequence,
                    &time,
                    &mut changes.span_closes,
                    &mut new_spans,
                );
                changes.relations_changed |= changed;
                entities.insert(subject.clone(), None);
                rejections.insert(subject.clone(), None);
            }
            Some(EventType::EntityRejected) => {
                let data = &event.data;
                history.detail = Some(data.clone());
                rejections.insert(
                    subject.clone(),
                    Some(RejectionRow {
                        subject: subject.clone(),
                        entity_ref: data.get("entityRef").and_then(Value::as_str).map(str::to_owned),
                        location: text(data, "location"),
                        origin: text(data, "originLocation"),
                        document_index: data.get("documentIndex").and_then(Value::as_i64),
                        problems: data.get("problems").cloned().unwrap_or_else(|| json!([])),
                        conflicts_with: data.get("conflictsWith").and_then(Value::as_str).map(str::to_owned),
                        time: time.clone(),
                        sequence,
                    }),
                );
            }
            Some(EventType::RejectionCleared) => {
                history.detail = Some(event.data.clone());
                rejections.insert(subject.clone(), None);
            }
            // Unknown types on the entities topic are recorded in history and otherwise ignored,
            // so a newer writer does not stop an older projector.
            _ => history.detail = Some(event.data.clone()),
        }
        changes.history.push(history);
    }

    for (entity_ref, row) in entities {
        match row {
            Some(row) => changes.entity_upserts.push(row),
            None => changes.entity_deletes.push(entity_ref),
        }
    }
    changes.entity_upserts.sort_by(|a, b| a.entity_ref.cmp(&b.entity_ref));
    changes.entity_deletes.sort();
    for (subject, row) in rejections {
        match row {
            Some(row) => changes.rejection_upserts.push(row),
            None if stored_rejections.contains(&subject) => changes.rejection_deletes.push(subject),
            None => {}
        }
    }
    changes.rejection_upserts.sort_by(|a, b| a.subject.cmp(&b.subject));
    changes.rejection_deletes.sort();
    changes.span_opens = new_spans.into_values().collect();
    changes.facet_deltas = facets
        .into_iter()
        .filter(|(_, delta)| *delta != 0)
        .map(|((key, value), delta)| FacetDelta { key, value, delta })
        .collect();
    for ((topic, partition), (offset, time)) in positions {
        if let Some(time) = time {
            changes.last_times.push((topic.clone(), partition, time));
        }
        changes.positions.push((topic, PartitionOffset { partition, offset }));
    }
    changes
}

/// Makes the open rows of one origin equal `wanted`: rows no longer wanted close at `time`, new
/// rows open at `time`. Returns whether anything changed.
fn apply_relations(
    rows: &mut BTreeMap<RelationKey, (i64, bool)>,
    wanted: &[RelationKey],
    sequence: i64,
    time: &str,
    closes: &mut Vec<(RelationKey, i64, String)>,
    new_spans: &mut BTreeMap<(RelationKey, i64), SpanRow>,
) -> bool {
    let wanted_set: HashSet<&RelationKey> = wanted.iter().collect();
    let mut changed = false;
    let gone: Vec<RelationKey> = rows.keys().filter(|k| !wanted_set.contains(k)).cloned().collect();
    for key in gone {
        let Some((from_sequence, stored)) = rows.remove(&key) else {
            continue;
        };
        changed = true;
        if stored {
            closes.push((key, from_sequence, time.to_owned()));
        } else if let Some(span) = new_spans.get_mut(&(key, from_sequence)) {
            span.valid_to = Some(time.to_owned());
        }
    }
    for key in wanted {
        if rows.contains_key(key) {
            continue;
        }
        changed = true;
        rows.insert(key.clone(), (sequence, false));
        new_spans.insert(
            (key.clone(), sequence),
            SpanRow {
                origin: key.origin.clone(),
                source: key.source.clone(),
                relation_type: key.relation_type.clone(),
                target: key.target.clone(),
                from_sequence: sequence,
                valid_from: time.to_owned(),
                valid_to: None,
            },
        );
    }
    changed
}

fn project_location(event: &CloudEvent, registered: bool, changes: &mut Changes) {
    let location = &event.data["location"];
    let key = event.subject.clone();
    if registered {
        changes.location_upserts.push(LocationRow {
            key,
            location_type: location["type"].as_str().unwrap_or_default().to_owned(),
            target: location["target"].as_str().unwrap_or_default().to_owned(),
            id: event.data["id"].as_str().unwrap_or_default().to_owned(),
            entity_ref: event.data["entityRef"].as_str().unwrap_or_default().to_owned(),
            registered_at: time_of(event),
        });
    } else {
        changes.location_deletes.push(key);
    }
}

/// A string field of an event's data (empty when absent).
fn text(data: &Value, key: &str) -> String {
    data.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use callboard_events::CloudEvent;

    fn upsert(name: &str, sequence: u64, owner: &str, time: &str) -> StoredEvent {
        let entity_ref = format!("component:default/{name}");
        let mut event = CloudEvent::new(
            EventType::EntityUpserted,
            entity_ref.clone(),
            sequence,
            "file:/c.yaml",
            "provider:test",
            json!({
                "entityRef": entity_ref, "uid": format!("uid-{name}"), "contentHash": format!("h{sequence}"),
                "locationKey": "file:/c.yaml", "originLocation": "file:/c.yaml",
                "entity": {"apiVersion": "backstage.io/v1alpha1", "kind": "Component",
                           "metadata": {"name": name, "namespace": "default", "tags": ["java"]},
                           "spec": {"type": "service", "lifecycle": "production", "owner": owner}},
                "relations": [
                    {"type": "ownedBy", "sourceRef": entity_ref, "targetRef": format!("group:default/{owner}")},
                    {"type": "ownerOf", "sourceRef": format!("group:default/{owner}"), "targetRef": entity_ref},
                ],
            }),
        );
        event.time = time.into();
        StoredEvent {
            topic: "t".into(),
            partition: 0,
            offset: sequence as i64,
            event: Some(event),
        }
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
        assert_eq!(row.document["metadata"]["uid"], "uid-a");
        assert_eq!(changes.history.len(), 2);
        assert_eq!(
            changes.history[1].diff,
            Some(json!([{"op": "replace", "path": "/spec/owner", "value": "team-b"}]))
        );
        // team-a's rows opened and closed within the batch; team-b's are open.
        let closed: Vec<_> = changes.span_opens.iter().filter(|s| s.valid_to.is_some()).collect();
        let open: Vec<_> = changes.span_opens.iter().filter(|s| s.valid_to.is_none()).collect();
        assert_eq!((closed.len(), open.len()), (2, 2));
        assert!(
            closed
                .iter()
                .all(|s| s.target.contains("team-a") || s.source.contains("team-a"))
        );
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
        let changes = project(&[upsert("a", 1, "team-a", "t1")], loaded);
        assert_eq!((changes.applied, changes.skipped), (0, 1));
        assert!(changes.history.is_empty() && changes.entity_upserts.is_empty());
        assert_eq!(changes.positions.len(), 1, "the position still advances");
    }

    #[test]
    fn stored_rows_close_when_an_origin_changes() {
        let first = project(&[upsert("a", 1, "team-a", "t1")], Loaded::default());
        let mut loaded = Loaded::default();
        loaded.applied.insert("component:default/a".into(), 1);
        loaded
            .entities
            .insert("component:default/a".into(), first.entity_upserts[0].clone());
        loaded.open.insert(
            "component:default/a".into(),
            first
                .span_opens
                .iter()
                .map(|s| {
                    (
                        RelationKey {
                            origin: s.origin.clone(),
                            source: s.source.clone(),
                            relation_type: s.relation_type.clone(),
                            target: s.target.clone(),
                        },
                        s.from_sequence,
                    )
                })
                .collect(),
        );
        let second = project(&[upsert("a", 2, "team-b", "t2")], loaded);
        assert_eq!(second.span_closes.len(), 2);
        assert!(second.span_closes.iter().all(|(_, from, at)| *from == 1 && at == "t2"));
        assert!(second.facet_deltas.contains(&FacetDelta {
            key: "spec.owner".into(),
            value: "team-a".into(),
            delta: -1
        }));
    }
}
