//! The read-store port: where projected rows live (PostgreSQL in production, SQLite embedded),
//! and the questions the API asks of them. One behaviour suite runs against both adapters.
//!
//! Rows live in *generations*: a replay builds a new generation beside the active one, and
//! [`ReadStore::activate`] switches readers over atomically; the old generation keeps serving
//! until then.

use std::collections::HashMap;

use async_trait::async_trait;
use callboard_model::{EntityRef, Relation};
use callboard_projection::BatchPosition;
pub use callboard_projection::{Generation, Generations, Positions, StoreError};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::catalog::{Changes, Loaded};
use crate::filter::{Filter, RelationCondition, Resolved};
use crate::relations;
use crate::rows::{EntityRow, HistoryRow, LocationRow, RejectionRow, SpanRow};

/// The catalog's store: where its projection loads the rows a batch touches and writes the
/// batch's changes. Managing generations and positions comes with it ([`Generations`]).
#[async_trait]
pub trait ReadStore: Generations {
    /// The rows a batch touches.
    async fn load(&self, generation: Generation, subjects: &[String]) -> Result<Loaded, StoreError>;

    /// Writes a batch's changes and the positions it reaches for consumer `group`, in one
    /// transaction. Positions only move forward: a position lower than the stored one leaves it
    /// as it is. The changes are taken by value, so that an adapter can hand their text to the
    /// database without copying it.
    async fn write(
        &self,
        generation: Generation,
        group: &str,
        changes: Changes,
        positions: &[BatchPosition],
    ) -> Result<(), StoreError>;

    /// How many writes of batches with disjoint subjects the store can usefully take at once
    /// while a generation is being filled (a replay): 1 for a store with a single writer.
    fn parallel_writes(&self) -> usize {
        1
    }
}

/// A ref the read model stored, read back (refs are stored canonical; anything else means the
/// table was written by something else).
pub fn stored_ref(text: String) -> Result<EntityRef, StoreError> {
    EntityRef::from_canonical(text).map_err(|e| StoreError::Other(format!("a stored ref is not a ref: {e}")))
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

/// A current relation as readers see it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelationView {
    /// The relation.
    pub relation: Relation,
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

    /// Which of `refs` are entities now.
    async fn existing(&self, g: Generation, refs: &[String]) -> Result<std::collections::HashSet<String>, StoreError>;

    /// Current relations with a source (or, `incoming`, a target) in `refs`, each saying whether
    /// its target exists ([`CatalogReader::relations`]).
    async fn relation_views(
        &self,
        g: Generation,
        refs: &[EntityRef],
        incoming: bool,
    ) -> Result<Vec<RelationView>, StoreError> {
        if refs.is_empty() {
            return Ok(Vec::new());
        }
        let refs: Vec<String> = refs.iter().map(EntityRef::canonical).collect();
        let rows = self.relation_rows(g, &refs, incoming).await?;
        let mut targets: Vec<String> = rows.iter().map(|r| r.target.clone()).collect();
        targets.sort();
        targets.dedup();
        let existing = self.existing(g, &targets).await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let target_exists = existing.contains(&row.target);
                Some(RelationView {
                    relation: row.into_relation()?,
                    target_exists,
                })
            })
            .collect())
    }

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
    async fn all_rows(&self, g: Generation) -> Result<Vec<relations::Row>, StoreError> {
        Ok(relations::all(&self.packed_relations(g).await?))
    }

    /// A filter with its relation conditions answered (see [`Resolved`]).
    async fn resolve(&self, g: Generation, filter: Option<&Filter>) -> Result<Option<Resolved>, StoreError> {
        let Some(filter) = filter else { return Ok(None) };
        let mut sources: HashMap<RelationCondition, Vec<String>> = HashMap::new();
        for condition in filter.relation_conditions() {
            let rows = if condition.targets.is_empty() {
                self.all_rows(g).await?
            } else {
                self.relation_rows(g, &condition.targets, true).await?
            };
            let met = condition.sources(&rows);
            sources.insert(condition, met);
        }
        Ok(Some(filter.resolve(&sources)))
    }
}

