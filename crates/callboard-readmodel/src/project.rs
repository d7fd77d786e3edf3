//! The projection: events and the rows they touch become row changes.
//!
//! Determinism is the invariant everything rests on. A subject's rows (its entity row, the
//! relation rows its fields produce, its rejection, its history) change only through the
//! subject's own events, which sit in one partition in order; facet counts are sums. So the
//! final rows do not depend on how partitions interleave — one projector or several, live or
//! replayed — and times come from events, never from the clock.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use callboard_events::types::EventType;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::diff::diff;
use crate::filter::Filter;
use crate::rows::{FacetDelta, LocationRow, PartitionOffset, RejectionRow};
use crate::summary::summarize;
use crate::{relations, search};

/// A hash map with a fast hasher, for the maps a batch fills per event (keyed by refs the log
/// holds). The standard SipHash was 2% of a projector's CPU.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A hash set with a fast hasher (see [`FastMap`]).
pub type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;

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
    pub event: Option<EventView>,
}

/// A CloudEvent decoded only as far as projection needs: the envelope's attributes, and `data` as
/// the JSON text it was written as (its parts are read when, and as far as, each event type needs
/// them). Decoding every event's `data` into a `serde_json::Value` tree was a tenth of a
/// projection's time, and most of it was thrown away.
#[derive(Debug, Clone, Deserialize)]
pub struct EventView {
    /// Unique per event.
    pub id: String,
    /// Where the change came from.
    pub source: String,
    /// The versioned type, e.g. `dev.callboard.entity.upserted.v1`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The entity ref (or location ref) the event is about.
    pub subject: String,
    /// Event time, RFC 3339.
    pub time: String,
    /// Per-subject sequence.
    pub sequence: u64,
    /// Who acted.
    pub actor: String,
    /// The causing command, if any.
    #[serde(default)]
    pub causationid: Option<String>,
    /// The payload, as written.
    pub data: Box<RawValue>,
    // Required by the envelope (a message without them is not a CloudEvent), not used here.
    #[serde(rename = "specversion")]
    _specversion: IgnoredAny,
    #[serde(rename = "datacontenttype")]
    _datacontenttype: IgnoredAny,
    #[serde(rename = "dataschema")]
    _dataschema: IgnoredAny,
}

impl EventView {
    /// Decodes structured-mode CloudEvent JSON.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The known type, if it is one.
    pub fn known_type(&self) -> Option<EventType> {
        EventType::from_name(&self.event_type)
    }

    /// `data` as a JSON value (for the rare events whose payload is read whole).
    pub fn data_value(&self) -> Value {
        serde_json::from_str(self.data.get()).unwrap_or(Value::Null)
    }
}

/// The stored state of a live entity that projecting a new version of it needs.
#[derive(Debug, Clone, Default)]
pub struct Current {
    /// Its uid.
    pub uid: String,
    /// The entity document of its current version, as stored (without `metadata.uid`).
    pub document: String,
    /// When this life of the entity began.
    pub created_at: String,
    /// Its current relations, packed (see [`crate::relations`]).
    pub relations: String,
}

/// What the store knows now about the subjects of a batch.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// Highest history sequence per subject.
    pub applied: FastMap<String, i64>,
    /// Live entities.
    pub entities: FastMap<String, Current>,
    /// Subjects with a rejection row.
    pub rejections: FastSet<String>,
}

/// An entity row to insert or replace, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityWrite {
    /// Canonical ref.
    pub entity_ref: String,
    /// Stable for the entity's life.
    pub uid: String,
    /// Lowercased kind.
    pub kind: String,
    /// Lowercased namespace.
    pub namespace: String,
    /// Lowercased name.
    pub name: String,
    /// Sequence of the event that made this version (its history row holds the document).
    pub sequence: i64,
    /// Hash of the entity's content (from the event).
    pub content_hash: String,
    /// The file (or `push`) that defines it.
    pub location_key: String,
    /// The registered location it came through.
    pub origin: String,
    /// When this life of the entity began.
    pub created_at: String,
    /// When this version was made.
    pub updated_at: String,
    /// `spec.owner`, canonical.
    pub owner: Option<String>,
    /// `metadata.title`.
    pub title: Option<String>,
    /// `spec.type`, lowercased.
    pub spec_type: Option<String>,
    /// `spec.lifecycle`, lowercased.
    pub lifecycle: Option<String>,
    /// Hashes of its filter keys ([`search::key_hashes`]) and of its relations' other ends
    /// ([`search::endpoint_key`]), sorted.
    pub keys: Vec<u64>,
    /// Text for full-text search.
    pub text: String,
    /// Its current relations, packed.
    pub relations: String,
    /// Whether the store holds a row for this ref already (the row is replaced in place; its
    /// index entries must go first).
    pub replaces: bool,
}

