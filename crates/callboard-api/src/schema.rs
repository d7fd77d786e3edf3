//! The GraphQL schema: queries over the read model and the graph, mutations through the push
//! interface, subscriptions to the change feed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{
    ComplexObject, Context, Enum, Error, ErrorExtensions, InputObject, Json, Object, Result, Schema, SimpleObject,
    Subscription,
};
use callboard_events::types::{CommandCompleted, CommandStatus, EventType, LocationRecord};
use callboard_graph::{GraphService, Question};
use callboard_ingest::commands::CommandClient;
use callboard_readmodel::filter::Filter;
use callboard_readmodel::rows::{EntityRow, HistoryRow, LocationRow, RejectionRow};
use callboard_readmodel::store::{
    CatalogReader, EntityQuery, Order, ReadStore, RejectionsBy, attach_relations, final_entity,
};
use futures::{Stream, StreamExt};
use serde_json::Value;

use crate::feed::{Change, Feed};
use crate::{Limits, cursor};

/// The schema type.
pub type CatalogSchema = Schema<Query, Mutation, SubscriptionRoot>;

/// What the resolvers read and write through.
#[derive(Clone)]
pub struct Services {
    /// The read model.
    pub reader: Arc<dyn CatalogReader>,
    /// The read model's write side, for positions (waiting for projections).
    pub store: Arc<dyn ReadStore>,
    /// The relation graph.
    pub graph: Arc<GraphService>,
    /// The push interface; `None` for read-only API replicas.
    pub commands: Option<CommandClient>,
    /// Changes the read model reflects, for subscriptions.
    pub feed: Feed,
    /// The projectors' consumer group (whose positions mutations wait for).
    pub projector_group: String,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}

/// Builds the schema with its limits.
pub fn build(services: Services, limits: &Limits) -> CatalogSchema {
    let loaders = (
        // Keys requested within a millisecond of each other share one query. The window is a
        // latency floor for every nested level of every query (entity by ref pays it three
        // times), so it stays short; lists load their page's relations and targets themselves.
        DataLoader::new(EntityLoader(services.reader.clone()), tokio::spawn)
            .max_batch_size(1_000)
            .delay(Duration::from_millis(1)),
        DataLoader::new(RelationLoader(services.reader.clone()), tokio::spawn)
            .max_batch_size(1_000)
            .delay(Duration::from_millis(1)),
    );
    let mut builder = Schema::build(Query, Mutation, SubscriptionRoot)
        .data(services)
        .data(loaders.0)
        .data(loaders.1)
        .data(limits.clone())
        .limit_depth(limits.depth)
        .limit_complexity(limits.complexity)
        .limit_recursive_depth(limits.depth.max(32))
        .limit_directives(limits.directives);
    if !limits.introspection {
        builder = builder.disable_introspection();
    }
    builder.finish()
}

/// The schema without services, for exporting the SDL.
pub fn sdl() -> String {
    Schema::build(Query, Mutation, SubscriptionRoot).finish().sdl()
}

fn services<'a>(ctx: &Context<'a>) -> &'a Services {
    ctx.data_unchecked::<Services>()
}

fn internal(error: impl std::fmt::Display) -> Error {
    // Details go to the log, not to clients.
    tracing::error!(%error, "resolver failed");
    Error::new("internal error").extend_with(|_, e| e.set("code", "INTERNAL"))
}

fn bad_input(message: impl Into<String>) -> Error {
    Error::new(message.into()).extend_with(|_, e| e.set("code", "BAD_USER_INPUT"))
}

/// Checks an instant argument: RFC 3339, normalised to the stored form.
fn instant(at: Option<String>) -> Result<Option<String>> {
    match at {
        None => Ok(None),
        Some(text) => callboard_events::cloudevent::normalize_time(&text)
            .map(Some)
            .ok_or_else(|| bad_input(format!("asOf: {text:?} is not an RFC 3339 date-time"))),
    }
}

/// Loads current entity rows by ref.
struct EntityLoader(Arc<dyn CatalogReader>);

impl Loader<String> for EntityLoader {
    type Value = Arc<EntityRow>;
    type Error = Arc<String>;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Self::Value>, Self::Error> {
        let rows = self.0.entities(keys).await.map_err(|e| Arc::new(e.to_string()))?;
        Ok(rows.into_iter().map(|r| (r.entity_ref.clone(), Arc::new(r))).collect())
    }
}

/// Loads current outgoing relations by source ref.
struct RelationLoader(Arc<dyn CatalogReader>);

impl Loader<String> for RelationLoader {
    type Value = Arc<Vec<Relation>>;
    type Error = Arc<String>;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Self::Value>, Self::Error> {
        let rows = self
            .0
            .relations(keys, false)
            .await
            .map_err(|e| Arc::new(e.to_string()))?;
        let mut out: HashMap<String, Vec<Relation>> = keys.iter().map(|k| (k.clone(), Vec::new())).collect();
        for row in rows {
            out.entry(row.source.clone()).or_default().push(Relation {
                relation_type: row.relation_type,
                source_ref: row.source,
                target_ref: row.target,
                dangling: !row.target_exists,
            });
        }
        Ok(out.into_iter().map(|(k, v)| (k, Arc::new(v))).collect())
    }
}

async fn load_entity(ctx: &Context<'_>, entity_ref: &str) -> Result<Option<Entity>> {
    let loader = ctx.data_unchecked::<DataLoader<EntityLoader>>();
    let row = loader.load_one(entity_ref.to_lowercase()).await.map_err(internal)?;
    Ok(row.map(Entity::current))
}