/// The questions readers ask of the catalog. Read-only: the service layer holds this port (and
/// [`Positions`]), never [`ReadStore`].
#[async_trait]
pub trait CatalogReader: Send + Sync {
    /// Current entity rows by ref (missing refs are absent from the result).
    async fn entities(&self, refs: &[EntityRef]) -> Result<Vec<EntityRow>, StoreError>;

    /// A page of entities.
    async fn list(&self, query: &EntityQuery) -> Result<EntityPage, StoreError>;

    /// How many entities match.
    async fn count(&self, filter: Option<&Filter>, text: Option<&str>) -> Result<i64, StoreError>;

    /// Value counts of a key over the entities matching a filter.
    async fn facets(&self, key: &str, filter: Option<&Filter>) -> Result<Vec<(String, i64)>, StoreError>;

    /// Current relations whose source is one of `refs` (outgoing) or, with `incoming`, whose
    /// target is.
    async fn relations(&self, refs: &[EntityRef], incoming: bool) -> Result<Vec<RelationView>, StoreError>;

    /// Every current relation (for building the graph).
    async fn all_relations(&self) -> Result<Vec<Relation>, StoreError>;

    /// The relations in effect at `time` (RFC 3339, normalised).
    async fn relations_at(&self, time: &str) -> Result<Vec<Relation>, StoreError>;

    /// Every relation one entity's versions declared, with its interval (its relations over
    /// time).
    async fn spans(&self, origin: &EntityRef) -> Result<Vec<SpanRow>, StoreError>;

    /// History of a subject (an entity ref, or the subject of a rejection), newest first.
    async fn history(
        &self,
        subject: &str,
        limit: usize,
        before_sequence: Option<i64>,
    ) -> Result<Vec<HistoryRow>, StoreError>;

    /// The entity document as it was at `time` (`None`: it did not exist then).
    async fn entity_at(&self, entity_ref: &EntityRef, time: &str) -> Result<Option<Value>, StoreError>;

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

/// The sort key of a row in a list of `order`, for cursors.
pub fn sort_key(order: Order, row: &EntityRow) -> String {
    match order {
        Order::Ref => row.entity_ref.canonical(),
        Order::Name => format!("{}\u{0}{}", row.name, row.entity_ref),
        Order::UpdatedDesc => format!("{}\u{0}{}", row.updated_at, row.entity_ref),
    }
}

/// The two parts of a sort key of `Order::Name` or `Order::UpdatedDesc` (what a cursor carries).
pub fn split_sort_key(after: &str) -> Result<(&str, &str), StoreError> {
    after
        .split_once('\u{0}')
        .ok_or_else(|| StoreError::Invalid("bad cursor".into()))
}

/// Which rejections.
#[derive(Debug, Clone, Copy)]
pub enum RejectionsBy<'a> {
    /// Of one entity.
    Entity(&'a EntityRef),
    /// Of documents in one file.
    Location(&'a str),
    /// Of everything that came through a registered location.
    Origin(&'a str),
    /// Every pending rejection.
    All,
}

/// The final entity, as Backstage's API returns it: the document with `metadata.uid`,
/// `metadata.etag` and `relations` (each distinct type and target once, sorted by type name, then
/// target).
pub fn final_entity(row: &EntityRow, relations: &[Relation]) -> Value {
    let pairs = relation_pairs(relations);
    let mut document = row.document.clone();
    if let Some(Value::Object(metadata)) = document.get_mut("metadata") {
        metadata.insert("etag".into(), Value::String(etag(&row.content_hash, &pairs)));
    }
    attach_relations(&mut document, &pairs);
    document
}

/// The `(type, target)` pairs of relations, sorted by type name then target, without duplicates:
/// how Backstage lists an entity's `relations`.
pub fn relation_pairs(relations: &[Relation]) -> Vec<(&str, &str)> {
    let mut pairs: Vec<(&str, &str)> = relations.iter().map(|r| (r.kind.as_str(), r.target.as_str())).collect();
    pairs.sort_unstable();
    pairs.dedup();
    pairs
}

/// Sets a document's `relations` to `(type, targetRef)` pairs, in the order given.
pub fn attach_relations(document: &mut Value, relations: &[(&str, &str)]) {
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
pub fn etag(content_hash: &str, relations: &[(&str, &str)]) -> String {
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
    use callboard_projection::template_statements;

    #[test]
    fn the_templates_split_at_the_readers_marker() {
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
