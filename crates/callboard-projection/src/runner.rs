//! The consume–fold–write loop, lag, and replay, for any [`Projection`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use callboard_events::backoff::Backoff;
use callboard_events::consumer::{PositionStore, PositionedConsumer};
use callboard_events::log::{EventLog, LogError, Message};
use callboard_events::topics::Topics;
use time::OffsetDateTime;

use crate::pipeline::{Pipeline, Written};
use crate::precedence::Precedence;
use crate::projection::Projection;
use crate::tables::{Generation, Generations, Positions, StoreError};

/// Why a projector stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    /// The log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ProjectorError {
    /// Whether the log or the store is only unavailable for now (a restart, a network fault):
    /// worth trying again from the stored positions.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ProjectorError::Log(LogError::Unavailable(_)) | ProjectorError::Store(StoreError::Unavailable(_))
        )
    }

    /// The whole chain of causes on one line, for logs.
    pub fn chain(&self) -> String {
        match self {
            ProjectorError::Log(e) => e.to_string(),
            ProjectorError::Store(e) => e.chain(),
        }
    }
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
    /// The projection this one follows in its process (see [`Precedence`]): while that one
    /// catches up, this one waits before each batch.
    pub follows: Option<Precedence>,
    /// The precedence this projection leads: it tells its followers after each batch whether it
    /// is still catching up, and that it stopped when it does.
    pub leads: Option<Precedence>,
}

impl ProjectorConfig {
    /// The settings of `projection` under `topics`, in its default group (see [`default_group`]).
    pub fn new(topics: Topics, projection: &str) -> Self {
        let group = default_group(&topics, projection);
        Self {
            topics,
            group,
            batch: 2_000,
            follows: None,
            leads: None,
        }
    }
}

/// The consumer group of a projection: `<prefix>projector` for the catalog (the name it always
/// had, so deployments keep their positions), `<prefix>projector-<name>` for the others.
pub fn default_group(topics: &Topics, projection: &str) -> String {
    projector_group(&format!("{}projector", topics.prefix()), projection)
}

/// The group of `projection` among projectors configured with group `base`.
pub fn projector_group(base: &str, projection: &str) -> String {
    if projection == "catalog" {
        base.to_owned()
    } else {
        format!("{base}-{projection}")
    }
}

struct StoredPositions<'a> {
    positions: &'a dyn Positions,
    generation: Generation,
    group: &'a str,
}

#[async_trait]
impl PositionStore for StoredPositions<'_> {
    async fn applied(&self, topic: &str, partition: i32) -> Result<Option<i64>, LogError> {
        self.positions
            .position(self.generation, self.group, topic, partition)
            .await
            .map_err(|e| LogError::Other(e.chain()))
    }
}

/// Tells the followers that the leader stopped, however its run ends (an error, shutdown, a
/// panic).
struct Leading(Option<Precedence>);

impl Drop for Leading {
    fn drop(&mut self) {
        if let Some(leader) = &self.0 {
            leader.leader_stopped();
        }
    }
}

