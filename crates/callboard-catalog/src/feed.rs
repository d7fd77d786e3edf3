//! The change feed behind subscriptions: tails the entity topic and publishes each event once the
//! read model reflects it, so a subscriber that queries on notification sees the change.
//!
//! Every API process tails the log itself (its own consumer group, never committed, starting at
//! the end), so API replicas need no projector in-process and stay stateless. Subscribers share
//! one bounded broadcast buffer: a subscriber that falls behind is told how many changes it
//! missed and its subscription ends — it must read the current state and subscribe again —
//! instead of slowing the feed or other subscribers, or silently going on without them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use callboard_events::EventView;
use callboard_events::envelope::{RejectedView, UpsertView};
use callboard_events::log::EventLog;
use callboard_events::topics::Topics;
use callboard_events::types::EventType;
use callboard_model::EntityRef;
use callboard_projection::{Positions, Progress, Target};
use futures::Stream;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::cache::EntityCache;

/// One change, as subscribers filter it.
#[derive(Debug, Clone)]
pub struct Change {
    /// The event's subject: an entity ref, a rejection's subject, or a location key.
    pub subject: String,
    /// The entity it is about, when there is one (the subject, or a rejection's ref).
    pub entity: Option<EntityRef>,
    /// The event type, e.g. `entity.upserted.v1`.
    pub event_type: String,
    /// The per-subject sequence.
    pub sequence: i64,
    /// When it was appended.
    pub time: String,
    /// Who acted.
    pub actor: String,
    /// The owner, when the event declares one.
    pub owner: Option<EntityRef>,
    /// The registered location the document came through, when known.
    pub origin: Option<String>,
    /// Targets of the relations the entity declares now.
    pub targets: Vec<EntityRef>,
    /// The payload of a rejection (what `processingErrors` delivers); null for other events.
    pub data: Value,
}

impl Change {
    /// The change an event describes.
    pub fn from_event(event: &EventView) -> Self {
        let parse = |text: &str| EntityRef::from_canonical(text.to_owned()).ok();
        let (mut entity, mut owner, mut targets, mut origin, mut data) = (None, None, Vec::new(), None, Value::Null);
        match event.known_type() {
            Some(EventType::EntityUpserted) => {
                if let Some(upsert) = UpsertView::read(&event.data) {
                    entity = parse(&upsert.entity_ref);
                    owner = upsert.owner().and_then(parse);
                    targets = upsert.relations.iter().filter_map(|r| parse(&r.target)).collect();
                    origin = Some(upsert.origin_location.into_owned());
                }
            }
            Some(EventType::EntityRejected) => {
                let rejected: RejectedView = event.payload().unwrap_or_default();
                entity = rejected.entity_ref.as_deref().and_then(parse);
                origin = Some(rejected.origin_location);
                data = event.data_value();
            }
            _ => {}
        }
        Self {
            entity: entity.or_else(|| parse(&event.subject)),
            owner,
            targets,
            origin,
            data,
            subject: event.subject.clone(),
            event_type: event.short_type().to_owned(),
            sequence: event.sequence as i64,
            time: event.time.clone(),
            actor: event.actor.clone(),
        }
    }
}

/// A subscriber fell this many changes behind and missed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missed(pub u64);

/// The feed subscribers listen to, and the entity cache it keeps fresh.
#[derive(Debug, Clone)]
pub struct Feed {
    sender: broadcast::Sender<Arc<Change>>,
    cache: Arc<EntityCache>,
}

impl Feed {
    /// A feed whose subscribers may fall `capacity` changes behind before skipping; no entity
    /// cache.
    pub fn new(capacity: usize) -> Self {
        Self::with_cache(capacity, 0)
    }

    /// A feed that also keeps up to `cached_entities` hot entities fresh (see [`crate::cache`]).
    pub fn with_cache(capacity: usize, cached_entities: u64) -> Self {
        Self {
            sender: broadcast::channel(capacity.max(1)).0,
            cache: Arc::new(EntityCache::new(cached_entities)),
        }
    }

    /// The entity cache.
    pub fn cache(&self) -> &EntityCache {
        &self.cache
    }

    /// The entity cache, shared.
    pub fn cache_handle(&self) -> Arc<EntityCache> {
        self.cache.clone()
    }

    /// Publishes a change to every current subscriber, after forgetting the cached entities it
    /// can reach (so a subscriber that queries on notification reads the new state).
    pub fn publish(&self, change: Change) {
        if let Some(entity) = &change.entity {
            self.cache.on_change(entity, change.targets.iter().cloned());
        }
        // No subscribers is not an error.
        let _ = self.sender.send(Arc::new(change));
    }

