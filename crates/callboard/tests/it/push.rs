//! The push interface the GraphQL mutations use: commands on the commands topic, carried out by
//! the writer on behalf of a user, answered with their outcome and the positions of the events.

use std::sync::Arc;
use std::time::Duration;

use callboard_events::commands::CommandClient;
use callboard_events::types::CommandStatus;
use callboard_ingest::watch::FileWatcher;
use callboard_ingest::{Scanner, Writer, WriterConfig};
use callboard_reader::Reader;
use serde_json::json;

use crate::common::{Backend, read_events};

async fn push(backend: Backend) {
    let log = backend.open().await;
    let topics = backend.topics();
    let role = Writer::acquire_role(log.as_ref(), &topics, Duration::from_secs(30))
        .await
        .expect("writer role");
    let writer = Writer::start(
        log.clone(),
        Scanner::new(Arc::new(Reader::default())),
        WriterConfig {
            topics: topics.clone(),
            ..WriterConfig::default()
        },
    )
    .await
    .expect("writer");
    let (_watcher, changes) = FileWatcher::new().expect("watcher");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(writer.run(role, changes, async move {
        let _ = stopped.await;
    }));
    let client = CommandClient::new(log.clone(), topics.clone());
    let entity = json!({
        "apiVersion": "backstage.io/v1alpha1", "kind": "Component",
        "metadata": {"name": "pushed-service", "description": "made through the API"},
        "spec": {"type": "service", "lifecycle": "experimental", "owner": "team-a"},
    });

    let sent = client
        .apply_entity(entity.clone(), "user:default/jane")
        .await
        .expect("send");
    let outcome = client.wait(&sent, Duration::from_secs(30)).await.expect("outcome");
    assert_eq!(outcome.status, CommandStatus::Ok, "{outcome:?}");
    assert_eq!(outcome.entity_refs, ["component:default/pushed-service"]);
    assert_eq!(outcome.positions.len(), 1);
    let events = read_events(log.as_ref(), &topics.entities()).await;
    let event = events
        .iter()
        .find(|e| e.subject == "component:default/pushed-service")
        .expect("the upsert");
    assert_eq!(event.actor, "user:default/jane");
    assert_eq!(event.causationid.as_deref(), Some(sent.id.as_str()));

    // Applying the same entity again changes nothing.
    let again = client.apply_entity(entity, "user:default/jane").await.expect("send");
    let outcome = client.wait(&again, Duration::from_secs(30)).await.expect("outcome");
    assert_eq!((outcome.status, outcome.positions.len()), (CommandStatus::Ok, 0));

    // Invalid input is refused with problems naming the field.
    let bad = json!({"apiVersion": "backstage.io/v1alpha1", "kind": "Component", "metadata": {"name": "Bad Name"}, "spec": {}});
    let sent = client.apply_entity(bad, "user:default/jane").await.expect("send");
    let outcome = client.wait(&sent, Duration::from_secs(30)).await.expect("outcome");
    assert_eq!(outcome.status, CommandStatus::Rejected);
    assert_eq!(outcome.problems[0].field, "metadata.name");

    // Delete.
    let sent = client
        .delete_entity(
            &"component:default/pushed-service".parse().expect("a ref"),
            "user:default/jane",
        )
        .await
        .expect("send");
    let outcome = client.wait(&sent, Duration::from_secs(30)).await.expect("outcome");
    assert_eq!((outcome.status, outcome.positions.len()), (CommandStatus::Ok, 1));
    let events = read_events(log.as_ref(), &topics.entities()).await;
    assert_eq!(
        events.last().expect("event").event_type,
        "dev.callboard.entity.deleted.v1"
    );

    let _ = stop.send(());
    task.await.expect("task").expect("writer");
}

crate::common::on_embedded_and_kafka!(push: push_embedded, push_kafka);
