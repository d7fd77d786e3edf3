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
    ClearReason, DeleteReason, EntityDeleted, EntityRejected, EntityUpserted, EventType, LocationChanged,
    LocationRecord, ProblemRecord, RejectionCleared, RelationRecord,
};
use callboard_model::Entity;
use serde_json::{Value, json};

use crate::state::{FastMap, FastSet, State};

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
struct Sequencer<'s> {
    state: &'s State,
    next: FastMap<String, u64>,
}

impl Sequencer<'_> {
    fn next(&mut self, subject: &str) -> u64 {
        let last = self
            .next
            .get(subject)
            .copied()
            .unwrap_or_else(|| self.state.subjects.get(subject).map_or(0, |s| s.sequence));
        self.next.insert(subject.to_owned(), last + 1);
        last + 1
    }

    fn next_location(&mut self, key: &str) -> u64 {
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

fn to_value<T: serde::Serialize>(payload: &T) -> Value {
    serde_json::to_value(payload).unwrap_or_else(|e| unreachable!("payloads serialise: {e}"))
}

/// The upsert payload for an entity.
pub fn upsert_payload(entity: &Entity, uid: &str, location: &str, origin: &str) -> EntityUpserted {
    upsert_payload_owned(entity.clone(), content_hash_object(entity.raw()), uid, location, origin)
}

/// The upsert payload, consuming the entity (no copy of its document) with its precomputed hash.
fn upsert_payload_owned(
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

fn rejection_payload(
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

/// A definition whose incumbent is another file of the same source, settled at the end of a scan.
#[derive(Debug)]
struct Contested {
    entity: Box<Entity>,
    location: String,
    index: Option<u32>,
    hash: Option<String>,
}

/// A full sync of one source, decided while the scan is still running: documents are fed in as
/// files are read (so a large import appends as it goes, and a crash loses little), and
/// [`SyncSession::finish`] settles what needs the whole picture — definitions that moved between
/// files, entities accepted again after a rejection, cleared rejections and deletions.
///
/// The caller appends the events each call returns and applies them to the state before the next
/// call, as the writer does.
#[derive(Debug)]
pub struct SyncSession {
    origin: String,
    actor: String,
    /// Entity ref → the file that defines it in this scan.
    claims: FastMap<String, String>,
    /// Subjects rejected in this scan (the first rejection of a subject wins).
    rejected: FastSet<String>,
    /// Files whose entities must stay although they may not have been seen.
    protected: FastSet<String>,
    /// Files read in this scan.
    scanned: FastSet<String>,
    /// Subjects upserted in this scan.
    upserted: FastSet<String>,
    /// Definitions whose incumbent is another file of this source not settled yet.
    contested: Vec<Contested>,
    /// Unchanged entities with a pending rejection: accepted again at the end unless rejected again.
    reaccept: Vec<(Box<Entity>, String, Option<String>)>,
    counts: Counts,
}

impl SyncSession {
    /// Starts a sync of the registered location `origin`.
    pub fn new(origin: impl Into<String>, actor: impl Into<String>) -> Self {
        Self {
            origin: origin.into(),
            actor: actor.into(),
            claims: FastMap::default(),
            rejected: FastSet::default(),
            protected: FastSet::default(),
            scanned: FastSet::default(),
            upserted: FastSet::default(),
            contested: Vec::new(),
            reaccept: Vec::new(),
            counts: Counts::default(),
        }
    }

    /// Counts so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Marks a file whose entities must stay (it could not be read).
    pub fn protect(&mut self, location: impl Into<String>) {
        self.protected.insert(location.into());
    }

    /// Decides the events for the next documents of the scan.
    pub fn feed(&mut self, state: &State, documents: Vec<Scanned>) -> Vec<Outgoing> {
        let mut seq = Sequencer {
            state,
            next: FastMap::default(),
        };
        let mut events = Vec::new();
        for document in documents {
            match document {
                Scanned::Accepted {
                    entity,
                    location,
                    index,
                    hash,
                } => {
                    self.scanned.insert(location.clone());
                    let r = entity.entity_ref().to_string();
                    if let Some(earlier) = self.claims.get(&r).cloned() {
                        self.conflict(&mut seq, state, &mut events, &r, &location, index, earlier);
                        continue;
                    }
                    if let Some(live) = state.subjects.get(&r).and_then(|s| s.live.as_ref())
                        && live.location_key != location
                    {
                        if live.origin == self.origin && live.location_key != PUSH_LOCATION {
                            // Its file may not define it any more: settle at the end.
                            self.contested.push(Contested {
                                entity,
                                location,
                                index,
                                hash,
                            });
                        } else {
                            let incumbent = live.location_key.clone();
                            self.conflict(&mut seq, state, &mut events, &r, &location, index, incumbent);
                        }
                        continue;
                    }
                    self.claim(&mut seq, state, &mut events, entity, location, hash, true);
                }
                Scanned::Rejected {
                    entity_ref,
                    location,
                    index,
                    problems,
                } => {
                    self.scanned.insert(location.clone());
                    if entity_ref.is_none() {
                        // A document without identity may have held any entity of its file.
                        self.protected.insert(location.clone());
                    }
                    let subject = rejection_subject(entity_ref.as_deref(), &location, index);
                    let payload = rejection_payload(entity_ref, &location, index, problems, &self.origin, None);
                    self.reject(&mut seq, state, &mut events, subject, payload);
                }
            }
        }
        events
    }

    /// Settles contested definitions, re-acceptances, cleared rejections and (for a complete scan)
    /// deletions.
    pub fn finish(&mut self, state: &State, complete: bool) -> Vec<Outgoing> {
        let mut seq = Sequencer {
            state,
            next: FastMap::default(),
        };
        let mut events = Vec::new();
        for Contested {
            entity,
            location,
            index,
            hash,
        } in std::mem::take(&mut self.contested)
        {
            let r = entity.entity_ref().to_string();
            if let Some(earlier) = self.claims.get(&r).cloned() {
                self.conflict(&mut seq, state, &mut events, &r, &location, index, earlier);
                continue;
            }
            let live = state.subjects.get(&r).and_then(|s| s.live.as_ref());
            // The definition moved when its old file was read in this scan and no longer has it.
            let moved = live
                .is_none_or(|l| self.scanned.contains(&l.location_key) && !self.protected.contains(&l.location_key));
            if moved {
                self.claim(&mut seq, state, &mut events, entity, location, hash, true);
            } else if let Some(live) = live {
                let incumbent = live.location_key.clone();
                self.conflict(&mut seq, state, &mut events, &r, &location, index, incumbent);
            }
        }
        for (entity, location, hash) in std::mem::take(&mut self.reaccept) {
            let r = entity.entity_ref().to_string();
            if self.rejected.contains(&r) {
                self.counts.unchanged += 1;
            } else {
                self.claim(&mut seq, state, &mut events, entity, location, hash, false);
            }
        }
        if !complete {
            return events;
        }
        let mut subjects: Vec<(&String, &crate::state::Subject)> = state.subjects.iter().collect();
        subjects.sort_by(|a, b| a.0.cmp(b.0));
        for (subject, s) in &subjects {
            if let Some(pending) = &s.rejection
                && pending.origin == self.origin
                && !self.rejected.contains(*subject)
                && !self.upserted.contains(*subject)
                && !(s.live.is_some()
                    && !self.claims.contains_key(*subject)
                    && self.protected.contains(&pending.location))
            {
                let reason = if self.scanned.contains(&pending.location) {
                    ClearReason::Fixed
                } else {
                    ClearReason::Removed
                };
                let payload = RejectionCleared {
                    location: pending.location.clone(),
                    reason,
                };
                let sequence = seq.next(subject);
                events.push(Outgoing::event(CloudEvent::new(
                    EventType::RejectionCleared,
                    (*subject).clone(),
                    sequence,
                    pending.location.clone(),
                    &self.actor,
                    to_value(&payload),
                )));
                self.counts.cleared += 1;
            }
        }
        for (subject, s) in subjects {
            let Some(live) = &s.live else { continue };
            let keep = live.origin != self.origin
                || self.claims.contains_key(subject)
                || self.rejected.contains(subject)
                || self.protected.contains(&live.location_key);
            if keep {
                continue;
            }
            let payload = EntityDeleted {
                entity_ref: subject.clone(),
                uid: live.uid.clone(),
                reason: DeleteReason::RemovedFromSource,
                location_key: live.location_key.clone(),
            };
            let sequence = seq.next(subject);
            events.push(Outgoing::event(CloudEvent::new(
                EventType::EntityDeleted,
                subject.clone(),
                sequence,
                live.location_key.clone(),
                &self.actor,
                to_value(&payload),
            )));
            self.counts.deleted += 1;
        }
        events
    }

    /// Takes `entity` for `location`, upserting it when it changed. With `defer_reaccept`, an
    /// unchanged entity with a pending rejection waits for the end of the scan, when it is known
    /// whether it is rejected again. `hash` is the entity's content hash when known already.
    #[allow(clippy::too_many_arguments)]
    fn claim(
        &mut self,
        seq: &mut Sequencer<'_>,
        state: &State,
        events: &mut Vec<Outgoing>,
        entity: Box<Entity>,
        location: String,
        hash: Option<String>,
        defer_reaccept: bool,
    ) {
        let r = entity.entity_ref().to_string();
        self.claims.insert(r.clone(), location.clone());
        let subject = state.subjects.get(&r);
        let live = subject.and_then(|s| s.live.as_ref());
        let uid = live.map_or_else(|| uuid::Uuid::new_v4().to_string(), |l| l.uid.clone());
        // A file reached through two registered locations stays with the first: taking turns
        // would emit an event on every scan of either.
        let origin = live
            .filter(|l| l.location_key == location)
            .map_or(self.origin.as_str(), |l| l.origin.as_str());
        let hash = hash.unwrap_or_else(|| content_hash_object(entity.raw()));
        let pending = subject.and_then(|s| s.rejection.as_ref()).is_some();
        let changed = live.is_none_or(|l| l.content_hash != hash || l.location_key != location);
        if !changed && pending && defer_reaccept {
            self.reaccept.push((entity, location, Some(hash)));
            return;
        }
        if changed || pending {
            let sequence = seq.next(&r);
            let head = CloudEvent::new(
                EventType::EntityUpserted,
                r.clone(),
                sequence,
                location.clone(),
                &self.actor,
                Value::Null,
            );
            events.push(Outgoing::Upsert(Box::new(PendingUpsert {
                head,
                entity,
                uid,
                hash,
                location,
                origin: origin.to_owned(),
            })));
            self.counts.upserted += 1;
            self.upserted.insert(r);
        } else {
            self.counts.unchanged += 1;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn conflict(
        &mut self,
        seq: &mut Sequencer<'_>,
        state: &State,
        events: &mut Vec<Outgoing>,
        r: &str,
        location: &str,
        index: Option<u32>,
        incumbent: String,
    ) {
        let problem = ProblemRecord {
            rule: "entity.conflict".into(),
            field: "metadata.name".into(),
            message: format!("{r} is already defined by {incumbent}; this definition in {location} is ignored"),
            hint: Some("keep one definition, or unregister the location that should not define it".into()),
            line: None,
            column: None,
        };
        let payload = rejection_payload(
            Some(r.to_owned()),
            location,
            index,
            vec![problem],
            &self.origin,
            Some(incumbent),
        );
        self.reject(seq, state, events, r.to_owned(), payload);
    }

    /// Emits a rejection unless the subject was rejected already in this scan, or the same
    /// rejection is pending.
    fn reject(
        &mut self,
        seq: &mut Sequencer<'_>,
        state: &State,
        events: &mut Vec<Outgoing>,
        subject: String,
        payload: EntityRejected,
    ) {
        if !self.rejected.insert(subject.clone()) {
            return;
        }
        let pending = state.subjects.get(&subject).and_then(|s| s.rejection.as_ref());
        if pending.is_some_and(|p| p.hash == payload.content_hash) && !self.upserted.contains(&subject) {
            self.counts.unchanged += 1;
            return;
        }
        let sequence = seq.next(&subject);
        events.push(Outgoing::event(CloudEvent::new(
            EventType::EntityRejected,
            subject,
            sequence,
            payload.location.clone(),
            &self.actor,
            to_value(&payload),
        )));
        self.counts.rejected += 1;
    }
}

/// Decides a whole batch at once (feeding it in one go); for tests and small callers. The
/// returned events assume none of them was applied yet.
pub fn decide_sync(state: &State, batch: &SyncBatch) -> Decision {
    let mut session = SyncSession::new(batch.origin.clone(), batch.actor.clone());
    for location in &batch.protected {
        session.protect(location.clone());
    }
    let mut working = state.clone();
    let fed = session.feed(&working, batch.documents.clone());
    for event in &fed {
        working.apply_outgoing(event);
    }
    let mut events: Vec<CloudEvent> = fed.into_iter().map(Outgoing::into_event).collect();
    events.extend(
        session
            .finish(&working, batch.complete)
            .into_iter()
            .map(Outgoing::into_event),
    );
    Decision {
        entity_events: events,
        location_events: Vec::new(),
        counts: session.counts(),
    }
}

/// The ref of the Location entity Backstage generates for a registered location:
/// `location:default/generated-<sha1 of "<type>:<target>">`.
pub fn generated_location_ref(location: &LocationRecord) -> String {
    use sha1::{Digest, Sha1};
    let digest = Sha1::digest(location.key().as_bytes());
    format!("location:default/generated-{}", hex::encode(digest))
}

/// Decides registering a location (no events when it is registered already).
pub fn decide_register(state: &State, location: &LocationRecord, actor: &str) -> Decision {
    let key = location.key();
    let mut decision = Decision::default();
    if state.locations.get(&key).is_some_and(|(_, r)| r.is_some()) {
        return decision;
    }
    let mut seq = Sequencer {
        state,
        next: FastMap::default(),
    };
    let payload = LocationChanged {
        location: location.clone(),
        id: uuid::Uuid::new_v4().to_string(),
        entity_ref: generated_location_ref(location),
    };
    let sequence = seq.next_location(&key);
    decision.location_events.push(CloudEvent::new(
        EventType::LocationRegistered,
        key.clone(),
        sequence,
        key,
        actor,
        to_value(&payload),
    ));
    decision
}

/// Decides unregistering a location: the registration ends and everything that came through it
/// is deleted (Backstage's eager deletion), pending rejections included.
pub fn decide_unregister(state: &State, location: &LocationRecord, actor: &str) -> Decision {
    let key = location.key();
    let mut decision = Decision::default();
    let Some((_, Some(registered))) = state.locations.get(&key) else {
        return decision;
    };
    let mut seq = Sequencer {
        state,
        next: FastMap::default(),
    };
    let payload = LocationChanged {
        location: location.clone(),
        id: registered.id.clone(),
        entity_ref: generated_location_ref(location),
    };
    let sequence = seq.next_location(&key);
    decision.location_events.push(CloudEvent::new(
        EventType::LocationUnregistered,
        key.clone(),
        sequence,
        key.clone(),
        actor,
        to_value(&payload),
    ));
    let mut subjects: Vec<_> = state.subjects.iter().collect();
    subjects.sort_by(|a, b| a.0.cmp(b.0));
    for (subject, s) in subjects {
        if let Some(live) = s.live.as_ref().filter(|l| l.origin == key) {
            let payload = EntityDeleted {
                entity_ref: subject.clone(),
                uid: live.uid.clone(),
                reason: DeleteReason::LocationUnregistered,
                location_key: live.location_key.clone(),
            };
            let sequence = seq.next(subject);
            decision.entity_events.push(CloudEvent::new(
                EventType::EntityDeleted,
                subject.clone(),
                sequence,
                key.clone(),
                actor,
                to_value(&payload),
            ));
            decision.counts.deleted += 1;
        } else if let Some(pending) = s.rejection.as_ref().filter(|p| p.origin == key) {
            let payload = RejectionCleared {
                location: pending.location.clone(),
                reason: ClearReason::Removed,
            };
            let sequence = seq.next(subject);
            decision.entity_events.push(CloudEvent::new(
                EventType::RejectionCleared,
                subject.clone(),
                sequence,
                key.clone(),
                actor,
                to_value(&payload),
            ));
            decision.counts.cleared += 1;
        }
    }
    decision
}

/// The location key of entities pushed through the API.
pub const PUSH_LOCATION: &str = "push";

/// Why a push was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum PushRefusal {
    /// The entity is invalid.
    Invalid(Vec<ProblemRecord>),
    /// The entity is defined by a location, not through the API.
    ManagedElsewhere(String),
}

/// Decides applying a pushed entity (already validated) on behalf of `actor`.
pub fn decide_push_apply(state: &State, entity: &Entity, actor: &str, source: &str) -> Result<Decision, PushRefusal> {
    let r = entity.entity_ref().to_string();
    let live = state.subjects.get(&r).and_then(|s| s.live.as_ref());
    if let Some(live) = live.filter(|l| l.location_key != PUSH_LOCATION) {
        return Err(PushRefusal::ManagedElsewhere(live.location_key.clone()));
    }
    let uid = live.map_or_else(|| uuid::Uuid::new_v4().to_string(), |l| l.uid.clone());
    let payload = upsert_payload(entity, &uid, PUSH_LOCATION, PUSH_LOCATION);
    let mut decision = Decision::default();
    if live.is_some_and(|l| l.content_hash == payload.content_hash) {
        decision.counts.unchanged += 1;
        return Ok(decision);
    }
    let mut seq = Sequencer {
        state,
        next: FastMap::default(),
    };
    let sequence = seq.next(&r);
    decision.entity_events.push(CloudEvent::new(
        EventType::EntityUpserted,
        r,
        sequence,
        source,
        actor,
        to_value(&payload),
    ));
    decision.counts.upserted += 1;
    Ok(decision)
}

/// Decides deleting a pushed entity. Deleting an absent entity is not an error (nothing happens).
pub fn decide_push_delete(state: &State, entity_ref: &str, actor: &str, source: &str) -> Result<Decision, PushRefusal> {
    let mut decision = Decision::default();
    let Some(live) = state.subjects.get(entity_ref).and_then(|s| s.live.as_ref()) else {
        return Ok(decision);
    };
    if live.location_key != PUSH_LOCATION {
        return Err(PushRefusal::ManagedElsewhere(live.location_key.clone()));
    }
    let payload = EntityDeleted {
        entity_ref: entity_ref.to_owned(),
        uid: live.uid.clone(),
        reason: DeleteReason::DeletedByUser,
        location_key: PUSH_LOCATION.into(),
    };
    let mut seq = Sequencer {
        state,
        next: FastMap::default(),
    };
    let sequence = seq.next(entity_ref);
    decision.entity_events.push(CloudEvent::new(
        EventType::EntityDeleted,
        entity_ref,
        sequence,
        source,
        actor,
        to_value(&payload),
    ));
    decision.counts.deleted += 1;
    Ok(decision)
}

#[cfg(test)]
mod tests {
    //! Given a state (built by applying earlier decisions), when a batch arrives, then these events.
    use super::*;
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
            state.subjects["component:default/a"].live.clone().unwrap().location_key,
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
            state.subjects["component:default/a"].live.clone().unwrap().location_key,
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
            state.subjects["component:default/a"].live.clone().unwrap().location_key,
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
                state.subjects["component:default/a"].live.clone().unwrap().location_key,
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
}
