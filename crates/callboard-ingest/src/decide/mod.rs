//! The decider: given what the writer knows ([`State`]) and what a source holds now (a
//! [`SyncBatch`]), which events must be appended. Pure, so every rule is unit-tested.
//!
//! Rules (Backstage's, §5 of the reference, plus what an event log needs):
//! * full sync: an unchanged re-scan yields no events (content hashes); entities that vanished
//!   from the source are deleted — except when their file could not be read or a document of it
//!   could not be parsed, because a broken file keeps its last good version;
//! * first claim wins: an entity already defined by another location is not taken over; the
//!   newcomer gets a rejection naming both. A definition that moved between files of the same
//!   source moves with it (upstream issue #14042 does not apply);
//! * a rejection is repeated only when it changes, and is cleared explicitly when it no longer
//!   applies; an entity accepted again after a rejection gets a new `upserted` event even when its
//!   content equals the last good version, so consumers see the rejection end.

use callboard_events::CloudEvent;
use callboard_events::hash::{content_hash, content_hash_object};
use callboard_events::types::{
    DeleteReason, EntityDeleted, EntityRejected, EntityUpserted, EventType, ProblemRecord, RelationRecord,
};
use callboard_model::Entity;
use serde_json::{Value, json};

use crate::state::{FastMap, FastSet, Live, State};

mod locations;
mod push;
mod sync;
#[cfg(test)]
mod tests;

pub use locations::{decide_register, decide_unregister, generated_location_ref};
pub use push::{PUSH_LOCATION, PushRefusal, decide_push_apply, decide_push_delete};
pub use sync::{SyncSession, decide_sync};

/// One document as a scan found it.
#[derive(Debug, Clone)]
pub enum Scanned {
    /// A valid entity read from `location`.
    Accepted {
        /// The entity.
        entity: Box<Entity>,
        /// The file (location ref) it was read from.
        location: String,
        /// Its position in the file (none for generated entities).
        index: Option<u32>,
        /// Its content hash ([`content_hash_object`] of the document), when the scan computed it
        /// already: scans hash while parsing, on every core, instead of in the writer.
        hash: Option<String>,
    },
    /// A document that could not be accepted.
    Rejected {
        /// Its entity ref, when it has one.
        entity_ref: Option<String>,
        /// The file (location ref) it is in.
        location: String,
        /// Its position in the file.
        index: Option<u32>,
        /// What is wrong.
        problems: Vec<ProblemRecord>,
    },
}

/// Everything one registered location (a source) holds now.
#[derive(Debug, Clone, Default)]
pub struct SyncBatch {
    /// The registered location (its location ref).
    pub origin: String,
    /// Who acts, e.g. `provider:location`.
    pub actor: String,
    /// The documents, in reading order.
    pub documents: Vec<Scanned>,
    /// Files whose entities must stay although this scan did not see them (unreadable files,
    /// files with documents that could not be parsed far enough to name their entity).
    pub protected: FastSet<String>,
    /// False when the scan could not finish: then nothing is deleted or cleared.
    pub complete: bool,
}

/// What to append.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    /// Events for the entities topic, in order.
    pub entity_events: Vec<CloudEvent>,
    /// Events for the locations topic, in order.
    pub location_events: Vec<CloudEvent>,
    /// Counts, for progress and logs.
    pub counts: Counts,
}

/// How many events of each kind a decision holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// `entity.upserted`.
    pub upserted: usize,
    /// `entity.deleted`.
    pub deleted: usize,
    /// `entity.rejected`.
    pub rejected: usize,
    /// `entity.rejection-cleared`.
    pub cleared: usize,
    /// Documents that needed no event.
    pub unchanged: usize,
}

impl Counts {
    /// Adds another batch's counts.
    pub fn add(&mut self, other: Counts) {
        self.upserted += other.upserted;
        self.deleted += other.deleted;
        self.rejected += other.rejected;
        self.cleared += other.cleared;
        self.unchanged += other.unchanged;
    }
}

/// An event a sync session decided. Upserts, nearly all of a large scan's events, keep the
/// entity they carry until they are written: building their payload and serialising it was most
/// of a writer's work, and is done where the event is serialised (see [`Outgoing::into_bytes`]),
/// off the thread that decides.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// Any event.
    Event(Box<CloudEvent>),
    /// An upsert whose payload is built when it is written.
    Upsert(Box<PendingUpsert>),
}

/// An upsert decided but not built yet.
#[derive(Debug, Clone)]
pub struct PendingUpsert {
    /// The event, without its data.
    pub head: CloudEvent,
    /// The entity it carries.
    pub entity: Box<Entity>,
    /// Its uid.
    pub uid: String,
    /// Its content hash.
    pub hash: String,
    /// The file that defines it.
    pub location: String,
    /// The registered location it came through.
    pub origin: String,
}

impl PendingUpsert {
    fn payload(self) -> (CloudEvent, EntityUpserted) {
        let payload = upsert_payload_owned(*self.entity, self.hash, &self.uid, &self.location, &self.origin);
        (self.head, payload)
    }
}

impl Outgoing {
    pub(crate) fn event(event: CloudEvent) -> Self {
        Outgoing::Event(Box::new(event))
    }

    /// The subject.
    pub fn subject(&self) -> &str {
        match self {
            Outgoing::Event(event) => &event.subject,
            Outgoing::Upsert(upsert) => &upsert.head.subject,
        }
    }

