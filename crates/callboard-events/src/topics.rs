//! Topic names. `callboard.entities` is the catalog's history and is kept forever.

use crate::log::{Retention, TopicSpec};

/// The topic names under a prefix (`CALLBOARD_TOPIC_PREFIX`, default `callboard.`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

/// The default prefix.
pub const DEFAULT_PREFIX: &str = "callboard.";

impl Default for Topics {
    fn default() -> Self {
        Self::new(DEFAULT_PREFIX)
    }
}

impl Topics {
    /// Topics under `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    /// The prefix of every topic (`callboard.` by default).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Entity events: upserted, deleted, rejected. Kept forever: it *is* the history.
    pub fn entities(&self) -> String {
        format!("{}entities", self.prefix)
    }

    /// Location events: registered, unregistered. Kept forever.
    pub fn locations(&self) -> String {
        format!("{}locations", self.prefix)
    }

    /// Commands to the writer (from API replicas) and their completions. One partition, so
    /// there is one writer and a total order; kept for a week.
    pub fn commands(&self) -> String {
        format!("{}commands", self.prefix)
    }

    /// The topics Callboard creates on start, with `partitions` partitions for entity events.
    pub fn specs(&self, partitions: i32, replication: i16) -> Vec<TopicSpec> {
        vec![
            TopicSpec {
                name: self.entities(),
                partitions,
                replication,
                retention: Retention::Forever,
            },
            TopicSpec {
                name: self.locations(),
                partitions: 1,
                replication,
                retention: Retention::Forever,
            },
            TopicSpec {
                name: self.commands(),
                partitions: 1,
                replication,
                retention: Retention::Millis(7 * 24 * 3600 * 1000),
            },
        ]
    }
}
