//! Event types and their payloads. Names and payloads are public contracts: a change needs a new
//! version (`….v2`), never an edit of `….v1`. Each has a JSON Schema in `schema/events/`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Every event type Callboard writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// An entity was created or changed (or accepted again after a rejection).
    EntityUpserted,
    /// An entity was removed.
    EntityDeleted,
    /// A document could not be accepted; the last good version stays.
    EntityRejected,
    /// A rejection no longer applies (the document was fixed or removed) without a new version
    /// of the same subject saying so.
    RejectionCleared,
    /// A location was registered.
    LocationRegistered,
    /// A location was unregistered.
    LocationUnregistered,
    /// Command: create or replace an entity on behalf of a user.
    ApplyEntity,
    /// Command: delete an entity on behalf of a user.
    DeleteEntity,
    /// Command: register a location.
    RegisterLocation,
    /// Command: unregister a location.
    UnregisterLocation,
    /// Command: re-read a location now.
    RefreshLocation,
    /// The outcome of a command.
    CommandCompleted,
}

impl EventType {
    /// Every type.
    pub const ALL: [EventType; 12] = [
        EventType::EntityUpserted,
        EventType::EntityDeleted,
        EventType::EntityRejected,
        EventType::RejectionCleared,
        EventType::LocationRegistered,
        EventType::LocationUnregistered,
        EventType::ApplyEntity,
        EventType::DeleteEntity,
        EventType::RegisterLocation,
        EventType::UnregisterLocation,
        EventType::RefreshLocation,
        EventType::CommandCompleted,
    ];

    /// The short name, e.g. `entity.upserted.v1` (the schema file is `<short name>.json`).
    pub fn short_name(self) -> &'static str {
        match self {
            EventType::EntityUpserted => "entity.upserted.v1",
            EventType::EntityDeleted => "entity.deleted.v1",
            EventType::EntityRejected => "entity.rejected.v1",
            EventType::RejectionCleared => "entity.rejection-cleared.v1",
            EventType::LocationRegistered => "location.registered.v1",
            EventType::LocationUnregistered => "location.unregistered.v1",
            EventType::ApplyEntity => "command.apply-entity.v1",
            EventType::DeleteEntity => "command.delete-entity.v1",
            EventType::RegisterLocation => "command.register-location.v1",
            EventType::UnregisterLocation => "command.unregister-location.v1",
            EventType::RefreshLocation => "command.refresh-location.v1",
            EventType::CommandCompleted => "command.completed.v1",
        }
    }

    /// The CloudEvents `type`, e.g. `dev.callboard.entity.upserted.v1`.
    pub fn name(self) -> &'static str {
        match self {
            EventType::EntityUpserted => "dev.callboard.entity.upserted.v1",
            EventType::EntityDeleted => "dev.callboard.entity.deleted.v1",
            EventType::EntityRejected => "dev.callboard.entity.rejected.v1",
            EventType::RejectionCleared => "dev.callboard.entity.rejection-cleared.v1",
            EventType::LocationRegistered => "dev.callboard.location.registered.v1",
            EventType::LocationUnregistered => "dev.callboard.location.unregistered.v1",
            EventType::ApplyEntity => "dev.callboard.command.apply-entity.v1",
            EventType::DeleteEntity => "dev.callboard.command.delete-entity.v1",
            EventType::RegisterLocation => "dev.callboard.command.register-location.v1",
            EventType::UnregisterLocation => "dev.callboard.command.unregister-location.v1",
            EventType::RefreshLocation => "dev.callboard.command.refresh-location.v1",
            EventType::CommandCompleted => "dev.callboard.command.completed.v1",
        }
    }

    /// The type named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The `dataschema` URL.
    pub fn schema_url(self) -> String {
        format!("https://callboard.dev/schema/events/{}.json", self.short_name())
    }

    /// True for commands (and their completions), which travel on the commands topic.
    pub fn is_command(self) -> bool {
        !matches!(
            self,
            EventType::EntityUpserted
                | EventType::EntityDeleted
                | EventType::EntityRejected
                | EventType::RejectionCleared
                | EventType::LocationRegistered
                | EventType::LocationUnregistered
        )
    }
}

/// A relation row as events carry it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelationRecord {
    /// The relation type, e.g. `ownedBy`.
    #[serde(rename = "type")]
    pub relation_type: String,
    /// Source entity ref.
    pub source_ref: String,
    /// Target entity ref.
    pub target_ref: String,
}

