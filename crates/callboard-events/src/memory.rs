//! An event log in memory, for tests of the core that need a log but no storage: given these
//! events, when this happens, then the log holds those events. It keeps the port's semantics
//! (one key's records in one partition, in order; offsets from 0; group positions as resume
//! hints) and passes the same behaviour suite as the two real adapters; every subscription of a
//! group gets every partition, as in the embedded log (one member per group).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::local::{LocalLog, LocalSubscription};
use crate::log::{EventLog, LogError, Message, Position, Record, Subscription, TopicSpec, partition_for_key};

#[derive(Debug, Default)]
struct Inner {
    /// Topic → partitions → messages (a message's offset is its index).
    topics: BTreeMap<String, Vec<Vec<Message>>>,
    /// (group, topic, partition) → next offset.
    committed: HashMap<(String, String, i32), i64>,
}

/// The in-memory log. Clones share the same log.
#[derive(Debug, Clone)]
pub struct MemoryLog {
    inner: Arc<Mutex<Inner>>,
    appended: Arc<watch::Sender<u64>>,
}

impl Default for MemoryLog {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryLog {
    /// An empty log.
    pub fn new() -> Self {
        Self {
            inner: Arc::default(),
            appended: Arc::new(watch::channel(0).0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A test that panicked while holding the lock leaves consistent data behind.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every message of `topic`, partition by partition, in offset order.
    pub fn messages(&self, topic: &str) -> Vec<Message> {
        self.lock()
            .topics
            .get(topic)
            .map(|partitions| partitions.iter().flatten().cloned().collect())
            .unwrap_or_default()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[async_trait]
impl EventLog for MemoryLog {
    async fn ensure_topics(&self, specs: &[TopicSpec]) -> Result<(), LogError> {
        let mut inner = self.lock();
        for spec in specs {
            inner
                .topics
                .entry(spec.name.clone())
                .or_insert_with(|| vec![Vec::new(); spec.partitions.max(1) as usize]);
        }
        Ok(())
    }

    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Position>, LogError> {
        let positions = {
            let mut inner = self.lock();
            let partitions = inner
                .topics
                .get_mut(topic)
                .ok_or_else(|| LogError::UnknownTopic(topic.to_owned()))?;
            let count = partitions.len() as i32;
            let timestamp_ms = now_ms();
            records
                .into_iter()
                .map(|record| {
                    let partition = partition_for_key(&record.key, count);
                    let messages = &mut partitions[partition as usize];
                    let offset = messages.len() as i64;
                    messages.push(Message {
                        topic: topic.to_owned(),
                        partition,
                        offset,
                        key: record.key,
                        value: record.value,
                        timestamp_ms,
                    });
                    Position { partition, offset }
                })
                .collect()
        };
        self.appended.send_modify(|n| *n += 1);
        Ok(positions)
    }

    async fn partitions(&self, topic: &str) -> Result<i32, LogError> {
        self.lock()
            .topics
            .get(topic)
            .map(|p| p.len() as i32)
            .ok_or_else(|| LogError::UnknownTopic(topic.to_owned()))
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<i64>, LogError> {
        self.lock()
            .topics
            .get(topic)
            .map(|p| p.iter().map(|m| m.len() as i64).collect())
            .ok_or_else(|| LogError::UnknownTopic(topic.to_owned()))
    }

    async fn read(&self, topic: &str, partition: i32, from: i64, max: usize) -> Result<Vec<Message>, LogError> {
        let inner = self.lock();
        let partitions = inner
            .topics
            .get(topic)
            .ok_or_else(|| LogError::UnknownTopic(topic.to_owned()))?;
        let messages = partitions
            .get(partition as usize)
            .ok_or_else(|| LogError::Other(format!("{topic} has no partition {partition}")))?;
        let from = from.clamp(0, messages.len() as i64) as usize;
        Ok(messages[from..].iter().take(max).cloned().collect())
    }

    async fn subscribe(&self, group: &str, topics: &[String]) -> Result<Box<dyn Subscription>, LogError> {
        let appended = self.appended.subscribe();
        // Only this process appends: nothing to look for between wake-ups.
        Ok(Box::new(
            LocalSubscription::start(self.clone(), group, topics, appended, None).await?,
        ))
    }

    fn describe(&self) -> String {
        "in-memory log".into()
    }
}

#[async_trait]
impl LocalLog for MemoryLog {
    async fn committed(&self, group: &str, topic: &str, partition: i32) -> Result<Option<i64>, LogError> {
        let key = (group.to_owned(), topic.to_owned(), partition);
        Ok(self.lock().committed.get(&key).copied())
    }

    async fn commit(&self, group: &str, topic: &str, partition: i32, next_offset: i64) -> Result<(), LogError> {
        self.lock()
            .committed
            .insert((group.to_owned(), topic.to_owned(), partition), next_offset);
        Ok(())
    }
}