/// A history row, as written: documents and payloads as JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryWrite {
    /// The subject.
    pub subject: String,
    /// The per-subject sequence.
    pub sequence: i64,
    /// The event id.
    pub event_id: String,
    /// The short event type, e.g. `entity.upserted.v1`.
    pub event_type: String,
    /// Event time, normalised.
    pub time: String,
    /// Where the change came from.
    pub source: String,
    /// Who acted.
    pub actor: String,
    /// The causing command, if any.
    pub causation: Option<String>,
    /// The entity's uid, for upserts (readers put it back into the document's metadata).
    pub uid: Option<String>,
    /// The entity document, for upserts, exactly as the event carries it.
    pub entity: Option<String>,
    /// The version's relations, packed, for upserts.
    pub relations: Option<String>,
    /// JSON Patch from the previous version.
    pub diff: Option<String>,
    /// The event's payload, for rejections, deletions, clearings and unknown types.
    pub detail: Option<String>,
}

/// The row changes of a batch, to be written in one transaction with the positions.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// New history rows.
    pub history: Vec<HistoryWrite>,
    /// Entity rows to insert or replace.
    pub entity_upserts: Vec<EntityWrite>,
    /// Entity rows to delete.
    pub entity_deletes: Vec<String>,
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
    /// True when relations changed (the graph must be recomputed).
    pub relations_changed: bool,
    /// Events applied.
    pub applied: usize,
    /// Events skipped (already applied, or not CloudEvents).
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

/// The parts of an upsert's payload projection reads, borrowed from the event's text. Fields are
/// read leniently, as before: a missing or mistyped optional field reads as empty.
struct Upsert<'a> {
    entity_ref: Cow<'a, str>,
    uid: Cow<'a, str>,
    entity: &'a RawValue,
    relations: Vec<(Cow<'a, str>, Cow<'a, str>, Cow<'a, str>)>,
    location_key: String,
    origin: String,
    content_hash: String,
}

/// A relation item of an upsert; items missing a part are ignored.
#[derive(Deserialize)]
struct RelationItem<'a> {
    #[serde(rename = "sourceRef", borrow, default)]
    source: Option<&'a RawValue>,
    #[serde(rename = "type", borrow, default)]
    relation_type: Option<&'a RawValue>,
    #[serde(rename = "targetRef", borrow, default)]
    target: Option<&'a RawValue>,
}

/// The fields of an upsert's payload, each still JSON text: read one by one and leniently (a
/// field of the wrong type reads as absent), as the payload was read before.
#[derive(Deserialize)]
struct UpsertFields<'a> {
    #[serde(rename = "entityRef", borrow, default)]
    entity_ref: Option<&'a RawValue>,
    #[serde(borrow, default)]
    uid: Option<&'a RawValue>,
    #[serde(borrow, default)]
    entity: Option<&'a RawValue>,
    #[serde(borrow, default)]
    relations: Option<&'a RawValue>,
    #[serde(rename = "locationKey", borrow, default)]
    location_key: Option<&'a RawValue>,
    #[serde(rename = "originLocation", borrow, default)]
    origin: Option<&'a RawValue>,
    #[serde(rename = "contentHash", borrow, default)]
    content_hash: Option<&'a RawValue>,
}

/// A JSON string, borrowed from the text unless it has escapes (serde cannot borrow those; its
/// `Cow` never borrows, and copying every ref and uid was 1% of a projector's CPU).
fn string_of(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
    let text = raw?.get();
    match serde_json::from_str::<&str>(text) {
        Ok(borrowed) => Some(Cow::Borrowed(borrowed)),
        Err(_) => serde_json::from_str::<String>(text).ok().map(Cow::Owned),
    }
}

