//! Waiting until a projection has applied given log positions: the one mechanism behind
//! read-your-writes mutations, the change feed (which publishes a change only once the read model
//! reflects it) and anything else that must not run ahead of the projectors.
//!
//! Positions live in the read model's database, written by whichever process projects. However
//! many tasks wait, one poller per [`Progress`] reads them (every 20 ms, only while someone
//! waits) and wakes the waiters whose positions were reached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::tables::{Positions, StoreError};

/// How often the poller reads the stored positions while someone waits.
const POLL: Duration = Duration::from_millis(20);

/// A log position: topic, partition, offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset that must be applied.
    pub offset: i64,
}

/// The applied offsets of the watched group, as last read.
#[derive(Debug, Default)]
struct Snapshot {
    /// (topic, partition) → last applied offset. Empty until the first read.
    applied: HashMap<(String, i32), i64>,
}

impl Snapshot {
    fn covers(&self, target: &Target) -> bool {
        self.applied
            .get(&(target.topic.clone(), target.partition))
            .is_some_and(|applied| *applied >= target.offset)
    }
}

struct Inner {
    positions: Arc<dyn Positions>,
    group: String,
    snapshot: watch::Sender<Snapshot>,
    /// The running poller, if any; it stops when nobody waits.
    poller: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Where a projection group is in the log, and a way to wait for it. Cheap to clone.
#[derive(Clone)]
pub struct Progress {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("group", &self.inner.group)
            .finish_non_exhaustive()
    }
}

impl Progress {
    /// The progress of consumer group `group`, read from `positions`.
    pub fn new(positions: Arc<dyn Positions>, group: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                positions,
                group: group.into(),
                snapshot: watch::channel(Snapshot::default()).0,
                poller: Mutex::new(None),
            }),
        }
    }

    /// The group watched.
    pub fn group(&self) -> &str {
        &self.inner.group
    }

    /// Reads the applied positions of the group now (in the active generation).
    pub async fn read(&self) -> Result<HashMap<(String, i32), i64>, StoreError> {
        let generation = self.inner.positions.active().await?;
        let stored = self.inner.positions.positions(generation).await?;
        Ok(stored
            .into_iter()
            .filter(|((group, _, _), _)| *group == self.inner.group)
            .map(|((_, topic, partition), (offset, _))| ((topic, partition), offset))
            .collect())
    }

    /// Whether every target is applied now (one read).
    pub async fn reached(&self, targets: &[Target]) -> Result<bool, StoreError> {
        let applied = self.read().await?;
        Ok(targets.iter().all(|t| {
            applied
                .get(&(t.topic.clone(), t.partition))
                .is_some_and(|a| *a >= t.offset)
        }))
    }

    /// Waits until every target is applied; `false` when `timeout` passes first (`None`: wait as
    /// long as it takes). Errors reading the positions are retried: they count against the time.
    pub async fn wait(&self, targets: &[Target], timeout: Option<Duration>) -> bool {
        if targets.is_empty() {
            return true;
        }
        let mut receiver = self.inner.snapshot.subscribe();
        // Positions only move forward, so a snapshot that covers the targets, however old, is
        // right; one that does not is read again until it does.
        self.ensure_poller();
        let waiting = async {
            loop {
                {
                    let snapshot = receiver.borrow_and_update();
                    if targets.iter().all(|t| snapshot.covers(t)) {
                        return;
                    }
                }
                if receiver.changed().await.is_err() {
                    return;
                }
                // The poller stops when it sees no receivers; one that raced our subscription
                // is restarted.
                self.ensure_poller();
            }
        };
        match timeout {
            None => {
                waiting.await;
                true
            }
            Some(timeout) => tokio::time::timeout(timeout, waiting).await.is_ok(),
        }
    }

    /// Starts the poller unless it runs.
    fn ensure_poller(&self) {
        let mut poller = self.inner.poller.lock().unwrap_or_else(|e| e.into_inner());
        if poller.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let inner = Arc::downgrade(&self.inner);
        *poller = Some(tokio::spawn(async move {
            loop {
                let Some(inner) = inner.upgrade() else { return };
                // Nobody waits: stop (a new waiter starts another poller).
                if inner.snapshot.receiver_count() == 0 {
                    return;
                }
                let progress = Progress { inner };
                match progress.read().await {
                    Ok(applied) => progress.inner.snapshot.send_modify(|s| s.applied = applied),
                    Err(error) => tracing::debug!(error = %error.chain(), "reading projection positions failed"),
                }
                drop(progress);
                tokio::time::sleep(POLL).await;
            }
        }));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::tables::Generation;

    /// Positions that advance when told, counting reads.
    #[derive(Debug, Default)]
    struct Fake {
        applied: AtomicI64,
        reads: AtomicUsize,
    }

    #[async_trait]
    impl Positions for Fake {
        async fn active(&self) -> Result<Generation, StoreError> {
            Ok(Generation(1))
        }
        async fn position(&self, _: Generation, _: &str, _: &str, _: i32) -> Result<Option<i64>, StoreError> {
            unreachable!("the progress reads every position at once")
        }
        async fn positions(&self, _: Generation) -> Result<BTreeMap<(String, String, i32), (i64, String)>, StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let applied = self.applied.load(Ordering::SeqCst);
            Ok([
                (("g".into(), "t".into(), 0), (applied, String::new())),
                (("other".into(), "t".into(), 0), (1_000, String::new())),
            ]
            .into())
        }
    }

    fn target(offset: i64) -> Target {
        Target {
            topic: "t".into(),
            partition: 0,
            offset,
        }
    }

    #[tokio::test]
    async fn many_waiters_share_one_poller_and_wake_when_reached() {
        let fake = Arc::new(Fake::default());
        let progress = Progress::new(fake.clone(), "g");
        assert!(
            !progress.wait(&[target(5)], Some(Duration::from_millis(100))).await,
            "not reached: times out"
        );
        assert!(
            !progress.reached(&[target(5)]).await.expect("read"),
            "another group's position does not count"
        );
        let waiters: Vec<_> = (0..50)
            .map(|_| {
                let progress = progress.clone();
                tokio::spawn(async move { progress.wait(&[target(5)], Some(Duration::from_secs(10))).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let reads_before = fake.reads.load(Ordering::SeqCst);
        fake.applied.store(5, Ordering::SeqCst);
        for waiter in waiters {
            assert!(waiter.await.expect("joined"), "reached");
        }
        let reads = fake.reads.load(Ordering::SeqCst) - reads_before;
        assert!(reads < 20, "one poller for fifty waiters, not one each ({reads} reads)");
        assert!(progress.wait(&[], None).await, "nothing to wait for");
        assert!(progress.reached(&[target(5)]).await.expect("read"));
    }
}
