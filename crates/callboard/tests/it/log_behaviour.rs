//! One behaviour suite for both event-log adapters — and for the in-memory log the core's tests
//! use, so that it is a faithful stand-in: ordering per key, positions, durability (for the
//! in-memory log: every handle sees what any appended), consumer groups, and resuming from
//! positions stored with a consumer's own data.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use callboard_events::consumer::{PositionStore, PositionedConsumer};
use callboard_events::log::{LogError, Record, Retention, TopicSpec};

use crate::common::Backend;

fn spec(name: &str, partitions: i32) -> TopicSpec {
    TopicSpec {
        name: name.into(),
        partitions,
        replication: 1,
        retention: Retention::Forever,
    }
}

fn record(key: &str, value: &str) -> Record {
    Record {
        key: key.into(),
        value: value.as_bytes().to_vec(),
    }
}

macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread")]
            async fn embedded() {
                super::$name(Backend::embedded()).await;
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn kafka() {
                super::$name(Backend::kafka()).await;
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn memory() {
                super::$name(Backend::memory()).await;
            }
        }
    };
}

/// Appends keep per-key order and report consecutive offsets per partition.
async fn ordering_and_positions(backend: Backend) {
    let log = backend.open().await;
    let topic = format!("{}orders", backend.topics().entities());
    log.ensure_topics(&[spec(&topic, 4)]).await.expect("topics");
    log.ensure_topics(&[spec(&topic, 4)])
        .await
        .expect("creating twice is fine");
    assert_eq!(log.partitions(&topic).await.expect("partitions"), 4);

    let records: Vec<Record> = (0..200)
        .map(|i| record(&format!("key-{}", i % 7), &format!("{i}")))
        .collect();
    let positions = log.append(&topic, records).await.expect("append");
    assert_eq!(positions.len(), 200);
    let mut partition_of_key: HashMap<String, i32> = HashMap::new();
    let mut last_offset: HashMap<i32, i64> = HashMap::new();
    for (i, position) in positions.iter().enumerate() {
        let key = format!("key-{}", i % 7);
        let partition = *partition_of_key.entry(key.clone()).or_insert(position.partition);
        assert_eq!(partition, position.partition, "{key} stays in one partition");
        let previous = last_offset.insert(position.partition, position.offset);
        assert_eq!(
            position.offset,
            previous.map_or(0, |p| p + 1),
            "offsets increase by one"
        );
    }
    let ends = log.end_offsets(&topic).await.expect("ends");
    assert_eq!(ends.iter().sum::<i64>(), 200);

    // Read back: per key, values in append order.
    let mut seen: HashMap<String, Vec<u32>> = HashMap::new();
    for partition in 0..4 {
        let messages = log.read(&topic, partition, 0, 1_000).await.expect("read");
        assert_eq!(messages.len() as i64, ends[partition as usize]);
        for message in messages {
            seen.entry(message.key.clone())
                .or_default()
                .push(String::from_utf8(message.value).expect("utf8").parse().expect("n"));
        }
    }
    for (key, values) in seen {
        let mut sorted = values.clone();
        sorted.sort_unstable();
        assert_eq!(values, sorted, "order of {key}");
    }
    // Reading from the middle.
    let partition = positions[10].partition;
    let from = positions[10].offset;
    let tail = log.read(&topic, partition, from, 3).await.expect("read tail");
    assert_eq!(tail[0].offset, from);
    assert!(tail.len() <= 3);
}
on_both!(ordering_and_positions);

/// What was appended is there for a new client (a reopened file, another connection).
async fn durability(backend: Backend) {
    let topic = format!("{}durable", backend.topics().entities());
    {
        let log = backend.open().await;
        log.ensure_topics(&[spec(&topic, 2)]).await.expect("topics");
        log.append(&topic, vec![record("a", "1"), record("b", "2")])
            .await
            .expect("append");
    }
    let log = backend.open().await;
    assert_eq!(log.end_offsets(&topic).await.expect("ends").iter().sum::<i64>(), 2);
}
on_both!(durability);

