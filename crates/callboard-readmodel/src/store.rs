//! The read-store port: where projected rows live (PostgreSQL in production, SQLite embedded),
//! and the questions the API asks of them. One behaviour suite runs against both adapters.
//!
//! Rows live in *generations*: a replay builds a new generation beside the active one, and
//! [`ReadStore::activate`] switches readers over atomically; the old generation keeps serving
//! until then.

use async_trait::async_trait;
use callboard_model::{EntityRef, Relation};
use callboard_projection::ProjectionStore;
pub use callboard_projection::{Generation, Generations, Positions, StoreError};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::catalog::{Changes, Loaded};
use crate::filter::Filter;
use crate::rows::{EntityRow, HistoryRow, LocationRow, RejectionRow, SpanRow};

/// The catalog's store: where its projection loads the rows a batch touches ([`Loaded`]) and
/// writes a batch's changes ([`Changes`]) with its positions; managing generations comes with it.
/// Adapters implement `ProjectionStore<Loaded, Changes>`; this names it.
pub trait ReadStore: ProjectionStore<Loaded, Changes> {}

impl<T: ProjectionStore<Loaded, Changes> + ?Sized> ReadStore for T {}

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
    /// For a search: entities whose name starts with its first word first, then the rest, each
    /// by ref (without a search, by ref).
    Relevance,
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

/// The questions readers ask of the catalog. Read-only: the service layer holds this port (and
/// [`Positions`]), never [`ReadStore`].
#[async_trait]
pub trait CatalogReader: Send + Sync + std::fmt::Debug {
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

/// The sort key of a row in a list of `order` (searching for `text`), for cursors.
pub fn sort_key(order: Order, text: Option<&str>, row: &EntityRow) -> String {
    match order {
        Order::Ref => row.entity_ref.canonical(),
        Order::Name => format!("{}\u{0}{}", row.name, row.entity_ref),
        Order::UpdatedDesc => format!("{}\u{0}{}", row.updated_at, row.entity_ref),
        Order::Relevance => format!("{}\u{0}{}", relevance(text, &row.name), row.entity_ref),
    }
}

/// The word a search ranks names by: its first, lowercased (names are stored lowercased).
pub fn ranking_word(text: Option<&str>) -> Option<String> {
    text.and_then(|t| crate::search::terms(t).first().map(|w| w.to_lowercase()))
}

/// A row's rank in a search for `text` (see [`Order::Relevance`]): 0 when its (lowercased) name
/// starts with the ranking word, else 1. Read models compute the same in SQL.
pub fn relevance(text: Option<&str>, name: &str) -> i64 {
    match ranking_word(text) {
        Some(word) if name.starts_with(&word) => 0,
        _ => 1,
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

/// [`final_entity`] as JSON text, written straight from the stored document: what a transport
/// sends when it returns whole entities, without copying each document into a tree first (most of
/// the cost of a page of whole entities was that copy).
pub fn final_entity_json(row: &EntityRow, relations: &[Relation]) -> String {
    let pairs = relation_pairs(relations);
    let Value::Object(document) = &row.document else {
        // Never stored (documents are objects); the slow path keeps the one definition.
        return final_entity(row, relations).to_string();
    };
    let etag = etag(&row.content_hash, &pairs);
    let entity = FinalEntity {
        document,
        etag: &etag,
        relations: &pairs,
    };
    serde_json::to_string(&entity).unwrap_or_else(|_| final_entity(row, relations).to_string())
}

/// A document as [`final_entity`] makes it: `metadata.etag` set and `relations` set, each where
/// the document has it already, else last (as a map insert places them).
struct FinalEntity<'a> {
    document: &'a serde_json::Map<String, Value>,
    etag: &'a str,
    relations: &'a [(&'a str, &'a str)],
}

struct Relations<'a>(&'a [(&'a str, &'a str)]);

impl serde::Serialize for Relations<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        struct Pair<'a>(&'a str, &'a str);
        impl serde::Serialize for Pair<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("type", self.0)?;
                map.serialize_entry("targetRef", self.1)?;
                map.end()
            }
        }
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for (t, target) in self.0 {
            seq.serialize_element(&Pair(t, target))?;
        }
        seq.end()
    }
}

struct Metadata<'a> {
    fields: &'a serde_json::Map<String, Value>,
    etag: &'a str,
}

impl serde::Serialize for Metadata<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let has_etag = self.fields.contains_key("etag");
        let mut map = serializer.serialize_map(Some(self.fields.len() + usize::from(!has_etag)))?;
        for (key, value) in self.fields {
            if key == "etag" {
                map.serialize_entry(key, self.etag)?;
            } else {
                map.serialize_entry(key, value)?;
            }
        }
        if !has_etag {
            map.serialize_entry("etag", self.etag)?;
        }
        map.end()
    }
}

impl serde::Serialize for FinalEntity<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let has_relations = self.document.contains_key("relations");
        let mut map = serializer.serialize_map(Some(self.document.len() + usize::from(!has_relations)))?;
        for (key, value) in self.document {
            match (key.as_str(), value) {
                ("relations", _) => map.serialize_entry(key, &Relations(self.relations))?,
                ("metadata", Value::Object(fields)) => map.serialize_entry(
                    key,
                    &Metadata {
                        fields,
                        etag: self.etag,
                    },
                )?,
                _ => map.serialize_entry(key, value)?,
            }
        }
        if !has_relations {
            map.serialize_entry("relations", &Relations(self.relations))?;
        }
        map.end()
    }
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
    use callboard_model::{EntityRef, Relation, RelationType};
    use callboard_projection::template_statements;
    use serde_json::json;

    use super::{EntityRow, final_entity, final_entity_json};

    fn row(document: serde_json::Value) -> EntityRow {
        EntityRow {
            entity_ref: EntityRef::new("component", "default", "a").expect("a ref"),
            uid: "u".into(),
            kind: "component".into(),
            namespace: "default".into(),
            name: "a".into(),
            sequence: 1,
            content_hash: "h".into(),
            location_key: "l".into(),
            origin: "o".into(),
            created_at: "t".into(),
            updated_at: "t".into(),
            owner: None,
            title: None,
            spec_type: None,
            lifecycle: None,
            document,
        }
    }

    #[test]
    fn whole_entities_as_text_are_the_final_entities() {
        let r = |t: &str| EntityRef::from_canonical(t.to_owned()).expect("a ref");
        let source = r("component:default/a");
        let relations = [
            Relation {
                kind: RelationType::OwnedBy,
                source: source.clone(),
                target: r("group:default/x"),
            },
            Relation {
                kind: RelationType::DependsOn,
                source: source.clone(),
                target: r("resource:default/db"),
            },
            Relation {
                kind: RelationType::OwnedBy,
                source,
                target: r("group:default/x"),
            },
        ];
        for document in [
            json!({"apiVersion": "v1", "kind": "Component", "metadata": {"name": "a", "uid": "u"}, "spec": {"x": [1, 2.5, null]}}),
            json!({"kind": "Component", "relations": [], "metadata": {"etag": "old", "name": "a"}, "z": "ünïcode"}),
            json!({"kind": "Component", "metadata": "not an object"}),
            json!({}),
        ] {
            let row = row(document);
            for relations in [&relations[..], &[]] {
                assert_eq!(
                    final_entity_json(&row, relations),
                    final_entity(&row, relations).to_string(),
                    "same text, same key order"
                );
            }
        }
    }

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