/// Runs a projector until `shutdown` resolves. After each batch, `progress` is told how many
/// events were applied and how long the batch took. A batch in flight when `shutdown` resolves
/// is finished first: shutdown is only observed between batches.
///
/// The projector is supervised: when the log or the store is unavailable (a database restart, a
/// broker away), the attempt ends, and after a capped, jittered backoff it starts again from the
/// positions stored with the last committed batch — a batch that failed half-way is simply
/// applied again, which the stored positions make exact. Any other error ends the run.
pub async fn run<P: Projection>(
    log: Arc<dyn EventLog>,
    projection: Arc<P>,
    config: ProjectorConfig,
    mut progress: impl FnMut(usize, Duration) + Send,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ProjectorError> {
    let leading = Leading(config.leads.clone());
    let batch = config.batch;
    // Whether a batch was written since the last failure: then the dependency came back, and the
    // next failure starts its backoff from the first delay.
    let wrote = std::sync::atomic::AtomicBool::new(false);
    let mut progress = |applied: usize, took: Duration| {
        if let Some(leader) = &leading.0 {
            leader.leader_wrote(applied, batch);
        }
        wrote.store(true, std::sync::atomic::Ordering::Relaxed);
        progress(applied, took);
    };
    tokio::pin!(shutdown);
    let mut backoff = Backoff::default();
    loop {
        match attempt(&log, &projection, &config, &mut progress, shutdown.as_mut()).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_transient() => {
                if wrote.swap(false, std::sync::atomic::Ordering::Relaxed) {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                tracing::warn!(
                    projection = projection.name(),
                    error = %e.chain(),
                    attempt = backoff.attempts(),
                    retry_in_ms = delay.as_millis() as u64,
                    "the projector lost a dependency; it starts again from its stored positions"
                );
                tokio::select! {
                    () = &mut shutdown => return Ok(()),
                    () = tokio::time::sleep(delay) => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// One attempt of [`run`]: from the stored positions until shutdown or the first error. Writes
/// still in flight when it fails are waited for, so that none commits behind the next attempt.
async fn attempt<P: Projection>(
    log: &Arc<dyn EventLog>,
    projection: &Arc<P>,
    config: &ProjectorConfig,
    progress: &mut (impl FnMut(usize, Duration) + Send),
    mut shutdown: std::pin::Pin<&mut (impl Future<Output = ()> + Send)>,
) -> Result<(), ProjectorError> {
    let tables: &dyn Generations = projection.store();
    let mut generation = tables.prepare().await?;
    let topics = projection.topics(&config.topics);
    let specs: Vec<_> = config
        .topics
        .specs(1, 1)
        .into_iter()
        .filter(|s| topics.contains(&s.name))
        .collect();
    log.ensure_topics(&specs).await.ok();
    let mut consumer = PositionedConsumer::new(log.subscribe(&config.group, &topics).await?);
    let mut pipeline = Pipeline::new(projection.clone(), generation, &config.group);
    let mut checked = Instant::now();
    let result = async {
        loop {
            // A replay may have switched readers to a new generation: follow it.
            if checked.elapsed() > Duration::from_secs(1) {
                checked = Instant::now();
                let active = tables.active().await?;
                if active != generation {
                    tracing::info!(
                        projection = projection.name(),
                        from = generation.0,
                        to = active.0,
                        "the read model moved to a new generation"
                    );
                    for written in pipeline.finish().await? {
                        report(&mut consumer, progress, written).await?;
                    }
                    generation = active;
                    pipeline = Pipeline::new(projection.clone(), generation, &config.group);
                    consumer.reset();
                }
            }
            let positions = StoredPositions {
                positions: tables,
                generation,
                group: &config.group,
            };
            if let Some(leader) = &config.follows {
                leader.follow().await;
            }
            // With a batch being written, take only what has arrived: when nothing has, the write
            // is finished and reported instead of waiting out the poll.
            let wait = if pipeline.writing() {
                Duration::from_millis(1)
            } else {
                Duration::from_millis(200)
            };
            let messages = tokio::select! {
                () = shutdown.as_mut() => {
                    for written in pipeline.finish().await? {
                        report(&mut consumer, progress, written).await?;
                    }
                    return Ok(());
                }
                polled = consumer.poll(&positions, config.batch, wait) => polled?,
            };
            let written = if messages.is_empty() {
                if let Some(leader) = &config.leads {
                    leader.leader_idle();
                }
                pipeline.finish().await?
            } else {
                pipeline.push(messages).await?
            };
            for written in written {
                report(&mut consumer, progress, written).await?;
            }
        }
    }
    .await;
    if result.is_err() {
        // Nothing is reported for them: the next attempt reads the positions they stored.
        pipeline.finish().await.ok();
    }
    result
}

/// Tells the log and the caller that a batch is stored.
async fn report(
    consumer: &mut PositionedConsumer,
    progress: &mut (impl FnMut(usize, Duration) + Send),
    written: Written,
) -> Result<(), ProjectorError> {
    for position in &written.positions {
        consumer
            .stored(&position.topic, position.partition, position.offset)
            .await?;
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

/// The lag of every partition of `topics` for `group`, by the positions stored in the active
/// generation.
pub async fn lag(
    log: &dyn EventLog,
    positions: &dyn Positions,
    topics: &[String],
    group: &str,
) -> Result<Vec<Lag>, ProjectorError> {
    lag_of(log, positions, topics, group, true).await
}

async fn lag_of(
    log: &dyn EventLog,
    positions: &dyn Positions,
    topics: &[String],
    group: &str,
    with_time: bool,
) -> Result<Vec<Lag>, ProjectorError> {
    let generation = positions.active().await?;
    let stored = positions.positions(generation).await?;
    let mut out = Vec::new();
    for topic in topics {
        let ends = match log.end_offsets(topic).await {
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
                let pending = log.read(topic, partition, applied + 1, 1).await?;
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

/// True when every partition of `topics` is applied up to the log's current end.
pub async fn caught_up(
    log: &dyn EventLog,
    positions: &dyn Positions,
    topics: &[String],
    group: &str,
) -> Result<bool, ProjectorError> {
    Ok(lag_of(log, positions, topics, group, false)
        .await?
        .iter()
        .all(|l| l.events_behind == 0))
}

/// Rebuilds a projection from the start of the log into a new generation, then switches readers
/// to it and drops the old one. The old generation keeps serving until the switch.
/// `progress(done, total)` reports events read.
pub async fn replay<P: Projection>(
    log: Arc<dyn EventLog>,
    projection: Arc<P>,
    config: &ProjectorConfig,
    mut progress: impl FnMut(u64, u64) + Send,
) -> Result<Generation, ProjectorError> {
    let tables: &dyn Generations = projection.store();
    let old = tables.prepare().await?;
    let generation = tables.create_generation().await?;
    let topics = projection.topics(&config.topics);
    let mut done: u64 = 0;
    // Follow the log until a pass finds nothing new: events appended during the replay are
    // included, and the live projector continues from the positions written here.
    let mut from: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut pipeline = Pipeline::filling(projection.clone(), generation, &config.group);
    loop {
        let mut ends: Vec<(String, i32, i64)> = Vec::new();
        for topic in &topics {
            let topic_ends = match log.end_offsets(topic).await {
                Ok(ends) => ends,
                // Nothing was ever written there.
                Err(LogError::UnknownTopic(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            for (partition, end) in topic_ends.into_iter().enumerate() {
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
                    tables.drop_generation(generation).await.ok();
                    return Err(e.into());
                }
                done += events;
                progress(done, total);
            }
            from.insert((topic, partition), end);
        }
    }
    if let Err(e) = pipeline.finish().await {
        tables.drop_generation(generation).await.ok();
        return Err(e.into());
    }
    let indexing = Instant::now();
    tables.activate(generation).await?;
    tracing::info!(
        projection = projection.name(),
        generation = generation.0,
        took_ms = indexing.elapsed().as_millis() as u64,
        "readers' indexes built; readers switched to the new generation"
    );
    // Readers mid-query on the old tables finish first, and readers in other processes, which
    // trust the active generation they read for a quarter of a second (the SQL read models'
    // `ACTIVE_TTL`), move over: a grace keeps them from failing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    if old != generation {
        tables.drop_generation(old).await?;
    }
    Ok(generation)
}
