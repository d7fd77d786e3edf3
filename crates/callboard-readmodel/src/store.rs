//! The read-store port: where projected rows live (PostgreSQL in production, SQLite embedded),
//! and the questions the API asks of them. One behaviour suite runs against both adapters.
//!
//! Rows live in *generations*: a replay builds a new generation beside the active one, and
//! [`ReadStore::activate`] switches readers over atomically; the old generation keeps serving
//! until then.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::filter::{Filter, RelationCondition, Resolved};
use crate::project::{Changes, Loaded};
use crate::relations;
use crate::rows::{EntityRow, HistoryRow, LocationRow, RejectionRow, SpanRow};

/// A generation of the read model's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Generation(pub i64);

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached right now.
    #[error("the read model is unavailable: {0}")]
    Unavailable(String),
    /// A query was invalid (a bad cursor, a bad filter).
    #[error("invalid query: {0}")]
    Invalid(String),
    /// Anything else.
    #[error("read model error: {0}")]
    Other(String),
}

/// The write side: what projectors and replays need.
#[async_trait]
pub trait ReadStore: Send + Sync {
    /// Creates the registry tables if needed; returns the active generation (creating the
    /// first one when there is none).
    async fn prepare(&self) -> Result<Generation, StoreError>;

    /// The generation readers use now.
    async fn active(&self) -> Result<Generation, StoreError>;

    /// Creates a new, empty generation (for a replay), without the indexes only readers need.
    async fn create_generation(&self) -> Result<Generation, StoreError>;

    /// Builds the readers' indexes of `generation` if it lacks them, then makes it the one
    /// readers use, atomically.
    async fn activate(&self, generation: Generation) -> Result<(), StoreError>;

    /// Drops a generation's tables.
    async fn drop_generation(&self, generation: Generation) -> Result<(), StoreError>;

    /// The rows a batch touches.
    async fn load(&self, generation: Generation, subjects: &[String]) -> Result<Loaded, StoreError>;

    /// Writes a batch's changes and its positions for consumer `group`, in one transaction.
    /// Positions only move forward: a position lower than the stored one leaves it as it is.
    /// The changes are taken by value, so that an adapter can hand their text to the database
    /// without copying it.
    async fn write(&self, generation: Generation, group: &str, changes: Changes) -> Result<(), StoreError>;

    /// How many writes of batches with disjoint subjects the store can usefully take at once
    /// while a generation is being filled (a replay): 1 for a store with a single writer.
    fn parallel_writes(&self) -> usize {
        1
    }

    /// The last applied offset of a partition for `group`.
    async fn position(
        &self,
        generation: Generation,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, StoreError>;

    /// Every stored position and the time of its last event, for lag: (group, topic, partition)
    /// → (offset, event time).
    async fn positions(
        &self,
        generation: Generation,
    ) -> Result<BTreeMap<(String, String, i32), (i64, String)>, StoreError>;

    /// A checksum per table of a generation's projected rows (positions excluded), to compare
    /// read models built in different ways.
    async fn checksums(&self, generation: Generation) -> Result<BTreeMap<String, String>, StoreError>;
}

/// The statements of a generation's table template (`migrations/templates`): those that make
/// its tables and the indexes writers need, then — after the `-- @readers` line — the indexes only
/// readers need, which a replay builds just before readers switch over
/// ([`ReadStore::activate`]). Comment lines are dropped; statements end at `;`.
pub fn template_statements(template: &str) -> (Vec<String>, Vec<String>) {
    match template.split_once("-- @readers") {
        // The marker's line is a comment: the readers' part starts after it.
        Some((writers, rest)) => (
            statements(writers),
            statements(rest.split_once('\n').map_or("", |(_, after)| after)),
        ),
        None => (statements(template), Vec::new()),
    }
}

fn statements(text: &str) -> Vec<String> {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    code.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// How to order a list of entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// By canonical ref (Backstage's default).
    #[default]
    Ref,
    /// By name, then ref.
    Name,
    /// Most recently changed first.
    UpdatedDesc,
}

/// A page request.
#[derive(Debug, Clone, Default)]
pub struct EntityQuery {
    /// Only entities matching this.
    pub filter: Option<Filter>,
    /// Full-text search terms.
    pub text: Option<String>,
    /// Ordering.
    pub order: Order,
    /// Continue after this sort key (from a previous page's last row).
    pub after: Option<String>,
    /// Page size.
    pub limit: usize,
}

/// A page of entities with the sort key of each, for cursors.
#[derive(Debug, Clone, Default)]
pub struct EntityPage {
    /// The rows, with their sort keys.
    pub rows: Vec<(String, EntityRow)>,
    /// Whether more rows follow.
    pub has_more: bool,
}

/// A relation row as readers see it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelationView {
    /// Source.
    pub source: String,
    /// Type.
    pub relation_type: String,
    /// Target.
    pub target: String,
    /// False when the target is not in the catalog (a dangling relation).
    pub target_exists: bool,
}

