//! What a projection is to the runtime: a fold from batches of events to row changes, with a
//! place to write them together with the positions they reflect.

use async_trait::async_trait;
use callboard_events::EventView;
use callboard_events::cloudevent::normalize_time;
use callboard_events::log::Message;
use callboard_events::topics::Topics;

use crate::tables::{Generation, Generations, StoreError};

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

impl StoredEvent {
    /// Decodes a log message (its payload stays JSON text until a fold reads it).
    pub fn decode(message: Message) -> Self {
        let event = EventView::from_bytes(&message.value).ok();
        if event.is_none() {
            tracing::warn!(topic = %message.topic, partition = message.partition, offset = message.offset, "skipping a message that is not a CloudEvent");
        }
        Self {
            topic: message.topic,
            partition: message.partition,
            offset: message.offset,
            event,
        }
    }
}

/// The subjects of a batch, sorted and distinct: whose rows a fold may read.
pub fn subjects(batch: &[StoredEvent]) -> Vec<String> {
    let mut out: Vec<String> = batch
        .iter()
        .filter_map(|e| e.event.as_ref().map(|e| e.subject.clone()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Where a batch leaves one partition: its last offset and the time of its last event (for lag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPosition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The batch's last offset in the partition (events that were not CloudEvents included).
    pub offset: i64,
    /// The normalised time of its last event, when the partition had one in the batch.
    pub time: Option<String>,
}

/// The positions a batch reaches, in (topic, partition) order.
pub fn batch_positions(batch: &[StoredEvent]) -> Vec<BatchPosition> {
    let mut out: Vec<BatchPosition> = Vec::new();
    let mut last_event: Vec<Option<&EventView>> = Vec::new();
    for stored in batch {
        let index = match out
            .iter()
            .position(|p| p.partition == stored.partition && p.topic == stored.topic)
        {
            Some(index) => index,
            None => {
                out.push(BatchPosition {
                    topic: stored.topic.clone(),
                    partition: stored.partition,
                    offset: stored.offset,
                    time: None,
                });
                last_event.push(None);
                out.len() - 1
            }
        };
        out[index].offset = out[index].offset.max(stored.offset);
        if let Some(event) = &stored.event {
            last_event[index] = Some(event);
        }
    }
    // Only the last event of each partition needs its time normalised.
    for (position, event) in out.iter_mut().zip(last_event) {
        position.time = event.map(|e| normalize_time(&e.time).unwrap_or_else(|| e.time.clone()));
    }
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    out
}

/// A folded batch, and how many of its events it applied and skipped.
#[derive(Debug)]
pub struct Folded<C> {
    /// The row changes.
    pub changes: C,
    /// Events applied.
    pub applied: usize,
    /// Events skipped (applied before, not CloudEvents, or unreadable).
    pub skipped: usize,
}

/// A batch's changes, where they go and the positions they reach: what a store writes in one
/// transaction.
#[derive(Debug)]
pub struct Batch<'a, C> {
    /// The generation written.
    pub generation: Generation,
    /// The consumer group whose positions are stored.
    pub group: &'a str,
    /// The row changes.
    pub changes: C,
    /// Where the batch leaves each partition. Positions only move forward: one lower than the
    /// stored one leaves it as it is.
    pub positions: &'a [BatchPosition],
}

/// Where a projection's rows live: its generations, the rows a batch's subjects have (`L`), and
/// writing a batch's changes (`C`) with its positions.
#[async_trait]
pub trait ProjectionStore<L: Send + 'static, C: Send + 'static>: Generations {
    /// The stored rows of `subjects` that folding needs.
    async fn load(&self, generation: Generation, subjects: &[String]) -> Result<L, StoreError>;

    /// Writes a batch in one transaction: its changes and the positions it reaches.
    async fn write(&self, batch: Batch<'_, C>) -> Result<(), StoreError>;

    /// How many writes of batches with disjoint subjects the store can usefully take at once
    /// while a generation is being filled (a replay): 1 for a store with a single writer.
    fn parallel_writes(&self) -> usize {
        1
    }
}

/// A read model folded from the log.
///
/// The runtime ([`crate::run`], [`crate::replay`]) consumes the projection's topics in batches:
/// it decodes a batch, has the [`store`](Projection::store) load the rows its subjects have,
/// [`fold`](Projection::fold)s the batch onto them (pure, on the blocking pool), and has the store
/// write the changes together with the positions they reach, in one transaction. Folding must be
/// deterministic — the same events, in any interleaving of partitions, give the same rows — and a
/// subject's rows must change only through its own events: that is what makes incremental
/// projection, replays and several processes agree, and what lets the runtime fold one batch
/// while the previous one is written.
pub trait Projection: Send + Sync + 'static {
    /// What a batch reads of the stored rows.
    type Loaded: Default + Send + 'static;
    /// What a batch writes.
    type Changes: Send + 'static;

    /// A short, stable name (`catalog`, `activity`): metrics, logs and the registry row of its
    /// generations.
    fn name(&self) -> &'static str;

    /// The topics it folds.
    fn topics(&self, topics: &Topics) -> Vec<String>;

    /// Where its rows live.
    fn store(&self) -> &dyn ProjectionStore<Self::Loaded, Self::Changes>;

    /// The row changes of a batch, given what was loaded. Pure and deterministic.
    fn fold(&self, batch: &[StoredEvent], loaded: Self::Loaded) -> Folded<Self::Changes>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use callboard_events::CloudEvent;
    use callboard_events::types::EventType;

    fn message(partition: i32, offset: i64, time: Option<&str>) -> StoredEvent {
        let value = match time {
            Some(time) => {
                let mut event = CloudEvent::new(
                    EventType::EntityDeleted,
                    format!("component:default/e{offset}"),
                    1,
                    "s",
                    "a",
                    serde_json::json!({}),
                );
                event.time = time.into();
                event.to_bytes()
            }
            None => b"not an event".to_vec(),
        };
        StoredEvent::decode(Message {
            topic: "t".into(),
            partition,
            offset,
            key: String::new(),
            value,
            timestamp_ms: 0,
        })
    }

    #[test]
    fn positions_are_the_last_offset_and_the_last_event_time_per_partition() {
        let batch = [
            message(1, 7, Some("2026-01-01T00:00:00Z")),
            message(0, 3, Some("2026-01-02T00:00:00+01:00")),
            message(1, 8, None),
            message(2, 1, None),
        ];
        let positions = batch_positions(&batch);
        let short: Vec<(i32, i64, Option<&str>)> = positions
            .iter()
            .map(|p| (p.partition, p.offset, p.time.as_deref()))
            .collect();
        assert_eq!(
            short,
            [
                (0, 3, Some("2026-01-01T23:00:00.000Z")),
                (1, 8, Some("2026-01-01T00:00:00.000Z")),
                (2, 1, None)
            ]
        );
        assert_eq!(subjects(&batch), ["component:default/e3", "component:default/e7"]);
    }
}
