//! The root of subscriptions: live changes from the service's change feed, each delivered once
//! the read model reflects it.

use std::sync::Arc;

use async_graphql::{ComplexObject, Context, Json, Result, SimpleObject, Subscription};
use callboard_catalog::vocabulary::EntityRef;
use callboard_catalog::{CatalogError, Change, ErrorCode};
use futures::{Stream, StreamExt};
use serde_json::Value;

use super::{catalog, entity_ref, principal};
use crate::entity::{Entity, load_entity};
use crate::error::{coded, from_catalog};

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
    /// Where this change stands in the feed: subscribe with `after` set to it (after a lost
    /// connection, a RESYNC error or a server restart) to be sent every change since, then the
    /// live ones.
    pub cursor: String,
    #[graphql(skip)]
    entity: Option<EntityRef>,
}

#[ComplexObject]
impl EntityChange {
    /// The entity as it is now (null after a deletion).
    async fn entity(&self, ctx: &Context<'_>) -> Result<Option<Entity>> {
        match &self.entity {
            Some(entity_ref) => load_entity(ctx, entity_ref).await,
            None => Ok(None),
        }
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
            coded(
                ErrorCode::Limit,
                "this connection holds as many subscriptions as it may; close one first",
            )
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
    /// refs as in `spec.owner` after defaults, e.g. `group:default/payments`). With `after` (a
    /// change's `cursor`), first every change since that one, then the live ones.
    async fn entity_changed(
        &self,
        ctx: &Context<'_>,
        kinds: Option<Vec<String>>,
        namespaces: Option<Vec<String>>,
        owners: Option<Vec<String>>,
        refs: Option<Vec<String>>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<EntityChange>> + use<>> {
        let lower = |v: Option<Vec<String>>| v.map(|v| v.into_iter().map(|s| s.to_lowercase()).collect::<Vec<_>>());
        let (kinds, namespaces, owners) = (lower(kinds), lower(namespaces), lower(owners));
        let refs = refs
            .map(|refs| refs.iter().map(|r| entity_ref(r)).collect::<Result<Vec<_>>>())
            .transpose()?;
        let slot = budget_slot(ctx)?;
        let stream = catalog(ctx)
            .subscribe(principal(ctx), after.as_deref())
            .await
            .map_err(from_catalog)?;
        Ok(stream.filter_map(move |change: Result<Arc<Change>, CatalogError>| {
            let _held = &slot;
            let change = match change {
                Ok(change) => change,
                // Fell behind: told once, then the stream ends.
                Err(e) => return futures::future::ready(Some(Err(from_catalog(e)))),
            };
            let keep = change.entity.as_ref().is_some_and(|entity| {
                kinds.as_ref().is_none_or(|k| k.iter().any(|k| k == entity.kind()))
                    && namespaces
                        .as_ref()
                        .is_none_or(|n| n.iter().any(|n| n == entity.namespace()))
                    && owners.as_ref().is_none_or(|o| {
                        change
                            .owner
                            .as_ref()
                            .is_some_and(|owner| o.iter().any(|o| o == owner.as_str()))
                    })
                    && refs.as_ref().is_none_or(|r| r.contains(entity))
            });
            let out = keep.then(|| EntityChange {
                entity_ref: change
                    .entity
                    .as_ref()
                    .map_or_else(|| change.subject.clone(), EntityRef::canonical),
                event_type: change.event_type.clone(),
                sequence: change.sequence,
                time: change.time.clone(),
                actor: change.actor.clone(),
                cursor: change.cursor.clone(),
                entity: change.entity.clone(),
            });
            futures::future::ready(out.map(Ok))
        }))
    }

    /// Processing errors: rejections of documents, optionally only those read through one
    /// registered location (its target) or claiming an entity owned by one of `owners`.
    async fn processing_errors(
        &self,
        ctx: &Context<'_>,
        location: Option<String>,
        owners: Option<Vec<String>>,
    ) -> Result<impl Stream<Item = Result<Json<Value>>> + use<>> {
        let owners = owners.map(|v| v.into_iter().map(|s| s.to_lowercase()).collect::<Vec<_>>());
        let slot = budget_slot(ctx)?;
        let stream = catalog(ctx)
            .subscribe(principal(ctx), None)
            .await
            .map_err(from_catalog)?;
        Ok(stream.filter_map(move |change: Result<Arc<Change>, CatalogError>| {
            let _held = &slot;
            let change = match change {
                Ok(change) => change,
                Err(e) => return futures::future::ready(Some(Err(from_catalog(e)))),
            };
            let keep = change.event_type.starts_with("entity.rejected")
                && location
                    .as_ref()
                    .is_none_or(|l| change.origin.as_deref().is_some_and(|o| o.ends_with(l.as_str())))
                && owners.as_ref().is_none_or(|o| {
                    change
                        .owner
                        .as_ref()
                        .is_some_and(|owner| o.iter().any(|o| o == owner.as_str()))
                });
            let out = keep.then(|| Json(change.data.clone()));
            futures::future::ready(out.map(Ok))
        }))
    }
}
