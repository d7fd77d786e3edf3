//! What lists and graph questions return: connections with cursors, facet counts, graph nodes
//! and path steps, registered locations.

use async_graphql::{ComplexObject, Context, Enum, InputObject, Object, Result, SimpleObject};
use callboard_catalog::Instant;
use callboard_catalog::vocabulary::{EntityRef, Filter, LocationRow, Order, RejectionsBy};

use super::{catalog, principal};
use crate::entity::{Entity, Rejection, entity_at, load_entity};
use crate::error::{OrGraphql, bad_input};

/// A registered location.
#[derive(Debug, Clone)]
pub struct RegisteredLocation(pub(crate) LocationRow);

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
        let rows = catalog(ctx)
            .rejections(principal(ctx), RejectionsBy::Origin(&self.0.key))
            .await
            .gql()?;
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
    /// For a search: entities whose name starts with the search's first word first, then the
    /// rest, each group by ref.
    Relevance,
}

impl From<EntityOrder> for Order {
    fn from(order: EntityOrder) -> Self {
        match order {
            EntityOrder::Ref => Order::Ref,
            EntityOrder::Name => Order::Name,
            EntityOrder::UpdatedDesc => Order::UpdatedDesc,
            EntityOrder::Relevance => Order::Relevance,
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

pub(crate) fn to_filter(filter: Option<Vec<EntityFilter>>) -> Result<Option<Filter>> {
    let Some(sets) = filter else {
        return Ok(None);
    };
    let params: Vec<String> = sets.into_iter().map(|set| set.all.join(",")).collect();
    Filter::parse_backstage(&params).map_err(|e| bad_input(format!("filter: {e}")))
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
    at: Option<Instant>,
    /// The count, when it was read with the page.
    #[graphql(skip)]
    pub(crate) total: Option<i64>,
}

impl EntityConnection {
    pub(crate) fn new(
        edges: Vec<EntityEdge>,
        has_next_page: bool,
        filter: Option<Filter>,
        text: Option<String>,
        at: Option<Instant>,
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
            total: None,
        }
    }
}

#[ComplexObject]
impl EntityConnection {
    /// How many entities match (across all pages).
    async fn total_count(&self, ctx: &Context<'_>) -> Result<i64> {
        if let Some(total) = self.total {
            return Ok(total);
        }
        let (catalog, principal) = (catalog(ctx), principal(ctx));
        match &self.at {
            Some(at) => catalog.count_at(principal, self.filter.as_ref(), at).await.gql(),
            None => catalog
                .count(principal, self.filter.as_ref(), self.text.as_deref())
                .await
                .gql(),
        }
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
    pub(crate) node: EntityRef,
    #[graphql(skip)]
    pub(crate) at: Option<Instant>,
}

#[ComplexObject]
impl GraphNode {
    /// The entity (null when the ref is not in the catalog).
    async fn entity(&self, ctx: &Context<'_>) -> Result<Option<Entity>> {
        match &self.at {
            None => load_entity(ctx, &self.node).await,
            Some(at) => entity_at(ctx, &self.node, at).await,
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
