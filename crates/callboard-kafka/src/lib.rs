//! The production event log: Kafka through rdkafka (bundled librdkafka).
//!
//! * Producer: idempotent, `acks=all`; the message key is the subject (the canonical entity
//!   ref), so one entity's events share a partition and keep their order; `append` returns once
//!   every record is acknowledged.
//! * Topics are created on start with the configured partitions and replication;
//!   `callboard.entities` and `callboard.locations` keep messages forever.
//! * Subscriptions are consumer-group members. Offsets are committed automatically but only
//!   for messages the consumer marked as stored, after its own transaction committed; correctness
//!   never depends on Kafka transactions (the test broker has none) nor on these commits.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use callboard_events::cloudevent::CONTENT_TYPE;
use callboard_events::log::{EventLog, LogError, Message, Position, Record, Retention, Subscription, TopicSpec};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Mutex;

/// Connection settings.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Bootstrap servers, e.g. `127.0.0.1:9092`.
    pub brokers: String,
    /// Extra librdkafka properties (security settings and the like), applied to every client.
    pub extra: Vec<(String, String)>,
    /// A stable identity of this process (e.g. a StatefulSet pod name). With it, consumer groups
    /// use static membership: a restarted process takes its partitions back at once instead of
    /// waiting for its old session to time out. Two live processes must never share it.
    pub instance_id: Option<String>,
}

impl KafkaConfig {
    /// Settings for `brokers` with nothing extra.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            extra: Vec::new(),
            instance_id: None,
        }
    }

    fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in &self.extra {
            config.set(key, value);
        }
        config
    }
}

/// The Kafka event log.
pub struct KafkaLog {
    config: KafkaConfig,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    /// A consumer outside any group, for `read` (rebuilding state, replays). Reads of one
    /// partition are sequential in practice, so the assignment is kept between calls.
    reader: Arc<Mutex<Reader>>,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("brokers", &self.config.brokers)
            .finish_non_exhaustive()
    }
}

/// The reader's client context: the end of a partition is how a read finishes, not an error, but
/// librdkafka also reports it as a client-wide error, which the default context logs at `error`.
struct EofIsNormal;

impl ClientContext for EofIsNormal {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
            tracing::error!(%error, reason, "librdkafka client error");
        }
    }
}

impl ConsumerContext for EofIsNormal {}

struct Reader {
    consumer: StreamConsumer<EofIsNormal>,
    /// (topic, partition, next offset) of the current assignment.
    at: Option<(String, i32, i64)>,
}

fn kafka_error(e: KafkaError) -> LogError {
    // librdkafka's words name the value, and a property's value may be a secret: name the key.
    if let KafkaError::ClientConfig(_, _, key, _) = &e {
        return LogError::Other(format!("librdkafka refused the value of the property {key}"));
    }
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            LogError::UnknownTopic(e.to_string())
        }
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::MessageTimedOut
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::RequestTimedOut
            // A static member (`--instance-id`) is fenced when the broker saw its identity join
            // again: after a broker restart, librdkafka's own rejoin can race the projector's
            // restart of the same consumer (seen in the broker-restart fault test). The consumer
            // is unusable then; a new one, from the stored positions, takes the identity back.
            | RDKafkaErrorCode::FencedInstanceId,
        ) => LogError::Unavailable(e.to_string()),
        _ => LogError::Other(e.to_string()),
    }
}

const TIMEOUT: Duration = Duration::from_secs(30);

impl KafkaLog {
    /// Connects (lazily: librdkafka connects in the background).
    pub fn connect(config: KafkaConfig) -> Result<Self, LogError> {
        let producer: FutureProducer = config
            .client()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "60000")
            .create()
            .map_err(kafka_error)?;
        let admin: AdminClient<DefaultClientContext> = config.client().create().map_err(kafka_error)?;
        let consumer: StreamConsumer<EofIsNormal> = config
            .client()
            .set("group.id", format!("callboard-reader-{}", std::process::id()))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            // Reads stop at the end of a partition; do not let the broker hold an empty fetch.
            .set("fetch.wait.max.ms", "20")
            .create_with_context(EofIsNormal)
            .map_err(kafka_error)?;
        Ok(Self {
            config,
            producer,
            admin,
            reader: Arc::new(Mutex::new(Reader { consumer, at: None })),
        })
    }
}