/// Reading relations packed in entity rows (see [`relations`]): an adapter says how it finds the
/// packed lists; selecting rows from them and answering a filter's relation conditions is the same
/// for every adapter.
#[async_trait]
pub trait PackedRelations: Send + Sync {
    /// `(ref, packed relations)` of the entities `refs` name and of those whose relations mention
    /// one of them: every entity holding a relation row with an end in `refs` (found through the
    /// filter key each relation end contributes, [`crate::search::endpoint_key`]).
    async fn relation_candidates(&self, g: Generation, refs: &[String]) -> Result<Vec<(String, String)>, StoreError>;

    /// `(ref, packed relations)` of every entity.
    async fn packed_relations(&self, g: Generation) -> Result<Vec<(String, String)>, StoreError>;

    /// Relation rows with a source (or, `incoming`, a target) in `refs`.
    async fn relation_rows(
        &self,
        g: Generation,
        refs: &[String],
        incoming: bool,
    ) -> Result<Vec<relations::Row>, StoreError> {
        let candidates = self.relation_candidates(g, refs).await?;
        Ok(relations::select(refs, incoming, &candidates))
    }

    /// Every current relation row.
    async fn all_rows(&self, g: Generation) -> Result<Vec<(String, String, String)>, StoreError> {
        Ok(relations::all(&self.packed_relations(g).await?))
    }

    /// A filter with its relation conditions answered (see [`Resolved`]).
    async fn resolve(&self, g: Generation, filter: Option<&Filter>) -> Result<Option<Resolved>, StoreError> {
        let Some(filter) = filter else { return Ok(None) };
        let mut sources: HashMap<RelationCondition, Vec<String>> = HashMap::new();
        for condition in filter.relation_conditions() {
            let rows: Vec<(String, String, String)> = if condition.targets.is_empty() {
                self.all_rows(g).await?
            } else {
                self.relation_rows(g, &condition.targets, true)
                    .await?
                    .into_iter()
                    .map(relations::Row::into_tuple)
                    .collect()
            };
            let met = condition.sources(&rows);
            sources.insert(condition, met);
        }
        Ok(Some(filter.resolve(&sources)))
    }
}

/// The questions the API asks.
#[async_trait]
pub trait CatalogReader: Send + Sync {
    /// Current entity rows by ref (missing refs are absent from the result).
    async fn entities(&self, refs: &[String]) -> Result<Vec<EntityRow>, StoreError>;

    /// A page of entities.
    async fn list(&self, query: &EntityQuery) -> Result<EntityPage, StoreError>;

    /// How many entities match.
    async fn count(&self, filter: Option<&Filter>, text: Option<&str>) -> Result<i64, StoreError>;

    /// Value counts of a key over the entities matching a filter.
    async fn facets(&self, key: &str, filter: Option<&Filter>) -> Result<Vec<(String, i64)>, StoreError>;

    /// Current relations whose source is one of `refs` (outgoing) or, with `incoming`, whose
    /// target is.
    async fn relations(&self, refs: &[String], incoming: bool) -> Result<Vec<RelationView>, StoreError>;

    /// Every current relation row (for building the graph).
    async fn all_relations(&self) -> Result<Vec<(String, String, String)>, StoreError>;

    /// Relation rows valid at `time` (RFC 3339).
    async fn relations_at(&self, time: &str) -> Result<Vec<(String, String, String)>, StoreError>;

    /// All relation rows with their intervals for one origin (history of its fields).
    async fn spans(&self, origin: &str) -> Result<Vec<SpanRow>, StoreError>;

