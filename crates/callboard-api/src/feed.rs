//! The change feed behind subscriptions: tails the entity topic and publishes each event once the
//! read model reflects it, so a subscriber that queries on notification sees the change.
//!
//! Every API process tails the log itself (its own consumer group, never committed, starting at
//! the end), so API replicas need no projector in-process and stay stateless. Subscribers share
//! one bounded broadcast buffer: a subscriber that falls behind skips what it missed (and is told
//! in the log) instead of slowing the feed or other subscribers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use callboard_events::CloudEvent;
use callboard_events::log::EventLog;
use callboard_events::topics::Topics;
use callboard_readmodel::store::ReadStore;
use futures::Stream;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::cache::EntityCache;

/// One change, as subscribers filter it.
#[derive(Debug, Clone)]
pub struct Change {
    /// The subject (an entity ref, or a rejection's subject).
    pub entity_ref: String,
    /// True when the subject is an entity ref.
    pub is_entity: bool,
    /// The event type, e.g. `entity.upserted.v1`.
    pub event_type: String,
    /// The per-subject sequence.
    pub sequence: i64,
    /// When it was appended.
    pub time: String,
    /// Who acted.
    pub actor: String,
    /// Lowercased kind (from the ref).
    pub kind: String,
    /// Lowercased namespace (from the ref).
    pub namespace: String,
    /// The owner ref, when known.
    pub owner: Option<String>,
    /// The registered location the document came through, when known.
    pub origin: Option<String>,
    /// Targets of the relations the entity declares now (lowercased refs).
    pub targets: Vec<String>,
    /// The event's data.
    pub data: Value,
}

impl Change {
    /// The change an event describes.
    pub fn from_event(event: &CloudEvent) -> Self {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        let entity_ref = text(event.data.get("entityRef")).unwrap_or_else(|| event.subject.clone());
        let (kind, rest) = entity_ref.split_once(':').unwrap_or(("", &entity_ref));
        let namespace = rest.split_once('/').map_or("", |(ns, _)| ns);
        let owner = event
            .data
            .get("relations")
            .and_then(Value::as_array)
            .and_then(|rows| {
                rows.iter().find(|r| {
                    r.get("type").and_then(Value::as_str) == Some("ownedBy")
                        && r.get("sourceRef").and_then(Value::as_str) == Some(entity_ref.as_str())
                })
            })
            .and_then(|r| text(r.get("targetRef")));
        let targets = event
            .data
            .get("relations")
            .and_then(Value::as_array)
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| r.get("targetRef").and_then(Value::as_str))
                    .map(str::to_lowercase)
                    .collect()
            })
            .unwrap_or_default();
        Self {
            targets,
            is_entity: entity_ref.contains(':'),
            kind: kind.to_lowercase(),
            namespace: namespace.to_lowercase(),
            owner,
            origin: text(event.data.get("originLocation")),
            event_type: event.event_type.trim_start_matches("dev.callboard.").to_owned(),
            sequence: event.sequence as i64,
            time: event.time.clone(),
            actor: event.actor.clone(),
            data: event.data.clone(),
            entity_ref,
        }
    }
}

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
        if change.is_entity {
            self.cache
                .on_change(&change.entity_ref, change.targets.iter().map(String::as_str));
        }
        // No subscribers is not an error.
        let _ = self.sender.send(Arc::new(change));
    }

    /// Changes from now on.
    pub fn subscribe(&self) -> impl Stream<Item = Arc<Change>> + Send + use<> {
        let receiver = self.sender.subscribe();
        futures::stream::unfold(receiver, |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(change) => return Some((change, receiver)),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "a slow subscriber skipped changes");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }

    /// How many subscribers listen now.
    pub fn subscribers(&self) -> usize {
        self.sender.receiver_count()
    }
}

/// Tails the entity topic from its current end and publishes each event once the projectors of
/// `group` have applied it. Runs until `shutdown` resolves.
pub async fn run(
    log: Arc<dyn EventLog>,
    store: Arc<dyn ReadStore>,
    topics: Topics,
    group: String,
    feed: Feed,
    shutdown: impl Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            result = tail(log.as_ref(), store.as_ref(), &topics, &group, &feed) => {
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
    store: &dyn ReadStore,
    topics: &Topics,
    group: &str,
    feed: &Feed,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let topic = topics.entities();
    // Changes before this start are not seen: the cache is off until the read model reflects
    // everything up to here.
    let session = feed.cache().restart();
    let start: Vec<i64> = log.end_offsets(&topic).await?;
    let feed_group = format!("{}api-feed-{}", topics.prefix(), uuid_like());
    let mut subscription = log.subscribe(&feed_group, std::slice::from_ref(&topic)).await?;
    let mut sought: HashMap<i32, bool> = HashMap::new();
    let mut applied: HashMap<i32, i64> = HashMap::new();
    let mut generation = store.active().await?;
    let mut checked = tokio::time::Instant::now();
    let mut live = false;
    loop {
        let messages = subscription.poll(500, Duration::from_millis(200)).await?;
        if !live {
            live = caught_up(store, group, &topic, &start).await?;
            if live {
                feed.cache().go_live(session);
            }
        }
        // A replay's switch to a new generation changes every row at once, without events.
        if checked.elapsed() >= Duration::from_secs(1) {
            checked = tokio::time::Instant::now();
            let now = store.active().await?;
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
        for message in messages {
            let end = start.get(message.partition as usize).copied().unwrap_or(0);
            if message.offset < end {
                continue;
            }
            let Ok(event) = CloudEvent::from_bytes(&message.value) else {
                continue;
            };
            // The position last seen covers the rest of a burst: ask the store only beyond it.
            let known = applied.get(&message.partition).copied().unwrap_or(-1);
            if known < message.offset {
                let now = wait_applied(store, group, &topic, message.partition, message.offset).await?;
                applied.insert(message.partition, now);
            }
            feed.publish(Change::from_event(&event));
        }
    }
}

/// Whether the projectors of `group` have applied everything before `start` (per partition).
async fn caught_up(
    store: &dyn ReadStore,
    group: &str,
    topic: &str,
    start: &[i64],
) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
    let generation = store.active().await?;
    for (partition, end) in start.iter().enumerate() {
        if *end == 0 {
            continue;
        }
        match store.position(generation, group, topic, partition as i32).await? {
            Some(applied) if applied >= end - 1 => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// Waits until the projectors of `group` have applied `offset` of `topic`/`partition`; returns
/// the position applied then.
async fn wait_applied(
    store: &dyn ReadStore,
    group: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<i64, Box<dyn std::error::Error + Send + Sync>> {
    loop {
        let generation = store.active().await?;
        if let Some(applied) = store.position(generation, group, topic, partition).await?
            && applied >= offset
        {
            return Ok(applied);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A process-unique suffix, so each API process tails with a group of its own.
fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{:x}-{:x}", std::process::id(), nanos)
}
