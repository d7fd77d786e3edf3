//! The rows of the read model. Every adapter stores exactly these; checksums compare them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The current version of a live entity, as readers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityRow {
    /// Canonical ref (primary key).
    pub entity_ref: String,
    /// Stable for the entity's life.
    pub uid: String,
    /// Lowercased kind, namespace and name.
    pub kind: String,
    /// Lowercased namespace.
    pub namespace: String,
    /// Lowercased name.
    pub name: String,
    /// Sequence of the event that made this version.
    pub sequence: i64,
    /// Hash of the entity's content (from the event).
    pub content_hash: String,
    /// The file (or `push`) that defines it.
    pub location_key: String,
    /// The registered location it came through.
    pub origin: String,
    /// When this life of the entity began (event time, RFC 3339).
    pub created_at: String,
    /// When this version was made (event time).
    pub updated_at: String,
    /// `spec.owner`, canonical, when the kind has one (for owner queries and ordering).
    pub owner: Option<String>,
    /// `metadata.title`.
    pub title: Option<String>,
    /// `spec.type`, lowercased.
    pub spec_type: Option<String>,
    /// `spec.lifecycle`, lowercased.
    pub lifecycle: Option<String>,
    /// The entity document of this version, with `metadata.uid` (stored once, in history).
    pub document: Value,
}

/// One event about one subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRow {
    /// The subject (an entity ref, or a rejection subject).
    pub subject: String,
    /// The per-subject sequence.
    pub sequence: i64,
    /// The event id.
    pub event_id: String,
    /// The short event type, e.g. `entity.upserted.v1`.
    pub event_type: String,
    /// Event time, RFC 3339.
    pub time: String,
    /// Where the change came from.
    pub source: String,
    /// Who acted.
    pub actor: String,
    /// The causing command, if any.
    pub causation: Option<String>,
    /// The entity document, for upserts.
    pub entity: Option<Value>,
    /// JSON Patch from the previous version, for upserts after the first and for deletions.
    pub diff: Option<Value>,
    /// The event's payload details for rejections, deletions and clearings.
    pub detail: Option<Value>,
}

/// A relation row with its validity interval; open (current) when `valid_to` is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SpanRow {
    /// The entity whose fields produced the row.
    pub origin: String,
    /// Source of the relation.
    pub source: String,
    /// Relation type, e.g. `ownedBy`.
    pub relation_type: String,
    /// Target of the relation.
    pub target: String,
    /// The origin's sequence that opened it (part of the key: a row can open and close often).
    pub from_sequence: i64,
    /// Event time it started.
    pub valid_from: String,
    /// Event time it ended.
    pub valid_to: Option<String>,
}

/// The latest rejection of a subject, until a good version or a clearing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectionRow {
    /// The subject.
    pub subject: String,
    /// The entity ref, when known.
    pub entity_ref: Option<String>,
    /// The file.
    pub location: String,
    /// The registered location.
    pub origin: String,
    /// Position of the document in the file.
    pub document_index: Option<i64>,
    /// The problems (JSON array of problem records).
    pub problems: Value,
    /// For conflicts: the incumbent location.
    pub conflicts_with: Option<String>,
    /// Event time.
    pub time: String,
    /// The event's sequence.
    pub sequence: i64,
}

/// A registered location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationRow {
    /// `<type>:<target>`.
    pub key: String,
    /// `url`, `file` or `discovery`.
    pub location_type: String,
    /// The target.
    pub target: String,
    /// Registration id.
    pub id: String,
    /// The generated Location entity's ref.
    pub entity_ref: String,
    /// Event time of the registration.
    pub registered_at: String,
}

/// A change to the count of entities having `value` at `key`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FacetDelta {
    /// Lowercased key, e.g. `spec.type`.
    pub key: String,
    /// The original (case-preserved) value.
    pub value: String,
    /// +n or -n.
    pub delta: i64,
}

/// A consumer position stored with the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionOffset {
    /// The partition.
    pub partition: i32,
    /// The last applied offset.
    pub offset: i64,
}