    /// History of a subject, newest first.
    async fn history(
        &self,
        subject: &str,
        limit: usize,
        before_sequence: Option<i64>,
    ) -> Result<Vec<HistoryRow>, StoreError>;

    /// The entity document as it was at `time` (`None`: it did not exist then).
    async fn entity_at(&self, entity_ref: &str, time: &str) -> Result<Option<Value>, StoreError>;

    /// Entities as they were at `time`, in ref order after `after`: the latest version of up to
    /// `limit` subjects, `None` for those deleted by then (so callers page on, skipping them).
    async fn entities_at(
        &self,
        time: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Option<Value>)>, StoreError>;

    /// Pending rejections: by entity ref, by file location, or all of a registered location.
    async fn rejections(&self, by: RejectionsBy<'_>) -> Result<Vec<RejectionRow>, StoreError>;

    /// Registered locations.
    async fn locations(&self) -> Result<Vec<LocationRow>, StoreError>;

    /// An opaque token that changes whenever relation rows change and is never reused by another
    /// generation or database (graph caches, including the shared one, key on it).
    async fn graph_version(&self) -> Result<String, StoreError>;
}

/// The document a history row leaves behind, for `entities_at`: the entity of an upsert, `None`
/// after a deletion (or an unreadable document).
pub fn version_document(event_type: &str, entity: Option<&str>) -> Option<Value> {
    (event_type == "entity.upserted.v1")
        .then_some(entity)
        .flatten()
        .and_then(|text| serde_json::from_str(text).ok())
}

/// Which rejections.
#[derive(Debug, Clone, Copy)]
pub enum RejectionsBy<'a> {
    /// Of one entity.
    Entity(&'a str),
    /// Of documents in one file.
    Location(&'a str),
    /// Of everything that came through a registered location.
    Origin(&'a str),
    /// Every pending rejection.
    All,
}

/// The final entity, as Backstage's API returns it: the document with `metadata.uid`,
/// `metadata.etag` and `relations` (distinct type and target, sorted).
pub fn final_entity(row: &EntityRow, relations: &[(String, String)]) -> Value {
    let mut relations: Vec<&(String, String)> = relations.iter().collect();
    relations.sort();
    relations.dedup();
    let mut document = row.document.clone();
    if let Some(Value::Object(metadata)) = document.get_mut("metadata") {
        metadata.insert("etag".into(), Value::String(etag(&row.content_hash, &relations)));
    }
    attach_relations(&mut document, &relations);
    document
}

/// Sets a document's `relations` to `(type, targetRef)` pairs, in the order given.
pub fn attach_relations(document: &mut Value, relations: &[&(String, String)]) {
    if let Value::Object(map) = document {
        map.insert(
            "relations".into(),
            Value::Array(
                relations
                    .iter()
                    .map(|(t, target)| serde_json::json!({"type": t, "targetRef": target}))
                    .collect(),
            ),
        );
    }
}

/// Changes whenever the final entity changes: its content or its relations.
pub fn etag(content_hash: &str, relations: &[&(String, String)]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(content_hash.as_bytes());
    for (t, target) in relations {
        hasher.update(b"\n");
        hasher.update(t.as_bytes());
        hasher.update(b" ");
        hasher.update(target.as_bytes());
    }
    hex::encode(&hasher.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_split_at_the_readers_marker() {
        let template = "-- a table\ncreate table t (a int);\ninsert into t values (1);\n-- @readers: only readers need these\n-- more words\ncreate index i on t (a);\n";
        let (tables, indexes) = template_statements(template);
        assert_eq!(tables, ["create table t (a int)", "insert into t values (1)"]);
        assert_eq!(indexes, ["create index i on t (a)"]);
        assert_eq!(template_statements("create table t (a int);").1, Vec::<String>::new());
        for real in [
            include_str!("../../../migrations/templates/sqlite-generation.sql"),
            include_str!("../../../migrations/templates/postgres-generation.sql"),
        ] {
            let (tables, indexes) = template_statements(real);
            assert!(tables.iter().all(|s| !s.contains("@readers")) && !tables.is_empty());
            assert!(
                !indexes.is_empty() && indexes.iter().all(|s| s.starts_with("create index")),
                "{indexes:?}"
            );
        }
    }
}
