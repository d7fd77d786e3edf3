//! The catalog's fold: events and the rows they touch become row changes.
//!
//! Determinism is the invariant everything rests on. A subject's rows (its entity row, the
//! relation rows its fields produce, its rejection, its history) change only through the
//! subject's own events, which sit in one partition in order; facet counts are sums. So the
//! final rows do not depend on how partitions interleave — one projector or several, live or
//! replayed — and times come from events, never from the clock.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use callboard_events::envelope::{EventView, RejectedView, UpsertView};
use callboard_events::types::{EventType, LocationChanged};
use callboard_model::DEFAULT_NAMESPACE;
use callboard_model::entity_ref::RefParts;
use callboard_projection::{Folded, StoredEvent};
use serde_json::{Value, json};

use super::changes::{Changes, Current, EntityWrite, HistoryWrite, Loaded};
use super::facets::FacetTally;
use crate::diff::diff;
use crate::rows::{LocationRow, RejectionRow};
use crate::summary::summarize;
use crate::{FastMap, FastSet, relations, search};

/// Kind, namespace and name of a canonical ref (a malformed one is kept whole as a name).
fn ref_parts(entity_ref: &str) -> (String, String, String) {
    match RefParts::split(entity_ref) {
        Ok(parts) => (
            parts.kind.unwrap_or_default().to_owned(),
            parts.namespace.unwrap_or(DEFAULT_NAMESPACE).to_owned(),
            parts.name.to_owned(),
        ),
        Err(_) => (String::new(), DEFAULT_NAMESPACE.to_owned(), entity_ref.to_owned()),
    }
}

/// An entity document with its uid in `metadata`, as Backstage returns it; what filters, facets
/// and diffs see.
pub fn with_uid(mut document: Value, uid: &str) -> Value {
    if let Some(Value::Object(metadata)) = document.get_mut("metadata") {
        metadata.insert("uid".into(), Value::String(uid.to_owned()));
    }
    document
}

/// A stored document (JSON text) with its uid put back; `Null` if the text is not JSON.
pub fn stored_document(text: &str, uid: &str) -> Value {
    serde_json::from_str::<Value>(text).map_or(Value::Null, |document| with_uid(document, uid))
}

/// The event's time in the one format stored rows use (fixed width, so strings compare as times).
fn time_of(event: &EventView) -> String {
    callboard_events::cloudevent::normalize_time(&event.time).unwrap_or_else(|| event.time.clone())
}

/// A live entity as the batch leaves it.
struct Live<'a> {
    /// Its document (with uid, for diffs and facet counts), parsed only if a later event of the
    /// batch needs it: most entities of a batch have one event.
    document: Document<'a>,
    created_at: Cow<'a, str>,
    relations: String,
}

impl<'a> Live<'a> {
    fn from_current(current: &'a Current) -> Self {
        Live {
            document: Document::Text {
                json: &current.document,
                uid: Cow::Borrowed(&current.uid),
            },
            created_at: Cow::Borrowed(&current.created_at),
            relations: current.relations.clone(),
        }
    }
}

/// A document as JSON text without its uid, or parsed with it.
enum Document<'a> {
    Text { json: &'a str, uid: Cow<'a, str> },
    Parsed(Value),
}

impl Document<'_> {
    /// The parsed document with its uid.
    fn value(&mut self) -> &Value {
        static NULL: Value = Value::Null;
        if let Document::Text { json, uid } = self {
            *self = Document::Parsed(stored_document(json, uid));
        }
        match self {
            Document::Parsed(value) => value,
            Document::Text { .. } => &NULL,
        }
    }
}