async fn load_relations(ctx: &Context<'_>, entity_ref: &str) -> Result<Arc<Vec<Relation>>> {
    let loader = ctx.data_unchecked::<DataLoader<RelationLoader>>();
    Ok(loader
        .load_one(entity_ref.to_owned())
        .await
        .map_err(internal)?
        .unwrap_or_default())
}

/// A catalog entity — now, or as it was at an instant (`asOf`).
#[derive(Debug, Clone)]
pub struct Entity {
    entity_ref: String,
    /// The current row; `None` for a past version.
    row: Option<Arc<EntityRow>>,
    /// A past version's document (a current entity's is in its row).
    past: Option<Arc<Value>>,
    at: Option<String>,
    /// Outgoing relations, when the list that produced this entity loaded them for the page.
    relations: Option<Arc<Vec<Relation>>>,
    /// The related entities of the whole page, loaded with it.
    neighbours: Option<Arc<HashMap<String, Arc<EntityRow>>>>,
}

impl Entity {
    fn current(row: Arc<EntityRow>) -> Self {
        Self {
            entity_ref: row.entity_ref.clone(),
            row: Some(row),
            past: None,
            at: None,
            relations: None,
            neighbours: None,
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

    /// Relations leaving this entity (now, or at the instant it was read for).
    async fn outgoing(&self, ctx: &Context<'_>) -> Result<Vec<Relation>> {
        if let Some(relations) = &self.relations {
            return Ok(relations.as_ref().clone());
        }
        match &self.at {
            None => Ok(load_relations(ctx, &self.entity_ref).await?.as_ref().clone()),
            Some(at) => {
                let spans = services(ctx).reader.spans(&self.entity_ref).await.map_err(internal)?;
                let mut out: Vec<Relation> = spans
                    .into_iter()
                    .filter(|s| {
                        s.source == self.entity_ref
                            && s.valid_from.as_str() <= at.as_str()
                            && s.valid_to.as_deref().is_none_or(|to| to > at.as_str())
                    })
                    .map(|s| Relation {
                        relation_type: s.relation_type,
                        source_ref: s.source,
                        target_ref: s.target,
                        dangling: false,
                    })
                    .collect();
                out.sort_by(|a, b| (&a.relation_type, &a.target_ref).cmp(&(&b.relation_type, &b.target_ref)));
                out.dedup_by(|a, b| a.relation_type == b.relation_type && a.target_ref == b.target_ref);
                Ok(out)
            }
        }
    }

    async fn related(&self, ctx: &Context<'_>, relation_type: &str) -> Result<Vec<String>> {
        Ok(self
            .outgoing(ctx)
            .await?
            .into_iter()
            .filter(|r| r.relation_type.eq_ignore_ascii_case(relation_type))
            .map(|r| r.target_ref)
            .collect())
    }

    /// The entities related by `relation_type`.
    async fn related_entities(&self, ctx: &Context<'_>, relation_type: &str) -> Result<Vec<Entity>> {
        let refs = self.related(ctx, relation_type).await?;
        self.resolve(ctx, refs).await
    }

    /// The entities `refs` name, in order (absent ones left out). One batched load for the
    /// whole list: loading them one by one would cost a round of queries per element.
    async fn resolve(&self, ctx: &Context<'_>, refs: Vec<String>) -> Result<Vec<Entity>> {
        if let (None, Some(neighbours)) = (&self.at, &self.neighbours) {
            // Loaded with the page: every existing target is here.
            return Ok(refs
                .iter()
                .filter_map(|r| neighbours.get(&r.to_lowercase()))
                .map(|row| Entity::current(row.clone()))
                .collect());
        }
        match &self.at {
            None => {
                let loader = ctx.data_unchecked::<DataLoader<EntityLoader>>();
                let mut found = loader
                    .load_many(refs.iter().map(|r| r.to_lowercase()))
                    .await
                    .map_err(internal)?;
                Ok(refs
                    .iter()
                    .filter_map(|r| found.remove(&r.to_lowercase()))
                    .map(Entity::current)
                    .collect())
            }
            Some(at) => {
                let found = futures::future::try_join_all(refs.iter().map(|r| entity_at(ctx, r, at))).await?;
                Ok(found.into_iter().flatten().collect())
            }
        }
    }
}

async fn entity_at(ctx: &Context<'_>, entity_ref: &str, at: &str) -> Result<Option<Entity>> {
    let entity_ref = entity_ref.to_lowercase();
    let document = services(ctx)
        .reader
        .entity_at(&entity_ref, at)
        .await
        .map_err(internal)?;
    Ok(document.map(|document| Entity {
        entity_ref,
        row: None,
        past: Some(Arc::new(document)),
        at: Some(at.to_owned()),
        relations: None,
        neighbours: None,
    }))
}

/// A relation between two entities.
#[derive(Debug, Clone, SimpleObject)]
pub struct Relation {
    /// The relation type (`ownedBy`, `dependsOn`, …).
    #[graphql(name = "type")]
    pub relation_type: String,
    /// Where it starts.
    pub source_ref: String,
    /// Where it points.
    pub target_ref: String,
    /// True when the target is not in the catalog.
    pub dangling: bool,
}

/// The relations of an entity, by type, each resolved to entities (dangling targets are left out).
#[Object]
impl Entity {
    /// The canonical, lowercased entity ref (`kind:namespace/name`).
    #[graphql(name = "ref")]
    async fn entity_ref(&self) -> &str {
        &self.entity_ref
    }

    /// The kind, as written.
    async fn kind(&self) -> Option<String> {
        self.str_at("/kind")
    }

    /// The namespace (`default` when unset).
    async fn namespace(&self) -> String {
        self.str_at("/metadata/namespace").unwrap_or_else(|| "default".into())
    }

    /// The name.
    async fn name(&self) -> Option<String> {
        self.str_at("/metadata/name")
    }

    /// `metadata.title`.
    async fn title(&self) -> Option<String> {
        self.str_at("/metadata/title")
    }

    /// `metadata.description`.
    async fn description(&self) -> Option<String> {
        self.str_at("/metadata/description")
    }

    /// `metadata.tags`.
    async fn tags(&self) -> Vec<String> {
        self.document()
            .pointer("/metadata/tags")
            .and_then(Value::as_array)
            .map(|tags| tags.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// `spec.type`.
    #[graphql(name = "type")]
    async fn spec_type(&self) -> Option<String> {
        self.str_at("/spec/type")
    }

    /// `spec.lifecycle`.
    async fn lifecycle(&self) -> Option<String> {
        self.str_at("/spec/lifecycle")
    }

    /// `metadata.uid`: stable for the entity's life.
    async fn uid(&self) -> Option<String> {
        self.row
            .as_ref()
            .map(|r| r.uid.clone())
            .or_else(|| self.str_at("/metadata/uid"))
    }

    /// When the entity was first seen (absent for a past version).
    async fn created_at(&self) -> Option<&str> {
        self.row.as_ref().map(|r| r.created_at.as_str())
    }

    /// When it last changed (absent for a past version).
    async fn updated_at(&self) -> Option<&str> {
        self.row.as_ref().map(|r| r.updated_at.as_str())
    }

    /// The instant this entity was read as of, when it is a past version.
    async fn as_of(&self) -> Option<&str> {
        self.at.as_deref()
    }

    /// The final entity as Backstage's API returns it: the document with `metadata.uid`,
    /// `metadata.etag` and `relations`.
    async fn raw(&self, ctx: &Context<'_>) -> Result<Json<Value>> {
        let relations: Vec<(String, String)> = self
            .outgoing(ctx)
            .await?
            .into_iter()
            .map(|r| (r.relation_type, r.target_ref))
            .collect();
        Ok(Json(match &self.row {
            Some(row) => final_entity(row, &relations),
            None => {
                let mut document = self.document().clone();
                attach_relations(&mut document, &relations.iter().collect::<Vec<_>>());
                document
            }
        }))
    }

    /// Relations leaving this entity, optionally of one type; `incoming` lists relations
    /// pointing at it instead.
    async fn relations(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "type")] relation_type: Option<String>,
        #[graphql(default = false)] incoming: bool,
    ) -> Result<Vec<Relation>> {
        let rows = if incoming {
            if self.at.is_some() {
                return Err(bad_input("incoming relations are not available asOf an instant yet"));
            }
            services(ctx)
                .reader
                .relations(std::slice::from_ref(&self.entity_ref), true)
                .await
                .map_err(internal)?
                .into_iter()
                .map(|r| Relation {
                    relation_type: r.relation_type,
                    source_ref: r.source,
                    target_ref: r.target,
                    dangling: !r.target_exists,
                })
                .collect()
        } else {
            self.outgoing(ctx).await?
        };
        Ok(rows
            .into_iter()
            .filter(|r| {
                relation_type
                    .as_ref()
                    .is_none_or(|t| r.relation_type.eq_ignore_ascii_case(t))
            })
            .collect())
    }

    /// The owner (`ownedBy`).
    async fn owner(&self, ctx: &Context<'_>) -> Result<Option<Entity>> {
        Ok(self.related_entities(ctx, "ownedBy").await?.into_iter().next())
    }

    /// The system it is part of (`partOf` a System).
    async fn system(&self, ctx: &Context<'_>) -> Result<Option<Entity>> {
        let refs: Vec<String> = self
            .related(ctx, "partOf")
            .await?
            .into_iter()
            .filter(|r| r.starts_with("system:"))
            .collect();
        Ok(self.resolve(ctx, refs).await?.into_iter().next())
    }

    /// APIs it provides.
    async fn provides_apis(&self, ctx: &Context<'_>) -> Result<Vec<Entity>> {
        self.related_entities(ctx, "providesApi").await
    }

    /// APIs it consumes.
    async fn consumes_apis(&self, ctx: &Context<'_>) -> Result<Vec<Entity>> {
        self.related_entities(ctx, "consumesApi").await
    }

    /// What it depends on directly.
    async fn depends_on(&self, ctx: &Context<'_>) -> Result<Vec<Entity>> {
        self.related_entities(ctx, "dependsOn").await
    }

    /// What depends on it directly.
    async fn dependency_of(&self, ctx: &Context<'_>) -> Result<Vec<Entity>> {
        self.related_entities(ctx, "dependencyOf").await
    }

    /// Members (of a Group).
    async fn members(&self, ctx: &Context<'_>) -> Result<Vec<Entity>> {
        self.related_entities(ctx, "hasMember").await
    }

    /// Groups it is a member of (of a User).
    async fn member_of(&self, ctx: &Context<'_>) -> Result<Vec<Entity>> {
        self.related_entities(ctx, "memberOf").await
    }

    /// The parent group.
    async fn parent(&self, ctx: &Context<'_>) -> Result<Option<Entity>> {
        Ok(self.related_entities(ctx, "childOf").await?.into_iter().next())
    }

    /// Child groups.
    async fn children(&self, ctx: &Context<'_>) -> Result<Vec<Entity>> {
        self.related_entities(ctx, "parentOf").await
    }

    /// Entities it owns directly.
    async fn owns(&self, ctx: &Context<'_>) -> Result<Vec<Entity>> {
        self.related_entities(ctx, "ownerOf").await
    }

    /// Its versions, newest first: each with the event that made it, time, source, actor and a
    /// JSON Patch from the previous version.
    async fn history(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
        before_sequence: Option<i64>,
    ) -> Result<Vec<Version>> {
        let limit = page_size(ctx, Some(first))?;
        let rows = services(ctx)
            .reader
            .history(&self.entity_ref, limit, before_sequence)
            .await
            .map_err(internal)?;
        Ok(rows.into_iter().map(Version).collect())
    }

    /// Why documents claiming this ref are not in the catalog as written (latest per source).
    async fn rejections(&self, ctx: &Context<'_>) -> Result<Vec<Rejection>> {
        let rows = services(ctx)
            .reader
            .rejections(RejectionsBy::Entity(&self.entity_ref))
            .await
            .map_err(internal)?;
        Ok(rows.into_iter().map(Rejection).collect())
    }
}

/// One version of an entity, from the history.
#[derive(Debug, Clone)]
pub struct Version(HistoryRow);

#[Object]
impl Version {
    /// The per-entity sequence number (1, 2, …).
    async fn sequence(&self) -> i64 {
        self.0.sequence
    }
    /// The event type (`entity.upserted.v1`, `entity.deleted.v1`, …).
    async fn event_type(&self) -> &str {
        &self.0.event_type
    }
    /// The event id.
    async fn event_id(&self) -> &str {
        &self.0.event_id
    }
    /// When it happened (RFC 3339, UTC).
    async fn time(&self) -> &str {
        &self.0.time
    }
    /// Which provider, location or user produced it.
    async fn source(&self) -> &str {
        &self.0.source
    }
    /// Who acted.
    async fn actor(&self) -> &str {
        &self.0.actor
    }
    /// The entity document of this version (absent for deletions).
    async fn entity(&self) -> Option<Json<Value>> {
        self.0.entity.clone().map(Json)
    }
    /// JSON Patch (RFC 6902) from the previous version.
    async fn diff(&self) -> Option<Json<Value>> {
        self.0.diff.clone().map(Json)
    }
}

/// A document that could not be accepted: the last good version (if any) stays in the catalog.
#[derive(Debug, Clone)]
pub struct Rejection(RejectionRow);

#[Object]
impl Rejection {
    /// The entity ref the document claims, when it could be read.
    async fn entity_ref(&self) -> Option<&str> {
        self.0.entity_ref.as_deref()
    }
    /// The file it came from.
    async fn location(&self) -> &str {
        &self.0.location
    }
    /// The registered location that led to the file.
    async fn origin(&self) -> &str {
        &self.0.origin
    }
    /// The document's position in the file (0-based).
    async fn document_index(&self) -> Option<i64> {
        self.0.document_index
    }
    /// The problems: each with field, rule, message and position.
    async fn problems(&self) -> Json<Value> {
        Json(self.0.problems.clone())
    }
    /// The location that holds the ref, for conflicts.
    async fn conflicts_with(&self) -> Option<&str> {
        self.0.conflicts_with.as_deref()
    }
    /// When it was rejected.
    async fn time(&self) -> &str {
        &self.0.time
    }
}

/// A registered location.
#[derive(Debug, Clone)]
pub struct Location(LocationRow);

#[Object]
impl Location {
    /// `file`, `url` or `discovery`.
    #[graphql(name = "type")]
    async fn location_type(&self) -> &str {
        &self.0.location_type
    }
    /// The path or URL.
    async fn target(&self) -> &str {
        &self.0.target
    }
    /// The generated Location entity's ref.
    async fn entity_ref(&self) -> &str {
        &self.0.entity_ref
    }
    /// When it was registered.
    async fn registered_at(&self) -> &str {
        &self.0.registered_at
    }
    /// Rejections of documents read through this location.
    async fn rejections(&self, ctx: &Context<'_>) -> Result<Vec<Rejection>> {
        let rows = services(ctx)
            .reader
            .rejections(RejectionsBy::Origin(&self.0.key))
            .await
            .map_err(internal)?;
        Ok(rows.into_iter().map(Rejection).collect())
    }
}

/// Orderings of entity lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum EntityOrder {
    /// By canonical ref.
    Ref,
    /// By name, then ref.
    Name,
    /// Most recently changed first.
    UpdatedDesc,
}

impl From<EntityOrder> for Order {
    fn from(order: EntityOrder) -> Self {
        match order {
            EntityOrder::Ref => Order::Ref,
            EntityOrder::Name => Order::Name,
            EntityOrder::UpdatedDesc => Order::UpdatedDesc,
        }
    }
}

/// One condition set of a filter: every condition must hold (AND). A list of sets matches
/// when any set does (OR) — Backstage's `filter` semantics, case-insensitive.
#[derive(Debug, Clone, InputObject)]
pub struct EntityFilter {
    /// Conditions: `key=value` (equality), or `key` (the field exists), e.g.
    /// `["kind=component", "spec.lifecycle=production"]`. Keys are dotted paths
    /// (`metadata.annotations.backstage.io/techdocs-ref`, `relations.ownedby`).
    pub all: Vec<String>,
}

fn to_filter(filter: Option<Vec<EntityFilter>>) -> Result<Option<Filter>> {
    let Some(sets) = filter else {
        return Ok(None);
    };
    let params: Vec<String> = sets.into_iter().map(|set| set.all.join(",")).collect();
    Filter::parse_backstage(&params).map_err(|e| bad_input(format!("filter: {e}")))
}

fn page_size(ctx: &Context<'_>, first: Option<i32>) -> Result<usize> {
    let limits = ctx.data_unchecked::<Limits>();
    let first = first.unwrap_or(limits.default_page as i32);
    if first < 0 || first as usize > limits.max_page {
        return Err(bad_input(format!(
            "first must be between 0 and {} (got {first})",
            limits.max_page
        )));
    }
    Ok(first as usize)
}

/// A page of entities (a Relay connection).
#[derive(Debug, SimpleObject)]
#[graphql(complex)]
pub struct EntityConnection {
    /// The entities with their cursors.
    pub edges: Vec<EntityEdge>,
    /// Where this page is in the list.
    pub page_info: PageInfo,
    #[graphql(skip)]
    filter: Option<Filter>,
    #[graphql(skip)]
    text: Option<String>,
}

#[ComplexObject]
impl EntityConnection {
    /// How many entities match (across all pages).
    async fn total_count(&self, ctx: &Context<'_>) -> Result<i64> {
        services(ctx)
            .reader
            .count(self.filter.as_ref(), self.text.as_deref())
            .await
            .map_err(internal)
    }

