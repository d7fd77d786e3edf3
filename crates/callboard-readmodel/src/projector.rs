//! The projector: consumes the entity and location topics in a consumer group and writes the
//! projected rows through a [`ReadStore`], storing positions in the same transaction. Killed at
//! any point and restarted, it converges to the same rows: positions and rows commit together,
//! and history's (subject, sequence) key skips anything applied twice.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use callboard_events::consumer::{PositionStore, PositionedConsumer};
use callboard_events::log::{EventLog, LogError, Message};
use callboard_events::topics::Topics;
use time::OffsetDateTime;
use tracing::Instrument;

use crate::project::{EventView, Loaded, StoredEvent, project, subjects};
use crate::rows::PartitionOffset;
use crate::store::{Generation, ReadStore, StoreError};

/// Why the projector stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    /// The log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Settings of a projector.
#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// Topic names.
    pub topics: Topics,
    /// Consumer group; processes in one group split the partitions.
    pub group: String,
    /// Most events per transaction. Live, batches are as large as what has arrived, so this
    /// bounds only catching up (after a restart, behind an import). 5,000 (replay's size) was
    /// measured against 2,000 for catching up behind an import: no better embedded, slightly
    /// worse on PostgreSQL.
    pub batch: usize,
}

impl ProjectorConfig {
    /// The default group for `topics`.
    pub fn new(topics: Topics) -> Self {
        let group = format!("{}projector", topics.commands().trim_end_matches("commands"));
        Self {
            topics,
            group,
            batch: 2_000,
        }
    }
}

/// Turns a log message into a stored event.
pub fn stored(message: Message) -> StoredEvent {
    let event = EventView::from_bytes(&message.value).ok();
    if event.is_none() {
        tracing::warn!(topic = %message.topic, partition = message.partition, offset = message.offset, "skipping a message that is not a CloudEvent");
    }
    StoredEvent {
        topic: message.topic,
        partition: message.partition,
        offset: message.offset,
        event,
    }
}

struct StoredPositions {
    store: Arc<dyn ReadStore>,
    generation: Generation,
    group: String,
}

#[async_trait]
impl PositionStore for StoredPositions {
    async fn applied(&self, topic: &str, partition: i32) -> Result<Option<i64>, LogError> {
        self.store
            .position(self.generation, &self.group, topic, partition)
            .await
            .map_err(|e| LogError::Other(e.to_string()))
    }
}

/// A batch written, as the pipeline reports it.
#[derive(Debug)]
pub struct Written {
    /// Events applied.
    pub applied: usize,
    /// The batch's last offset per (topic, partition).
    pub positions: Vec<(String, PartitionOffset)>,
    /// From the batch's arrival to its commit.
    pub took: Duration,
}

struct InFlight {
    subjects: HashSet<String>,
    task: tokio::task::JoinHandle<Result<Written, StoreError>>,
}

/// Projects one batch while the previous one is being written, so that decoding and projecting
/// (the projector's CPU) overlap the store's write (the database's): on two cores a catch-up or a
/// replay takes about the longer of the two instead of their sum.
///
/// Correct because a subject's rows change only through its own events (see [`crate::project`]):
/// a batch whose subjects are disjoint from the batches in flight reads exactly the rows it would
/// read after those writes, so it is loaded concurrently with them. A batch sharing a subject
/// waits for the writes first. Writes stay one at a time and in order, each in its own
/// transaction with its positions, so a kill at any point leaves what the sequential loop would
/// have left — except when filling a generation nobody reads yet (a replay), where a store that
/// can take several writes at once ([`ReadStore::parallel_writes`]) gets them: a crash there
/// throws the generation away, and positions only ever move forward.
pub struct Pipeline {
    store: Arc<dyn ReadStore>,
    generation: Generation,
    group: String,
    in_flight: VecDeque<InFlight>,
    /// Writes allowed in flight at once.
    writes: usize,
    /// For a pipeline that alone fills an empty generation (a replay): hashes of the subjects it
    /// has written. Only those can have rows to load; loading the others (nearly every subject
    /// of a replay) would be an index probe each that finds nothing.
    seen: Option<HashSet<u64>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("generation", &self.generation)
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline writing into `generation` with positions of `group`.
    pub fn new(store: Arc<dyn ReadStore>, generation: Generation, group: String) -> Self {
        Self {
            store,
            generation,
            group,
            in_flight: VecDeque::new(),
            writes: 1,
            seen: None,
        }
    }

