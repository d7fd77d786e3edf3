//! Entities in the schema: the `Entity` interface and one type per kind ([`kinds`]), all backed
//! by one [`Node`] (a current row, or a past version's document), with the records their fields
//! list ([`records`]). Relation fields resolve through the service layer, batched per request by
//! data loaders.

mod kinds;
mod records;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::Field;
use async_graphql::registry::Registry;
use async_graphql::{
    Context, ContextSelectionSet, Json, Name, Object, OutputType, Positioned, Result, SelectionField, ServerResult,
    Value as ConstValue,
};
use async_graphql_value::RAW_VALUE_TOKEN;
use callboard_catalog::vocabulary::{
    EntityRef, EntityRow, RejectionsBy, Relation as Related, RelationView, attach_relations, final_entity_json,
    relation_pairs,
};
use callboard_catalog::{Catalog, Include, Instant, Outgoing, Principal};
use futures::future::BoxFuture;
use serde_json::Value;

pub use kinds::*;
pub use records::{Link, Profile, Rejection, Version};

use crate::error::{OrGraphql, bad_input, from_catalog};
use crate::schema::{catalog, page_size, principal};

/// JSON already written as text, sent as the `JSON` scalar without being copied into a tree of
/// GraphQL values first (whole entities are most of a page's bytes).
#[derive(Debug, Clone)]
pub struct RawJson(pub(crate) String);

impl OutputType for RawJson {
    fn type_name() -> Cow<'static, str> {
        <Json<Value> as OutputType>::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        // The same `JSON` scalar as every other JSON field.
        <Json<Value> as OutputType>::create_type_info(registry)
    }

    async fn resolve(&self, _ctx: &ContextSelectionSet<'_>, _field: &Positioned<Field>) -> ServerResult<ConstValue> {
        // An object holding only this token serializes as the raw text it carries.
        let mut object = IndexMap::new();
        object.insert(Name::new(RAW_VALUE_TOKEN), ConstValue::String(self.0.clone()));
        Ok(ConstValue::Object(object))
    }
}

/// A relation between two entities.
#[derive(Debug, Clone)]
pub struct Relation(pub(crate) RelationView);

/// A relation between two entities.
#[Object]
impl Relation {
    /// The relation type (`ownedBy`, `dependsOn`, …).
    #[graphql(name = "type")]
    async fn relation_type(&self) -> &str {
        self.0.relation.kind.as_str()
    }
    /// Where it starts.
    async fn source_ref(&self) -> &str {
        self.0.relation.source.as_str()
    }
    /// Where it points.
    async fn target_ref(&self) -> &str {
        self.0.relation.target.as_str()
    }
    /// True when the target is not in the catalog.
    async fn dangling(&self) -> bool {
        !self.0.target_exists
    }
}

/// What a [`RefLoader`] asks the service for: the values of some refs, as one principal sees
/// them.
type Fetch<V> = for<'a> fn(
    &'a Catalog,
    &'a Principal,
    &'a [EntityRef],
) -> BoxFuture<'a, callboard_catalog::error::Result<HashMap<EntityRef, V>>>;

/// Loads values by ref through the service, batching the keys of one moment; keys carry the
/// principal, so one batch never answers one caller with another's view.
pub(crate) struct RefLoader<V> {
    catalog: Catalog,
    fetch: Fetch<V>,
}

/// Current entity rows by ref.
pub(crate) type EntityLoader = RefLoader<Arc<EntityRow>>;

/// Current outgoing relations by source ref.
pub(crate) type RelationLoader = RefLoader<Outgoing>;

impl EntityLoader {
    pub(crate) fn entities(catalog: Catalog) -> Self {
        Self {
            catalog,
            fetch: |catalog, principal, refs| Box::pin(catalog.load_entities(principal, refs)),
        }
    }
}

impl RelationLoader {
    pub(crate) fn relations(catalog: Catalog) -> Self {
        Self {
            catalog,
            fetch: |catalog, principal, refs| Box::pin(catalog.outgoing(principal, refs)),
        }
    }
}

impl<V: Clone + Send + Sync + 'static> Loader<(Principal, EntityRef)> for RefLoader<V> {
    type Value = V;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[(Principal, EntityRef)]) -> Result<HashMap<(Principal, EntityRef), V>, Self::Error> {
        let mut out = HashMap::with_capacity(keys.len());
        for (principal, refs) in by_principal(keys) {
            let values = (self.fetch)(&self.catalog, &principal, &refs)
                .await
                .map_err(from_catalog)?;
            out.extend(values.into_iter().map(|(r, value)| ((principal.clone(), r), value)));
        }
        Ok(out)
    }
}