    /// The entities, without cursors.
    async fn nodes(&self) -> Vec<Entity> {
        self.edges.iter().map(|e| e.node.clone()).collect()
    }
}

/// An entity and its cursor.
#[derive(Debug, SimpleObject)]
pub struct EntityEdge {
    /// Opaque: pass it as `after` to continue after this entity.
    pub cursor: String,
    /// The entity.
    pub node: Entity,
}

/// Relay page information.
#[derive(Debug, SimpleObject)]
pub struct PageInfo {
    /// Whether more entities follow.
    pub has_next_page: bool,
    /// Always false: lists page forward.
    pub has_previous_page: bool,
    /// The first edge's cursor.
    pub start_cursor: Option<String>,
    /// The last edge's cursor.
    pub end_cursor: Option<String>,
}

/// How often a value occurs.
#[derive(Debug, SimpleObject)]
pub struct FacetCount {
    /// The value (as written in the documents).
    pub value: String,
    /// How many matching entities have it.
    pub count: i64,
}

/// An entity reached in the graph.
#[derive(Debug, SimpleObject)]
#[graphql(complex)]
pub struct GraphNode {
    /// Its ref.
    #[graphql(name = "ref")]
    pub entity_ref: String,
    /// Hops from where the walk started.
    pub depth: i32,
    #[graphql(skip)]
    at: Option<String>,
}

#[ComplexObject]
impl GraphNode {
    /// The entity (null when the ref is not in the catalog).
    async fn entity(&self, ctx: &Context<'_>) -> Result<Option<Entity>> {
        match &self.at {
            None => load_entity(ctx, &self.entity_ref).await,
            Some(at) => entity_at(ctx, &self.entity_ref, at).await,
        }
    }
}

/// One step of a path.
#[derive(Debug, SimpleObject)]
pub struct PathStep {
    /// Where the step starts.
    pub from: String,
    /// The relation followed.
    #[graphql(name = "type")]
    pub relation_type: String,
    /// Where it ends.
    pub to: String,
}

/// The root of queries.
#[derive(Debug, Default)]
pub struct Query;

#[Object]
impl Query {
    /// One entity by ref (`kind:namespace/name`, `kind:name`; case-insensitive), now or as it
    /// was at `asOf` (RFC 3339). Null when absent.
    async fn entity(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "ref")] entity_ref: String,
        as_of: Option<String>,
    ) -> Result<Option<Entity>> {
        let entity_ref = normalise_ref(&entity_ref)?;
        match instant(as_of)? {
            None => load_entity(ctx, &entity_ref).await,
            Some(at) => entity_at(ctx, &entity_ref, &at).await,
        }
    }

    /// Entities matching a filter and full-text search, a page at a time.
    #[allow(clippy::too_many_arguments)]
    async fn entities(
        &self,
        ctx: &Context<'_>,
        filter: Option<Vec<EntityFilter>>,
        search: Option<String>,
        #[graphql(default_with = "EntityOrder::Ref")] order_by: EntityOrder,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<EntityConnection> {
        let limit = page_size(ctx, first)?;
        let filter = to_filter(filter)?;
        let text = search.filter(|s| !s.trim().is_empty());
        let order: Order = order_by.into();
        let after = match after {
            None => None,
            Some(c) => {
                Some(cursor::decode(&c, order).ok_or_else(|| bad_input("after: not a cursor of this ordering"))?)
            }
        };
        let page = services(ctx)
            .reader
            .list(&EntityQuery {
                filter: filter.clone(),
                text: text.clone(),
                order,
                after,
                limit,
            })
            .await
            .map_err(internal)?;
        // The page's relations and the entities they point at, in two queries whatever the page
        // size: nodes resolve their relation fields from these without further queries.
        let reader = &services(ctx).reader;
        let refs: Vec<String> = page.rows.iter().map(|(_, row)| row.entity_ref.clone()).collect();
        let mut relations: HashMap<String, Vec<Relation>> = refs.iter().map(|r| (r.clone(), Vec::new())).collect();
        let mut targets: Vec<String> = Vec::new();
        for row in reader.relations(&refs, false).await.map_err(internal)? {
            if row.target_exists {
                targets.push(row.target.clone());
            }
            relations.entry(row.source.clone()).or_default().push(Relation {
                relation_type: row.relation_type,
                source_ref: row.source,
                target_ref: row.target,
                dangling: !row.target_exists,
            });
        }
        targets.sort();
        targets.dedup();
        let neighbours: Arc<HashMap<String, Arc<EntityRow>>> = Arc::new(
            reader
                .entities(&targets)
                .await
                .map_err(internal)?
                .into_iter()
                .map(|row| (row.entity_ref.clone(), Arc::new(row)))
                .collect(),
        );
        let edges: Vec<EntityEdge> = page
            .rows
            .into_iter()
            .map(|(key, row)| {
                let mut node = Entity::current(Arc::new(row));
                node.relations = Some(Arc::new(relations.remove(&node.entity_ref).unwrap_or_default()));
                node.neighbours = Some(neighbours.clone());
                EntityEdge {
                    cursor: cursor::encode(&key, order),
                    node,
                }
            })
            .collect();
        Ok(EntityConnection {
            page_info: PageInfo {
                has_next_page: page.has_more,
                has_previous_page: false,
                start_cursor: edges.first().map(|e| e.cursor.clone()),
                end_cursor: edges.last().map(|e| e.cursor.clone()),
            },
            edges,
            filter,
            text,
        })
    }

    /// Value counts of a field (`kind`, `spec.type`, `metadata.tags`, any dotted path) over the
    /// entities matching a filter, most frequent first.
    async fn facets(
        &self,
        ctx: &Context<'_>,
        field: String,
        filter: Option<Vec<EntityFilter>>,
    ) -> Result<Vec<FacetCount>> {
        let filter = to_filter(filter)?;
        let counts = services(ctx)
            .reader
            .facets(&field.to_lowercase(), filter.as_ref())
            .await
            .map_err(internal)?;
        Ok(counts
            .into_iter()
            .map(|(value, count)| FacetCount { value, count })
            .collect())
    }

    /// What an entity depends on, transitively (`dependsOn`), up to `depth` hops.
    async fn dependencies(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "ref")] entity_ref: String,
        #[graphql(default = 3)] depth: i32,
        as_of: Option<String>,
    ) -> Result<Vec<GraphNode>> {
        walk(ctx, Question::Dependencies, &entity_ref, depth, as_of).await
    }

    /// What depends on an entity, transitively (`dependencyOf`), up to `depth` hops.
    async fn dependents(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "ref")] entity_ref: String,
        #[graphql(default = 3)] depth: i32,
        as_of: Option<String>,
    ) -> Result<Vec<GraphNode>> {
        walk(ctx, Question::Dependents, &entity_ref, depth, as_of).await
    }

    /// Everything a change to an entity can affect: dependents, consumers of the APIs it
    /// provides, and what is part of it.
    async fn impact(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "ref")] entity_ref: String,
        #[graphql(default = 3)] depth: i32,
        as_of: Option<String>,
    ) -> Result<Vec<GraphNode>> {
        walk(ctx, Question::Impact, &entity_ref, depth, as_of).await
    }

    /// Everything owned by a group or user, rolled up through sub-groups.
    async fn owned(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "ref")] entity_ref: String,
        #[graphql(default = 10)] depth: i32,
        as_of: Option<String>,
    ) -> Result<Vec<GraphNode>> {
        walk(ctx, Question::Owned, &entity_ref, depth, as_of).await
    }

    /// The shortest path between two entities over any relation (null when none within `depth`).
    async fn path(
        &self,
        ctx: &Context<'_>,
        from: String,
        to: String,
        #[graphql(default = 6)] depth: i32,
        as_of: Option<String>,
    ) -> Result<Option<Vec<PathStep>>> {
        let depth = graph_depth(ctx, depth)?;
        let at = instant(as_of)?;
        let (hops, _) = services(ctx)
            .graph
            .path(&normalise_ref(&from)?, &normalise_ref(&to)?, depth, at.as_deref())
            .await
            .map_err(internal)?;
        Ok(hops.map(|hops| {
            hops.into_iter()
                .map(|h| PathStep {
                    from: h.from,
                    relation_type: h.relation_type,
                    to: h.to,
                })
                .collect()
        }))
    }

    /// Dependency cycles (`dependsOn`), each as the sorted refs in it.
    async fn dependency_cycles(&self, ctx: &Context<'_>, as_of: Option<String>) -> Result<Vec<Vec<String>>> {
        let at = instant(as_of)?;
        let (cycles, _) = services(ctx).graph.cycles(at.as_deref()).await.map_err(internal)?;
        Ok(cycles)
    }

    /// Pending rejections: of one entity ref, of one file, of everything read through a
    /// registered location, or all.
    async fn rejections(
        &self,
        ctx: &Context<'_>,
        entity_ref: Option<String>,
        file: Option<String>,
        location: Option<String>,
    ) -> Result<Vec<Rejection>> {
        let entity_ref = entity_ref.map(|r| normalise_ref(&r)).transpose()?;
        let by = match (&entity_ref, &file, &location) {
            (Some(r), None, None) => RejectionsBy::Entity(r),
            (None, Some(f), None) => RejectionsBy::Location(f),
            (None, None, Some(l)) => RejectionsBy::Origin(l),
            (None, None, None) => RejectionsBy::All,
            _ => return Err(bad_input("give at most one of entityRef, file and location")),
        };
        let rows = services(ctx).reader.rejections(by).await.map_err(internal)?;
        Ok(rows.into_iter().map(Rejection).collect())
    }

    /// Registered locations.
    async fn locations(&self, ctx: &Context<'_>) -> Result<Vec<Location>> {
        let rows = services(ctx).reader.locations().await.map_err(internal)?;
        Ok(rows.into_iter().map(Location).collect())
    }
}

