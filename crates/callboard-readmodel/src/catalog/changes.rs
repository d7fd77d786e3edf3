//! What folding a batch of the catalog reads (the rows it touches) and writes (the row changes):
//! the catalog projection's side of its store port.

use crate::FastMap;
use crate::FastSet;
use crate::rows::{FacetDelta, LocationRow, RejectionRow};

/// The stored state of a live entity that projecting a new version of it needs.
#[derive(Debug, Clone, Default)]
pub struct Current {
    /// Its uid.
    pub uid: String,
    /// The entity document of its current version, as stored (without `metadata.uid`).
    pub document: String,
    /// When this life of the entity began.
    pub created_at: String,
    /// Its current relations, packed (see [`crate::relations`]).
    pub relations: String,
}

/// What the store knows now about the subjects of a batch.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// Highest history sequence per subject.
    pub applied: FastMap<String, i64>,
    /// Live entities.
    pub entities: FastMap<String, Current>,
    /// Subjects with a rejection row.
    pub rejections: FastSet<String>,
}

/// The columns of an entity row both databases store (each adds its index of the filter keys
/// and search text).
pub const ENTITY_WRITE_COLUMNS: &str = "entity_ref, uid, kind, namespace, name, sequence, content_hash, location_key, origin, created_at, updated_at, owner, title, spec_type, lifecycle, relations, facet_values";

/// An entity row to insert or replace, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityWrite {
    /// Canonical ref.
    pub entity_ref: String,
    /// Stable for the entity's life.
    pub uid: String,
    /// Lowercased kind.
    pub kind: String,
    /// Lowercased namespace.
    pub namespace: String,
    /// Lowercased name.
    pub name: String,
    /// Sequence of the event that made this version (its history row holds the document).
    pub sequence: i64,
    /// Hash of the entity's content (from the event).
    pub content_hash: String,
    /// The file (or `push`) that defines it.
    pub location_key: String,
    /// The registered location it came through.
    pub origin: String,
    /// When this life of the entity began.
    pub created_at: String,
    /// When this version was made.
    pub updated_at: String,
    /// `spec.owner`, canonical.
    pub owner: Option<String>,
    /// `metadata.title`.
    pub title: Option<String>,
    /// `spec.type`, lowercased.
    pub spec_type: Option<String>,
    /// `spec.lifecycle`, lowercased.
    pub lifecycle: Option<String>,
    /// Hashes of its filter keys ([`search::key_hashes`]) and of its relations' other ends
    /// ([`search::endpoint_key`]), sorted.
    pub keys: Vec<u64>,
    /// Text for full-text search.
    pub text: String,
    /// Its current relations, packed.
    pub relations: String,
    /// The values of its [counted facet keys](crate::catalog::COUNTED_FACETS), as written: a
    /// JSON array of `key=value` texts, one per occurrence, so that facets of those keys under
    /// any filter are counted in the database (see [`facet_values`](crate::catalog::facet_values)).
    pub facets: String,
    /// Whether the store holds a row for this ref already (the row is replaced in place; its
    /// index entries must go first).
    pub replaces: bool,
}

/// A history row, as written: documents and payloads as JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryWrite {
    /// The subject.
    pub subject: String,
    /// The per-subject sequence.
    pub sequence: i64,
    /// The event id.
    pub event_id: String,
    /// The short event type, e.g. `entity.upserted.v1`.
    pub event_type: String,
    /// Event time, normalised.
    pub time: String,
    /// Where the change came from.
    pub source: String,
    /// Who acted.
    pub actor: String,
    /// The causing command, if any.
    pub causation: Option<String>,
    /// The entity's uid, for upserts (readers put it back into the document's metadata).
    pub uid: Option<String>,
    /// The entity document, for upserts, exactly as the event carries it.
    pub entity: Option<String>,
    /// The version's relations, packed, for upserts.
    pub relations: Option<String>,
    /// JSON Patch from the previous version.
    pub diff: Option<String>,
    /// The event's payload, for rejections, deletions, clearings and unknown types.
    pub detail: Option<String>,
}

/// The row changes of a batch, to be written in one transaction with the positions.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// New history rows.
    pub history: Vec<HistoryWrite>,
    /// Entity rows to insert or replace.
    pub entity_upserts: Vec<EntityWrite>,
    /// Entity rows to delete.
    pub entity_deletes: Vec<String>,
    /// Rejection rows to insert or replace.
    pub rejection_upserts: Vec<RejectionRow>,
    /// Rejection rows to delete.
    pub rejection_deletes: Vec<String>,
    /// Changes to counted facets.
    pub facet_deltas: Vec<FacetDelta>,
    /// Locations registered.
    pub location_upserts: Vec<LocationRow>,
    /// Locations unregistered.
    pub location_deletes: Vec<String>,
    /// True when relations changed (the graph must be recomputed).
    pub relations_changed: bool,
}
