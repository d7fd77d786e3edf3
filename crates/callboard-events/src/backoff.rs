//! Capped, jittered exponential backoff between retries of a role whose dependency is down.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Delays that double from `first` up to `cap`, each drawn at random from its upper half, so
/// that the replicas of a role that lost the same database do not come back in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    attempt: u32,
}

impl Default for Backoff {
    /// 200 ms, doubling, at most 5 s: a restarted PostgreSQL or broker is back within a few
    /// seconds, and the role should notice within one more.
    fn default() -> Self {
        Self::new(Duration::from_millis(200), Duration::from_secs(5))
    }
}

impl Backoff {
    /// Delays from `first`, doubling, never above `cap`.
    pub fn new(first: Duration, cap: Duration) -> Self {
        Self { first, cap, attempt: 0 }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.first.saturating_mul(1u32 << self.attempt.min(16)).min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        // A random fraction in [0.5, 1): RandomState is seeded from the OS per instance.
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let fraction = 0.5 + (random >> 11) as f64 / (1u64 << 53) as f64 / 2.0;
        ceiling.mul_f64(fraction)
    }

    /// The dependency answered again: the next failure starts from the first delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_jitter() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let ceilings = [100, 200, 400, 800, 1_000, 1_000];
        for ceiling in ceilings {
            let delay = backoff.next_delay();
            let ceiling = Duration::from_millis(ceiling);
            assert!(
                delay >= ceiling / 2 && delay < ceiling,
                "{delay:?} outside [{:?}, {ceiling:?})",
                ceiling / 2
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() < Duration::from_millis(100));
    }
}
