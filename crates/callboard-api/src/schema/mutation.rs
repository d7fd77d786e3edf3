//! The root of mutations: each is a command to the writer (the push provider), sent through the
//! service layer on behalf of the request's principal; the read model follows.

use async_graphql::{Context, Enum, Json, Object, Result, SimpleObject};
use callboard_catalog::vocabulary::{CommandStatus, LocationRecord};
use callboard_catalog::{LocationCommand, Outcome};
use serde_json::Value;

use super::{catalog, principal};
use crate::error::OrGraphql;

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

impl From<Outcome> for CommandResult {
    fn from(outcome: Outcome) -> Self {
        Self {
            status: match outcome.status {
                CommandStatus::Ok => CommandOutcome::Ok,
                CommandStatus::Rejected => CommandOutcome::Rejected,
                CommandStatus::Failed => CommandOutcome::Failed,
            },
            positions: outcome
                .positions
                .into_iter()
                .map(|p| LogPosition {
                    topic: p.topic,
                    partition: p.partition,
                    offset: p.offset,
                })
                .collect(),
            entity_refs: outcome.entity_refs,
            problems: Json(outcome.problems),
            message: outcome.message,
            projected: outcome.projected,
        }
    }
}

/// A location command, as a mutation answers it.
async fn location(
    ctx: &Context<'_>,
    command: LocationCommand,
    location_type: String,
    target: String,
    wait: bool,
) -> Result<CommandResult> {
    let location = LocationRecord { location_type, target };
    let outcome = catalog(ctx)
        .location(principal(ctx), command, location, wait)
        .await
        .gql()?;
    Ok(outcome.into())
}

/// The root of mutations: each goes through the writer (the push provider), which appends the
/// events; the read model follows.
#[derive(Debug, Default)]
pub struct Mutation;

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
        location(ctx, LocationCommand::Register, location_type, target, wait).await
    }

    /// Unregisters a location; the entities read only through it are deleted.
    async fn unregister_location(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "type", default = "url")] location_type: String,
        target: String,
        #[graphql(default = false)] wait: bool,
    ) -> Result<CommandResult> {
        location(ctx, LocationCommand::Unregister, location_type, target, wait).await
    }

    /// Reads a registered location again now.
    async fn refresh_location(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "type", default = "url")] location_type: String,
        target: String,
        #[graphql(default = false)] wait: bool,
    ) -> Result<CommandResult> {
        location(ctx, LocationCommand::Refresh, location_type, target, wait).await
    }

    /// Creates or replaces an entity (a Backstage descriptor as JSON) through the push provider.
    async fn apply_entity(
        &self,
        ctx: &Context<'_>,
        entity: Json<Value>,
        #[graphql(default = false)] wait: bool,
    ) -> Result<CommandResult> {
        let outcome = catalog(ctx).apply_entity(principal(ctx), entity.0, wait).await.gql()?;
        Ok(outcome.into())
    }

    /// Deletes an entity that was applied through the API.
    async fn delete_entity(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "ref")] entity_ref: String,
        #[graphql(default = false)] wait: bool,
    ) -> Result<CommandResult> {
        let entity_ref = super::entity_ref(&entity_ref)?;
        let outcome = catalog(ctx)
            .delete_entity(principal(ctx), &entity_ref, wait)
            .await
            .gql()?;
        Ok(outcome.into())
    }
}
