//! The activity feed: who changed what, when and from which source, a page at a time.

use async_graphql::{ComplexObject, Context, Object, Result, SimpleObject};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use callboard_catalog::vocabulary::{ActivityKey, ActivityRow, EntityRef};

use super::connection::PageInfo;
use crate::entity::{Entity, load_entity};
use crate::error::bad_input;

/// One change to the catalog.
#[derive(Debug, Clone)]
pub struct Activity(ActivityRow);

/// One change to the catalog.
#[Object]
impl Activity {
    /// When it happened (RFC 3339, UTC).
    async fn time(&self) -> &str {
        &self.0.time
    }
    /// Who acted: a user's ref, `provider:<name>` for providers, …
    async fn actor(&self) -> &str {
        &self.0.actor
    }
    /// The event type (`entity.upserted.v1`, `entity.deleted.v1`, `location.registered.v1`, …).
    async fn event_type(&self) -> &str {
        &self.0.event_type
    }
    /// Where the change came from (a location, `callboard:api`, …).
    async fn source(&self) -> &str {
        &self.0.source
    }
    /// The event's subject: an entity ref, a rejected document's subject, or a location.
    async fn subject(&self) -> &str {
        &self.0.subject
    }
    /// The subject's sequence number for this change.
    async fn sequence(&self) -> i64 {
        self.0.sequence
    }
    /// The entity the change is about, when there is one (its ref).
    async fn entity_ref(&self) -> Option<&str> {
        self.0.entity_ref.as_deref()
    }
    /// The owner of that entity at the time.
    async fn owner(&self) -> Option<&str> {
        self.0.owner.as_deref()
    }
    /// The event id.
    async fn event_id(&self) -> &str {
        &self.0.event_id
    }
    /// The command that caused it, if any (a mutation's id).
    async fn causation(&self) -> Option<&str> {
        self.0.causation.as_deref()
    }
    /// The entity as it is now (null when it is gone, or the change is not about an entity).
    async fn entity(&self, ctx: &Context<'_>) -> Result<Option<Entity>> {
        match self.0.entity_ref.as_deref().map(str::parse::<EntityRef>) {
            Some(Ok(entity_ref)) => load_entity(ctx, &entity_ref).await,
            _ => Ok(None),
        }
    }
}

/// A change and its cursor.
#[derive(Debug, SimpleObject)]
pub struct ActivityEdge {
    /// Opaque: pass it as `after` to continue after (before, in time) this change.
    pub cursor: String,
    /// The change.
    pub node: Activity,
}

/// A page of the activity feed, newest first (a Relay connection).
#[derive(Debug, SimpleObject)]
#[graphql(complex)]
pub struct ActivityConnection {
    /// The changes with their cursors.
    pub edges: Vec<ActivityEdge>,
    /// Where this page is in the feed.
    pub page_info: PageInfo,
}

#[ComplexObject]
impl ActivityConnection {
    /// The changes, without cursors.
    async fn nodes(&self) -> Vec<Activity> {
        self.edges.iter().map(|e| e.node.clone()).collect()
    }
}

/// A cursor: the feed key of a change, as JSON, base64url.
fn encode(key: &ActivityKey) -> String {
    let json = serde_json::json!([key.time, key.stream, key.subject, key.sequence]);
    URL_SAFE_NO_PAD.encode(json.to_string())
}

fn decode(cursor: &str) -> Option<ActivityKey> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let (time, stream, subject, sequence): (String, String, String, i64) = serde_json::from_slice(&bytes).ok()?;
    Some(ActivityKey {
        time,
        stream,
        subject,
        sequence,
    })
}

/// The `after` cursor of a page.
pub(crate) fn after(cursor: Option<String>) -> Result<Option<ActivityKey>> {
    cursor
        .map(|c| decode(&c).ok_or_else(|| bad_input("after: not a cursor of the activity feed")))
        .transpose()
}

impl ActivityConnection {
    /// A page of rows, newest first.
    pub(crate) fn page(rows: Vec<ActivityRow>, has_more: bool) -> Self {
        let edges: Vec<ActivityEdge> = rows
            .into_iter()
            .map(|row| ActivityEdge {
                cursor: encode(&row.key()),
                node: Activity(row),
            })
            .collect();
        Self {
            page_info: PageInfo {
                has_next_page: has_more,
                has_previous_page: false,
                start_cursor: edges.first().map(|e| e.cursor.clone()),
                end_cursor: edges.last().map(|e| e.cursor.clone()),
            },
            edges,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let key = ActivityKey {
            time: "2026-01-01T00:00:00.000Z".into(),
            stream: "entities".into(),
            subject: "file:/a b/c.yaml#0".into(),
            sequence: 3,
        };
        assert_eq!(decode(&encode(&key)), Some(key));
        assert_eq!(decode("not a cursor"), None);
    }
}