fn by_principal(keys: &[(Principal, EntityRef)]) -> HashMap<Principal, Vec<EntityRef>> {
    let mut groups: HashMap<Principal, Vec<EntityRef>> = HashMap::new();
    for (principal, entity_ref) in keys {
        groups.entry(principal.clone()).or_default().push(entity_ref.clone());
    }
    groups
}

/// Current entities by ref, in order, absent ones left out: cache hits at once, the rest in one
/// batched load. Relations come along when cached; otherwise they load on demand.
pub(crate) async fn load_current(ctx: &Context<'_>, refs: &[EntityRef]) -> Result<Vec<Node>> {
    let (catalog, principal) = (catalog(ctx), principal(ctx));
    let (mut found, missing) = catalog.cached_entities(principal, refs);
    if !missing.is_empty() {
        let loader = ctx.data_unchecked::<DataLoader<EntityLoader>>();
        let keys = missing.into_iter().map(|r| (principal.clone(), r));
        found.extend(loader.load_many(keys).await?.into_iter().map(|((_, r), row)| (r, row)));
    }
    Ok(current_nodes(ctx, refs, &found))
}

/// The current entities `refs` name in `found`, in order, with their relations when cached.
fn current_nodes(ctx: &Context<'_>, refs: &[EntityRef], found: &HashMap<EntityRef, Arc<EntityRow>>) -> Vec<Node> {
    let (catalog, principal) = (catalog(ctx), principal(ctx));
    refs.iter()
        .filter_map(|r| found.get(r))
        .map(|row| {
            let mut node = Node::current(row.clone());
            node.relations = catalog.cached_outgoing(principal, &row.entity_ref);
            node
        })
        .collect()
}

/// Fields of an entity answered from its own document and row: everything else (`raw`,
/// `relations` and every field that returns related entities) needs its relations.
const OWN_FIELDS: &[&str] = &[
    "__typename",
    "ref",
    "kind",
    "namespace",
    "name",
    "title",
    "description",
    "tags",
    "labels",
    "annotations",
    "links",
    "uid",
    "createdAt",
    "updatedAt",
    "asOf",
    "spec",
    "history",
    "rejections",
    "specType",
    "lifecycle",
    "definition",
    "profile",
    "target",
    "targets",
    "presence",
    "parameters",
    "steps",
    "output",
];

/// Fields that need an entity's relations but not the entities they point at.
const RELATION_FIELDS: &[&str] = &["raw", "relations"];

/// What to read with entities whose selections are `entities` (the `entity` field itself, or a
/// list's `nodes` and `edges { node }`): their relations when a field needs them, and the
/// entities they point at when a field returns those. A field not named here is taken to need
/// both, so a new field is at worst slower, never wrong (what is not read loads on demand).
pub(crate) fn include_for<'a>(entities: impl IntoIterator<Item = SelectionField<'a>>) -> Include {
    let mut include = Include::default();
    for entity in entities {
        for field in entity.selection_set() {
            let name = field.name();
            if OWN_FIELDS.contains(&name) {
                continue;
            }
            include.relations = true;
            if !RELATION_FIELDS.contains(&name) {
                include.neighbours = true;
            }
        }
    }
    include
}

/// One current entity asked for on its own (the `entity` query): read at once with what its
/// selection needs, without waiting for a batch.
pub(crate) async fn load_alone(ctx: &Context<'_>, entity_ref: &EntityRef) -> Result<Option<Entity>> {
    let include = include_for(ctx.look_ahead().selection_fields());
    let found = catalog(ctx)
        .entity_with(principal(ctx), entity_ref, include)
        .await
        .gql()?;
    Ok(found.map(|single| {
        let mut node = Node::current(single.row);
        node.relations = single.relations;
        node.neighbours = single.neighbours;
        node.into_entity()
    }))
}

/// One current entity.
pub(crate) async fn load_entity(ctx: &Context<'_>, entity_ref: &EntityRef) -> Result<Option<Entity>> {
    Ok(load_current(ctx, std::slice::from_ref(entity_ref))
        .await?
        .into_iter()
        .next()
        .map(Node::into_entity))
}

