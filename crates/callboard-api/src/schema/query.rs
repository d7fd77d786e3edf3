//! The root of queries.

use async_graphql::{Context, Object, Result};
use callboard_catalog::vocabulary::{EntityQuery, Order, Question, RejectionsBy};

use super::activity::{self, ActivityConnection};
use super::connection::{
    EntityConnection, EntityEdge, EntityFilter, EntityOrder, FacetCount, GraphNode, PathStep, RegisteredLocation,
    to_filter,
};
use super::{DEFAULT_PAGE, catalog, entity_ref, graph_depth, instant, list_cost, page_size, principal};
use crate::cursor;
use crate::entity::{Entity, Node, Rejection, entity_at, include_for, load_alone};
use crate::error::{OrGraphql, bad_input};

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
        let entity_ref = super::entity_ref(&entity_ref)?;
        match instant(as_of)? {
            None => load_alone(ctx, &entity_ref).await,
            Some(at) => entity_at(ctx, &entity_ref, &at).await,
        }
    }

    /// Entities matching a filter and full-text search (every word as a prefix of a word of the
    /// entity's text), a page at a time, ordered by `orderBy` (RELEVANCE ranks a search's
    /// results) — now, or as they were at `asOf` (RFC 3339; ordered by ref, filters on the
    /// documents of that instant, without `search` or `relations.*` conditions).
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "list_cost(first.unwrap_or(DEFAULT_PAGE), child_complexity)")]
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
        // Ranking is asked for (RELEVANCE), not the default: ordering every match by rank costs
        // a search of a short prefix over 100,000 entities its p99 (26–34 ms by ref, 56–478 ms
        // ranked, at 100 requests/s embedded).
        let order: Order = order_by.into();
        let after = match after {
            None => None,
            Some(c) => {
                Some(cursor::decode(&c, order).ok_or_else(|| bad_input("after: not a cursor of this ordering"))?)
            }
        };
        let query = EntityQuery {
            filter: filter.clone(),
            text: text.clone(),
            order,
            after,
            limit,
        };
        let (catalog, principal) = (catalog(ctx), principal(ctx));
        if let Some(at) = instant(as_of)? {
            let page = catalog.list_at(principal, query, &at).await.gql()?;
            let edges: Vec<EntityEdge> = page
                .rows
                .into_iter()
                .map(|(entity_ref, document)| EntityEdge {
                    cursor: cursor::encode(entity_ref.as_str(), order),
                    node: Node::past(entity_ref, document, at.clone()).into_entity(),
                })
                .collect();
            return Ok(EntityConnection::new(edges, page.has_more, filter, None, Some(at)));
        }
        let look = ctx.look_ahead();
        let mut include = include_for(
            look.field("nodes")
                .selection_fields()
                .into_iter()
                .chain(look.field("edges").field("node").selection_fields()),
        );
        include.total = look.field("totalCount").exists();
        let page = catalog.list(principal, query, include).await.gql()?;
        let edges: Vec<EntityEdge> = page
            .rows
            .iter()
            .map(|(key, row)| {
                let mut node = Node::current(row.clone());
                node.relations = page.outgoing.get(&node.entity_ref).cloned();
                node.neighbours = page.neighbours.clone();
                EntityEdge {
                    cursor: cursor::encode(key, order),
                    node: node.into_entity(),
                }
            })
            .collect();
        let mut connection = EntityConnection::new(edges, page.has_more, filter, text, None);
        connection.total = page.total;
        Ok(connection)
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
        let counts = catalog(ctx)
            .facets(principal(ctx), &field, filter.as_ref())
            .await
            .gql()?;
        Ok(counts
            .iter()
            .map(|(value, count)| FacetCount {
                value: value.clone(),
                count: *count,
            })
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
        let (from, to) = (entity_ref(&from)?, entity_ref(&to)?);
        let hops = catalog(ctx)
            .path(principal(ctx), &from, &to, depth, at.as_ref())
            .await
            .gql()?;
        Ok(hops.map(|hops| {
            hops.into_iter()
                .map(|h| PathStep {
                    from: h.from.into_string(),
                    relation_type: h.relation_type.as_str().to_owned(),
                    to: h.to.into_string(),
                })
                .collect()
        }))
    }

    /// Dependency cycles (`dependsOn`), each as the sorted refs in it.
    async fn dependency_cycles(&self, ctx: &Context<'_>, as_of: Option<String>) -> Result<Vec<Vec<String>>> {
        let at = instant(as_of)?;
        let cycles = catalog(ctx).cycles(principal(ctx), at.as_ref()).await.gql()?;
        Ok(cycles
            .into_iter()
            .map(|cycle| cycle.into_iter().map(|r| r.into_string()).collect())
            .collect())
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
        let entity_ref = entity_ref.map(|r| super::entity_ref(&r)).transpose()?;
        let by = match (&entity_ref, &file, &location) {
            (Some(r), None, None) => RejectionsBy::Entity(r),
            (None, Some(f), None) => RejectionsBy::Location(f),
            (None, None, Some(l)) => RejectionsBy::Origin(l),
            (None, None, None) => RejectionsBy::All,
            _ => return Err(bad_input("give at most one of entityRef, file and location")),
        };
        let rows = catalog(ctx).rejections(principal(ctx), by).await.gql()?;
        Ok(rows.into_iter().map(Rejection).collect())
    }

    /// Registered locations.
    async fn locations(&self, ctx: &Context<'_>) -> Result<Vec<RegisteredLocation>> {
        let rows = catalog(ctx).locations(principal(ctx)).await.gql()?;
        Ok(rows.into_iter().map(RegisteredLocation).collect())
    }

    /// Who changed what, when and from which source, newest first: every change to the catalog,
    /// or only what one `actor` did (a user's ref, `provider:<name>`), or only what happened to
    /// entities `owner` owned at the time (a group's or user's ref).
    #[graphql(complexity = "list_cost(first.unwrap_or(DEFAULT_PAGE), child_complexity)")]
    async fn activity(
        &self,
        ctx: &Context<'_>,
        actor: Option<String>,
        owner: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<ActivityConnection> {
        let (limit, before) = (page_size(ctx, first)?, activity::after(after)?);
        let (rows, has_more) = catalog(ctx)
            .activity(principal(ctx), actor, owner, before, limit)
            .await
            .gql()?;
        Ok(ActivityConnection::page(rows, has_more))
    }
}

async fn walk(
    ctx: &Context<'_>,
    question: Question,
    root: &str,
    depth: i32,
    as_of: Option<String>,
) -> Result<Vec<GraphNode>> {
    let depth = graph_depth(ctx, depth)?;
    let at = instant(as_of)?;
    let root = entity_ref(root)?;
    let reached = catalog(ctx)
        .reached(principal(ctx), question, &root, depth, at.as_ref())
        .await
        .gql()?;
    Ok(reached
        .into_iter()
        .map(|r| GraphNode {
            entity_ref: r.entity_ref.canonical(),
            depth: r.depth as i32,
            node: r.entity_ref,
            at: at.clone(),
        })
        .collect())
}
