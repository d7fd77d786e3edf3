//! Which projection goes first when several run in one process: the catalog is what clients
//! query, so while it catches up (behind an import, after a restart) the projections that follow
//! it (the activity feed) wait, and leave it the cores. They catch up as soon as it has.
//!
//! "Catching up" is read from the leader's batches: a full batch means more was waiting, and a
//! poll that finds nothing means the leader has reached the log's end (its last batch may have
//! been full by chance: with `--batch 1`, every batch is). A follower never waits longer than
//! [`Precedence::MAX_WAIT`] at a time, so a leader that stalls (or stops) holds the others back
//! by one batch per interval at most, never for good.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// The leader's state, shared by the projectors of one process.
#[derive(Debug, Clone, Default)]
pub struct Precedence {
    catching_up: Arc<AtomicBool>,
    caught_up: Arc<Notify>,
}

impl Precedence {
    /// The longest a follower waits before taking a batch anyway.
    pub const MAX_WAIT: Duration = Duration::from_secs(2);

    /// The leader wrote a batch of `applied` events, of at most `batch`.
    pub fn leader_wrote(&self, applied: usize, batch: usize) {
        let catching_up = applied >= batch;
        self.catching_up.store(catching_up, Ordering::Relaxed);
        if !catching_up {
            self.caught_up.notify_waiters();
        }
    }

    /// The leader polled the log and found nothing new: it has caught up.
    pub fn leader_idle(&self) {
        if self.catching_up.swap(false, Ordering::Relaxed) {
            self.caught_up.notify_waiters();
        }
    }

    /// The leader stopped: followers go on alone.
    pub fn leader_stopped(&self) {
        self.catching_up.store(false, Ordering::Relaxed);
        self.caught_up.notify_waiters();
    }

    /// Whether the leader is catching up now.
    pub fn leader_catching_up(&self) -> bool {
        self.catching_up.load(Ordering::Relaxed)
    }

    /// Waits (a follower, before its next batch) until the leader has caught up, or
    /// [`Self::MAX_WAIT`] has passed.
    pub async fn follow(&self) {
        let deadline = tokio::time::Instant::now() + Self::MAX_WAIT;
        loop {
            // Listening before looking: a release between the two is not missed.
            let caught_up = self.caught_up.notified();
            tokio::pin!(caught_up);
            caught_up.as_mut().enable();
            if !self.leader_catching_up() || tokio::time::timeout_at(deadline, caught_up).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A follower in a task of its own; it returns how long it waited.
    fn follower(precedence: &Precedence) -> tokio::task::JoinHandle<Duration> {
        let precedence = precedence.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            precedence.follow().await;
            started.elapsed()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn followers_wait_while_the_leader_catches_up() {
        let precedence = Precedence::default();
        precedence.leader_wrote(2_000, 2_000);
        assert!(precedence.leader_catching_up());
        let follower = follower(&precedence);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!follower.is_finished(), "the follower waits");
        precedence.leader_wrote(10, 2_000);
        let waited = follower.await.expect("follower");
        assert_eq!(waited, Duration::from_millis(500), "released when the leader caught up");
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_that_finds_nothing_new_releases_followers() {
        let precedence = Precedence::default();
        // The last batch before the log's end happened to be full.
        precedence.leader_wrote(1, 1);
        let follower = follower(&precedence);
        tokio::time::sleep(Duration::from_millis(200)).await;
        precedence.leader_idle();
        assert_eq!(follower.await.expect("follower"), Duration::from_millis(200));
        assert!(!precedence.leader_catching_up());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_leader_holds_followers_back_for_a_bounded_time() {
        let precedence = Precedence::default();
        precedence.leader_wrote(2_000, 2_000);
        let started = tokio::time::Instant::now();
        precedence.follow().await;
        assert_eq!(started.elapsed(), Precedence::MAX_WAIT);
        precedence.leader_stopped();
        let started = tokio::time::Instant::now();
        precedence.follow().await;
        assert_eq!(started.elapsed(), Duration::ZERO, "a stopped leader holds no one back");
    }
}