/// The entity row one upsert makes, counting its facet values into `facets`.
fn entity_write(
    upsert: &UpsertView<'_>,
    sequence: i64,
    time: &str,
    previous: Option<&Live<'_>>,
    facets: &mut FacetTally,
) -> EntityWrite {
    let summary = summarize(upsert.entity.get(), &upsert.uid);
    let entity_ref = upsert.entity_ref.as_ref();
    let (kind, namespace, name) = ref_parts(entity_ref);
    let owner = upsert.owner().map(str::to_owned);
    let (relations, ends) = relations::pack_with_endpoints(
        entity_ref,
        upsert
            .relations
            .iter()
            .map(|r| (r.source.as_ref(), r.relation_type.as_ref(), r.target.as_ref())),
    );
    facets.add(summary.kind.as_deref(), &summary.pairs, 1);
    let facet_values = super::facets::facet_values(&summary.pairs);
    let mut keys = search::key_hashes(&summary.pairs);
    keys.extend(ends.iter().map(|end| search::key_hash(&search::endpoint_key(end))));
    keys.sort_unstable();
    keys.dedup();
    EntityWrite {
        entity_ref: entity_ref.to_owned(),
        uid: upsert.uid.clone().into_owned(),
        kind,
        namespace,
        name,
        sequence,
        content_hash: upsert.content_hash.clone().into_owned(),
        location_key: upsert.location_key.clone().into_owned(),
        origin: upsert.origin_location.clone().into_owned(),
        created_at: previous.map_or_else(|| time.to_owned(), |p| p.created_at.clone().into_owned()),
        updated_at: time.to_owned(),
        owner,
        title: summary.title,
        spec_type: summary.spec_type,
        lifecycle: summary.lifecycle,
        keys,
        text: summary.text,
        relations,
        facets: facet_values,
        replaces: false,
    }
}

