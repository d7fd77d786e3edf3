//! The event contract and the event-log port.
//!
//! * [`cloudevent`]: the CloudEvents 1.0 envelope (structured JSON mode) every message uses.
//! * [`types`]: the versioned event types and their payloads — the public contract documented in
//!   `docs/events.md` and `schema/events/`.
//! * [`topics`]: topic names and settings.
//! * [`log`]: the port every event-log adapter implements (Kafka, embedded SQLite), and
//!   [`consumer`]: consuming with positions stored next to the data they produced.
//!
//! Architecture invariant: no adapter code here; the crate knows nothing of Kafka or SQL.

pub mod cloudevent;
pub mod consumer;
pub mod hash;
pub mod log;
pub mod topics;
pub mod types;

pub use cloudevent::CloudEvent;
pub use log::{EventLog, LogError, Message, Position, Record, Subscription, TopicSpec};
pub use topics::Topics;
pub use types::EventType;
