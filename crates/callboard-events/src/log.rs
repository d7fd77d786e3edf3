//! The event-log port. Two adapters implement it — Kafka (`callboard-kafka`) and an embedded
//! SQLite file (`callboard-log-sqlite`) — and one behaviour suite runs against both.
//!
//! Semantics every adapter keeps:
//! * records with the same key land in the same partition, in append order;
//! * `append` returns only once the records are durable (Kafka: `acks=all`; SQLite: committed
//!   with `synchronous=FULL`), with their positions;
//! * offsets in a partition start at 0 and increase by one;
//! * a subscription in a consumer group gets a share of the partitions; its commits are a hint
//!   for where to resume, never the source of truth — consumers that write data store their
//!   positions with that data (see [`crate::consumer`]).

use std::time::Duration;

use async_trait::async_trait;

/// Why a log operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The log cannot be reached right now; retrying later may work.
    #[error("the event log is unavailable: {0}")]
    Unavailable(String),
    /// The topic does not exist.
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    /// Anything else.
    #[error("event log error: {0}")]
    Other(String),
}

/// How long a topic keeps messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Forever (`retention.ms=-1`).
    Forever,
    /// This many milliseconds.
    Millis(i64),
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Full name, prefix included.
    pub name: String,
    /// Number of partitions.
    pub partitions: i32,
    /// Replication factor (ignored by the embedded log).
    pub replication: i16,
    /// Retention.
    pub retention: Retention,
}

/// A record to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The message key; records with equal keys stay in order.
    pub key: String,
    /// The message value (a CloudEvent in structured JSON mode).
    pub value: Vec<u8>,
}

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    /// The partition.
    pub partition: i32,
    /// The offset within the partition.
    pub offset: i64,
}

/// A record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// The key.
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// When the log stored it, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

/// An event log.
#[async_trait]
pub trait EventLog: Send + Sync + std::fmt::Debug {
    /// Creates the topics that do not exist yet (existing ones are left as they are).
    async fn ensure_topics(&self, specs: &[TopicSpec]) -> Result<(), LogError>;

    /// Appends records to `topic`, returning once they are durable, with their positions in
    /// the order of `records`.
    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Position>, LogError>;

    /// The number of partitions of `topic`.
    async fn partitions(&self, topic: &str) -> Result<i32, LogError>;

    /// The next offset of every partition (the high watermark), indexed by partition.
    async fn end_offsets(&self, topic: &str) -> Result<Vec<i64>, LogError>;

    /// Reads up to `max` messages of one partition starting at offset `from`, outside any
    /// consumer group (for rebuilding state and replays).
    async fn read(&self, topic: &str, partition: i32, from: i64, max: usize) -> Result<Vec<Message>, LogError>;

    /// Joins consumer group `group` on `topics`.
    async fn subscribe(&self, group: &str, topics: &[String]) -> Result<Box<dyn Subscription>, LogError>;

    /// A short description for logs, e.g. `embedded log at /data/events.db`.
    fn describe(&self) -> String;
}

/// A member of a consumer group.
#[async_trait]
pub trait Subscription: Send {
    /// Waits up to `wait` for messages of the partitions assigned to this member, returning up to
    /// `max` (possibly none).
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Message>, LogError>;

    /// Moves the read position of an assigned partition to `offset`.
    async fn seek(&mut self, topic: &str, partition: i32, offset: i64) -> Result<(), LogError>;

    /// Records that everything before `next_offset` was processed (a resume hint for the group).
    async fn commit(&mut self, topic: &str, partition: i32, next_offset: i64) -> Result<(), LogError>;

    /// The partitions assigned to this member now.
    fn assignment(&self) -> Vec<(String, i32)>;
}

/// The partition of a key in a log that places keys itself (the embedded and in-memory logs):
/// FNV-1a, a stable, dependency-free hash, so a key maps to the same partition in every version.
/// (Kafka's producer places keys with its own hash.)
pub fn partition_for_key(key: &str, partitions: i32) -> i32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % partitions.max(1) as u64) as i32
}

/// Reads a whole partition range `[from, until)` in batches.
pub async fn read_range(
    log: &dyn EventLog,
    topic: &str,
    partition: i32,
    from: i64,
    until: i64,
    mut each: impl FnMut(Message),
) -> Result<(), LogError> {
    let mut next = from;
    while next < until {
        let batch = log.read(topic, partition, next, 5_000).await?;
        if batch.is_empty() {
            // The high watermark was measured before; an empty read means the data is not
            // visible yet (a lagging replica). Wait a little rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        for message in batch {
            if message.offset >= until {
                return Ok(());
            }
            next = message.offset + 1;
            each(message);
        }
    }
    Ok(())
}