    /// A pipeline filling `generation`, which is empty and which nothing else writes until this
    /// pipeline is done (a replay's new generation): subjects it has not written yet are known
    /// to have no rows, and are not loaded.
    pub fn filling(store: Arc<dyn ReadStore>, generation: Generation, group: String) -> Self {
        let writes = store.parallel_writes().max(1);
        Self {
            seen: Some(HashSet::new()),
            writes,
            ..Self::new(store, generation, group)
        }
    }

    /// Whether a write is in flight.
    pub fn writing(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// Decodes, loads and projects `messages`, then starts writing them once a write slot is free
    /// (after the batch before, unless the pipeline is filling a generation). Returns the batches
    /// whose writes finished here, in the order they were pushed.
    pub async fn push(&mut self, messages: Vec<Message>) -> Result<Vec<Written>, StoreError> {
        let started = Instant::now();
        let batch = tokio::task::spawn_blocking(move || messages.into_iter().map(stored).collect::<Vec<_>>())
            .await
            .map_err(|e| StoreError::Other(format!("decoding a batch failed: {e}")))?;
        let subjects = subjects(&batch);
        let mut done = Vec::new();
        if self
            .in_flight
            .iter()
            .any(|f| subjects.iter().any(|s| f.subjects.contains(s)))
        {
            done = self.finish().await?;
        }
        // One span per batch, from its load to its commit (named as before the pipeline, so
        // traces and dashboards keep finding it).
        let span = tracing::info_span!("apply_batch", events = batch.len(), generation = self.generation.0);
        let to_load: Vec<String> = match &mut self.seen {
            None => subjects.clone(),
            Some(seen) => {
                // A hash collision only loads a subject that has no rows: harmless.
                let (known, _new): (Vec<&String>, Vec<&String>) =
                    subjects.iter().partition(|s| seen.contains(&subject_hash(s)));
                let known = known.into_iter().cloned().collect();
                seen.extend(subjects.iter().map(|s| subject_hash(s)));
                known
            }
        };
        let loaded = if to_load.is_empty() {
            Loaded::default()
        } else {
            self.store
                .load(self.generation, &to_load)
                .instrument(span.clone())
                .await?
        };
        let load_ms = started.elapsed().as_millis() as u64;
        let changes = tokio::task::spawn_blocking(move || project(&batch, loaded))
            .await
            .map_err(|e| StoreError::Other(format!("projecting a batch failed: {e}")))?;
        let project_ms = started.elapsed().as_millis() as u64 - load_ms;
        while self.in_flight.len() >= self.writes {
            done.extend(self.finish_oldest().await?);
        }
        let (store, generation, group) = (self.store.clone(), self.generation, self.group.clone());
        let task = tokio::spawn(
            async move {
                let writing = Instant::now();
                let (applied, skipped, positions) = (changes.applied, changes.skipped, changes.positions.clone());
                store.write(generation, &group, changes).await?;
                tracing::debug!(
                    applied,
                    skipped,
                    load_ms,
                    project_ms,
                    write_ms = writing.elapsed().as_millis() as u64,
                    "projection batch written"
                );
                Ok(Written {
                    applied,
                    positions,
                    took: started.elapsed(),
                })
            }
            .instrument(span),
        );
        self.in_flight.push_back(InFlight {
            subjects: subjects.into_iter().collect(),
            task,
        });
        Ok(done)
    }

    /// Waits for the oldest write in flight, if any.
    async fn finish_oldest(&mut self) -> Result<Option<Written>, StoreError> {
        match self.in_flight.pop_front() {
            Some(flight) => flight
                .task
                .await
                .map_err(|e| StoreError::Other(format!("writing a batch failed: {e}")))?
                .map(Some),
            None => Ok(None),
        }
    }

    /// Waits for every write in flight; returns them in the order they were pushed. On an error
    /// the remaining writes still run to their end before it is returned.
    pub async fn finish(&mut self) -> Result<Vec<Written>, StoreError> {
        let mut done = Vec::new();
        let mut failed = None;
        while !self.in_flight.is_empty() {
            match self.finish_oldest().await {
                Ok(written) => done.extend(written),
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(done),
        }
    }
}

fn subject_hash(subject: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(subject)
}

/// Runs a projector until `shutdown` resolves. After each batch, `progress` is told how many
/// events were applied and how long the batch took. A batch in flight when `shutdown` resolves
/// is finished first: shutdown is only observed between batches.
pub async fn run(
    log: Arc<dyn EventLog>,
    store: Arc<dyn ReadStore>,
    config: ProjectorConfig,
    mut progress: impl FnMut(usize, Duration) + Send,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ProjectorError> {
    let mut generation = store.prepare().await?;
    let topics = vec![config.topics.entities(), config.topics.locations()];
    log.ensure_topics(&config.topics.specs(1, 1)[..2]).await.ok();
    let mut consumer = PositionedConsumer::new(log.subscribe(&config.group, &topics).await?);
    let mut pipeline = Pipeline::new(store.clone(), generation, config.group.clone());
    let mut checked = Instant::now();
    tokio::pin!(shutdown);
    loop {
        // A replay may have switched readers to a new generation: follow it.
        if checked.elapsed() > Duration::from_secs(1) {
            checked = Instant::now();
            let active = store.active().await?;
            if active != generation {
                tracing::info!(
                    from = generation.0,
                    to = active.0,
                    "the read model moved to a new generation"
                );
                for written in pipeline.finish().await? {
                    report(&mut consumer, &mut progress, written).await?;
                }
                generation = active;
                pipeline = Pipeline::new(store.clone(), generation, config.group.clone());
                consumer.reset();
            }
        }
        let positions = StoredPositions {
            store: store.clone(),
            generation,
            group: config.group.clone(),
        };
        // With a batch being written, take only what has arrived: when nothing has, the write is
        // finished and reported instead of waiting out the poll.
        let wait = if pipeline.writing() {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(200)
        };
        let messages = tokio::select! {
            () = &mut shutdown => {
                for written in pipeline.finish().await? {
                    report(&mut consumer, &mut progress, written).await?;
                }
                return Ok(());
            }
            polled = consumer.poll(&positions, config.batch, wait) => polled?,
        };
        let written = if messages.is_empty() {
            pipeline.finish().await?
        } else {
            pipeline.push(messages).await?
        };
        for written in written {
            report(&mut consumer, &mut progress, written).await?;
        }
    }
}

/// Tells the log and the caller that a batch is stored.
async fn report(
    consumer: &mut PositionedConsumer,
    progress: &mut (impl FnMut(usize, Duration) + Send),
    written: Written,
) -> Result<(), ProjectorError> {
    for (topic, position) in &written.positions {
        consumer.stored(topic, position.partition, position.offset).await?;
    }
    progress(written.applied, written.took);
    Ok(())
}

/// Lag of one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct Lag {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Events in the log not applied yet.
    pub events_behind: i64,
    /// How long the oldest pending event has been in the log, in seconds (0 when caught up):
    /// the delay a reader of the read model sees right now.
    pub seconds_behind: f64,
}

/// The lag of every partition of the entity and location topics for `group`.
pub async fn lag(
    log: &dyn EventLog,
    store: &dyn ReadStore,
    topics: &Topics,
    group: &str,
) -> Result<Vec<Lag>, ProjectorError> {
    lag_of(log, store, topics, group, true).await
}

async fn lag_of(
    log: &dyn EventLog,
    store: &dyn ReadStore,
    topics: &Topics,
    group: &str,
    with_time: bool,
) -> Result<Vec<Lag>, ProjectorError> {
    let generation = store.active().await?;
    let stored = store.positions(generation).await?;
    let mut out = Vec::new();
    for topic in [topics.entities(), topics.locations()] {
        let ends = match log.end_offsets(&topic).await {
            Ok(ends) => ends,
            Err(LogError::UnknownTopic(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        for (partition, end) in ends.into_iter().enumerate() {
            let partition = partition as i32;
            let applied = stored
                .get(&(group.to_owned(), topic.clone(), partition))
                .map_or(-1, |(offset, _)| *offset);
            let events_behind = (end - 1 - applied).max(0);
            let mut seconds_behind = 0.0;
            if events_behind > 0 && with_time {
                // The first pending event says how long readers have been missing it.
                let pending = log.read(&topic, partition, applied + 1, 1).await?;
                if let Some(first) = pending.first() {
                    let now_ms = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
                    seconds_behind = ((now_ms - first.timestamp_ms).max(0) as f64) / 1000.0;
                }
            }
            out.push(Lag {
                group: group.to_owned(),
                topic: topic.clone(),
                partition,
                events_behind,
                seconds_behind,
            });
        }
    }
    Ok(out)
}

/// True when every partition of both topics is applied up to the log's current end.
pub async fn caught_up(
    log: &dyn EventLog,
    store: &dyn ReadStore,
    topics: &Topics,
    group: &str,
) -> Result<bool, ProjectorError> {
    Ok(lag_of(log, store, topics, group, false)
        .await?
        .iter()
        .all(|l| l.events_behind == 0))
}

/// Rebuilds the read model from the start of the log into a new generation, then switches
/// readers to it and drops the old one. The old generation keeps serving until the switch.
/// `progress(done, total)` reports events read.
pub async fn replay(
    log: Arc<dyn EventLog>,
    store: Arc<dyn ReadStore>,
    config: &ProjectorConfig,
    mut progress: impl FnMut(u64, u64) + Send,
) -> Result<Generation, ProjectorError> {
    let old = store.prepare().await?;
    let generation = store.create_generation().await?;
    let topics = [config.topics.locations(), config.topics.entities()];
    let mut done: u64 = 0;
    // Follow the log until a pass finds nothing new: events appended during the replay are
    // included, and the live projector continues from the positions written here.
    let mut from: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut pipeline = Pipeline::filling(store.clone(), generation, config.group.clone());
    loop {
        let mut ends: Vec<(String, i32, i64)> = Vec::new();
        for topic in &topics {
            for (partition, end) in log.end_offsets(topic).await?.into_iter().enumerate() {
                ends.push((topic.clone(), partition as i32, end));
            }
        }
        let total: u64 = ends.iter().map(|(_, _, e)| *e as u64).sum();
        let pending: Vec<_> = ends
            .into_iter()
            .filter(|(t, p, end)| from.get(&(t.clone(), *p)).copied().unwrap_or(0) < *end)
            .collect();
        if pending.is_empty() {
            break;
        }
        for (topic, partition, end) in pending {
            let mut next = from.get(&(topic.clone(), partition)).copied().unwrap_or(0);
            while next < end {
                let messages = log.read(&topic, partition, next, config.batch).await?;
                if messages.is_empty() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                let chunk: Vec<Message> = messages.into_iter().filter(|m| m.offset < end).collect();
                next = chunk.last().map_or(end, |e| e.offset + 1);
                let events = chunk.len() as u64;
                if let Err(e) = pipeline.push(chunk).await {
                    pipeline.finish().await.ok();
                    store.drop_generation(generation).await.ok();
                    return Err(e.into());
                }
                done += events;
                progress(done, total);
            }
            from.insert((topic, partition), end);
        }
    }
    if let Err(e) = pipeline.finish().await {
        store.drop_generation(generation).await.ok();
        return Err(e.into());
    }
    let indexing = Instant::now();
    store.activate(generation).await?;
    tracing::info!(
        generation = generation.0,
        took_ms = indexing.elapsed().as_millis() as u64,
        "readers' indexes built; readers switched to the new generation"
    );
    // Readers mid-query on the old tables finish first; a short grace keeps them from failing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    if old != generation {
        store.drop_generation(old).await?;
    }
    Ok(generation)
}
