//! The rows of the read model. Every adapter stores exactly these; checksums compare them.

use callboard_model::{EntityRef, Relation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::stored_document;
use crate::store::{StoreError, stored_ref};

/// The current version of a live entity, as readers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityRow {
    /// Canonical ref (primary key).
    pub entity_ref: EntityRef,
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

/// A relation one entity's versions declared, with its validity interval; open (current) when
/// `valid_to` is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SpanRow {
    /// The entity whose fields produced the relation.
    pub origin: EntityRef,
    /// The relation.
    pub relation: Relation,
    /// The origin's sequence that opened it (a relation can open and close often).
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

/// A row read from a database, by column name: adapters implement it for their driver's rows, and
/// every row type is read from it here, once for every database.
pub trait Columns {
    /// A text column.
    fn text(&self, column: &str) -> Result<String, StoreError>;
    /// A nullable text column.
    fn text_or_null(&self, column: &str) -> Result<Option<String>, StoreError>;
    /// An integer column.
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    /// A nullable integer column.
    fn int_or_null(&self, column: &str) -> Result<Option<i64>, StoreError>;
    /// How many columns the row has.
    fn width(&self) -> usize;
    /// The column at `index` as text, whether text or an integer (for checksums).
    fn cell(&self, index: usize) -> Result<Option<String>, StoreError>;
}

/// JSON text read back; text that is not JSON (never written by the projection) reads as null.
fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// What an entity read selects: the row and its current version's document (as `document`).
pub const ENTITY_COLUMNS: &str = "e.entity_ref, e.uid, e.kind, e.namespace, e.name, e.sequence, e.content_hash, e.location_key, e.origin, e.created_at, e.updated_at, e.owner, e.title, e.spec_type, e.lifecycle, h.entity as document";

impl EntityRow {
    /// Reads the columns of [`ENTITY_COLUMNS`]; the document gets its uid back.
    pub fn read(row: &dyn Columns) -> Result<Self, StoreError> {
        let uid = row.text("uid")?;
        Ok(Self {
            entity_ref: stored_ref(row.text("entity_ref")?)?,
            document: row
                .text_or_null("document")?
                .map_or(Value::Null, |d| stored_document(&d, &uid)),
            uid,
            kind: row.text("kind")?,
            namespace: row.text("namespace")?,
            name: row.text("name")?,
            sequence: row.int("sequence")?,
            content_hash: row.text("content_hash")?,
            location_key: row.text("location_key")?,
            origin: row.text("origin")?,
            created_at: row.text("created_at")?,
            updated_at: row.text("updated_at")?,
            owner: row.text_or_null("owner")?,
            title: row.text_or_null("title")?,
            spec_type: row.text_or_null("spec_type")?,
            lifecycle: row.text_or_null("lifecycle")?,
        })
    }
}

/// What a history read selects.
pub const HISTORY_COLUMNS: &str =
    "subject, sequence, event_id, event_type, time, source, actor, causation, entity, diff, detail, uid";

impl HistoryRow {
    /// Reads the columns of [`HISTORY_COLUMNS`]; an upsert's document gets its uid back.
    pub fn read(row: &dyn Columns) -> Result<Self, StoreError> {
        let uid = row.text_or_null("uid")?.unwrap_or_default();
        Ok(Self {
            subject: row.text("subject")?,
            sequence: row.int("sequence")?,
            event_id: row.text("event_id")?,
            event_type: row.text("event_type")?,
            time: row.text("time")?,
            source: row.text("source")?,
            actor: row.text("actor")?,
            causation: row.text_or_null("causation")?,
            entity: row.text_or_null("entity")?.map(|text| stored_document(&text, &uid)),
            diff: row.text_or_null("diff")?.map(|t| json(&t)),
            detail: row.text_or_null("detail")?.map(|t| json(&t)),
        })
    }
}

/// What a rejection read selects.
pub const REJECTION_COLUMNS: &str =
    "subject, entity_ref, location, origin, document_index, problems, conflicts_with, time, sequence";

impl RejectionRow {
    /// Reads the columns of [`REJECTION_COLUMNS`].
    pub fn read(row: &dyn Columns) -> Result<Self, StoreError> {
        Ok(Self {
            subject: row.text("subject")?,
            entity_ref: row.text_or_null("entity_ref")?,
            location: row.text("location")?,
            origin: row.text("origin")?,
            document_index: row.int_or_null("document_index")?,
            problems: json(&row.text("problems")?),
            conflicts_with: row.text_or_null("conflicts_with")?,
            time: row.text("time")?,
            sequence: row.int("sequence")?,
        })
    }
}

/// What a location read selects.
pub const LOCATION_COLUMNS: &str = "key, location_type, target, id, entity_ref, registered_at";

impl LocationRow {
    /// Reads the columns of [`LOCATION_COLUMNS`].
    pub fn read(row: &dyn Columns) -> Result<Self, StoreError> {
        Ok(Self {
            key: row.text("key")?,
            location_type: row.text("location_type")?,
            target: row.text("target")?,
            id: row.text("id")?,
            entity_ref: row.text("entity_ref")?,
            registered_at: row.text("registered_at")?,
        })
    }
}

/// The document a version leaves in effect, from a history row's `event_type`, `entity` and
/// `uid` columns: an upsert's document with its uid; `None` after a deletion.
pub fn version_document(row: &dyn Columns) -> Result<Option<Value>, StoreError> {
    if row.text("event_type")? != "entity.upserted.v1" {
        return Ok(None);
    }
    let uid = row.text_or_null("uid")?.unwrap_or_default();
    Ok(row
        .text_or_null("entity")?
        .map(|text| stored_document(&text, &uid))
        .filter(|document| !document.is_null()))
}
