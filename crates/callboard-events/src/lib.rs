//! The event contract and the event-log port.
//!
//! * [`cloudevent`]: the CloudEvents 1.0 envelope (structured JSON mode) every message uses.
//! * [`types`]: the versioned event types and their payloads — the public contract documented in
//!   `docs/events.md` and `schema/events/`.
//! * [`topics`]: topic names and settings.
//! * [`envelope`]: reading events — the one envelope decoder, lazy or typed, and typed views of
//!   the payloads that borrow from the event's text.
//! * [`log`]: the port every event-log adapter implements (Kafka, embedded SQLite), and
//!   [`consumer`]: consuming with positions stored next to the data they produced; [`memory`]:
//!   an in-memory log for tests of the core; [`local`]: the subscriptions of the logs that read
//!   their partitions themselves (in-memory and embedded).
//! * [`commands`]: the push protocol's client — a command on the commands topic, answered by the
//!   writer with `command.completed.v1`.
//!
//! Architecture invariant: no adapter code here; the crate knows nothing of Kafka or SQL.

pub mod backoff;
pub mod cloudevent;
pub mod commands;
pub mod consumer;
pub mod envelope;
pub mod hash;
pub mod local;
pub mod log;
pub mod memory;
pub mod topics;
pub mod types;

pub use cloudevent::CloudEvent;
pub use envelope::{Envelope, EventView};
pub use log::{EventLog, LogError, Message, Position, Record, Subscription, TopicSpec};
pub use memory::MemoryLog;
pub use topics::Topics;
pub use types::EventType;
