//! The activity projection: who changed what, when, and from which source — every event on the
//! entity and location topics as one row, readable as a feed per actor (what a user or a
//! provider did) and per owner (what happened to a team's entities), newest first.
//!
//! Each row names the entity it is about and the entity's owner *at that moment*: an upsert
//! declares its owner; a deletion or a rejection happened to whatever owned the entity then,
//! which the projection remembers per subject (the only state it loads). A subject's remembered
//! sequence also makes folding idempotent, like the catalog's history.

use std::sync::Arc;

use async_trait::async_trait;
use callboard_events::envelope::{RejectedView, UpsertView};
use callboard_events::topics::Topics;
use callboard_events::types::{EventType, LocationChanged};
use callboard_projection::{Folded, Projection, ProjectionStore, StoreError, StoredEvent};

use crate::rows::Columns;
use crate::{FastMap, FastSet};

/// One event, as the feed shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityRow {
    /// Event time, normalised (fixed width: strings compare as times).
    pub time: String,
    /// The topic it was on, without the prefix: `entities` or `locations`.
    pub stream: String,
    /// The event's subject (an entity ref, a rejection's subject, a location key).
    pub subject: String,
    /// The subject's sequence.
    pub sequence: i64,
    /// The event id.
    pub event_id: String,
    /// The short event type, e.g. `entity.upserted.v1`.
    pub event_type: String,
    /// Who acted: a user's ref, `provider:<name>`, …
    pub actor: String,
    /// Where the change came from (a location, `callboard:api`, …).
    pub source: String,
    /// The entity it is about, when there is one.
    pub entity_ref: Option<String>,
    /// The entity's owner at that moment, when known.
    pub owner: Option<String>,
    /// The command that caused it, if any.
    pub causation: Option<String>,
}

/// The activity feed's tables, the same in both databases
/// (`migrations/templates/common-activity.sql`).
pub static LAYOUT: crate::sql::Layout = crate::sql::Layout {
    name: "activity",
    letter: 'a',
    templates: [
        crate::sql::BOOKKEEPING,
        include_str!("../../../migrations/templates/common-activity.sql"),
    ],
    tables: &["activity", "subjects", "positions", "meta"],
    checked: &[
        ("activity", ACTIVITY_COLUMNS, "time, stream, subject, sequence"),
        (
            "subjects",
            <((String, String), SubjectState) as crate::sql::TableRow>::COLUMNS,
            "stream, subject",
        ),
    ],
};

/// What an activity read selects.
pub const ACTIVITY_COLUMNS: &str =
    "time, stream, subject, sequence, event_id, event_type, actor, source, entity_ref, owner, causation";

impl ActivityRow {
    /// Reads the columns of [`ACTIVITY_COLUMNS`].
    pub fn read(row: &dyn Columns) -> Result<Self, StoreError> {
        Ok(Self {
            time: row.text("time")?,
            stream: row.text("stream")?,
            subject: row.text("subject")?,
            sequence: row.int("sequence")?,
            event_id: row.text("event_id")?,
            event_type: row.text("event_type")?,
            actor: row.text("actor")?,
            source: row.text("source")?,
            entity_ref: row.text_or_null("entity_ref")?,
            owner: row.text_or_null("owner")?,
            causation: row.text_or_null("causation")?,
        })
    }

    /// Its place in the feed (newest first), for cursors.
    pub fn key(&self) -> ActivityKey {
        ActivityKey {
            time: self.time.clone(),
            stream: self.stream.clone(),
            subject: self.subject.clone(),
            sequence: self.sequence,
        }
    }
}

/// A place in the feed: the feed is ordered by these, newest (greatest) first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ActivityKey {
    /// Event time.
    pub time: String,
    /// `entities` or `locations`.
    pub stream: String,
    /// The subject.
    pub subject: String,
    /// The sequence.
    pub sequence: i64,
}

/// What a subject's past events left that folding the next ones needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectState {
    /// The last sequence recorded.
    pub sequence: i64,
    /// The current owner, while the entity lives.
    pub owner: Option<String>,
}

/// The state of a batch's subjects, by (stream, subject).
pub type ActivityLoaded = FastMap<(String, String), SubjectState>;

/// What a batch writes.
#[derive(Debug, Clone, Default)]
pub struct ActivityChanges {
    /// New rows.
    pub rows: Vec<ActivityRow>,
    /// The new state of every subject the batch touched, sorted by (stream, subject).
    pub subjects: Vec<((String, String), SubjectState)>,
}

