//! The read side: what the catalog looks like now and at any instant, projected from the log.
//!
//! * [`rows`]: the rows of the read model, the same for every database.
//! * [`project`]: the projection — a batch of events plus the rows they touch become the row
//!   changes to write. Pure and deterministic: applying the same events, in any interleaving of
//!   partitions, gives the same rows (which is what makes replays and several projector processes
//!   agree, and is tested by comparing table checksums).
//! * [`search`]: Backstage's filter semantics (flattened, lowercased `key=value` pairs) and the
//!   text for full-text search.
//! * [`relations`]: how relations are stored (packed with their entity and its history) and
//!   read back (by either end, over time).
//! * [`diff`]: JSON Patch diffs between versions, for history.
//! * [`store`]: the read-store port, implemented for PostgreSQL and SQLite.
//! * [`projector`]: the loop that consumes the entity topic and writes through a store, with
//!   positions in the same transaction; lag metrics; replay.
//!
//! Architecture invariant: no database or broker crate here; adapters implement [`store::ReadStore`].

pub mod diff;
pub mod filter;
pub mod project;
pub mod projector;
pub mod relations;
pub mod rows;
pub mod search;
pub mod store;
pub mod summary;
