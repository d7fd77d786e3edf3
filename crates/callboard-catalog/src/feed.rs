//! The change feed behind subscriptions: tails the entity topic and publishes each event once the
//! read model reflects it, so a subscriber that queries on notification sees the change.
//!
//! Every API process tails the log itself (its own consumer group, never committed, starting at
//! the end), so API replicas need no projector in-process and stay stateless. Subscribers share
//! one bounded broadcast buffer: a subscriber that falls behind is told how many changes it
//! missed and its subscription ends — instead of slowing the feed or other subscribers, or
//! silently going on without them.
//!
//! Every change carries a cursor: the feed's position after it (per partition of the entity
//! topic, the offset after the last change published). A subscriber that lost its connection,
//! fell behind, or outlived a server restart subscribes again after its last cursor and is sent
//! every change since from the log, then the live ones (the service does this, see
//! `Catalog::subscribe`). A tail that fails and starts again resumes where it stopped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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
    /// The feed's position after this change (see [`Cursor`]); empty when unknown.
    pub cursor: String,
}

/// A position in the change feed: per partition of the entity topic, the offset after the last
/// change delivered. Clients see it as opaque text (`12.0.7…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(pub Vec<i64>);

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, offset) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{offset}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Cursor {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let offsets: Result<Vec<i64>, _> = text.split('.').map(str::parse::<i64>).collect();
        match offsets {
            Ok(offsets) if !offsets.is_empty() && offsets.len() <= 10_000 && offsets.iter().all(|o| *o >= 0) => {
                Ok(Cursor(offsets))
            }
            _ => Err(format!("{text:?} is not a cursor of the change feed")),
        }
    }
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
            cursor: String::new(),
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
    standing: Arc<Mutex<Standing>>,
    /// Woken whenever the feed moves forward.
    moved: Arc<tokio::sync::Notify>,
}

/// Where the feed stands. Changed and read under one lock with publishing, so a subscriber's
/// snapshot of it and the moment it starts receiving are the same instant.
#[derive(Debug, Default)]
struct Standing {
    /// Per partition, the offset after the last change published (empty until the tail starts).
    next: Vec<i64>,
    /// Whether the read model reflects everything below `next` (true once the tail's first
    /// catch-up is done: before that, old events may not be projected yet).
    live: bool,
}

/// A subscriber's start: the feed's position when it began receiving, whether that position
/// is projected, and the live changes from then on.
pub struct Start {
    /// The feed's position.
    pub cursor: Cursor,
    /// Whether everything below `cursor` is in the read model.
    pub live: bool,
    /// The changes after `cursor`.
    pub changes: std::pin::Pin<Box<dyn Stream<Item = Result<Arc<Change>, Missed>> + Send>>,
}

