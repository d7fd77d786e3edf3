//! The writer as the catalog's command handler, given/when/then over the in-memory event log:
//! given the events already in the log (the writer rebuilds its state from them, as on start),
//! when a command arrives, then exactly these events are appended — each naming the principal
//! that sent the command and the command as its cause.

use std::sync::Arc;

use callboard_events::types::{
    ApplyEntity, CommandCompleted, CommandStatus, DeleteEntity, EntityUpserted, EventType, RelationRecord,
};
use callboard_events::{CloudEvent, EventLog, MemoryLog, Record, Topics};
use callboard_ingest::{Scanner, Writer, WriterConfig};
use callboard_reader::Reader;
use serde_json::{Value, json};

const JANE: &str = "user:default/jane";
const JOE: &str = "user:default/joe";

/// The log as a scenario starts.
struct Given {
    log: MemoryLog,
    topics: Topics,
    before: usize,
}

/// What a command did.
struct Then {
    completed: CommandCompleted,
    command: CloudEvent,
    appended: Vec<CloudEvent>,
}

async fn given(events: Vec<CloudEvent>) -> Given {
    let log = MemoryLog::new();
    let topics = Topics::default();
    log.ensure_topics(&topics.specs(3, 1)).await.expect("topics");
    let before = events.len();
    if !events.is_empty() {
        let records = events
            .iter()
            .map(|e| Record {
                key: e.subject.clone(),
                value: e.to_bytes(),
            })
            .collect();
        log.append(&topics.entities(), records).await.expect("append");
    }
    Given { log, topics, before }
}

impl Given {
    async fn when(self, command: CloudEvent) -> Then {
        let mut writer = Writer::start(
            Arc::new(self.log.clone()),
            Scanner::new(Arc::new(Reader::default())),
            WriterConfig {
                topics: self.topics.clone(),
                ..WriterConfig::default()
            },
        )
        .await
        .expect("the writer starts from the log");
        let completed = writer.handle(&command).await;
        let appended = self
            .log
            .messages(&self.topics.entities())
            .iter()
            .map(|m| CloudEvent::from_bytes(&m.value).expect("an event"))
            .collect::<Vec<_>>()
            .split_off(self.before);
        Then {
            completed,
            command,
            appended,
        }
    }
}

impl Then {
    /// The command succeeded and appended exactly `expected`: (type, subject, sequence, actor).
    fn expect(&self, status: CommandStatus, expected: &[(EventType, &str, u64, &str)]) {
        assert_eq!(self.completed.status, status, "{:?}", self.completed);
        let got: Vec<(Option<EventType>, &str, u64, &str)> = self
            .appended
            .iter()
            .map(|e| (e.known_type(), e.subject.as_str(), e.sequence, e.actor.as_str()))
            .collect();
        let want: Vec<(Option<EventType>, &str, u64, &str)> =
            expected.iter().map(|(t, s, n, a)| (Some(*t), *s, *n, *a)).collect();
        assert_eq!(got, want);
        for event in &self.appended {
            assert_eq!(
                event.causationid.as_deref(),
                Some(self.command.id.as_str()),
                "every event names its command"
            );
        }
    }
}

fn component(name: &str, owner: &str) -> Value {
    json!({"apiVersion": "backstage.io/v1alpha1", "kind": "Component",
           "metadata": {"name": name}, "spec": {"type": "service", "lifecycle": "production", "owner": owner}})
}

fn apply(entity: Value, actor: &str) -> CloudEvent {
    let data = serde_json::to_value(ApplyEntity { entity }).expect("payload");
    CloudEvent::new(
        EventType::ApplyEntity,
        "component:default/x",
        0,
        "callboard:api",
        actor,
        data,
    )
}

fn delete(entity_ref: &str, actor: &str) -> CloudEvent {
    let data = serde_json::to_value(DeleteEntity {
        entity_ref: entity_ref.into(),
    })
    .expect("payload");
    CloudEvent::new(EventType::DeleteEntity, entity_ref, 0, "callboard:api", actor, data)
}

/// An upsert of `name` as the writer records it, read from `location_key` (`push` for entities
/// applied through the API).
fn upserted(name: &str, sequence: u64, location_key: &str, actor: &str) -> CloudEvent {
    let entity_ref = format!("component:default/{name}");
    let document = component(name, "team-a");
    let payload = EntityUpserted {
        entity_ref: entity_ref.clone(),
        uid: format!("uid-{name}"),
        entity: document.as_object().expect("an object").clone(),
        relations: vec![RelationRecord {
            relation_type: "ownedBy".into(),
            source_ref: entity_ref.clone(),
            target_ref: "group:default/team-a".into(),
        }],
        location_key: location_key.into(),
        origin_location: location_key.into(),
        content_hash: format!("hash-{name}-{sequence}"),
    };
    CloudEvent::new(
        EventType::EntityUpserted,
        entity_ref,
        sequence,
        location_key,
        actor,
        serde_json::to_value(payload).expect("payload"),
    )
}

#[tokio::test]
async fn applying_a_new_entity_upserts_it_as_the_sender() {
    given(vec![])
        .await
        .when(apply(component("pay", "team-a"), JANE))
        .await
        .expect(
            CommandStatus::Ok,
            &[(EventType::EntityUpserted, "component:default/pay", 1, JANE)],
        );
}

#[tokio::test]
async fn deleting_a_pushed_entity_continues_its_sequence_as_the_sender() {
    given(vec![upserted("pay", 1, "push", JANE)])
        .await
        .when(delete("component:default/pay", JOE))
        .await
        .expect(
            CommandStatus::Ok,
            &[(EventType::EntityDeleted, "component:default/pay", 2, JOE)],
        );
}

#[tokio::test]
async fn an_entity_read_from_a_file_cannot_be_deleted_through_the_api() {
    let then = given(vec![upserted(
        "billing",
        1,
        "file:/srv/catalog-info.yaml",
        "provider:serve",
    )])
    .await
    .when(delete("component:default/billing", JOE))
    .await;
    then.expect(CommandStatus::Rejected, &[]);
    assert!(
        then.completed
            .message
            .as_deref()
            .is_some_and(|m| m.contains("file:/srv/catalog-info.yaml")),
        "{:?}",
        then.completed
    );
}

#[tokio::test]
async fn an_invalid_entity_is_refused_with_its_problems() {
    let then = given(vec![])
        .await
        .when(apply(json!({"kind": "Component", "metadata": {"name": "x"}}), JANE))
        .await;
    then.expect(CommandStatus::Rejected, &[]);
    assert!(!then.completed.problems.is_empty(), "{:?}", then.completed);
}

#[tokio::test]
async fn applying_the_same_entity_again_changes_nothing() {
    // Given the writer's own upsert of it (so the content hash is the writer's).
    let first = given(vec![]).await.when(apply(component("pay", "team-a"), JANE)).await;
    let again = given(first.appended.clone())
        .await
        .when(apply(component("pay", "team-a"), JANE))
        .await;
    again.expect(CommandStatus::Ok, &[]);
    // Pushed by someone else, it is a new version: the entity records who manages it.
    let other = given(first.appended)
        .await
        .when(apply(component("pay", "team-a"), JOE))
        .await;
    other.expect(
        CommandStatus::Ok,
        &[(EventType::EntityUpserted, "component:default/pay", 2, JOE)],
    );
    assert!(
        other.appended[0].data["entity"]["metadata"]["annotations"]["backstage.io/managed-by-location"]
            .as_str()
            .is_some_and(|l| l.ends_with(JOE)),
        "{}",
        other.appended[0].data
    );
}