/// A group member receives everything; after committing and leaving, a new member of the same
/// group resumes after the commit.
async fn groups_resume_from_commits(backend: Backend) {
    let log = backend.open().await;
    let topic = format!("{}grouped", backend.topics().entities());
    log.ensure_topics(&[spec(&topic, 3)]).await.expect("topics");
    log.append(
        &topic,
        (0..30).map(|i| record(&format!("k{i}"), &format!("{i}"))).collect(),
    )
    .await
    .expect("append");
    let group = format!("{topic}-group");
    let mut got = Vec::new();
    {
        let mut member = log
            .subscribe(&group, std::slice::from_ref(&topic))
            .await
            .expect("subscribe");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while got.len() < 30 && tokio::time::Instant::now() < deadline {
            for message in member.poll(100, Duration::from_millis(500)).await.expect("poll") {
                member
                    .commit(&message.topic, message.partition, message.offset + 1)
                    .await
                    .expect("commit");
                got.push(message);
            }
        }
        assert_eq!(got.len(), 30, "the only member gets every partition");
        // Let the asynchronous commit reach the log before leaving.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    log.append(&topic, vec![record("late", "30")]).await.expect("append");
    let mut member = log
        .subscribe(&group, std::slice::from_ref(&topic))
        .await
        .expect("resubscribe");
    let mut after = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while after.is_empty() && tokio::time::Instant::now() < deadline {
        after.extend(member.poll(100, Duration::from_millis(500)).await.expect("poll"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    after.extend(member.poll(100, Duration::from_millis(200)).await.expect("poll"));
    let values: Vec<String> = after
        .iter()
        .map(|m| String::from_utf8(m.value.clone()).expect("utf8"))
        .collect();
    assert_eq!(values, ["30"], "only the message after the commits");
}
on_both!(groups_resume_from_commits);

/// Positions stored with the consumer's data win over the group's commits, both ways.
struct Stored(Mutex<HashMap<(String, i32), i64>>);

#[async_trait]
impl PositionStore for Stored {
    async fn applied(&self, topic: &str, partition: i32) -> Result<Option<i64>, LogError> {
        Ok(self
            .0
            .lock()
            .expect("lock")
            .get(&(topic.to_owned(), partition))
            .copied())
    }
}

async fn stored_positions_win(backend: Backend) {
    let log = backend.open().await;
    let topic = format!("{}positioned", backend.topics().entities());
    log.ensure_topics(&[spec(&topic, 1)]).await.expect("topics");
    log.append(&topic, (0..10).map(|i| record("k", &format!("{i}"))).collect())
        .await
        .expect("append");
    let group = format!("{topic}-group");

    // The data says offsets 0..=4 are applied although the group never committed: resume at 5.
    let store = Stored(Mutex::new(HashMap::from([((topic.clone(), 0), 4)])));
    let mut consumer = PositionedConsumer::new(
        log.subscribe(&group, std::slice::from_ref(&topic))
            .await
            .expect("subscribe"),
    );
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.len() < 5 && tokio::time::Instant::now() < deadline {
        for message in consumer
            .poll(&store, 100, Duration::from_millis(500))
            .await
            .expect("poll")
        {
            store.0.lock().expect("lock").insert((topic.clone(), 0), message.offset);
            consumer
                .stored(&message.topic, message.partition, message.offset)
                .await
                .expect("stored");
            got.push(message.offset);
        }
    }
    assert_eq!(got, [5, 6, 7, 8, 9]);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    drop(consumer);

    // The data was lost (a rebuilt read model) although the group committed up to 10: go back.
    let store = Stored(Mutex::new(HashMap::new()));
    let mut consumer = PositionedConsumer::new(
        log.subscribe(&group, std::slice::from_ref(&topic))
            .await
            .expect("subscribe"),
    );
    log.append(&topic, vec![record("k", "10")]).await.expect("append");
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.len() < 11 && tokio::time::Instant::now() < deadline {
        for message in consumer
            .poll(&store, 100, Duration::from_millis(500))
            .await
            .expect("poll")
        {
            store.0.lock().expect("lock").insert((topic.clone(), 0), message.offset);
            got.push(message.offset);
        }
    }
    assert_eq!(
        got,
        (0..=10).collect::<Vec<i64>>(),
        "every message exactly once, from the start"
    );
}
on_both!(stored_positions_win);

/// Kafka only: two members of one group split the partitions between them. (The embedded log
/// serves one process, so its group always has a single member.)
#[tokio::test(flavor = "multi_thread")]
async fn kafka_members_split_partitions() {
    let backend = Backend::kafka();
    let log = backend.open().await;
    let topic = format!("{}split", backend.topics().entities());
    log.ensure_topics(&[spec(&topic, 4)]).await.expect("topics");
    log.append(&topic, (0..40).map(|i| record(&format!("k{i}"), "v")).collect())
        .await
        .expect("append");
    let group = format!("{topic}-group");
    let mut a = log.subscribe(&group, std::slice::from_ref(&topic)).await.expect("a");
    let mut b = log.subscribe(&group, std::slice::from_ref(&topic)).await.expect("b");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let _ = a.poll(10, Duration::from_millis(200)).await.expect("poll a");
        let _ = b.poll(10, Duration::from_millis(200)).await.expect("poll b");
        let (left, right) = (a.assignment(), b.assignment());
        if !left.is_empty() && !right.is_empty() {
            assert_eq!(left.len() + right.len(), 4, "{left:?} {right:?}");
            assert!(left.iter().all(|p| !right.contains(p)), "no partition is shared");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the group never split: {left:?} {right:?}"
        );
    }
}