/// An entity as it was at `at`.
pub(crate) async fn entity_at(ctx: &Context<'_>, entity_ref: &EntityRef, at: &Instant) -> Result<Option<Entity>> {
    let document = catalog(ctx).entity_at(principal(ctx), entity_ref, at).await.gql()?;
    Ok(document.map(|document| Node::past(entity_ref.clone(), document, at.clone()).into_entity()))
}

/// What every entity type is backed by: a current row, or a past version's document.
#[derive(Debug, Clone)]
pub struct Node {
    pub(crate) entity_ref: EntityRef,
    /// The current row; `None` for a past version.
    row: Option<Arc<EntityRow>>,
    /// A past version's document (a current entity's is in its row).
    past: Option<Arc<Value>>,
    at: Option<Instant>,
    /// Outgoing relations, when loaded with the entity.
    pub(crate) relations: Option<Outgoing>,
    /// The related entities of a whole page, loaded with it.
    pub(crate) neighbours: Option<Arc<HashMap<EntityRef, Arc<EntityRow>>>>,
}

impl Node {
    /// A current entity from its row alone (relations load on demand).
    pub(crate) fn current(row: Arc<EntityRow>) -> Self {
        Self {
            entity_ref: row.entity_ref.clone(),
            row: Some(row),
            past: None,
            at: None,
            relations: None,
            neighbours: None,
        }
    }

    /// A past version.
    pub(crate) fn past(entity_ref: EntityRef, document: Value, at: Instant) -> Self {
        Self {
            entity_ref,
            row: None,
            past: Some(Arc::new(document)),
            at: Some(at),
            relations: None,
            neighbours: None,
        }
    }

    /// The schema type for this entity's kind.
    pub(crate) fn into_entity(self) -> Entity {
        match self.entity_ref.kind() {
            "component" => Entity::Component(Component(self)),
            "api" => Entity::Api(Api(self)),
            "resource" => Entity::Resource(Resource(self)),
            "system" => Entity::System(System(self)),
            "domain" => Entity::Domain(Domain(self)),
            "group" => Entity::Group(Group(self)),
            "user" => Entity::User(User(self)),
            "location" => Entity::Location(Location(self)),
            "template" => Entity::Template(Template(self)),
            _ => Entity::OtherEntity(OtherEntity(self)),
        }
    }

    fn document(&self) -> &Value {
        match (&self.row, &self.past) {
            (Some(row), _) => &row.document,
            (None, Some(past)) => past,
            (None, None) => &Value::Null,
        }
    }

