//! Consuming with positions stored next to the data they produced.
//!
//! A projector writes its rows and the offset of the last message they reflect in one database
//! transaction. The log's own group commits are only a hint: after a crash they may lag (messages
//! are delivered again and skipped here) or be missing (a rebuilt read model): the
//! [`PositionedConsumer`] compares every newly seen partition with the stored position and seeks
//! or skips, so each message is applied exactly once whatever the log remembers.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;

use crate::log::{LogError, Message, Subscription};

/// Where a consumer's data says it is.
#[async_trait]
pub trait PositionStore: Send + Sync {
    /// The offset of the last message applied from this partition, if any.
    async fn applied(&self, topic: &str, partition: i32) -> Result<Option<i64>, LogError>;
}

/// A subscription that delivers each message once, by the consumer's stored positions.
pub struct PositionedConsumer {
    subscription: Box<dyn Subscription>,
    /// Last applied offset per partition, for partitions assigned to us; loaded on first sight.
    applied: HashMap<(String, i32), Option<i64>>,
    /// Partitions whose next delivered message must be exactly the stored successor: anything
    /// later means the log resumed past our data, and we seek back.
    verify: HashSet<(String, i32)>,
}

impl std::fmt::Debug for PositionedConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PositionedConsumer")
            .field("applied", &self.applied)
            .finish_non_exhaustive()
    }
}

impl PositionedConsumer {
    /// Wraps a subscription.
    pub fn new(subscription: Box<dyn Subscription>) -> Self {
        Self {
            subscription,
            applied: HashMap::new(),
            verify: HashSet::new(),
        }
    }

    /// Forgets every cached position, so the next messages are checked against the store again
    /// (after the consumer's data moved, e.g. to a replayed generation).
    pub fn reset(&mut self) {
        self.applied.clear();
        self.verify.clear();
    }

    /// The partitions assigned now.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.subscription.assignment()
    }

    /// The next messages not applied yet.
    pub async fn poll(
        &mut self,
        store: &dyn PositionStore,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Message>, LogError> {
        // Forget partitions that moved to another member: when they come back, their stored
        // position may have advanced.
        let assigned: Vec<(String, i32)> = self.subscription.assignment();
        self.applied.retain(|k, _| assigned.contains(k));
        self.verify.retain(|k| assigned.contains(k));
        // Position newly assigned partitions from our data before reading: the log's resume
        // point may be past it (a rebuilt read model) with nothing new to deliver, which the
        // check on delivered messages below could never notice.
        for key in assigned {
            if self.applied.contains_key(&key) {
                continue;
            }
            let applied = store.applied(&key.0, key.1).await?;
            let next = applied.map_or(0, |a| a + 1);
            match self.subscription.seek(&key.0, key.1, next).await {
                Ok(()) => {
                    self.applied.insert(key.clone(), applied);
                    self.verify.insert(key);
                }
                // Kafka refuses seeks until a partition's fetcher has started; try again on the
                // next poll (delivered messages are checked meanwhile).
                Err(error) => tracing::debug!(%error, topic = key.0, partition = key.1, "seek deferred"),
            }
        }

        let messages = self.subscription.poll(max, wait).await?;
        let mut out = Vec::with_capacity(messages.len());
        let mut reseek: Vec<(String, i32, i64)> = Vec::new();
        for message in messages {
            let key = (message.topic.clone(), message.partition);
            if reseek.iter().any(|(t, p, _)| *t == key.0 && *p == key.1) {
                continue;
            }
            let applied = match self.applied.get(&key) {
                Some(applied) => *applied,
                None => {
                    let applied = store.applied(&key.0, key.1).await?;
                    self.applied.insert(key.clone(), applied);
                    self.verify.insert(key.clone());
                    applied
                }
            };
            let next = applied.map_or(0, |a| a + 1);
            if message.offset < next {
                continue; // Applied before; the log's resume hint lagged.
            }
            // Only the first message after (re)assignment is compared strictly: later gaps in
            // offsets are legitimate in Kafka (e.g. transaction markers of other producers).
            if self.verify.remove(&key) && message.offset > next {
                // The log resumed past what our data reflects (a rebuilt read model, a lost
                // transaction): go back.
                reseek.push((key.0, key.1, next));
                continue;
            }
            self.applied.insert(key, Some(message.offset));
            out.push(message);
        }
        for (topic, partition, offset) in reseek {
            self.subscription.seek(&topic, partition, offset).await?;
            // Messages of this partition already accepted above stay valid (they came first);
            // drop our cached position so it reloads after the seek.
            self.applied.remove(&(topic, partition));
        }
        Ok(out)
    }

    /// Tells the log that everything up to `offset` of a partition is stored (call after the
    /// transaction holding it committed).
    pub async fn stored(&mut self, topic: &str, partition: i32, offset: i64) -> Result<(), LogError> {
        self.subscription.commit(topic, partition, offset + 1).await
    }
}
