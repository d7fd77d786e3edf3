//! Subscriptions of the logs that read their partitions themselves (the embedded log in SQLite and
//! the in-memory log): a group member is assigned every partition of its topics (one process, no
//! rebalancing), reads them in turn so that no partition starves the others, and sleeps until an
//! append wakes it.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::log::{EventLog, LogError, Message, Subscription};

/// A log that keeps its consumer groups' offsets itself.
#[async_trait]
pub trait LocalLog: EventLog + Clone + 'static {
    /// Where `group` resumes a partition, if it committed an offset there.
    async fn committed(&self, group: &str, topic: &str, partition: i32) -> Result<Option<i64>, LogError>;

    /// Records where `group` resumes a partition.
    async fn commit(&self, group: &str, topic: &str, partition: i32, next_offset: i64) -> Result<(), LogError>;
}

/// A subscription of a [`LocalLog`].
#[derive(Debug)]
pub struct LocalSubscription<L> {
    log: L,
    group: String,
    /// (topic, partition, next offset).
    cursors: Vec<(String, i32, i64)>,
    /// Which cursor reads first next time.
    turn: usize,
    /// Bumped by every append in this process.
    appended: watch::Receiver<u64>,
    /// How often to look again for appends of other processes, if they can append.
    recheck: Option<Duration>,
}

impl<L: LocalLog> LocalSubscription<L> {
    /// `group`'s member for `topics`, from where it committed (else the start); woken by
    /// `appended`, and every `recheck` when other processes may append.
    pub async fn start(
        log: L,
        group: &str,
        topics: &[String],
        appended: watch::Receiver<u64>,
        recheck: Option<Duration>,
    ) -> Result<Self, LogError> {
        let mut cursors = Vec::new();
        for topic in topics {
            for partition in 0..log.partitions(topic).await? {
                let next = log.committed(group, topic, partition).await?.unwrap_or(0);
                cursors.push((topic.clone(), partition, next));
            }
        }
        Ok(Self {
            log,
            group: group.to_owned(),
            cursors,
            turn: 0,
            appended,
            recheck,
        })
    }
}

#[async_trait]
impl<L: LocalLog> Subscription for LocalSubscription<L> {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Message>, LogError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            self.appended.borrow_and_update();
            let mut out = Vec::new();
            let count = self.cursors.len();
            for i in 0..count {
                if out.len() >= max {
                    break;
                }
                let (topic, partition, next) = &mut self.cursors[(self.turn + i) % count];
                let batch = self.log.read(topic, *partition, *next, max - out.len()).await?;
                if let Some(last) = batch.last() {
                    *next = last.offset + 1;
                }
                out.extend(batch);
            }
            self.turn = (self.turn + 1) % count.max(1);
            let now = tokio::time::Instant::now();
            if !out.is_empty() || now >= deadline {
                return Ok(out);
            }
            let nap = self.recheck.map_or(deadline - now, |r| r.min(deadline - now));
            let _ = tokio::time::timeout(nap, self.appended.changed()).await;
        }
    }

    async fn seek(&mut self, topic: &str, partition: i32, offset: i64) -> Result<(), LogError> {
        match self.cursors.iter_mut().find(|(t, p, _)| t == topic && *p == partition) {
            Some(cursor) => {
                cursor.2 = offset;
                Ok(())
            }
            None => Err(LogError::Other(format!(
                "partition {partition} of {topic} is not assigned"
            ))),
        }
    }

    async fn commit(&mut self, topic: &str, partition: i32, next_offset: i64) -> Result<(), LogError> {
        self.log.commit(&self.group, topic, partition, next_offset).await
    }

    fn assignment(&self) -> Vec<(String, i32)> {
        self.cursors.iter().map(|(t, p, _)| (t.clone(), *p)).collect()
    }
}