/// The canonical lowercased form of a full ref; short forms are refused (an API has no source
/// entity to take defaults from, except the `default` namespace).
fn normalise_ref(text: &str) -> Result<String> {
    let text = text.trim();
    let Some((kind, rest)) = text.split_once(':') else {
        return Err(bad_input(format!(
            "ref {text:?} needs a kind: write kind:namespace/name or kind:name"
        )));
    };
    let (namespace, name) = rest.split_once('/').unwrap_or(("default", rest));
    if kind.is_empty() || namespace.is_empty() || name.is_empty() || name.contains('/') {
        return Err(bad_input(format!("ref {text:?} is not kind:namespace/name")));
    }
    Ok(format!("{kind}:{namespace}/{name}").to_lowercase())
}

fn graph_depth(ctx: &Context<'_>, depth: i32) -> Result<usize> {
    let limits = ctx.data_unchecked::<Limits>();
    if depth < 1 || depth as usize > limits.graph_depth {
        return Err(bad_input(format!(
            "depth must be between 1 and {} (got {depth})",
            limits.graph_depth
        )));
    }
    Ok(depth as usize)
}

async fn walk(
    ctx: &Context<'_>,
    question: Question<'_>,
    entity_ref: &str,
    depth: i32,
    as_of: Option<String>,
) -> Result<Vec<GraphNode>> {
    let depth = graph_depth(ctx, depth)?;
    let at = instant(as_of)?;
    let root = normalise_ref(entity_ref)?;
    let (reached, _) = services(ctx)
        .graph
        .reached(question, &root, depth, at.as_deref())
        .await
        .map_err(internal)?;
    Ok(reached
        .into_iter()
        .map(|r| GraphNode {
            entity_ref: r.entity_ref,
            depth: r.depth as i32,
            at: at.clone(),
        })
        .collect())
}

