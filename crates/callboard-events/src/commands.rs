//! The push interface: how API replicas ask the writer to change the catalog. A command is an
//! event on the commands topic; the writer carries it out and answers with a
//! `command.completed.v1` event that names the command as its cause.

use std::sync::Arc;
use std::time::Duration;

use callboard_model::EntityRef;
use serde_json::Value;
use tokio::time::Instant;

use crate::CloudEvent;
use crate::envelope::Envelope;
use crate::log::{EventLog, LogError, Record};
use crate::topics::Topics;
use crate::types::{ApplyEntity, CommandCompleted, DeleteEntity, EventType, LocationCommand, LocationRecord};

/// Sends commands and waits for their outcome.
#[derive(Clone)]
pub struct CommandClient {
    log: Arc<dyn EventLog>,
    topics: Topics,
}

impl std::fmt::Debug for CommandClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandClient")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

/// A command that was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The command's event id.
    pub id: String,
    /// Its offset on the (single-partition) commands topic.
    pub offset: i64,
}

/// Why waiting for a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// No outcome arrived in time (is a writer running?).
    #[error("no writer answered command {0} in time")]
    Timeout(String),
}

impl CommandClient {
    /// A client on `log`.
    pub fn new(log: Arc<dyn EventLog>, topics: Topics) -> Self {
        Self { log, topics }
    }

    async fn send(
        &self,
        event_type: EventType,
        subject: String,
        actor: &str,
        data: Value,
    ) -> Result<Sent, CommandError> {
        let event = CloudEvent::new(event_type, subject.clone(), 0, "callboard:api", actor, data);
        let id = event.id.clone();
        let positions = self
            .log
            .append(
                &self.topics.commands(),
                vec![Record {
                    key: subject,
                    value: event.to_bytes(),
                }],
            )
            .await?;
        let offset = positions.first().map_or(0, |p| p.offset);
        Ok(Sent { id, offset })
    }

    /// Asks the writer to create or replace `entity` on behalf of `actor` (a user's entity ref).
    pub async fn apply_entity(&self, entity: Value, actor: &str) -> Result<Sent, CommandError> {
        let subject = entity_subject(&entity);
        let data = serde_json::to_value(ApplyEntity { entity }).unwrap_or_default();
        self.send(EventType::ApplyEntity, subject, actor, data).await
    }

    /// Asks the writer to delete a pushed entity.
    pub async fn delete_entity(&self, entity_ref: &EntityRef, actor: &str) -> Result<Sent, CommandError> {
        let data = serde_json::to_value(DeleteEntity {
            entity_ref: entity_ref.canonical(),
        })
        .unwrap_or_default();
        self.send(EventType::DeleteEntity, entity_ref.canonical(), actor, data)
            .await
    }

    /// Asks the writer to register, unregister or refresh a location.
    pub async fn location(&self, kind: EventType, location: LocationRecord, actor: &str) -> Result<Sent, CommandError> {
        let subject = location.key();
        let data = serde_json::to_value(LocationCommand { location }).unwrap_or_default();
        self.send(kind, subject, actor, data).await
    }

    /// Waits for the outcome of a sent command.
    pub async fn wait(&self, sent: &Sent, timeout: Duration) -> Result<CommandCompleted, CommandError> {
        let topic = self.topics.commands();
        let deadline = Instant::now() + timeout;
        let mut next = sent.offset + 1;
        loop {
            // The command is in the log; its answer will be too. A log that is away for a moment
            // (a broker restart) is waited for, up to the deadline, which then reports it.
            let messages = match self.log.read(&topic, 0, next, 500).await {
                Ok(messages) => messages,
                Err(error @ LogError::Unavailable(_)) => {
                    if Instant::now() >= deadline {
                        return Err(error.into());
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            for message in &messages {
                next = message.offset + 1;
                // Other commands and outcomes decode as not being the answer.
                let Ok(event) = Envelope::<CommandCompleted>::from_bytes(&message.value) else {
                    continue;
                };
                if event.causationid.as_deref() == Some(sent.id.as_str())
                    && event.known_type() == Some(EventType::CommandCompleted)
                {
                    return Ok(event.data);
                }
            }
            if Instant::now() >= deadline {
                return Err(CommandError::Timeout(sent.id.clone()));
            }
            if messages.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// The canonical ref of a document, for the command's key; a document too broken to name one is
/// keyed `unknown` (the writer rejects it with the reason).
fn entity_subject(entity: &Value) -> String {
    fn text(v: Option<&Value>) -> Option<&str> {
        v.and_then(Value::as_str)
    }
    let metadata = entity.get("metadata");
    EntityRef::new(
        text(entity.get("kind")).unwrap_or_default(),
        text(metadata.and_then(|m| m.get("namespace"))).unwrap_or(callboard_model::DEFAULT_NAMESPACE),
        text(metadata.and_then(|m| m.get("name"))).unwrap_or_default(),
    )
    .map_or_else(|_| "unknown".to_owned(), EntityRef::into_string)
}
