//! What the writer knows about the catalog: for every subject its sequence and, if live, the
//! entity's uid, content hash and owning location; plus the registered locations. It is rebuilt
//! from the log on start, because the log is the truth.

use std::collections::BTreeMap;
use std::sync::Arc;

/// A hash map with foldhash instead of SipHash, for the ingest's maps keyed by refs and paths from
/// our own scans (the state takes an insert per event; SipHash was 2% of an import).
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A hash set with foldhash (see [`FastMap`]).
pub type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

use callboard_events::CloudEvent;
use callboard_events::envelope::{EntityFacts, Envelope, EventView};
use callboard_events::log::{EventLog, LogError, read_range};
use callboard_events::types::{EventType, LocationChanged, LocationRecord};
use serde::Deserialize;

/// A live entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    /// The uid, stable while it lives.
    pub uid: String,
    /// Hash of its content.
    pub content_hash: String,
    /// The location that defines it (a file's location ref, or `push`). Shared by every entity
    /// of the file (see `intern`).
    pub location_key: Arc<str>,
    /// The registered location it came through (shared likewise).
    pub origin: Arc<str>,
}

/// A pending rejection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Hash of the rejection's content, to emit unchanged rejections only once.
    pub hash: String,
    /// The file it is about.
    pub location: Arc<str>,
    /// The registered location the file came through.
    pub origin: Arc<str>,
}

/// Everything known about one subject.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    /// The sequence of the last event about the subject (0: none yet).
    pub sequence: u64,
    /// The entity, if it exists.
    pub live: Option<Live>,
    /// The latest rejection, until a good version or a clearing event arrives (boxed: rare, and
    /// every subject's slot in the map would otherwise be its size).
    pub rejection: Option<Box<Pending>>,
}

/// A registered location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// Registration id.
    pub id: String,
    /// The location.
    pub location: LocationRecord,
}

/// The writer's state.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// By subject (an entity ref, or `<location>#<index>` for documents without one).
    pub subjects: FastMap<String, Subject>,
    /// Location event sequences and registrations, by location key.
    pub locations: BTreeMap<String, (u64, Option<Registered>)>,
    /// Location keys and origins, each held once however many entities name it.
    names: FastSet<Arc<str>>,
}

impl State {
    /// Applies one entity-topic event, as read from the log.
    pub fn apply_entity_event(&mut self, bytes: &[u8]) {
        // Only the facts the state keeps are decoded; the entity document is skipped.
        let Ok(event) = Envelope::<EntityFacts>::from_bytes(bytes) else {
            tracing::warn!("skipping an undecodable event while rebuilding state");
            return;
        };
        self.apply_parts(&event.event_type, event.subject, event.sequence, event.data);
    }

    /// Applies an event a sync session decided (no serialising, no re-parsing).
    pub fn apply_outgoing(&mut self, event: &crate::decide::Outgoing) {
        match event {
            crate::decide::Outgoing::Event(event) => self.apply_event(event),
            crate::decide::Outgoing::Upsert(upsert) => {
                let data = EntityFacts {
                    uid: Some(upsert.uid.clone()),
                    content_hash: Some(upsert.hash.clone()),
                    location_key: Some(upsert.location.clone()),
                    origin_location: Some(upsert.origin.clone()),
                    location: None,
                };
                let head = &upsert.head;
                self.apply_parts(&head.event_type, head.subject.clone(), head.sequence, data);
            }
        }
    }

    /// Applies an entity-topic event the writer just appended (no re-parsing).
    pub fn apply_event(&mut self, event: &CloudEvent) {
        let data = EntityFacts::deserialize(&event.data).unwrap_or_default();
        self.apply_parts(&event.event_type, event.subject.clone(), event.sequence, data);
    }

    fn apply_parts(&mut self, event_type: &str, subject: String, sequence: u64, data: EntityFacts) {
        let subject = self.subjects.entry(subject).or_default();
        subject.sequence = subject.sequence.max(sequence);
        match EventType::from_name(event_type) {
            Some(EventType::EntityUpserted) => {
                subject.live = Some(Live {
                    uid: data.uid.unwrap_or_default(),
                    content_hash: data.content_hash.unwrap_or_default(),
                    location_key: intern(&mut self.names, data.location_key),
                    origin: intern(&mut self.names, data.origin_location),
                });
                subject.rejection = None;
            }
            Some(EventType::EntityDeleted) => {
                subject.live = None;
                subject.rejection = None;
            }
            Some(EventType::EntityRejected) => {
                subject.rejection = Some(Box::new(Pending {
                    hash: data.content_hash.unwrap_or_default(),
                    location: intern(&mut self.names, data.location),
                    origin: intern(&mut self.names, data.origin_location),
                }));
            }
            Some(EventType::RejectionCleared) => subject.rejection = None,
            _ => {}
        }
    }

    /// Applies one location-topic event.
    pub fn apply_location_event(&mut self, bytes: &[u8]) {
        let Ok(event) = EventView::from_bytes(bytes) else {
            return;
        };
        let entry = self.locations.entry(event.subject.clone()).or_insert((0, None));
        entry.0 = entry.0.max(event.sequence);
        match event.known_type() {
            Some(EventType::LocationRegistered) => {
                if let Ok(LocationChanged { location, id, .. }) = event.payload() {
                    entry.1 = Some(Registered { id, location });
                }
            }
            Some(EventType::LocationUnregistered) => entry.1 = None,
            _ => {}
        }
    }

    /// Rebuilds the state by reading both topics from the start to their current end.
    pub async fn rebuild(log: &dyn EventLog, entities: &str, locations: &str) -> Result<Self, LogError> {
        let mut state = State::default();
        for (topic, is_entities) in [(entities, true), (locations, false)] {
            let ends = log.end_offsets(topic).await?;
            for (partition, end) in ends.into_iter().enumerate() {
                read_range(log, topic, partition as i32, 0, end, |message| {
                    if is_entities {
                        state.apply_entity_event(&message.value);
                    } else {
                        state.apply_location_event(&message.value);
                    }
                })
                .await?;
            }
        }
        Ok(state)
    }

    /// Registered locations.
    pub fn registered(&self) -> impl Iterator<Item = &Registered> {
        self.locations.values().filter_map(|(_, r)| r.as_ref())
    }

    /// Number of live entities.
    pub fn live_count(&self) -> usize {
        self.subjects.values().filter(|s| s.live.is_some()).count()
    }
}

/// The shared copy of a location key or origin. At 100,000 entities the state held each entity's
/// own copies of both (about 15 MiB); a file's entities now share one. The set keeps every name
/// seen while the process runs (one per file, not per entity).
fn intern(names: &mut FastSet<Arc<str>>, name: Option<String>) -> Arc<str> {
    let name = name.unwrap_or_default();
    if let Some(shared) = names.get(name.as_str()) {
        return shared.clone();
    }
    let shared: Arc<str> = Arc::from(name);
    names.insert(shared.clone());
    shared
}