/// Which activity to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivityQuery {
    /// Only what this actor did.
    pub actor: Option<String>,
    /// Only what happened to entities this owner owned at the time.
    pub owner: Option<String>,
    /// Continue after (older than) this place.
    pub before: Option<ActivityKey>,
    /// Page size.
    pub limit: usize,
}

/// The activity feed's store: its generations, the state of a batch's subjects (on either
/// stream), writing rows with positions. Adapters implement
/// `ProjectionStore<ActivityLoaded, ActivityChanges>`; this names it.
pub trait ActivityStore: ProjectionStore<ActivityLoaded, ActivityChanges> {}

impl<T: ProjectionStore<ActivityLoaded, ActivityChanges> + ?Sized> ActivityStore for T {}

/// Reading the feed.
#[async_trait]
pub trait ActivityReader: Send + Sync + std::fmt::Debug {
    /// A page of the feed, newest first, and whether more follows.
    async fn activity(&self, query: &ActivityQuery) -> Result<(Vec<ActivityRow>, bool), StoreError>;
}

/// The stream of a topic: its name without the deployment's prefix.
fn stream_of<'a>(topic: &'a str, prefix: &str) -> &'a str {
    topic.strip_prefix(prefix).unwrap_or(topic)
}

/// Folds a batch onto its subjects' state. `prefix` is the topics' prefix.
pub fn fold(batch: &[StoredEvent], mut state: ActivityLoaded, prefix: &str) -> Folded<ActivityChanges> {
    let mut rows = Vec::with_capacity(batch.len());
    let mut touched: FastSet<(String, String)> = FastSet::default();
    let mut skipped = 0;
    for stored in batch {
        let Some(event) = &stored.event else {
            skipped += 1;
            continue;
        };
        let stream = stream_of(&stored.topic, prefix);
        let key = (stream.to_owned(), event.subject.clone());
        let sequence = event.sequence as i64;
        let subject = state.entry(key.clone()).or_default();
        if subject.sequence >= sequence {
            skipped += 1;
            continue;
        }
        subject.sequence = sequence;
        touched.insert(key);
        let (entity_ref, owner) = match event.known_type() {
            Some(EventType::EntityUpserted) => match UpsertView::read(&event.data) {
                Some(upsert) => {
                    subject.owner = upsert.owner().map(str::to_owned);
                    (Some(upsert.entity_ref.into_owned()), subject.owner.clone())
                }
                None => (None, None),
            },
            Some(EventType::EntityDeleted) => (Some(event.subject.clone()), subject.owner.take()),
            Some(EventType::EntityRejected) => {
                let rejected: RejectedView = event.payload().unwrap_or_default();
                // A rejected document of a live entity happened to its current owner.
                (rejected.entity_ref, subject.owner.clone())
            }
            Some(EventType::RejectionCleared) => (None, subject.owner.clone()),
            Some(EventType::LocationRegistered | EventType::LocationUnregistered) => {
                (event.payload::<LocationChanged>().ok().map(|l| l.entity_ref), None)
            }
            _ => (None, None),
        };
        rows.push(ActivityRow {
            time: callboard_events::cloudevent::normalize_time(&event.time).unwrap_or_else(|| event.time.clone()),
            stream: stream.to_owned(),
            subject: event.subject.clone(),
            sequence,
            event_id: event.id.clone(),
            event_type: event.short_type().to_owned(),
            actor: event.actor.clone(),
            source: event.source.clone(),
            entity_ref,
            owner,
            causation: event.causationid.clone(),
        });
    }
    let applied = rows.len();
    // Every subject that had an event applied, in key order (writers apply them in this order).
    let mut subjects: Vec<((String, String), SubjectState)> =
        state.into_iter().filter(|(key, _)| touched.contains(key)).collect();
    subjects.sort_by(|a, b| a.0.cmp(&b.0));
    Folded {
        changes: ActivityChanges { rows, subjects },
        applied,
        skipped,
    }
}

/// The activity projection on a store.
#[derive(Debug, Clone)]
pub struct ActivityProjection {
    store: Arc<dyn ActivityStore>,
    prefix: String,
}

impl ActivityProjection {
    /// Its name, `activity`.
    pub const NAME: &'static str = "activity";

    /// The projection writing through `store`, for topics under `topics`' prefix.
    pub fn new(store: Arc<dyn ActivityStore>, topics: &Topics) -> Self {
        Self {
            store,
            prefix: topics.prefix().to_owned(),
        }
    }
}