/// `entity.upserted.v1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityUpserted {
    /// The canonical ref (also the subject).
    pub entity_ref: String,
    /// Stable for the entity's life; a deleted and re-created entity gets a new one.
    pub uid: String,
    /// The entity as read (`apiVersion`, `kind`, `metadata`, `spec`), with location annotations
    /// and `metadata.namespace` filled in.
    pub entity: Map<String, Value>,
    /// The relation rows this entity's fields produce, both directions.
    pub relations: Vec<RelationRecord>,
    /// The location that defines the entity (the file it was read from, or `push`).
    pub location_key: String,
    /// The registered location that led to it.
    pub origin_location: String,
    /// SHA-256 of the entity's canonical JSON; equal hashes mean equal content.
    pub content_hash: String,
}

/// Why an entity was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeleteReason {
    /// It is no longer in the file or source that defined it.
    RemovedFromSource,
    /// Its location was unregistered.
    LocationUnregistered,
    /// A user deleted it through the API.
    DeletedByUser,
}

/// `entity.deleted.v1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityDeleted {
    /// The canonical ref (also the subject).
    pub entity_ref: String,
    /// The uid it had.
    pub uid: String,
    /// Why.
    pub reason: DeleteReason,
    /// The location that had defined it.
    pub location_key: String,
}

/// One problem of a rejected document.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProblemRecord {
    /// The rule code, e.g. `policy.field-format` (see `Rule::code`).
    pub rule: String,
    /// The field, as a dotted path (`spec.owner`); empty for the whole document.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// 1-based line in the file, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// 1-based column, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
}

/// `entity.rejected.v1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityRejected {
    /// The canonical ref, when the document got far enough to have one.
    pub entity_ref: Option<String>,
    /// The file (location ref) the document is in.
    pub location: String,
    /// The document's 0-based position in the file, when the problem is about one document.
    pub document_index: Option<u32>,
    /// At least one problem.
    pub problems: Vec<ProblemRecord>,
    /// The registered location that led to the file.
    pub origin_location: String,
    /// For conflicts: the location that already defines the entity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflicts_with: Option<String>,
    /// SHA-256 of the rejection's content; an unchanged rejection is not repeated.
    pub content_hash: String,
}

/// Why a rejection no longer applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClearReason {
    /// The file was read again and the document is no longer rejected.
    Fixed,
    /// The file or its location is gone.
    Removed,
}

/// `entity.rejection-cleared.v1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectionCleared {
    /// The file the rejected document was in.
    pub location: String,
    /// Why it no longer applies.
    pub reason: ClearReason,
}

/// A location as events carry it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LocationRecord {
    /// `url`, `file`, or `discovery`.
    #[serde(rename = "type")]
    pub location_type: String,
    /// The URL, path or folder.
    pub target: String,
}

impl LocationRecord {
    /// `<type>:<target>`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.location_type, self.target)
    }
}

/// `location.registered.v1` and `location.unregistered.v1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocationChanged {
    /// The location.
    pub location: LocationRecord,
    /// A stable id for the registration.
    pub id: String,
    /// The ref of the Location entity generated for it (`location:default/generated-<sha1>`).
    pub entity_ref: String,
}

/// `command.apply-entity.v1`: create or replace an entity (the push provider).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyEntity {
    /// The entity document (`apiVersion`, `kind`, `metadata`, `spec`).
    pub entity: Value,
}

/// `command.delete-entity.v1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteEntity {
    /// The entity to delete.
    pub entity_ref: String,
}

/// `command.register-location.v1`, `command.unregister-location.v1`, `command.refresh-location.v1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocationCommand {
    /// The location.
    pub location: LocationRecord,
}

/// Where an event landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionRecord {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
}

/// The outcome of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommandStatus {
    /// Done; `positions` lists the events it appended (none when nothing changed).
    Ok,
    /// Refused: the input was invalid or conflicts; see `problems`.
    Rejected,
    /// Could not be carried out; see `message`.
    Failed,
}

/// `command.completed.v1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandCompleted {
    /// The command's event id.
    pub command_id: String,
    /// The outcome.
    pub status: CommandStatus,
    /// Positions of the events the command appended.
    pub positions: Vec<PositionRecord>,
    /// Entities the command touched.
    pub entity_refs: Vec<String>,
    /// Problems, for rejections.
    #[serde(default)]
    pub problems: Vec<ProblemRecord>,
    /// A message, for failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
