//! The read side: read models projected from the log, and the ports their stores implement.
//!
//! * [`catalog`]: the catalog projection — what the catalog is now and was at any instant. Its
//!   fold is pure and deterministic: the same events, in any interleaving of partitions, give the
//!   same rows (which is what makes replays and several projector processes agree, and is tested
//!   by comparing table checksums).
//! * [`activity`]: the activity projection — who changed what, when, from which source: a feed
//!   per actor and per owner.
//! * [`rows`]: the rows readers see, the same for every database.
//! * [`search`]: Backstage's filter semantics (flattened, lowercased `key=value` pairs) and the
//!   text for full-text search; [`filter`]: the filter language; [`summary`]: what projecting a
//!   new version reads of its document, in one pass.
//! * [`relations`]: how relations are stored (packed with their entity and its history) and
//!   read back (by either end, over time).
//! * [`diff`]: JSON Patch diffs between versions, for history.
//! * [`store`]: the catalog's ports — [`store::ReadStore`] (what its projection writes through)
//!   and [`store::CatalogReader`] (what readers ask) — implemented for PostgreSQL and SQLite.
//! * [`sql`]: the SQL both databases share, written once and run through an adapter's
//!   connection: generations, positions, checksums, every reader and loading what a batch
//!   touches; a [`sql::Dialect`] says what the databases do differently.
//!
//! The loop that runs projections (positions in the same transaction, generations, replay, lag)
//! is `callboard-projection`'s; each projection here implements its `Projection` trait.
//!
//! Architecture invariant: no database or broker crate here; adapters implement the ports.

use std::collections::{HashMap, HashSet};

pub mod activity;
pub mod catalog;
pub mod diff;
pub mod filter;
pub mod relations;
pub mod rows;
pub mod search;
pub mod sql;
pub mod store;
pub mod summary;

/// A hash map with a fast hasher, for the maps a batch fills per event (keyed by refs the log
/// holds). The standard SipHash was 2% of a projector's CPU.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A hash set with a fast hasher (see [`FastMap`]).
pub type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;
