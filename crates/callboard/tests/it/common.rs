//! Shared fixtures.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use callboard_events::CloudEvent;
use callboard_events::log::{EventLog, read_range};
use callboard_events::topics::Topics;
use callboard_kafka::{KafkaConfig, KafkaLog};
use callboard_log_sqlite::SqliteLog;
use callboard_testkit::{CatalogSpec, generate};

/// The broker the Kafka tests use.
pub fn kafka_brokers() -> String {
    let brokers = std::env::var("CALLBOARD_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let first = brokers.split(',').next().unwrap_or_default().to_owned();
    assert!(
        TcpStream::connect_timeout(&first.parse().expect("host:port"), Duration::from_secs(2)).is_ok(),
        "no Kafka broker at {brokers}: start one with scripts/kafka (scripts/test does), or set CALLBOARD_TEST_KAFKA"
    );
    brokers
}

/// A topic prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("it-{}.", uuid::Uuid::new_v4().simple())
}

/// Which log a test runs on.
pub enum Backend {
    /// The embedded log in a temporary data directory.
    Embedded(tempfile::TempDir),
    /// Kafka, with topics under a unique prefix.
    Kafka(String),
    /// The in-memory log of `callboard-events` (in-process only; every `open` shares it).
    Memory(callboard_events::MemoryLog),
}

impl Backend {
    pub fn embedded() -> Self {
        Backend::Embedded(tempfile::tempdir().expect("tempdir"))
    }

    pub fn kafka() -> Self {
        kafka_brokers();
        Backend::Kafka(unique_prefix())
    }

    pub fn memory() -> Self {
        Backend::Memory(callboard_events::MemoryLog::new())
    }

    pub fn topics(&self) -> Topics {
        match self {
            Backend::Embedded(_) | Backend::Memory(_) => Topics::default(),
            Backend::Kafka(prefix) => Topics::new(prefix.clone()),
        }
    }

    pub async fn open(&self) -> Arc<dyn EventLog> {
        match self {
            Backend::Embedded(dir) => Arc::new(
                SqliteLog::open(&dir.path().join("events.db"))
                    .await
                    .expect("open sqlite log"),
            ),
            Backend::Kafka(_) => Arc::new(KafkaLog::connect(KafkaConfig::new(kafka_brokers())).expect("connect")),
            Backend::Memory(log) => Arc::new(log.clone()),
        }
    }

    /// Arguments that point the `callboard` binary at this log.
    pub fn cli_args(&self) -> Vec<String> {
        match self {
            Backend::Embedded(dir) => vec!["--data-dir".into(), dir.path().display().to_string()],
            Backend::Memory(_) => panic!("the in-memory log is in-process only: no command line reaches it"),
            Backend::Kafka(prefix) => vec![
                "--kafka".into(),
                kafka_brokers(),
                "--topic-prefix".into(),
                prefix.clone(),
            ],
        }
    }
}

/// Every event of a topic, all partitions.
pub async fn read_events(log: &dyn EventLog, topic: &str) -> Vec<CloudEvent> {
    let mut events = Vec::new();
    let ends = log.end_offsets(topic).await.expect("end offsets");
    for (partition, end) in ends.into_iter().enumerate() {
        read_range(log, topic, partition as i32, 0, end, |m| {
            events.push(CloudEvent::from_bytes(&m.value).expect("a CloudEvent"));
        })
        .await
        .expect("read");
    }
    events
}

/// Writes a generated catalog below `dir`; returns the files with their counts.
pub fn write_catalog(dir: &Path, spec: &CatalogSpec) -> Vec<(PathBuf, usize, usize)> {
    generate(spec)
        .into_iter()
        .map(|file| {
            let path = dir.join(&file.path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, &file.text).expect("write");
            (path, file.valid, file.invalid)
        })
        .collect()
}

/// Checks per-subject sequences: each subject's events are numbered 1, 2, 3 … without gaps or
/// duplicates, in log order.
pub fn assert_contiguous(events: &[CloudEvent]) {
    let mut by_subject: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for event in events {
        by_subject.entry(&event.subject).or_default().push(event.sequence);
    }
    for (subject, sequences) in by_subject {
        let expected: Vec<u64> = (1..=sequences.len() as u64).collect();
        assert_eq!(sequences, expected, "sequences of {subject}");
    }
}

/// The live entities after applying `events` in order: subject → uid.
pub fn live(events: &[CloudEvent]) -> BTreeMap<String, String> {
    let mut live = BTreeMap::new();
    for event in events {
        match event.event_type.as_str() {
            "dev.callboard.entity.upserted.v1" => {
                live.insert(
                    event.subject.clone(),
                    event.data["uid"].as_str().unwrap_or_default().to_owned(),
                );
            }
            "dev.callboard.entity.deleted.v1" => {
                live.remove(&event.subject);
            }
            _ => {}
        }
    }
    live
}

/// Runs `command` to completion and checks that it succeeded (failing the test with its
/// stderr otherwise); its output.
pub fn succeed(command: &mut std::process::Command, what: &str) -> std::process::Output {
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The `callboard` binary.
pub fn callboard() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_callboard"));
    command.env("CALLBOARD_LOG", "warn");
    command
}

/// Two tests of `$body` (an `async fn(Backend)`): `$embedded` on the embedded log, `$kafka` on
/// Kafka.
macro_rules! on_embedded_and_kafka {
    ($body:ident: $embedded:ident, $kafka:ident) => {
        #[tokio::test(flavor = "multi_thread")]
        async fn $embedded() {
            $body($crate::common::Backend::embedded()).await;
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn $kafka() {
            $body($crate::common::Backend::kafka()).await;
        }
    };
}
pub(crate) use on_embedded_and_kafka;
