//! Changing the catalog: commands to the writer on behalf of a principal, and read-your-writes
//! (waiting until the projectors have applied what a command appended).

use std::time::Duration;

use callboard_events::commands::{CommandClient, CommandError, Sent};
use callboard_events::types::{CommandCompleted, CommandStatus, EventType, LocationRecord, PositionRecord};
use callboard_model::EntityRef;
use callboard_projection::{Progress, Target};
use serde_json::Value;

use crate::error::{CatalogError, ErrorCode, Result};
use crate::feed::Feed;
use crate::principal::Principal;

/// How long a command may wait for the writer's answer, and then for the projectors.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The kinds of location a client may register.
pub const LOCATION_TYPES: [&str; 3] = ["url", "file", "discovery"];

/// What to do with a location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocationCommand {
    /// Register it and read it.
    Register,
    /// Unregister it: the entities read only through it are deleted.
    Unregister,
    /// Read it again now.
    Refresh,
}

impl LocationCommand {
    /// The command's event type.
    pub fn event_type(self) -> EventType {
        match self {
            Self::Register => EventType::RegisterLocation,
            Self::Unregister => EventType::UnregisterLocation,
            Self::Refresh => EventType::RefreshLocation,
        }
    }
}

/// What a command did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Done, refused, or failed.
    pub status: CommandStatus,
    /// Positions of the events it appended (empty when nothing changed).
    pub positions: Vec<PositionRecord>,
    /// Entities it touched.
    pub entity_refs: Vec<String>,
    /// Problems, for refusals.
    pub problems: Value,
    /// A message, for failures.
    pub message: Option<String>,
    /// True when the read model reflected every appended event before the answer (asked for
    /// with `wait`).
    pub projected: bool,
}

/// Sends commands and waits for them; `None` inside for a read-only process.
#[derive(Debug, Clone)]
pub(crate) struct Commands {
    client: Option<CommandClient>,
    progress: Progress,
    feed: Feed,
    /// The entity topic, whose positions the feed publishes.
    entities: String,
}

impl Commands {
    pub(crate) fn new(client: Option<CommandClient>, progress: Progress, feed: Feed, entities: String) -> Self {
        Self {
            client,
            progress,
            feed,
            entities,
        }
    }

    fn client(&self) -> Result<&CommandClient> {
        self.client
            .as_ref()
            .ok_or_else(|| CatalogError::new(ErrorCode::ReadOnly, "this API replica is read-only"))
    }

    /// Registers, unregisters or refreshes a location.
    pub(crate) async fn location(
        &self,
        principal: &Principal,
        kind: EventType,
        location: LocationRecord,
        wait: bool,
    ) -> Result<Outcome> {
        if !LOCATION_TYPES.contains(&location.location_type.as_str()) {
            return Err(CatalogError::bad_input(format!(
                "type must be url, file or discovery (got {:?})",
                location.location_type
            )));
        }
        let client = self.client()?;
        self.run(client.location(kind, location, &principal.actor()), wait)
            .await
    }

    /// Creates or replaces an entity through the push provider.
    pub(crate) async fn apply(&self, principal: &Principal, entity: Value, wait: bool) -> Result<Outcome> {
        let client = self.client()?;
        self.run(client.apply_entity(entity, &principal.actor()), wait).await
    }

    /// Deletes an entity that was applied through the push provider.
    pub(crate) async fn delete(&self, principal: &Principal, entity_ref: &EntityRef, wait: bool) -> Result<Outcome> {
        let client = self.client()?;
        self.run(client.delete_entity(entity_ref, &principal.actor()), wait)
            .await
    }

    async fn run(
        &self,
        send: impl Future<Output = std::result::Result<Sent, CommandError>>,
        wait: bool,
    ) -> Result<Outcome> {
        let client = self.client()?;
        let unavailable = |e: CommandError| CatalogError::unavailable(format!("{e}"), e);
        let sent = send.await.map_err(unavailable)?;
        let completed: CommandCompleted = client.wait(&sent, COMMAND_TIMEOUT).await.map_err(unavailable)?;
        let projected = wait
            && completed.status == CommandStatus::Ok
            && self.wait_projected(&completed.positions, COMMAND_TIMEOUT).await;
        Ok(Outcome {
            status: completed.status,
            problems: serde_json::to_value(&completed.problems).unwrap_or_default(),
            positions: completed.positions,
            entity_refs: completed.entity_refs,
            message: completed.message,
            projected,
        })
    }

    /// Waits until the projectors have applied every position, and the change feed has
    /// published those of the entity topic (so that no cached answer predates them); false on
    /// timeout.
    pub(crate) async fn wait_projected(&self, positions: &[PositionRecord], timeout: Duration) -> bool {
        let started = tokio::time::Instant::now();
        let targets: Vec<Target> = positions
            .iter()
            .map(|p| Target {
                topic: p.topic.clone(),
                partition: p.partition,
                offset: p.offset,
            })
            .collect();
        if !self.progress.wait(&targets, Some(timeout)).await {
            return false;
        }
        let published: Vec<(i32, i64)> = positions
            .iter()
            .filter(|p| p.topic == self.entities)
            .map(|p| (p.partition, p.offset))
            .collect();
        self.feed
            .wait_published(&published, timeout.saturating_sub(started.elapsed()))
            .await
    }
}