/// Folds a batch onto the loaded rows.
pub fn fold(batch: &[StoredEvent], loaded: Loaded) -> Folded<Changes> {
    let mut changes = Changes::default();
    let (mut applied_events, mut skipped) = (0, 0);
    let Loaded {
        applied: stored_applied,
        entities: stored_entities,
        rejections: stored_rejections,
    } = loaded;
    // Overlays, keyed by subjects borrowed from the batch: the sequences applied in it, the
    // entities as it leaves them (`None`: deleted), which were written, and rejections.
    let mut applied: FastMap<&str, i64> = FastMap::with_capacity_and_hasher(batch.len(), Default::default());
    let mut live: FastMap<&str, Option<Live<'_>>> = FastMap::with_capacity_and_hasher(batch.len(), Default::default());
    let mut upserts: BTreeMap<String, EntityWrite> = BTreeMap::new();
    let mut deletes: BTreeSet<String> = BTreeSet::new();
    let mut rejections: FastMap<&str, Option<RejectionRow>> = FastMap::default();
    let mut facets = FacetTally::default();

    for stored in batch {
        let Some(event) = &stored.event else {
            skipped += 1;
            continue;
        };
        // Normalised once: every row of the event carries this time.
        let time = time_of(event);
        let kind = event.known_type();
        if matches!(
            kind,
            Some(EventType::LocationRegistered | EventType::LocationUnregistered)
        ) {
            project_location(event, &time, kind == Some(EventType::LocationRegistered), &mut changes);
            applied_events += 1;
            continue;
        }
        let subject = event.subject.as_str();
        let sequence = event.sequence as i64;
        let last = applied.get(subject).or_else(|| stored_applied.get(subject));
        if last.is_some_and(|a| *a >= sequence) {
            skipped += 1;
            continue;
        }
        // An upsert whose payload cannot be read is skipped, as if it were not there.
        let upsert = match kind {
            Some(EventType::EntityUpserted) => match UpsertView::read(&event.data) {
                Some(upsert) => Some(upsert),
                None => {
                    // Counted as applied and skipped, and its sequence taken, as before.
                    applied.insert(subject, sequence);
                    applied_events += 1;
                    skipped += 1;
                    continue;
                }
            },
            _ => None,
        };
        let current = live
            .entry(subject)
            .or_insert_with(|| stored_entities.get(subject).map(Live::from_current));
        let mut history = HistoryWrite {
            subject: subject.to_owned(),
            sequence,
            event_id: event.id.clone(),
            event_type: event.short_type().to_owned(),
            time: time.clone(),
            source: event.source.clone(),
            actor: event.actor.clone(),
            causation: event.causationid.clone(),
            uid: None,
            entity: None,
            relations: None,
            diff: None,
            detail: None,
        };
        match (kind, upsert) {
            (Some(EventType::EntityUpserted), Some(upsert)) => {
                let row = entity_write(&upsert, sequence, &time, current.as_ref(), &mut facets);
                // A new version of a live entity: its document is parsed (the summary did not
                // need it) for the diff, and the previous one's facet values are taken back.
                let document = match current.as_mut() {
                    Some(previous) => {
                        let document = stored_document(upsert.entity.get(), &upsert.uid);
                        let before = previous.document.value();
                        history.diff = Some(diff(before, &document).to_string());
                        facets.add_document(before, -1);
                        Document::Parsed(document)
                    }
                    None => Document::Text {
                        json: upsert.entity.get(),
                        uid: upsert.uid.clone(),
                    },
                };
                let before = current.as_ref().map_or("[]", |p| p.relations.as_str());
                changes.relations_changed |= before != row.relations;
                history.uid = Some(row.uid.clone());
                history.entity = Some(upsert.entity.get().to_owned());
                history.relations = Some(row.relations.clone());
                *current = Some(Live {
                    document,
                    created_at: Cow::Owned(row.created_at.clone()),
                    relations: row.relations.clone(),
                });
                deletes.remove(subject);
                let row = EntityWrite {
                    replaces: stored_entities.contains_key(subject),
                    ..row
                };
                upserts.insert(subject.to_owned(), row);
                // A good version ends a pending rejection.
                clear_rejection(&mut rejections, &stored_rejections, subject);
            }
            (Some(EventType::EntityDeleted), _) => {
                if let Some(mut previous) = current.take() {
                    let before = previous.document.value();
                    history.diff = Some(diff(before, &Value::Null).to_string());
                    facets.add_document(before, -1);
                    changes.relations_changed |= previous.relations != "[]";
                }
                history.detail = Some(event.data.get().to_owned());
                upserts.remove(subject);
                if stored_entities.contains_key(subject) {
                    deletes.insert(subject.to_owned());
                }
                clear_rejection(&mut rejections, &stored_rejections, subject);
            }
            (Some(EventType::EntityRejected), _) => {
                // An unreadable payload still records the rejection, with what can be said.
                let data: RejectedView = event.payload().unwrap_or_default();
                rejections.insert(
                    subject,
                    Some(RejectionRow {
                        subject: subject.to_owned(),
                        entity_ref: data.entity_ref,
                        location: data.location,
                        origin: data.origin_location,
                        document_index: data.document_index,
                        problems: data.problems.unwrap_or_else(|| json!([])),
                        conflicts_with: data.conflicts_with,
                        time: time.clone(),
                        sequence,
                    }),
                );
                history.detail = Some(event.data.get().to_owned());
            }
            (Some(EventType::RejectionCleared), _) => {
                history.detail = Some(event.data.get().to_owned());
                clear_rejection(&mut rejections, &stored_rejections, subject);
            }
            // Unknown types on the entities topic are recorded in history and otherwise ignored,
            // so a newer writer does not stop an older projector.
            _ => history.detail = Some(event.data.get().to_owned()),
        }
        applied.insert(subject, sequence);
        applied_events += 1;
        changes.history.push(history);
    }

    changes.entity_upserts = upserts.into_values().collect();
    changes.entity_deletes = deletes.into_iter().collect();
    for (subject, row) in rejections {
        match row {
            Some(row) => changes.rejection_upserts.push(row),
            None if stored_rejections.contains(subject) => changes.rejection_deletes.push(subject.to_owned()),
            None => {}
        }
    }
    changes.rejection_upserts.sort_by(|a, b| a.subject.cmp(&b.subject));
    changes.rejection_deletes.sort();
    changes.facet_deltas = facets.into_deltas();
    Folded {
        changes,
        applied: applied_events,
        skipped,
    }
}

/// Ends `subject`'s rejection, if it has one stored or from earlier in the batch. (Most subjects
/// have none: an entry for each would cost an insert per event.)
fn clear_rejection<'a>(
    rejections: &mut FastMap<&'a str, Option<RejectionRow>>,
    stored: &FastSet<String>,
    subject: &'a str,
) {
    if let Some(row) = rejections.get_mut(subject) {
        *row = None;
    } else if stored.contains(subject) {
        rejections.insert(subject, None);
    }
}

fn project_location(event: &EventView, time: &str, registered: bool, changes: &mut Changes) {
    let key = event.subject.clone();
    if registered {
        // A registration whose payload cannot be read registers nothing readable; it is kept
        // with empty fields, as it always was, so that unregistering it still finds its key.
        let (location_type, target, id, entity_ref) = match event.payload::<LocationChanged>() {
            Ok(data) => (
                data.location.location_type,
                data.location.target,
                data.id,
                data.entity_ref,
            ),
            Err(_) => Default::default(),
        };
        changes.location_upserts.push(LocationRow {
            key,
            location_type,
            target,
            id,
            entity_ref,
            registered_at: time.to_owned(),
        });
    } else {
        changes.location_deletes.push(key);
    }
}
