//! Providers and the writer: sources become change events.
//!
//! * [`scan`] reads a registered location completely (files, URLs, Location entities followed
//!   recursively, discovery folders) into a [`decide::SyncBatch`];
//! * [`decide`] turns a batch, or a pushed entity, into events, by comparing with [`state`];
//! * [`writer`] owns the state, appends the decided events, processes commands from the API (sent
//!   with `callboard_events::commands::CommandClient`), and runs the scans: at start, on file
//!   changes ([`watch`]) and on a schedule with jitter.
//!
//! Architecture invariant: exactly one writer appends entity events. Embedded, a lock file in the
//! data directory guarantees it; on Kafka, the writer is the member of the `<prefix>writer`
//! consumer group that holds the single partition of the commands topic.

pub mod decide;
pub mod scan;
pub mod state;
pub mod watch;
pub mod writer;

pub use decide::{Counts, Decision, Scanned, SyncBatch};
pub use scan::Scanner;
pub use state::State;
pub use writer::{SyncReport, Writer, WriterConfig, WriterError};
