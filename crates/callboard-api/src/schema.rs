//! The GraphQL schema: queries over the read model and the graph, mutations through the push
//! interface, subscriptions to the change feed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::dataloader::DataLoader;
use async_graphql::{
    ComplexObject, Context, Enum, Error, ErrorExtensions, InputObject, Json, Object, Result, Schema, SimpleObject,
    Subscription,
};
use callboard_events::types::{CommandCompleted, CommandStatus, EventType, LocationRecord};
use callboard_graph::{GraphService, Question};
use callboard_ingest::commands::CommandClient;
use callboard_readmodel::filter::Filter;
use callboard_readmodel::rows::{EntityRow, LocationRow};
use callboard_readmodel::search;
use callboard_readmodel::store::{CatalogReader, EntityQuery, Order, ReadStore, RejectionsBy};
use futures::{Stream, StreamExt};
use serde_json::Value;

use crate::entity::{Entity, EntityLoader, Node, Rejection, Relation, RelationLoader, entity_at, load_entity};
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
        DataLoader::new(
            EntityLoader {
                reader: services.reader.clone(),
                cache: services.feed.cache_handle(),
            },
            tokio::spawn,
        )
        .max_batch_size(1_000)
        .delay(Duration::from_millis(1)),
        DataLoader::new(
            RelationLoader {
                reader: services.reader.clone(),
                cache: services.feed.cache_handle(),
            },
            tokio::spawn,
        )
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
    Schema::build(Query, Mutation, SubscriptionRoot)
        // Kind types are reached only through the interface; list them all.
        .register_output_type::<Entity>()
        .finish()
        .sdl()
}

pub(crate) fn services<'a>(ctx: &Context<'a>) -> &'a Services {
    ctx.data_unchecked::<Services>()
}

pub(crate) fn internal(error: impl std::fmt::Display) -> Error {
    // Details go to the log, not to clients.
    tracing::error!(%error, "resolver failed");
    Error::new("internal error").extend_with(|_, e| e.set("code", "INTERNAL"))
}

pub(crate) fn bad_input(message: impl Into<String>) -> Error {
    Error::new(message.into()).extend_with(|_, e| e.set("code", "BAD_USER_INPUT"))
}

/// Checks an instant argument: RFC 3339, normalised to the stored form.
pub(crate) fn instant(at: Option<String>) -> Result<Option<String>> {
    match at {
        None => Ok(None),
        Some(text) => callboard_events::cloudevent::normalize_time(&text)
            .map(Some)
            .ok_or_else(|| bad_input(format!("asOf: {text:?} is not an RFC 3339 date-time"))),
    }
}

/// A registered location.
#[derive(Debug, Clone)]
pub struct RegisteredLocation(LocationRow);