    fn str_at(&self, pointer: &str) -> Option<String> {
        self.document()
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    fn json_at(&self, pointer: &str) -> Json<Value> {
        Json(self.document().pointer(pointer).cloned().unwrap_or(Value::Null))
    }

    fn strings_at(&self, pointer: &str) -> Vec<String> {
        self.document()
            .pointer(pointer)
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// Relations leaving this entity (now, or at the instant it was read for).
    async fn outgoing(&self, ctx: &Context<'_>) -> Result<Outgoing> {
        if let Some(relations) = &self.relations {
            return Ok(relations.clone());
        }
        let (catalog, principal) = (catalog(ctx), principal(ctx));
        match &self.at {
            None => {
                if let Some(hit) = catalog.cached_outgoing(principal, &self.entity_ref) {
                    return Ok(hit);
                }
                let loader = ctx.data_unchecked::<DataLoader<RelationLoader>>();
                Ok(loader
                    .load_one((principal.clone(), self.entity_ref.clone()))
                    .await?
                    .unwrap_or_default())
            }
            Some(at) => {
                let relations = catalog.relations_at(principal, &self.entity_ref, at).await.gql()?;
                // Whether a past relation's target existed then is not recorded.
                Ok(Arc::new(
                    relations
                        .into_iter()
                        .map(|relation| RelationView {
                            relation,
                            target_exists: true,
                        })
                        .collect(),
                ))
            }
        }
    }

    /// The entities of the relations of `relation_type` whose targets are of `kind` (any kind
    /// when `None`), in relation order, absent targets left out; with `first`, of the first
    /// `first` such relations (checked against the page limit), so that the work is bounded by it
    /// however many an entity has.
    async fn related(
        &self,
        ctx: &Context<'_>,
        relation_type: &str,
        kind: Option<&str>,
        first: Option<i32>,
    ) -> Result<Vec<Node>> {
        let limit = match first {
            Some(first) => page_size(ctx, Some(first))?,
            None => usize::MAX,
        };
        let refs: Vec<EntityRef> = self
            .outgoing(ctx)
            .await?
            .iter()
            .map(|view| &view.relation)
            .filter(|r| r.kind.as_str().eq_ignore_ascii_case(relation_type))
            .filter(|r| kind.is_none_or(|k| r.target.kind() == k))
            .map(|r| r.target.clone())
            .take(limit)
            .collect();
        self.resolve(ctx, refs).await
    }

    /// The entities `refs` name, in order (absent ones left out), as of this entity's instant.
    /// One batched load for the whole list: loading them one by one would cost a round of
    /// queries per element.
    async fn resolve(&self, ctx: &Context<'_>, refs: Vec<EntityRef>) -> Result<Vec<Node>> {
        match (&self.at, &self.neighbours) {
            (None, Some(neighbours)) => {
                // Loaded with the page: every existing target is here.
                Ok(current_nodes(ctx, &refs, neighbours))
            }
            (None, None) => load_current(ctx, &refs).await,
            (Some(at), _) => {
                let (catalog, principal) = (catalog(ctx), principal(ctx));
                let found = futures::future::try_join_all(refs.iter().map(|r| async move {
                    let document = catalog.entity_at(principal, r, at).await.gql()?;
                    Ok::<_, async_graphql::Error>(document.map(|d| Node::past(r.clone(), d, at.clone())))
                }))
                .await?;
                Ok(found.into_iter().flatten().collect())
            }
        }
    }

    async fn first_related(&self, ctx: &Context<'_>, relation_type: &str, kind: Option<&str>) -> Result<Option<Node>> {
        Ok(self.related(ctx, relation_type, kind, None).await?.into_iter().next())
    }

    async fn raw(&self, ctx: &Context<'_>) -> Result<RawJson> {
        let outgoing = self.outgoing(ctx).await?;
        let relations: Vec<Related> = outgoing.iter().map(|view| view.relation.clone()).collect();
        Ok(RawJson(match &self.row {
            Some(row) => final_entity_json(row, &relations),
            None => {
                let mut document = self.document().clone();
                attach_relations(&mut document, &relation_pairs(&relations));
                document.to_string()
            }
        }))
    }

    async fn relations(
        &self,
        ctx: &Context<'_>,
        relation_type: Option<String>,
        incoming: bool,
    ) -> Result<Vec<Relation>> {
        let rows: Vec<RelationView> = if incoming {
            if self.at.is_some() {
                return Err(bad_input("incoming relations are not available asOf an instant yet"));
            }
            catalog(ctx).incoming(principal(ctx), &self.entity_ref).await.gql()?
        } else {
            self.outgoing(ctx).await?.as_ref().clone()
        };
        Ok(rows
            .into_iter()
            .filter(|r| {
                relation_type
                    .as_ref()
                    .is_none_or(|t| r.relation.kind.as_str().eq_ignore_ascii_case(t))
            })
            .map(Relation)
            .collect())
    }

    async fn history(&self, ctx: &Context<'_>, first: i32, before_sequence: Option<i64>) -> Result<Vec<Version>> {
        let limit = page_size(ctx, Some(first))?;
        let rows = catalog(ctx)
            .history(principal(ctx), &self.entity_ref, limit, before_sequence)
            .await
            .gql()?;
        Ok(rows.into_iter().map(Version).collect())
    }

    async fn rejections(&self, ctx: &Context<'_>) -> Result<Vec<Rejection>> {
        let rows = catalog(ctx)
            .rejections(principal(ctx), RejectionsBy::Entity(&self.entity_ref))
            .await
            .gql()?;
        Ok(rows.into_iter().map(Rejection).collect())
    }

    fn links(&self) -> Vec<Link> {
        self.document()
            .pointer("/metadata/links")
            .and_then(Value::as_array)
            .map(|links| {
                links
                    .iter()
                    .filter_map(|l| {
                        let text = |k: &str| l.get(k).and_then(Value::as_str).map(str::to_owned);
                        Some(Link {
                            url: text("url")?,
                            title: text("title"),
                            icon: text("icon"),
                            link_type: text("type"),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn profile(&self) -> Option<Profile> {
        let profile = self.document().pointer("/spec/profile")?;
        let text = |k: &str| profile.get(k).and_then(Value::as_str).map(str::to_owned);
        Some(Profile {
            display_name: text("displayName"),
            email: text("email"),
            picture: text("picture"),
        })
    }
}
