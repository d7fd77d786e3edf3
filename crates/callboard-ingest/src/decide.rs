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

use std::collections::{HashMap, HashSet};

use callboard_events::CloudEvent;
use callboard_events::hash::content_hash;
use callboard_events::types::{
    DeleteReason, EntityDeleted, EntityRejected, EntityUpserted, EventType, LocationChanged,
    LocationRecord, ProblemRecord, RejectionCleared, RelationRecord,
};
use callboard_model::Entity;
use serde_json::{Value, json};

use crate::state::State;

/// One document as a scan found it.
#[derive(Debug, Clone)]
pub enum Scanned {
    /// A valid entity read from `location`.
    Accepted {
        /// The entity.
        entity: Box<Entity>,
        /// The file (location ref) it was read from.
        location: String,
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
    pub protected: HashSet<String>,
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

/// Assigns per-subject sequences within one decision.
struct Sequencer<'s> {
    state: &'s State,
    next: HashMap<String, u64>,
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
    let raw = entity.raw().clone();
    let content_hash = content_hash(&Value::Object(raw.clone()));
    EntityUpserted {
        entity_ref: entity.entity_ref().to_string(),
        uid: uid.to_owned(),
        entity: raw,
        relations: entity
            .relations()
            .iter()
            .map(|r| RelationRecord {
                relation_type: r.kind.to_string(),
                source_ref: r.source.to_string(),
                target_ref: r.target.to_string(),
            })
            .collect(),
        location_key: location.to_owned(),
        origin_location: origin.to_owned(),
        content_hash,
    }
}

/// The subject of a rejection: the entity ref, or `<file>#<index>` for documents without one.
pub fn rejection_subject(entity_ref: Option<&str>, location: &str, index: Option<u32>) -> String {
    match entity_ref {
        Some(r) => r.to_owned(),
        None => format!("{location}#{}", index.unwrap_or(0)),
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

/// Decides the events for a full sync of one source.
pub fn decide_sync(state: &State, batch: &SyncBatch) -> Decision {
    let mut seq = Sequencer {
        state,
        next: HashMap::new(),
    };
    let mut decision = Decision::default();
    let source = batch.origin.clone();

    // Pass 1: claims, conflicts, rejections (the first rejection of a subject wins).
    let scanned_locations: HashSet<&str> = batch
        .documents
        .iter()
        .map(|d| match d {
            Scanned::Accepted { location, .. } | Scanned::Rejected { location, .. } => {
                location.as_str()
            }
        })
        .collect();
    let mut claims: HashMap<String, String> = HashMap::new();
    let mut accepted: Vec<(&Entity, &str)> = Vec::new();
    let mut rejections: Vec<(String, EntityRejected)> = Vec::new();
    let mut rejected_subjects: HashSet<String> = HashSet::new();
    let mut protected: HashSet<&str> = batch.protected.iter().map(String::as_str).collect();
    for document in &batch.documents {
        match document {
            Scanned::Accepted { entity, location } => {
                let r = entity.entity_ref().to_string();
                let incumbent = match claims.get(&r) {
                    Some(earlier) => Some(earlier.clone()),
                    None => state
                        .subjects
                        .get(&r)
                        .and_then(|s| s.live.as_ref())
                        .and_then(|live| {
                            let same_file = live.location_key == *location;
                            // The incumbent file belongs to this source and was read in this scan
                            // without defining the entity any more: the definition moved.
                            let moved = live.origin == batch.origin
                                && scanned_locations.contains(live.location_key.as_str())
                                && !protected.contains(live.location_key.as_str());
                            (!same_file && !moved).then(|| live.location_key.clone())
                        }),
                };
                if let Some(incumbent) = incumbent {
                    let problem = ProblemRecord {
                        rule: "entity.conflict".into(),
                        field: "metadata.name".into(),
                        message: format!("{r} is already defined by {incumbent}; this definition in {location} is ignored"),
                        hint: Some("keep one definition, or unregister the location that should not define it".into()),
                        line: None,
                        column: None,
                    };
                    if rejected_subjects.insert(r.clone()) {
                        let payload = rejection_payload(
                            Some(r.clone()),
                            location,
                            None,
                            vec![problem],
                            &batch.origin,
                            Some(incumbent),
                        );
                        rejections.push((r, payload));
                    }
                    continue;
                }
                claims.insert(r, location.clone());
                accepted.push((entity, location));
            }
            Scanned::Rejected {
                entity_ref,
                location,
                index,
                problems,
            } => {
                let subject = rejection_subject(entity_ref.as_deref(), location, *index);
                if entity_ref.is_none() {
                    // A document without identity may have held any entity of its file.
                    protected.insert(location.as_str());
                }
                if rejected_subjects.insert(subject.clone()) {
                    let payload = rejection_payload(
                        entity_ref.clone(),
                        location,
                        *index,
                        problems.clone(),
                        &batch.origin,
                        None,
                    );
                    rejections.push((subject, payload));
                }
            }
        }
    }

    // Pass 2: upserts.
    let mut upserted: HashSet<String> = HashSet::new();
    for (entity, location) in accepted {
        let r = entity.entity_ref().to_string();
        let subject = state.subjects.get(&r);
        let live = subject.and_then(|s| s.live.as_ref());
        let uid = live.map_or_else(|| uuid::Uuid::new_v4().to_string(), |l| l.uid.clone());
        // A file reached through two registered locations stays with the first: taking turns
        // would emit an event on every scan of either.
        let origin = live
            .filter(|l| l.location_key == *location)
            .map_or(batch.origin.as_str(), |l| l.origin.as_str());
        let payload = upsert_payload(entity, &uid, location, origin);
        let pending = subject.and_then(|s| s.rejection.as_ref()).is_some();
        let changed = match live {
            None => true,
            Some(l) => l.content_hash != payload.content_hash || l.location_key != *location,
        };
        if changed || (pending && !rejected_subjects.contains(&r)) {
            let sequence = seq.next(&r);
            let event = CloudEvent::new(
                EventType::EntityUpserted,
                r.clone(),
                sequence,
                location,
                &batch.actor,
                to_value(&payload),
            );
            decision.entity_events.push(event);
            decision.counts.upserted += 1;
            upserted.insert(r);
        } else {
            decision.counts.unchanged += 1;
        }
    }

    // Rejections, unless unchanged (an upsert in this decision clears the pending one).
    for (subject, payload) in rejections {
        let pending = state
            .subjects
            .get(&subject)
            .and_then(|s| s.rejection.as_ref());
        let same =
            pending.is_some_and(|p| p.hash == payload.content_hash) && !upserted.contains(&subject);
        if same {
            decision.counts.unchanged += 1;
            continue;
        }
        let sequence = seq.next(&subject);
        let event = CloudEvent::new(
            EventType::EntityRejected,
            subject,
            sequence,
            payload.location.clone(),
            &batch.actor,
            to_value(&payload),
        );
        decision.entity_events.push(event);
        decision.counts.rejected += 1;
    }

    if !batch.complete {
        return decision;
    }

    // Clear rejections of this source that no longer apply, and delete what vanished.
    let mut subjects: Vec<(&String, &crate::state::Subject)> = state.subjects.iter().collect();
    subjects.sort_by(|a, b| a.0.cmp(b.0));
    for (subject, s) in &subjects {
        if let Some(pending) = &s.rejection
            && pending.origin == source
            && !rejected_subjects.contains(*subject)
            && !upserted.contains(*subject)
            && !(s.live.is_some()
                && !claims.contains_key(*subject)
                && protected.contains(pending.location.as_str()))
        {
            let reason = if scanned_locations.contains(pending.location.as_str()) {
                "fixed"
            } else {
                "removed"
            };
            let payload = RejectionCleared {
                location: pending.location.clone(),
                reason: reason.into(),
            };
            let sequence = seq.next(subject);
            let event = CloudEvent::new(
                EventType::RejectionCleared,
                (*subject).clone(),
                sequence,
                pending.location.clone(),
                &batch.actor,
                to_value(&payload),
            );
            decision.entity_events.push(event);
            decision.counts.cleared += 1;
        }
    }
    for (subject, s) in subjects {
        let Some(live) = &s.live else { continue };
        let keep = live.origin != source
            || claims.contains_key(subject)
            || rejected_subjects.contains(subject)
            || protected.contains(live.location_key.as_str());
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
        decision.entity_events.push(CloudEvent::new(
            EventType::EntityDeleted,
            subject.clone(),
            sequence,
            live.location_key.clone(),
            &batch.actor,
            to_value(&payload),
        ));
        decision.counts.deleted += 1;
    }
    decision
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
        next: HashMap::new(),
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
        next: HashMap::new(),
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
                reason: "removed".into(),
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
pub fn decide_push_apply(
    state: &State,
    entity: &Entity,
    actor: &str,
    source: &str,
) -> Result<Decision, PushRefusal> {
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
        next: HashMap::new(),
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
pub fn decide_push_delete(
    state: &State,
    entity_ref: &str,
    actor: &str,
    source: &str,
) -> Result<Decision, PushRefusal> {
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
        next: HashMap::new(),
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