/// A position in the event log.
#[derive(Debug, Clone, SimpleObject)]
pub struct LogPosition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
}

/// Outcomes of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum CommandOutcome {
    /// Done (possibly with nothing to change).
    Ok,
    /// Refused: invalid input or a conflict; see `problems`.
    Rejected,
    /// Could not be carried out; see `message`.
    Failed,
}

/// What a mutation did.
#[derive(Debug, Clone, SimpleObject)]
pub struct CommandResult {
    /// The outcome.
    pub status: CommandOutcome,
    /// Positions of the events it appended (empty when nothing changed).
    pub positions: Vec<LogPosition>,
    /// Entities it touched.
    pub entity_refs: Vec<String>,
    /// Problems, for rejections.
    pub problems: Json<Value>,
    /// A message, for failures.
    pub message: Option<String>,
    /// True when the read model reflected every appended event before the answer (asked for
    /// with `wait: true`).
    pub projected: bool,
}

/// The root of mutations: each goes through the writer (the push provider), which appends the
/// events; the read model follows.
#[derive(Debug, Default)]
pub struct Mutation;

async fn command(
    ctx: &Context<'_>,
    send: impl Future<Output = Result<callboard_ingest::commands::Sent, callboard_ingest::commands::CommandError>>,
    wait: bool,
) -> Result<CommandResult> {
    let (services, commands) = (services(ctx), commands(ctx)?);
    let sent = send.await.map_err(internal)?;
    let completed: CommandCompleted = commands
        .wait(&sent, Duration::from_secs(30))
        .await
        .map_err(|e| Error::new(e.to_string()).extend_with(|_, x| x.set("code", "UNAVAILABLE")))?;
    let mut projected = false;
    if wait && completed.status == CommandStatus::Ok {
        projected = crate::wait_projected(
            services.store.as_ref(),
            &services.projector_group,
            &completed.positions,
            Duration::from_secs(30),
        )
        .await;
    }
    Ok(CommandResult {
        status: match completed.status {
            CommandStatus::Ok => CommandOutcome::Ok,
            CommandStatus::Rejected => CommandOutcome::Rejected,
            CommandStatus::Failed => CommandOutcome::Failed,
        },
        positions: completed
            .positions
            .iter()
            .map(|p| LogPosition {
                topic: p.topic.clone(),
                partition: p.partition,
                offset: p.offset,
            })
            .collect(),
        entity_refs: completed.entity_refs.clone(),
        problems: Json(serde_json::to_value(&completed.problems).unwrap_or_default()),
        message: completed.message.clone(),
        projected,
    })
}