fn upsert_of(data: &RawValue) -> Option<Upsert<'_>> {
    let fields: UpsertFields<'_> = serde_json::from_str(data.get()).ok()?;
    let relations = fields
        .relations
        .and_then(|raw| serde_json::from_str::<Vec<Option<RelationItem<'_>>>>(raw.get()).ok())
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .filter_map(|r| Some((string_of(r.source)?, string_of(r.relation_type)?, string_of(r.target)?)))
        .collect();
    let text = |raw: Option<&RawValue>| string_of(raw).map(Cow::into_owned).unwrap_or_default();
    Some(Upsert {
        entity_ref: string_of(fields.entity_ref)?,
        uid: string_of(fields.uid)?,
        entity: fields.entity?,
        relations,
        location_key: text(fields.location_key),
        origin: text(fields.origin),
        content_hash: text(fields.content_hash),
    })
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

/// The changes of counted-facet values over a batch: `key → original value → delta`. Nearly
/// every entity of a batch bumps values already seen in it, so lookups go by `&str` and only a
/// new key or value is copied (a map keyed by owned pairs copied two strings per counted field
/// of every entity, 5% of a projector's CPU).
#[derive(Default)]
struct FacetTally {
    counts: FastMap<String, FastMap<String, i64>>,
    /// The per-kind key being looked up, reused.
    kind_key: String,
}

impl FacetTally {
    /// Counts a document's counted-facet values, by its lowercased kind and flattened pairs:
    /// each counted key over the whole catalog, and again within the kind (see
    /// [`counted_facet_key`]).
    fn add(&mut self, kind: Option<&str>, pairs: &[search::Pair], delta: i64) {
        for pair in pairs {
            if !COUNTED_FACETS.contains(&pair.key.as_str()) {
                continue;
            }
            let Some((_, original)) = &pair.value else { continue };
            if let Some(kind) = kind
                && pair.key != "kind"
            {
                self.kind_key.clear();
                push_kind_facet_key(&mut self.kind_key, kind, &pair.key);
                bump(&mut self.counts, &self.kind_key, original, delta);
            }
            bump(&mut self.counts, &pair.key, original, delta);
        }
    }

    /// [`FacetTally::add`] for a parsed document.
    fn add_document(&mut self, document: &Value, delta: i64) {
        let kind = document.get("kind").and_then(Value::as_str).map(str::to_lowercase);
        self.add(kind.as_deref(), &search::pairs(document), delta);
    }

    /// The non-zero changes, ordered by key and value (writers apply them in this order).
    fn into_deltas(self) -> Vec<FacetDelta> {
        let mut out: Vec<FacetDelta> = self
            .counts
            .into_iter()
            .flat_map(|(key, values)| {
                values
                    .into_iter()
                    .filter(|(_, delta)| *delta != 0)
                    .map(move |(value, delta)| FacetDelta {
                        key: key.clone(),
                        value,
                        delta,
                    })
            })
            .collect();
        out.sort_unstable_by(|a, b| a.key.cmp(&b.key).then_with(|| a.value.cmp(&b.value)));
        out
    }
}

fn bump(counts: &mut FastMap<String, FastMap<String, i64>>, key: &str, value: &str, delta: i64) {
    if let Some(values) = counts.get_mut(key) {
        match values.get_mut(value) {
            Some(count) => *count += delta,
            None => {
                values.insert(value.to_owned(), delta);
            }
        }
        return;
    }
    let mut values = FastMap::default();
    values.insert(value.to_owned(), delta);
    counts.insert(key.to_owned(), values);
}

/// The stored key of a counted facet within one kind (`component|spec.type`). Counted keys are a
/// fixed list of dotted paths, so the separator never collides with one.
fn kind_facet_key(kind: &str, key: &str) -> String {
    let mut out = String::with_capacity(kind.len() + 1 + key.len());
    push_kind_facet_key(&mut out, kind, key);
    out
}

fn push_kind_facet_key(out: &mut String, kind: &str, key: &str) {
    out.push_str(kind);
    out.push('|');
    out.push_str(key);
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

/// The event's time in the one format stored rows use (fixed width, so strings compare as times).
fn time_of(event: &EventView) -> String {
    callboard_events::cloudevent::normalize_time(&event.time).unwrap_or_else(|| event.time.clone())
}

fn short_type(event_type: &str) -> String {
    event_type
        .strip_prefix("dev.callboard.")
        .unwrap_or(event_type)
        .to_owned()
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
    upsert: &Upsert<'_>,
    sequence: i64,
    time: &str,
    previous: Option<&Live<'_>>,
    facets: &mut FacetTally,
) -> EntityWrite {
    let summary = summarize(upsert.entity.get(), &upsert.uid);
    let entity_ref = upsert.entity_ref.as_ref();
    let (kind, namespace, name) = ref_parts(entity_ref);
    let owner = upsert
        .relations
        .iter()
        .find(|(source, relation_type, _)| relation_type == "ownedBy" && source == entity_ref)
        .map(|(_, _, target)| target.clone().into_owned());
    let (relations, ends) = relations::pack_with_endpoints(
        entity_ref,
        upsert
            .relations
            .iter()
            .map(|(s, t, x)| (s.as_ref(), t.as_ref(), x.as_ref())),
    );
    facets.add(summary.kind.as_deref(), &summary.pairs, 1);
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
        content_hash: upsert.content_hash.clone(),
        location_key: upsert.location_key.clone(),
        origin: upsert.origin.clone(),
        created_at: previous.map_or_else(|| time.to_owned(), |p| p.created_at.clone().into_owned()),
        updated_at: time.to_owned(),
        owner,
        title: summary.title,
        spec_type: summary.spec_type,
        lifecycle: summary.lifecycle,
        keys,
        text: summary.text,
        relations,
        replaces: false,
    }
}

/// Projects a batch onto the loaded rows.
pub fn project(batch: &[StoredEvent], loaded: Loaded) -> Changes {
    let mut changes = Changes::default();
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
    let mut positions: BTreeMap<(&str, i32), (i64, Option<String>)> = BTreeMap::new();

    for stored in batch {
        let slot = positions
            .entry((stored.topic.as_str(), stored.partition))
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
            project_location(event, &time, kind == Some(EventType::LocationRegistered), &mut changes);
            changes.applied += 1;
            continue;
        }
        let subject = event.subject.as_str();
        let sequence = event.sequence as i64;
        let last = applied.get(subject).or_else(|| stored_applied.get(subject));
        if last.is_some_and(|a| *a >= sequence) {
            changes.skipped += 1;
            continue;
        }
        // An upsert whose payload cannot be read is skipped, as if it were not there.
        let upsert = match kind {
            Some(EventType::EntityUpserted) => match upsert_of(&event.data) {
                Some(upsert) => Some(upsert),
                None => {
                    // Counted as applied and skipped, and its sequence taken, as before.
                    applied.insert(subject, sequence);
                    changes.applied += 1;
                    changes.skipped += 1;
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
            event_type: short_type(&event.event_type),
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
                let data = event.data_value();
                rejections.insert(
                    subject,
                    Some(RejectionRow {
                        subject: subject.to_owned(),
                        entity_ref: data.get("entityRef").and_then(Value::as_str).map(str::to_owned),
                        location: text(&data, "location"),
                        origin: text(&data, "originLocation"),
                        document_index: data.get("documentIndex").and_then(Value::as_i64),
                        problems: data.get("problems").cloned().unwrap_or_else(|| json!([])),
                        conflicts_with: data.get("conflictsWith").and_then(Value::as_str).map(str::to_owned),
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
        changes.applied += 1;
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
    for ((topic, partition), (offset, time)) in positions {
        if let Some(time) = time {
            changes.last_times.push((topic.to_owned(), partition, time));
        }
        changes
            .positions
            .push((topic.to_owned(), PartitionOffset { partition, offset }));
    }
    changes
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
        let data = event.data_value();
        let location = &data["location"];
        changes.location_upserts.push(LocationRow {
            key,
            location_type: location["type"].as_str().unwrap_or_default().to_owned(),
            target: location["target"].as_str().unwrap_or_default().to_owned(),
            id: data["id"].as_str().unwrap_or_default().to_owned(),
            entity_ref: data["entityRef"].as_str().unwrap_or_default().to_owned(),
            registered_at: time.to_owned(),
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
        stored(event, sequence as i64)
    }

    fn delete(name: &str, sequence: u64, time: &str) -> StoredEvent {
        let entity_ref = format!("component:default/{name}");
        let mut event = CloudEvent::new(
            EventType::EntityDeleted,
            entity_ref.clone(),
            sequence,
            "file:/c.yaml",
            "provider:test",
            json!({"entityRef": entity_ref, "reason": "removed"}),
        );
        event.time = time.into();
        stored(event, sequence as i64)
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
        let changes = project(&[upsert("a", 1, "team-a", "t1")], loaded);
        assert_eq!((changes.applied, changes.skipped), (0, 1));
        assert!(changes.history.is_empty() && changes.entity_upserts.is_empty());
        assert_eq!(changes.positions.len(), 1, "the position still advances");
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
}