    /// Names the command that caused it, unless it names one already.
    pub fn caused_by(&mut self, command: &str) {
        let head = match self {
            Outgoing::Event(event) => event.as_mut(),
            Outgoing::Upsert(upsert) => &mut upsert.head,
        };
        head.causationid.get_or_insert_with(|| command.to_owned());
    }

    /// The event.
    pub fn into_event(self) -> CloudEvent {
        match self {
            Outgoing::Event(event) => *event,
            Outgoing::Upsert(upsert) => {
                let (mut head, payload) = upsert.payload();
                head.data = to_value(&payload);
                head
            }
        }
    }

    /// The event's bytes, as [`CloudEvent::to_bytes`] of [`Outgoing::into_event`] gives them,
    /// without building the payload's `Value`.
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Outgoing::Event(event) => event.to_bytes(),
            Outgoing::Upsert(upsert) => {
                let (head, payload) = upsert.payload();
                head.to_bytes_with_data(&payload)
            }
        }
    }
}

/// Assigns per-subject sequences within one decision.
pub(super) struct Sequencer<'s> {
    pub(super) state: &'s State,
    pub(super) next: FastMap<String, u64>,
}

impl<'s> Sequencer<'s> {
    pub(super) fn new(state: &'s State) -> Self {
        Self {
            state,
            next: FastMap::default(),
        }
    }

    /// The next event about `subject` (an entity's or a rejected document's), from `source`.
    pub(super) fn event(
        &mut self,
        event_type: EventType,
        subject: impl Into<String>,
        source: impl Into<String>,
        actor: &str,
        payload: &impl serde::Serialize,
    ) -> CloudEvent {
        let subject = subject.into();
        let sequence = self.next(&subject);
        CloudEvent::new(event_type, subject, sequence, source, actor, to_value(payload))
    }

    /// The next event about `subject`: the deletion of its live entity, for `reason`.
    pub(super) fn deletion(
        &mut self,
        subject: &str,
        live: &Live,
        reason: DeleteReason,
        source: impl Into<String>,
        actor: &str,
    ) -> CloudEvent {
        let payload = EntityDeleted {
            entity_ref: subject.to_owned(),
            uid: live.uid.clone(),
            reason,
            location_key: live.location_key.to_string(),
        };
        self.event(EventType::EntityDeleted, subject, source, actor, &payload)
    }

    /// The next event about the registered location `key` (its own source).
    pub(super) fn location_event(
        &mut self,
        event_type: EventType,
        key: String,
        actor: &str,
        payload: &impl serde::Serialize,
    ) -> CloudEvent {
        let sequence = self.next_location(&key);
        CloudEvent::new(event_type, key.clone(), sequence, key, actor, to_value(payload))
    }

    pub(super) fn next(&mut self, subject: &str) -> u64 {
        let last = self
            .next
            .get(subject)
            .copied()
            .unwrap_or_else(|| self.state.subjects.get(subject).map_or(0, |s| s.sequence));
        self.next.insert(subject.to_owned(), last + 1);
        last + 1
    }

    pub(super) fn next_location(&mut self, key: &str) -> u64 {
        let subject = format!("location\u{0}{key}");
        let last = self
            .next
            .get(&subject)
            .copied()
            .unwrap_or_else(|| self.state.locations.get(key).map_or(0, |(s, _)| *s));
        self.next.insert(subject, last + 1);
        last + 1
    }
}

pub(super) fn to_value<T: serde::Serialize>(payload: &T) -> Value {
    serde_json::to_value(payload).unwrap_or_else(|e| unreachable!("payloads serialise: {e}"))
}

/// The upsert payload for an entity.
pub fn upsert_payload(entity: &Entity, uid: &str, location: &str, origin: &str) -> EntityUpserted {
    upsert_payload_owned(entity.clone(), content_hash_object(entity.raw()), uid, location, origin)
}

/// The upsert payload, consuming the entity (no copy of its document) with its precomputed hash.
pub(super) fn upsert_payload_owned(
    entity: Entity,
    content_hash: String,
    uid: &str,
    location: &str,
    origin: &str,
) -> EntityUpserted {
    let entity_ref = entity.entity_ref().canonical();
    let relations = entity
        .relations()
        .iter()
        .map(|r| RelationRecord {
            relation_type: r.kind.as_str().to_owned(),
            source_ref: r.source.canonical(),
            target_ref: r.target.canonical(),
        })
        .collect();
    EntityUpserted {
        entity_ref,
        uid: uid.to_owned(),
        entity: entity.into_raw(),
        relations,
        location_key: location.to_owned(),
        origin_location: origin.to_owned(),
        content_hash,
    }
}

/// The subject of a rejection: the entity ref, or `<file>#<index>` for documents without one.
pub fn rejection_subject(entity_ref: Option<&str>, location: &str, index: Option<u32>) -> String {
    match (entity_ref, index) {
        (Some(r), _) => r.to_owned(),
        (None, Some(index)) => format!("{location}#{index}"),
        // About the whole file (it could not be read).
        (None, None) => location.to_owned(),
    }
}

pub(super) fn rejection_payload(
    entity_ref: Option<String>,
    location: &str,
    index: Option<u32>,
    problems: Vec<ProblemRecord>,
    origin: &str,
    conflicts_with: Option<String>,
) -> EntityRejected {
    let hash_input = json!({
        "location": location, "index": index, "problems": problems, "conflictsWith": conflicts_with,
    });
    EntityRejected {
        entity_ref,
        location: location.to_owned(),
        document_index: index,
        problems,
        origin_location: origin.to_owned(),
        conflicts_with,
        content_hash: content_hash(&hash_input),
    }
}