impl Projection for ActivityProjection {
    type Loaded = ActivityLoaded;
    type Changes = ActivityChanges;

    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn topics(&self, topics: &Topics) -> Vec<String> {
        vec![topics.entities(), topics.locations()]
    }

    fn store(&self) -> &dyn ProjectionStore<ActivityLoaded, ActivityChanges> {
        self.store.as_ref()
    }

    fn fold(&self, batch: &[StoredEvent], loaded: ActivityLoaded) -> Folded<ActivityChanges> {
        fold(batch, loaded, &self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use callboard_events::{CloudEvent, EventView};
    use serde_json::{Value, json};

    use super::*;

    fn stored(topic: &str, event: CloudEvent, offset: i64) -> StoredEvent {
        StoredEvent {
            topic: topic.into(),
            partition: 0,
            offset,
            event: Some(EventView::from_bytes(&event.to_bytes()).expect("an event")),
        }
    }

    fn event(event_type: EventType, subject: &str, sequence: u64, actor: &str, data: Value) -> CloudEvent {
        CloudEvent::new(event_type, subject, sequence, "file:/c.yaml", actor, data)
    }

    fn upsert(name: &str, sequence: u64, owner: &str, actor: &str) -> StoredEvent {
        let entity_ref = format!("component:default/{name}");
        let data = json!({"entityRef": entity_ref, "uid": "u", "entity": {}, "relations": [
            {"type": "ownedBy", "sourceRef": entity_ref, "targetRef": format!("group:default/{owner}")}]});
        stored(
            "p.entities",
            event(EventType::EntityUpserted, &entity_ref, sequence, actor, data),
            sequence as i64,
        )
    }

    #[test]
    fn rows_name_the_actor_and_the_owner_at_the_time() {
        let a = "component:default/a";
        let batch = [
            upsert("a", 1, "team-a", "provider:serve"),
            upsert("a", 2, "team-b", "user:default/jane"),
            stored(
                "p.entities",
                event(
                    EventType::EntityDeleted,
                    a,
                    3,
                    "user:default/joe",
                    json!({"entityRef": a}),
                ),
                3,
            ),
            stored(
                "p.locations",
                event(
                    EventType::LocationRegistered,
                    "file:/c.yaml",
                    1,
                    "user:default/jane",
                    json!({"location": {"type": "file", "target": "/c.yaml"}, "id": "i", "entityRef": "location:default/generated-x"}),
                ),
                0,
            ),
        ];
        let folded = fold(&batch, ActivityLoaded::default(), "p.");
        assert_eq!((folded.applied, folded.skipped), (4, 0));
        let rows: Vec<(&str, &str, Option<&str>, Option<&str>)> = folded
            .changes
            .rows
            .iter()
            .map(|r| {
                (
                    r.stream.as_str(),
                    r.actor.as_str(),
                    r.entity_ref.as_deref(),
                    r.owner.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("entities", "provider:serve", Some(a), Some("group:default/team-a")),
                ("entities", "user:default/jane", Some(a), Some("group:default/team-b")),
                ("entities", "user:default/joe", Some(a), Some("group:default/team-b")),
                (
                    "locations",
                    "user:default/jane",
                    Some("location:default/generated-x"),
                    None
                ),
            ]
        );
        let state: Vec<_> = folded
            .changes
            .subjects
            .iter()
            .map(|(k, s)| (k.0.as_str(), s.sequence, s.owner.clone()))
            .collect();
        assert_eq!(state, [("entities", 3, None), ("locations", 1, None)]);
    }

    #[test]
    fn events_already_recorded_are_skipped_and_state_carries_over() {
        let mut loaded = ActivityLoaded::default();
        loaded.insert(
            ("entities".into(), "component:default/a".into()),
            SubjectState {
                sequence: 1,
                owner: Some("group:default/team-a".into()),
            },
        );
        let a = "component:default/a";
        let folded = fold(
            &[
                upsert("a", 1, "team-a", "provider:serve"),
                stored(
                    "p.entities",
                    event(
                        EventType::EntityRejected,
                        a,
                        2,
                        "provider:serve",
                        json!({"entityRef": a, "location": "file:/c.yaml", "problems": []}),
                    ),
                    2,
                ),
            ],
            loaded,
            "p.",
        );
        assert_eq!((folded.applied, folded.skipped), (1, 1));
        assert_eq!(folded.changes.rows[0].owner.as_deref(), Some("group:default/team-a"));
    }
}