fn actor(ctx: &Context<'_>) -> String {
    // Until sign-in exists every caller is the anonymous guest; permissions will resolve the
    // signed-in user here, in one place.
    ctx.data_opt::<crate::Actor>()
        .map_or_else(|| "user:default/guest".to_owned(), |a| a.0.clone())
}

fn location_record(location_type: &str, target: String) -> Result<LocationRecord> {
    if !matches!(location_type, "url" | "file" | "discovery") {
        return Err(bad_input(format!(
            "type must be url, file or discovery (got {location_type:?})"
        )));
    }
    Ok(LocationRecord {
        location_type: location_type.to_owned(),
        target,
    })
}

#[Object]
impl Mutation {
    /// Registers a location (`url`, `file` or `discovery`) and reads it.
    async fn register_location(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "type", default = "url")] location_type: String,
        target: String,
        #[graphql(default = false)] wait: bool,
    ) -> Result<CommandResult> {
        let (client, actor) = (commands(ctx)?, actor(ctx));
        let location = location_record(&location_type, target)?;
        command(
            ctx,
            client.location(EventType::RegisterLocation, location, &actor),
            wait,
        )
        .await
    }

    /// Unregisters a location; the entities read only through it are deleted.
    async fn unregister_location(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "type", default = "url")] location_type: String,
        target: String,
        #[graphql(default = false)] wait: bool,
    ) -> Result<CommandResult> {
        let (client, actor) = (commands(ctx)?, actor(ctx));
        let location = location_record(&location_type, target)?;
        command(
            ctx,
            client.location(EventType::UnregisterLocation, location, &actor),
            wait,
        )
        .await
    }

    /// Reads a registered location again now.
    async fn refresh_location(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "type", default = "url")] location_type: String,
        target: String,
        #[graphql(default = false)] wait: bool,
    ) -> Result<CommandResult> {
        let (client, actor) = (commands(ctx)?, actor(ctx));
        let location = location_record(&location_type, target)?;
        command(ctx, client.location(EventType::RefreshLocation, location, &actor), wait).await
    }

    /// Creates or replaces an entity (a Backstage descriptor as JSON) through the push provider.
    async fn apply_entity(
        &self,
        ctx: &Context<'_>,
        entity: Json<Value>,
        #[graphql(default = false)] wait: bool,
    ) -> Result<CommandResult> {
        let (client, actor) = (commands(ctx)?, actor(ctx));
        command(ctx, client.apply_entity(entity.0, &actor), wait).await
    }

    /// Deletes an entity that was applied through the API.
    async fn delete_entity(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "ref")] entity_ref: String,
        #[graphql(default = false)] wait: bool,
    ) -> Result<CommandResult> {
        let entity_ref = normalise_ref(&entity_ref)?;
        let (client, actor) = (commands(ctx)?, actor(ctx));
        command(ctx, client.delete_entity(&entity_ref, &actor), wait).await
    }
}