#[async_trait]
impl EventLog for KafkaLog {
    async fn ensure_topics(&self, specs: &[TopicSpec]) -> Result<(), LogError> {
        let retention: Vec<String> = specs
            .iter()
            .map(|s| match s.retention {
                Retention::Forever => "-1".to_owned(),
                Retention::Millis(ms) => ms.to_string(),
            })
            .collect();
        let topics: Vec<NewTopic<'_>> = specs
            .iter()
            .zip(&retention)
            .map(|(spec, retention)| {
                let topic = NewTopic::new(
                    &spec.name,
                    spec.partitions,
                    TopicReplication::Fixed(i32::from(spec.replication)),
                )
                .set("retention.ms", retention);
                if matches!(spec.retention, Retention::Forever) {
                    topic.set("retention.bytes", "-1")
                } else {
                    topic
                }
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
        let results = self.admin.create_topics(&topics, &options).await.map_err(kafka_error)?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(LogError::Other(format!("cannot create topic {topic}: {code}")));
                }
            }
        }
        Ok(())
    }

    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Position>, LogError> {
        let headers = OwnedHeaders::new().insert(Header {
            key: "content-type",
            value: Some(CONTENT_TYPE),
        });
        let mut deliveries = Vec::with_capacity(records.len());
        for record in &records {
            let mut message = FutureRecord::to(topic)
                .key(&record.key)
                .payload(&record.value)
                .headers(headers.clone());
            let delivery = loop {
                match self.producer.send_result(message) {
                    Ok(delivery) => break delivery,
                    // The local queue is full: give librdkafka a moment to drain it.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                        message = returned;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => return Err(kafka_error(e)),
                }
            };
            deliveries.push(delivery);
        }
        let mut positions = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(d)) => positions.push(Position {
                    partition: d.partition,
                    offset: d.offset,
                }),
                Ok(Err((e, _))) => return Err(kafka_error(e)),
                Err(_) => return Err(LogError::Unavailable("the producer was shut down".into())),
            }
        }
        Ok(positions)
    }

    async fn partitions(&self, topic: &str) -> Result<i32, LogError> {
        let producer = self.producer.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let metadata = producer
                .client()
                .fetch_metadata(Some(&topic), TIMEOUT)
                .map_err(kafka_error)?;
            match metadata.topics().iter().find(|t| t.name() == topic) {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(t.partitions().len() as i32),
                _ => Err(LogError::UnknownTopic(topic.clone())),
            }
        })
        .await
        .map_err(|e| LogError::Other(e.to_string()))?
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<i64>, LogError> {
        let partitions = self.partitions(topic).await?;
        let reader = self.reader.clone();
        let topic = topic.to_owned();
        let guard = reader.lock_owned().await;
        tokio::task::spawn_blocking(move || {
            (0..partitions)
                .map(|p| {
                    guard
                        .consumer
                        .fetch_watermarks(&topic, p, TIMEOUT)
                        .map(|(_, high)| high)
                        .map_err(kafka_error)
                })
                .collect()
        })
        .await
        .map_err(|e| LogError::Other(e.to_string()))?
    }

    async fn read(&self, topic: &str, partition: i32, from: i64, max: usize) -> Result<Vec<Message>, LogError> {
        let mut reader = self.reader.lock().await;
        if reader.at.as_ref() != Some(&(topic.to_owned(), partition, from)) {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(topic, partition, Offset::Offset(from))
                .map_err(kafka_error)?;
            reader.consumer.assign(&tpl).map_err(kafka_error)?;
        }
        let mut out = Vec::new();
        let mut next = from;
        let started = std::time::Instant::now();
        // librdkafka reports a lost broker connection as an error to consume, and reconnects by
        // itself: such an error (often one queued while the broker was away, read after it came
        // back) fails the read only if nothing arrives before the read's wait is over.
        let mut transient = None;
        while out.len() < max {
            let wait = if out.is_empty() {
                Duration::from_secs(5).saturating_sub(started.elapsed())
            } else {
                Duration::from_millis(100)
            };
            if wait.is_zero() {
                break;
            }
            match tokio::time::timeout(wait, reader.consumer.recv()).await {
                Err(_) => break,
                Ok(Err(KafkaError::PartitionEOF(_))) => break,
                Ok(Err(e)) => match kafka_error(e) {
                    error @ LogError::Unavailable(_) => transient = Some(error),
                    error => return Err(error),
                },
                Ok(Ok(m)) => {
                    if m.topic() != topic || m.partition() != partition || m.offset() < from {
                        continue;
                    }
                    next = m.offset() + 1;
                    out.push(owned(&m));
                }
            }
        }
        if out.is_empty()
            && let Some(error) = transient
        {
            // Read again from `from` next time: the consumer's position is not known now.
            reader.at = None;
            return Err(error);
        }
        reader.at = Some((topic.to_owned(), partition, next));
        Ok(out)
    }

    async fn subscribe(&self, group: &str, topics: &[String]) -> Result<Box<dyn Subscription>, LogError> {
        let mut config = self.config.client();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            // Offsets are stored by the consumer after its own transaction committed.
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // A crashed member's partitions move on after 6 s instead of 45 s.
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            // A member busy with one long batch (a large import or replay) keeps its partitions:
            // letting them move would put two writers or projectors on them at once.
            .set("max.poll.interval.ms", "1800000");
        if let Some(instance) = &self.config.instance_id {
            config.set("group.instance.id", format!("{instance}.{group}"));
        }
        let consumer: StreamConsumer = config.create().map_err(kafka_error)?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).map_err(kafka_error)?;
        Ok(Box::new(KafkaSubscription { consumer }))
    }

    fn describe(&self) -> String {
        format!("Kafka at {}", self.config.brokers)
    }
}

