//! What an entity's fields list: links, profiles, versions from its history, rejections.

use async_graphql::{Json, Object, SimpleObject};
use callboard_catalog::vocabulary::{HistoryRow, RejectionRow};
use serde_json::Value;

/// A link of `metadata.links`.
#[derive(Debug, Clone, SimpleObject)]
pub struct Link {
    /// Where it points.
    pub url: String,
    /// Its title.
    pub title: Option<String>,
    /// An icon name.
    pub icon: Option<String>,
    /// A type of link (`dashboard`, `runbook`, …).
    #[graphql(name = "type")]
    pub link_type: Option<String>,
}

/// `spec.profile` of a User or Group.
#[derive(Debug, Clone, SimpleObject)]
pub struct Profile {
    /// The display name.
    pub display_name: Option<String>,
    /// The e-mail address.
    pub email: Option<String>,
    /// A picture URL.
    pub picture: Option<String>,
}

/// One version of an entity, from the history.
#[derive(Debug, Clone)]
pub struct Version(pub(crate) HistoryRow);

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
pub struct Rejection(pub(crate) RejectionRow);

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