fn commands<'a>(ctx: &Context<'a>) -> Result<&'a CommandClient> {
    services(ctx)
        .commands
        .as_ref()
        .ok_or_else(|| Error::new("this API replica is read-only"))
}

/// A change to an entity, delivered once the read model reflects it.
#[derive(Debug, Clone, SimpleObject)]
#[graphql(complex)]
pub struct EntityChange {
    /// The entity's ref.
    #[graphql(name = "ref")]
    pub entity_ref: String,
    /// The event type (`entity.upserted.v1`, `entity.deleted.v1`, `entity.rejected.v1`, …).
    pub event_type: String,
    /// The per-entity sequence of the event.
    pub sequence: i64,
    /// When the event was appended.
    pub time: String,
    /// Who acted.
    pub actor: String,
}

#[ComplexObject]
impl EntityChange {
    /// The entity as it is now (null after a deletion).
    async fn entity(&self, ctx: &Context<'_>) -> Result<Option<Entity>> {
        load_entity(ctx, &self.entity_ref).await
    }
}

/// A place in the connection's subscription budget (subscriptions run only over WebSockets,
/// where the connection carries one).
fn budget_slot(ctx: &Context<'_>) -> Result<Option<crate::BudgetSlot>> {
    match ctx.data_opt::<crate::ConnectionBudget>() {
        None => {
            tracing::warn!("a subscription without a connection budget");
            Ok(None)
        }
        Some(budget) => budget.acquire().map(Some).ok_or_else(|| {
            Error::new("this connection holds as many subscriptions as it may; close one first")
                .extend_with(|_, e| e.set("code", "LIMIT"))
        }),
    }
}

