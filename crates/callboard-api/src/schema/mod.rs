//! The GraphQL schema: queries ([`query`]), mutations ([`mutation`]), subscriptions
//! ([`subscription`]), the connection types lists return ([`connection`]) and the activity feed
//! ([`activity`]) — every resolver a translation onto the service layer.

mod activity;
mod connection;
mod mutation;
mod query;
mod subscription;

use std::time::Duration;

use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, Result, Schema};
use callboard_catalog::vocabulary::EntityRef;
use callboard_catalog::{Catalog, Instant, Principal};

pub use activity::{Activity, ActivityConnection, ActivityEdge};
pub use connection::{
    EntityConnection, EntityEdge, EntityFilter, EntityOrder, FacetCount, GraphNode, PageInfo, PathStep,
    RegisteredLocation,
};
pub use mutation::{CommandOutcome, CommandResult, LogPosition, Mutation};
pub use query::Query;
pub use subscription::{EntityChange, SubscriptionRoot};

use crate::Limits;
use crate::entity::{Entity, EntityLoader, RelationLoader};
use crate::error::{argument, bad_input};

/// The schema type.
pub type CatalogSchema = Schema<Query, Mutation, SubscriptionRoot>;

/// Builds the schema over the service, with its limits.
pub fn build(catalog: Catalog, limits: &Limits) -> CatalogSchema {
    // Keys requested within a millisecond of each other share one read. The window is a latency
    // floor for every nested level of every query that misses the cache (entity by ref pays it
    // for each level), so it stays short; lists load their page's relations and targets with
    // the page.
    let entities = DataLoader::new(EntityLoader::entities(catalog.clone()), tokio::spawn)
        .max_batch_size(1_000)
        .delay(Duration::from_millis(1));
    let relations = DataLoader::new(RelationLoader::relations(catalog.clone()), tokio::spawn)
        .max_batch_size(1_000)
        .delay(Duration::from_millis(1));
    let mut builder = Schema::build(Query, Mutation, SubscriptionRoot)
        .data(catalog)
        .data(entities)
        .data(relations)
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

/// The service.
pub(crate) fn catalog<'a>(ctx: &Context<'a>) -> &'a Catalog {
    ctx.data_unchecked::<Catalog>()
}

/// Who the request runs for (the HTTP layer resolves it once per request; anonymous when no
/// transport said otherwise).
pub(crate) fn principal<'a>(ctx: &Context<'a>) -> &'a Principal {
    static ANONYMOUS: Principal = Principal::Anonymous;
    ctx.data_opt::<Principal>().unwrap_or(&ANONYMOUS)
}

/// An `asOf` argument: RFC 3339, normalised to the stored form.
pub(crate) fn instant(at: Option<String>) -> Result<Option<Instant>> {
    at.map(|text| Instant::parse(&text).map_err(|e| argument("asOf", e)))
        .transpose()
}

/// A full ref argument (`kind:namespace/name`, or `kind:name` in the default namespace;
/// case-insensitive): an API has no source entity to take a default kind from.
pub(crate) fn entity_ref(text: &str) -> Result<EntityRef> {
    text.trim().parse().map_err(|e| bad_input(format!("ref {text:?}: {e}")))
}

/// The page size of lists when `first` is not given.
pub(crate) const DEFAULT_PAGE: i32 = 50;

/// The complexity of a list field: its elements' complexity times the page size asked for, so
/// that nested lists multiply (100 entities × 100 relations × 100 relations costs a million, and
/// is refused before anything runs). A negative size costs as much as an empty page; it is
/// refused when the field runs.
pub(crate) fn list_cost(first: i32, child_complexity: usize) -> usize {
    usize::try_from(first)
        .unwrap_or(0)
        .saturating_mul(child_complexity)
        .max(1)
}

/// A page size argument, within the limits.
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

/// A graph depth argument, within the limits.
pub(crate) fn graph_depth(ctx: &Context<'_>, depth: i32) -> Result<usize> {
    let limits = ctx.data_unchecked::<Limits>();
    if depth < 1 || depth as usize > limits.graph_depth {
        return Err(bad_input(format!(
            "depth must be between 1 and {} (got {depth})",
            limits.graph_depth
        )));
    }
    Ok(depth as usize)
}
