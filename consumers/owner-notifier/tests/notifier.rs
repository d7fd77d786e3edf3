//! Runs the sample consumer against a real broker (started by the project's `scripts/kafka`, or
//! `CALLBOARD_TEST_KAFKA`): events are produced the way Callboard writes them, and the notifier
//! must report the entity that lost its owner.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;

fn event(kind: &str, subject: &str, sequence: u64, data: serde_json::Value) -> String {
    json!({
        "specversion": "1.0", "id": uuid::Uuid::new_v4().to_string(), "source": "file:/catalog.yaml",
        "type": format!("dev.callboard.entity.{kind}.v1"), "subject": subject, "time": "2026-11-22T10:00:00Z",
        "datacontenttype": "application/json", "dataschema": format!("https://callboard.dev/schema/events/entity.{kind}.v1.json"),
        "sequence": sequence, "actor": "provider:location", "data": data,
    })
    .to_string()
}

#[tokio::test]
async fn reports_entities_that_lost_their_owner() {
    let brokers = std::env::var("CALLBOARD_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let topic = format!("notifier-{}.entities", uuid::Uuid::new_v4().simple());
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("producer");
    let owned = |entity: &str, owner: &str| json!({"entityRef": entity, "relations": [{"type": "ownedBy", "sourceRef": entity, "targetRef": owner}]});
    let events = [
        (
            "group:default/team-a",
            event("upserted", "group:default/team-a", 1, json!({"relations": []})),
        ),
        (
            "component:default/a",
            event(
                "upserted",
                "component:default/a",
                1,
                owned("component:default/a", "group:default/team-a"),
            ),
        ),
        (
            "component:default/b",
            event(
                "upserted",
                "component:default/b",
                1,
                owned("component:default/b", "group:default/nobody"),
            ),
        ),
        (
            "group:default/team-a",
            event(
                "deleted",
                "group:default/team-a",
                2,
                json!({"entityRef": "group:default/team-a"}),
            ),
        ),
    ];
    for (key, value) in &events {
        producer
            .send(
                FutureRecord::to(&topic).key(*key).payload(value),
                Duration::from_secs(10),
            )
            .await
            .expect("produce (is a broker running? scripts/kafka starts one)");
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_owner-notifier"))
        .args([
            "--brokers",
            &brokers,
            "--topic",
            &topic,
            "--group",
            &format!("{topic}-group"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run the notifier");
    let stdout = child.stdout.take().expect("stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let mut lines = Vec::new();
    let started = Instant::now();
    while lines.len() < 2 && started.elapsed() < Duration::from_secs(60) {
        if let Ok(line) = receiver.recv_timeout(Duration::from_millis(200)) {
            lines.push(serde_json::from_str::<serde_json::Value>(&line).expect("JSON line"));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    // Events of different entities may sit in different partitions: compare without order.
    lines.sort_by_key(|l| l.to_string());
    assert_eq!(
        lines,
        [
            json!({"notification": "owner-lost", "entity": "component:default/a", "owner": "group:default/team-a"}),
            json!({"notification": "owner-missing", "entity": "component:default/b", "owner": "group:default/nobody"}),
        ]
    );
}