/// The root of subscriptions.
#[derive(Debug, Default)]
pub struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// Entity changes, each delivered after the read model reflects it. Every given criterion
    /// must match (kinds, namespaces and refs compare case-insensitively; `owners` are owner
    /// refs as in `spec.owner` after defaults, e.g. `group:default/payments`).
    async fn entity_changed(
        &self,
        ctx: &Context<'_>,
        kinds: Option<Vec<String>>,
        namespaces: Option<Vec<String>>,
        owners: Option<Vec<String>>,
        refs: Option<Vec<String>>,
    ) -> Result<impl Stream<Item = EntityChange> + use<>> {
        let lower = |v: Option<Vec<String>>| v.map(|v| v.into_iter().map(|s| s.to_lowercase()).collect::<Vec<_>>());
        let (kinds, namespaces, owners) = (lower(kinds), lower(namespaces), lower(owners));
        let refs = refs
            .map(|refs| refs.iter().map(|r| normalise_ref(r)).collect::<Result<Vec<_>>>())
            .transpose()?;
        let slot = budget_slot(ctx)?;
        let stream = services(ctx).feed.subscribe();
        Ok(stream.filter_map(move |change: Arc<Change>| {
            let _held = &slot;
            let keep = change.is_entity
                && kinds.as_ref().is_none_or(|k| k.contains(&change.kind))
                && namespaces.as_ref().is_none_or(|n| n.contains(&change.namespace))
                && owners
                    .as_ref()
                    .is_none_or(|o| change.owner.as_ref().is_some_and(|owner| o.contains(owner)))
                && refs.as_ref().is_none_or(|r| r.contains(&change.entity_ref));
            let out = keep.then(|| EntityChange {
                entity_ref: change.entity_ref.clone(),
                event_type: change.event_type.clone(),
                sequence: change.sequence,
                time: change.time.clone(),
                actor: change.actor.clone(),
            });
            async move { out }
        }))
    }

    /// Processing errors: rejections of documents, optionally only those read through one
    /// registered location (its target) or claiming an entity owned by one of `owners`.
    async fn processing_errors(
        &self,
        ctx: &Context<'_>,
        location: Option<String>,
        owners: Option<Vec<String>>,
    ) -> Result<impl Stream<Item = Json<Value>> + use<>> {
        let owners = owners.map(|v| v.into_iter().map(|s| s.to_lowercase()).collect::<Vec<_>>());
        let slot = budget_slot(ctx)?;
        let stream = services(ctx).feed.subscribe();
        Ok(stream.filter_map(move |change: Arc<Change>| {
            let _held = &slot;
            let keep = change.event_type.starts_with("entity.rejected")
                && location
                    .as_ref()
                    .is_none_or(|l| change.origin.as_deref().is_some_and(|o| o.ends_with(l.as_str())))
                && owners
                    .as_ref()
                    .is_none_or(|o| change.owner.as_ref().is_some_and(|owner| o.contains(owner)));
            let out = keep.then(|| Json(change.data.clone()));
            async move { out }
        }))
    }
}