impl std::fmt::Debug for Start {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Start")
            .field("cursor", &self.cursor)
            .field("live", &self.live)
            .finish_non_exhaustive()
    }
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
            standing: Arc::new(Mutex::new(Standing::default())),
            moved: Arc::default(),
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

    /// Publishes the change read at `partition`/`offset` of the entity topic, with its cursor.
    pub fn publish_at(&self, mut change: Change, partition: i32, offset: i64) {
        let mut standing = self.standing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(next) = standing.next.get_mut(partition as usize) {
            *next = (*next).max(offset + 1);
        }
        change.cursor = Cursor(standing.next.clone()).to_string();
        self.publish(change);
        drop(standing);
        self.moved.notify_waiters();
    }

    /// Waits until the feed has published the changes at `targets` (partition and offset of the
    /// entity topic), and so invalidated what the cache held of them; true at once while the
    /// cache is off (nothing it could serve predates them). Read-your-writes waits for this after
    /// the projectors: a change in the read model but not yet through the feed would still be
    /// answered from the cache's older copy.
    pub async fn wait_published(&self, targets: &[(i32, i64)], timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let moved = self.moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            if !self.cache.is_live() {
                return true;
            }
            {
                let standing = self.standing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let published = |&(partition, offset): &(i32, i64)| {
                    standing.next.get(partition as usize).is_some_and(|next| *next > offset)
                };
                if targets.iter().all(published) {
                    return true;
                }
            }
            if tokio::time::timeout_at(deadline, moved).await.is_err() {
                return false;
            }
        }
    }

    /// Where a tail (re)starting should begin: where the feed stands, if it has stood anywhere
    /// with this many partitions (a tail that failed resumes, missing nothing), else `ends`.
    fn resume_from(&self, ends: &[i64]) -> Vec<i64> {
        let mut standing = self.standing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if standing.next.len() != ends.len() {
            standing.next = ends.to_vec();
        }
        standing.next.clone()
    }

    fn go_live(&self) {
        self.standing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .live = true;
    }

    /// Changes from now on, with the feed's position at this instant.
    pub fn start(&self) -> Start {
        let standing = self.standing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Start {
            cursor: Cursor(standing.next.clone()),
            live: standing.live,
            changes: Box::pin(Self::stream(self.sender.subscribe())),
        }
    }

    /// Changes from now on. A subscriber that falls more than the feed's capacity behind gets
    /// [`Missed`] and nothing more.
    pub fn subscribe(&self) -> impl Stream<Item = Result<Arc<Change>, Missed>> + Send + use<> {
        Self::stream(self.sender.subscribe())
    }

    fn stream(
        receiver: broadcast::Receiver<Arc<Change>>,
    ) -> impl Stream<Item = Result<Arc<Change>, Missed>> + Send + use<> {
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
    let ends: Vec<i64> = log.end_offsets(&topic).await?;
    let before_start: Vec<Target> = ends
        .iter()
        .enumerate()
        .filter(|(_, end)| **end > 0)
        .map(|(partition, end)| Target {
            topic: topic.clone(),
            partition: partition as i32,
            offset: end - 1,
        })
        .collect();
    // From where the feed stood if it stood anywhere (a restarted tail misses nothing), else
    // from the end: the past is history.
    let start = feed.resume_from(&ends);
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
                feed.go_live();
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
        // Newly assigned partitions start where the feed stands.
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
        let mut ready: Vec<(EventView, i32, i64)> = Vec::with_capacity(messages.len());
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
                ready.push((event, message.partition, message.offset));
            }
        }
        progress.wait(&waiting, None).await;
        for (event, partition, offset) in &ready {
            feed.publish_at(Change::from_event(event), *partition, *offset);
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
            cursor: String::new(),
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

    #[test]
    fn cursors_read_back_and_refuse_what_is_not_one() {
        let cursor = Cursor(vec![12, 0, 7]);
        assert_eq!(cursor.to_string(), "12.0.7");
        assert_eq!("12.0.7".parse::<Cursor>(), Ok(cursor));
        for bad in ["", "a.b", "1..2", "-1.0", "1,2"] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad:?}");
        }
    }

    /// Each published change carries the feed's position after it, and a subscriber's start is
    /// that position at the instant it begins receiving.
    #[tokio::test]
    async fn read_your_writes_waits_for_the_feed_while_the_cache_serves() {
        let feed = Feed::with_cache(8, 100);
        let short = Duration::from_millis(50);
        assert!(
            feed.wait_published(&[(0, 3)], short).await,
            "the cache is off: nothing cached can predate the change"
        );
        feed.resume_from(&[2, 0]);
        feed.cache().go_live(feed.cache().restart());
        assert!(!feed.wait_published(&[(0, 3)], short).await, "not published yet");
        assert!(
            feed.wait_published(&[(0, 1)], short).await,
            "published before the feed stood at 2"
        );
        let waiter = {
            let feed = feed.clone();
            tokio::spawn(async move { feed.wait_published(&[(0, 3), (1, 0)], Duration::from_secs(10)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        feed.publish_at(change(3), 0, 3);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "partition 1 is not there yet");
        feed.publish_at(change(4), 1, 0);
        assert!(waiter.await.expect("the waiter"), "both published");
    }

    #[tokio::test]
    async fn changes_carry_the_position_after_them() {
        let feed = Feed::new(8);
        assert_eq!(feed.resume_from(&[5, 0]), vec![5, 0]);
        let start = feed.start();
        assert_eq!((start.cursor.clone(), start.live), (Cursor(vec![5, 0]), false));
        let mut changes = start.changes;
        feed.publish_at(change(1), 1, 0);
        feed.publish_at(change(2), 0, 5);
        assert_eq!(changes.next().await.expect("one").expect("in time").cursor, "5.1");
        assert_eq!(changes.next().await.expect("two").expect("in time").cursor, "6.1");
        // A tail that starts again resumes from there, whatever the log's end is now.
        assert_eq!(feed.resume_from(&[9, 9]), vec![6, 1]);
        feed.go_live();
        assert!(feed.start().live);
    }
}