    /// Changes from now on. A subscriber that falls more than the feed's capacity behind gets
    /// [`Missed`] and nothing more.
    pub fn subscribe(&self) -> impl Stream<Item = Result<Arc<Change>, Missed>> + Send + use<> {
        let receiver = self.sender.subscribe();
        futures::stream::unfold(Some(receiver), |receiver| async move {
            let mut receiver = receiver?;
            match receiver.recv().await {
                Ok(change) => Some((Ok(change), Some(receiver))),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "a slow subscriber missed changes; it is told to resync");
                    Some((Err(Missed(missed)), None))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
    }

    /// How many subscribers listen now.
    pub fn subscribers(&self) -> usize {
        self.sender.receiver_count()
    }
}

/// Tails the entity topic from its current end and publishes each event once the projectors
/// (whose progress `progress` follows) have applied it. Runs until `shutdown` resolves.
pub async fn run(
    log: Arc<dyn EventLog>,
    positions: Arc<dyn Positions>,
    progress: Progress,
    topics: Topics,
    feed: Feed,
    shutdown: impl Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            result = tail(log.as_ref(), positions.as_ref(), &progress, &topics, &feed) => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "the change feed failed; restarting it");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn tail(
    log: &dyn EventLog,
    positions: &dyn Positions,
    progress: &Progress,
    topics: &Topics,
    feed: &Feed,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let topic = topics.entities();
    // Changes before this start are not seen: the cache is off until the read model reflects
    // everything up to here.
    let session = feed.cache().restart();
    let start: Vec<i64> = log.end_offsets(&topic).await?;
    let before_start: Vec<Target> = start
        .iter()
        .enumerate()
        .filter(|(_, end)| **end > 0)
        .map(|(partition, end)| Target {
            topic: topic.clone(),
            partition: partition as i32,
            offset: end - 1,
        })
        .collect();
    let feed_group = format!("{}api-feed-{}", topics.prefix(), uuid_like());
    let mut subscription = log.subscribe(&feed_group, std::slice::from_ref(&topic)).await?;
    let mut sought: HashMap<i32, bool> = HashMap::new();
    let mut generation = positions.active().await?;
    let mut checked = tokio::time::Instant::now();
    let mut live = false;
    loop {
        let messages = subscription.poll(500, Duration::from_millis(200)).await?;
        if !live {
            live = progress.reached(&before_start).await?;
            if live {
                feed.cache().go_live(session);
            }
        }
        // A replay's switch to a new generation changes every row at once, without events.
        if checked.elapsed() >= Duration::from_secs(1) {
            checked = tokio::time::Instant::now();
            let now = positions.active().await?;
            if now != generation {
                generation = now;
                feed.cache().clear();
            }
        }
        // Newly assigned partitions start at the end as of start-up (the past is history).
        for (t, partition) in subscription.assignment() {
            if t == topic && !sought.contains_key(&partition) {
                let end = start.get(partition as usize).copied().unwrap_or(0);
                subscription.seek(&t, partition, end).await?;
                sought.insert(partition, true);
            }
        }
        // A burst's last message per partition covers the ones before it: wait once per
        // partition, then publish them all.
        let mut waiting: Vec<Target> = Vec::new();
        let mut ready: Vec<EventView> = Vec::with_capacity(messages.len());
        for message in messages {
            let end = start.get(message.partition as usize).copied().unwrap_or(0);
            if message.offset < end {
                continue;
            }
            match waiting.iter_mut().find(|t| t.partition == message.partition) {
                Some(target) => target.offset = target.offset.max(message.offset),
                None => waiting.push(Target {
                    topic: topic.clone(),
                    partition: message.partition,
                    offset: message.offset,
                }),
            }
            if let Ok(event) = EventView::from_bytes(&message.value) {
                ready.push(event);
            }
        }
        progress.wait(&waiting, None).await;
        for event in &ready {
            feed.publish(Change::from_event(event));
        }
    }
}

/// A process-unique suffix, so each API process tails with a group of its own.
fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{:x}-{:x}", std::process::id(), nanos)
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    fn change(n: i64) -> Change {
        Change {
            subject: format!("component:default/c{n}"),
            entity: None,
            event_type: "entity.upserted.v1".into(),
            sequence: n,
            time: String::new(),
            actor: "user:default/guest".into(),
            owner: None,
            origin: None,
            targets: Vec::new(),
            data: Value::Null,
        }
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_and_its_subscription_ends() {
        let feed = Feed::new(2);
        let mut slow = Box::pin(feed.subscribe());
        let mut quick = Box::pin(feed.subscribe());
        for n in 1..=5 {
            feed.publish(change(n));
            // The quick one reads each change as it comes.
            assert_eq!(quick.next().await.expect("a change").expect("not behind").sequence, n);
        }
        assert_eq!(slow.next().await.expect("told").expect_err("behind"), Missed(3));
        assert!(slow.next().await.is_none(), "and nothing more");
        // The others go on.
        feed.publish(change(6));
        assert_eq!(quick.next().await.expect("a change").expect("not behind").sequence, 6);
    }
}