fn owned(m: &rdkafka::message::BorrowedMessage<'_>) -> Message {
    Message {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        key: m
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default(),
        value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
    }
}

struct KafkaSubscription {
    consumer: StreamConsumer,
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Message>, LogError> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        // As in `read`: librdkafka queues one error per failed connection attempt while a
        // broker is away, and reconnects by itself. Returned one per poll, they would be drained
        // at the caller's back-off pace for minutes after the broker is back; drained here, they
        // fail the poll only if no message came in its wait.
        let mut transient = None;
        while out.len() < max {
            // Wait the full time for the first message, then only drain what is ready.
            let budget = if out.is_empty() {
                deadline.saturating_duration_since(tokio::time::Instant::now())
            } else {
                Duration::from_millis(1)
            };
            if budget.is_zero() && out.is_empty() {
                break;
            }
            match tokio::time::timeout(budget, self.consumer.recv()).await {
                Err(_) => break,
                Ok(Err(KafkaError::PartitionEOF(_))) => {}
                Ok(Err(e)) => match kafka_error(e) {
                    error @ LogError::Unavailable(_) => transient = Some(error),
                    error => return Err(error),
                },
                Ok(Ok(m)) => out.push(owned(&m)),
            }
        }
        match transient {
            Some(error) if out.is_empty() => Err(error),
            _ => Ok(out),
        }
    }

    async fn seek(&mut self, topic: &str, partition: i32, offset: i64) -> Result<(), LogError> {
        self.consumer
            .seek(topic, partition, Offset::Offset(offset), Duration::from_secs(10))
            .map_err(kafka_error)
    }

    async fn commit(&mut self, topic: &str, partition: i32, next_offset: i64) -> Result<(), LogError> {
        // librdkafka's `rd_kafka_offset_store` stores `offset + 1` (the message's successor),
        // so hand it the last processed offset.
        match self.consumer.store_offset(topic, partition, next_offset - 1) {
            Ok(()) => Ok(()),
            // The partition moved to another member meanwhile: its new owner resumes from its
            // own stored positions, so losing this hint is harmless.
            Err(KafkaError::StoreOffset(_)) => Ok(()),
            Err(e) => Err(kafka_error(e)),
        }
    }

    fn assignment(&self) -> Vec<(String, i32)> {
        self.consumer
            .assignment()
            .map(|tpl| {
                tpl.elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fenced static member is a dependency lost for a moment (the projector starts a new
    /// consumer), not a reason to stop `serve`; a refused property stays fatal.
    #[test]
    fn a_fenced_static_member_is_transient() {
        let fenced = KafkaError::MessageConsumptionFatal(RDKafkaErrorCode::FencedInstanceId);
        assert!(matches!(kafka_error(fenced), LogError::Unavailable(_)));
        let down = KafkaError::MessageConsumption(RDKafkaErrorCode::AllBrokersDown);
        assert!(matches!(kafka_error(down), LogError::Unavailable(_)));
        let refused = KafkaError::MessageConsumption(RDKafkaErrorCode::GroupAuthorizationFailed);
        assert!(matches!(kafka_error(refused), LogError::Other(_)));
    }
}