#[Object]
impl RegisteredLocation {
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

pub(crate) fn page_size(ctx: &Context<'_>, first: Option<i32>) -> Result<usize> {
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
    #[graphql(skip)]
    at: Option<String>,
}

impl EntityConnection {
    fn new(
        edges: Vec<EntityEdge>,
        has_next_page: bool,
        filter: Option<Filter>,
        text: Option<String>,
        at: Option<String>,
    ) -> Self {
        Self {
            page_info: PageInfo {
                has_next_page,
                has_previous_page: false,
                start_cursor: edges.first().map(|e| e.cursor.clone()),
                end_cursor: edges.last().map(|e| e.cursor.clone()),
            },
            edges,
            filter,
            text,
            at,
        }
    }
}

/// Subjects read per round when paging through history for a list `asOf` an instant.
const PAST_CHUNK: usize = 500;

/// A page of entities as they were at `at`: documents in ref order after `after` that match
/// `filter`, and whether more follow. Filters are evaluated on each version's document, with the
/// same flattening the read model uses now.
async fn past_page(
    ctx: &Context<'_>,
    at: &str,
    filter: Option<&Filter>,
    mut after: Option<String>,
    limit: usize,
    keep_documents: bool,
) -> Result<(Vec<(String, Value)>, bool)> {
    let mut out = Vec::new();
    loop {
        let chunk = services(ctx)
            .reader
            .entities_at(at, after.as_deref(), PAST_CHUNK)
            .await
            .map_err(internal)?;
        let exhausted = chunk.len() < PAST_CHUNK;
        for (entity_ref, document) in chunk {
            after = Some(entity_ref.clone());
            let Some(document) = document else { continue };
            if filter.is_some_and(|f| !f.matches(&search::keys(&search::pairs(&document)))) {
                continue;
            }
            if out.len() == limit {
                return Ok((out, true));
            }
            out.push((entity_ref, if keep_documents { document } else { Value::Null }));
        }
        if exhausted {
            return Ok((out, false));
        }
    }
}

#[ComplexObject]
impl EntityConnection {
    /// How many entities match (across all pages).
    async fn total_count(&self, ctx: &Context<'_>) -> Result<i64> {
        if let Some(at) = &self.at {
            // Counting the past reads the history of every subject.
            let (all, _) = past_page(ctx, at, self.filter.as_ref(), None, usize::MAX, false).await?;
            return Ok(all.len() as i64);
        }
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

    /// Entities matching a filter and full-text search, a page at a time — now, or as they were
    /// at `asOf` (RFC 3339; ordered by ref, filters on the documents of that instant, without
    /// `search` or `relations.*` conditions).
    #[allow(clippy::too_many_arguments)]
    async fn entities(
        &self,
        ctx: &Context<'_>,
        filter: Option<Vec<EntityFilter>>,
        search: Option<String>,
        #[graphql(default_with = "EntityOrder::Ref")] order_by: EntityOrder,
        first: Option<i32>,
        after: Option<String>,
        as_of: Option<String>,
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
        if let Some(at) = instant(as_of)? {
            if text.is_some() {
                return Err(bad_input("search is not available with asOf: use filters"));
            }
            if order != Order::Ref {
                return Err(bad_input("lists asOf an instant are ordered by REF only"));
            }
            if filter.as_ref().is_some_and(Filter::mentions_relations) {
                return Err(bad_input(
                    "relations.* filters are not available with asOf: ask the graph (owned, dependents, …) with asOf",
                ));
            }
            let (rows, has_more) = past_page(ctx, &at, filter.as_ref(), after, limit, true).await?;
            let edges: Vec<EntityEdge> = rows
                .into_iter()
                .map(|(entity_ref, document)| EntityEdge {
                    cursor: cursor::encode(&entity_ref, order),
                    node: Node::past(entity_ref, document, &at).into_entity(),
                })
                .collect();
            return Ok(EntityConnection::new(edges, has_more, filter, None, Some(at)));
        }
        let epoch = services(ctx).feed.cache().epoch();
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
            relations.entry(row.source.clone()).or_default().push(row.into());
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
        let mut rows: Vec<Arc<EntityRow>> = Vec::with_capacity(page.rows.len());
        let mut page_relations: Vec<(String, Arc<Vec<Relation>>)> = Vec::with_capacity(page.rows.len());
        let edges: Vec<EntityEdge> = page
            .rows
            .into_iter()
            .map(|(key, row)| {
                let row = Arc::new(row);
                let outgoing = Arc::new(relations.remove(&row.entity_ref).unwrap_or_default());
                let mut node = Node::current(row.clone());
                node.relations = Some(outgoing.clone());
                node.neighbours = Some(neighbours.clone());
                page_relations.push((row.entity_ref.clone(), outgoing));
                rows.push(row);
                EntityEdge {
                    cursor: cursor::encode(&key, order),
                    node: node.into_entity(),
                }
            })
            .collect();
        // A page read whole is as good as entities read one by one: keep it for lookups by ref.
        let cache = services(ctx).feed.cache();
        cache.insert_rows(epoch, rows.into_iter().chain(neighbours.values().cloned()));
        cache.insert_relations(epoch, page_relations);
        Ok(EntityConnection::new(edges, page.has_more, filter, text, None))
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
    async fn locations(&self, ctx: &Context<'_>) -> Result<Vec<RegisteredLocation>> {
        let rows = services(ctx).reader.locations().await.map_err(internal)?;
        Ok(rows.into_iter().map(RegisteredLocation).collect())
    }
}

/// The canonical lowercased form of a full ref; short forms are refused (an API has no source
/// entity to take defaults from, except the `default` namespace).
pub(crate) fn normalise_ref(text: &str) -> Result<String> {
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
