//! owner-notifier: a sample consumer of Callboard's `callboard.entities` topic.
//!
//! It joins a consumer group, parses each message as a CloudEvent (structured JSON mode) and
//! keeps, for every entity, who owns it (its `ownedBy` relations). It prints one JSON line when
//!
//! * an entity names an owner that is not in the catalog ("owner-missing"), or
//! * an owner is deleted while entities still name it ("owner-lost").
//!
//! Copy it as a starting point: change `notify` to post to your chat or ticket system.
//!
//! ```sh
//! owner-notifier --brokers 127.0.0.1:9092 [--topic callboard.entities] [--group owner-notifier]
//! ```
//!
//! Delivery is at least once: offsets are committed after a message is handled, so after a
//! crash a few messages may be seen twice. Events carry a per-subject `sequence`; this consumer
//! ignores events older than what it has seen for the subject, which also makes replays safe.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use serde_json::{Value, json};

/// What the notifier remembers.
#[derive(Debug, Default)]
pub struct Owners {
    /// Entities that exist.
    live: BTreeSet<String>,
    /// Entity → its owners.
    owners: BTreeMap<String, BTreeSet<String>>,
    /// Highest sequence seen per subject.
    seen: HashMap<String, u64>,
}

impl Owners {
    /// Applies one CloudEvent; returns the notifications it causes.
    pub fn apply(&mut self, event: &Value) -> Vec<Value> {
        let subject = event["subject"].as_str().unwrap_or_default().to_owned();
        let sequence = event["sequence"].as_u64().unwrap_or(0);
        if self.seen.get(&subject).is_some_and(|s| *s >= sequence) {
            return Vec::new(); // A redelivery.
        }
        self.seen.insert(subject.clone(), sequence);
        let mut out = Vec::new();
        match event["type"].as_str().unwrap_or_default() {
            "dev.callboard.entity.upserted.v1" => {
                self.live.insert(subject.clone());
                let owners: BTreeSet<String> = event["data"]["relations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|r| r["type"] == "ownedBy" && r["sourceRef"] == subject.as_str())
                    .filter_map(|r| r["targetRef"].as_str().map(str::to_owned))
                    .collect();
                for owner in &owners {
                    if !self.live.contains(owner) {
                        out.push(json!({"notification": "owner-missing", "entity": subject, "owner": owner}));
                    }
                }
                self.owners.insert(subject, owners);
            }
            "dev.callboard.entity.deleted.v1" => {
                self.live.remove(&subject);
                self.owners.remove(&subject);
                for (entity, owners) in &self.owners {
                    if owners.contains(&subject) {
                        out.push(json!({"notification": "owner-lost", "entity": entity, "owner": subject}));
                    }
                }
            }
            // Rejections, cleared rejections and future event types: nothing to do. Consumers
            // should ignore types they do not know.
            _ => {}
        }
        out
    }
}

fn argument(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

/// Where notifications go. Here: standard output, one JSON object per line.
fn notify(notification: &Value) {
    println!("{notification}");
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let brokers = argument("--brokers", "127.0.0.1:9092");
    let topic = argument("--topic", "callboard.entities");
    let group = argument("--group", "owner-notifier");
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", &group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[&topic])?;
    eprintln!("owner-notifier: reading {topic} at {brokers} as group {group}");
    let mut owners = Owners::default();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            message = consumer.recv() => {
                let message = message?;
                let Some(payload) = message.payload() else { continue };
                match serde_json::from_slice::<Value>(payload) {
                    Ok(event) => owners.apply(&event).iter().for_each(notify),
                    Err(e) => eprintln!("owner-notifier: skipping a message that is not JSON: {e}"),
                }
                consumer.commit_message(&message, CommitMode::Async)?;
            }
            () = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}
