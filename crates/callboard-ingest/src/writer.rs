//! The writer: the only component that appends entity events. It rebuilds its [`State`] from the
//! log, scans registered locations, decides, appends, and serves commands from the API.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use callboard_descriptor::location::location_annotations;
use callboard_descriptor::{LocationRef, annotate};
use callboard_events::CloudEvent;
use callboard_events::backoff::Backoff;
use callboard_events::log::{EventLog, LogError, Message, Record, Subscription};
use callboard_events::topics::Topics;
use callboard_events::types::{
    ApplyEntity, CommandCompleted, CommandStatus, DeleteEntity, EventType, LocationCommand, LocationRecord,
    PositionRecord, ProblemRecord,
};
use callboard_model::validate;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::decide::{
    Counts, Decision, Outgoing, PushRefusal, Scanned, SyncSession, decide_push_apply, decide_push_delete,
    decide_register, decide_unregister,
};
use crate::scan::{Scan, Scanner};
use crate::state::State;
use crate::watch::FileWatcher;

/// Settings of the writer.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Topic names.
    pub topics: Topics,
    /// Partitions of the entities topic, when the writer creates it.
    pub partitions: i32,
    /// Replication factor of created topics.
    pub replication: i16,
    /// How often URL and discovery locations are scanned again (± 10% jitter).
    pub rescan_interval: Duration,
    /// How often watched file locations are scanned again anyway (in case a change was missed).
    pub file_rescan_interval: Duration,
    /// Events per append call.
    pub chunk: usize,
    /// Who acts for scans.
    pub actor: String,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            topics: Topics::default(),
            partitions: 6,
            replication: 1,
            rescan_interval: Duration::from_secs(300),
            file_rescan_interval: Duration::from_secs(3600),
            chunk: 1_000,
            actor: "provider:location".into(),
        }
    }
}

/// Why the writer stopped or could not act.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// The log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// Another writer holds the writer role.
    #[error("another writer is active (it holds the commands partition of consumer group {0})")]
    NotLeader(String),
}

/// What one sync did.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    /// Event counts.
    pub counts: Counts,
    /// Files read.
    pub files_read: usize,
    /// Where the appended events landed.
    pub positions: Vec<PositionRecord>,
    /// False when some file could not be read (nothing was deleted on its account).
    pub complete: bool,
}

/// Positions and touched refs, or why the command failed.
type CommandResult = Result<(Vec<PositionRecord>, Vec<String>), (CommandStatus, Vec<ProblemRecord>, String)>;

/// The writer.
pub struct Writer {
    log: Arc<dyn EventLog>,
    config: WriterConfig,
    state: State,
    scanner: Scanner,
    /// What each registered location's last scan read, for the file watcher.
    watched: BTreeMap<String, (Vec<PathBuf>, Vec<PathBuf>)>,
    /// The file watcher, once [`Writer::keep_watching`] hands it over: every scan widens it to
    /// what the scan read, so locations registered later (and a discovery's new subfolders,
    /// watched recursively) are watched from their first read on.
    watcher: Option<FileWatcher>,
    /// Set after a failed append: the log may hold events the state does not know yet.
    dirty: bool,
    /// The command being handled: every event appended meanwhile names it as its cause.
    cause: Option<String>,
    /// Who sent the command being handled: the scans it triggers (registering or refreshing a
    /// location) are recorded as that principal's doing, not the provider's.
    acting: Option<String>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("log", &self.log.describe())
            .finish_non_exhaustive()
    }
}

/// An append running in the background ([`Writer::start_append`]).
struct Appending(tokio::task::JoinHandle<Result<Vec<PositionRecord>, LogError>>);

/// The consumer group whose commands-partition holder is the writer.
pub fn writer_group(topics: &Topics) -> String {
    format!("{}writer", topics.commands().trim_end_matches("commands"))
}

impl Writer {
    /// Creates the topics if needed and rebuilds the state from the log.
    pub async fn start(log: Arc<dyn EventLog>, scanner: Scanner, config: WriterConfig) -> Result<Self, WriterError> {
        log.ensure_topics(&config.topics.specs(config.partitions, config.replication))
            .await?;
        let started = std::time::Instant::now();
        let state = State::rebuild(log.as_ref(), &config.topics.entities(), &config.topics.locations()).await?;
        tracing::info!(
            live = state.live_count(),
            subjects = state.subjects.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "writer state rebuilt from the log"
        );
        Ok(Self {
            log,
            config,
            state,
            scanner,
            watched: BTreeMap::new(),
            watcher: None,
            dirty: false,
            cause: None,
            acting: None,
        })
    }

    /// Waits until this process holds the writer role: the single partition of the commands topic
    /// in the writer consumer group. Returns the subscription that must be kept (dropping it gives
    /// the role away).
    pub async fn acquire_role(
        log: &dyn EventLog,
        topics: &Topics,
        wait: Duration,
    ) -> Result<Box<dyn Subscription>, WriterError> {
        log.ensure_topics(&topics.specs(1, 1)[2..]).await?;
        let group = writer_group(topics);
        let mut subscription = log.subscribe(&group, &[topics.commands()]).await?;
        let deadline = Instant::now() + wait;
        loop {
            if !subscription.assignment().is_empty() {
                return Ok(subscription);
            }
            if Instant::now() >= deadline {
                return Err(WriterError::NotLeader(group));
            }
            // Polling drives the group protocol; commands read here are read again by `run`
            // because positions are only committed after handling.
            let early = subscription.poll(1, Duration::from_millis(200)).await?;
            if let Some(first) = early.first() {
                subscription.seek(&first.topic, first.partition, first.offset).await?;
            }
        }
    }

    /// The current state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The scanner.
    pub fn scanner(&self) -> &Scanner {
        &self.scanner
    }

    /// Keeps `watcher` watching what every scan reads, starting with what was read so far.
    pub fn keep_watching(&mut self, mut watcher: FileWatcher) {
        for (files, folders) in self.watched.values() {
            watcher.watch(files, folders);
        }
        self.watcher = Some(watcher);
    }

    /// Files and folders the last scans read, by registered location.
    pub fn watched(&self) -> &BTreeMap<String, (Vec<PathBuf>, Vec<PathBuf>)> {
        &self.watched
    }

    async fn refresh_if_dirty(&mut self) -> Result<(), WriterError> {
        if self.dirty {
            self.state = State::rebuild(
                self.log.as_ref(),
                &self.config.topics.entities(),
                &self.config.topics.locations(),
            )
            .await?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Appends a decision: location events first, then entity events through the same path as a
    /// sync's ([`Writer::start_append`]). The state follows every appended chunk of location
    /// events; after any failed append it is rebuilt from the log before the next decision.
    async fn append(&mut self, mut decision: Decision) -> Result<Vec<PositionRecord>, WriterError> {
        if let Some(cause) = &self.cause {
            for event in &mut decision.location_events {
                event.causationid.get_or_insert_with(|| cause.clone());
            }
        }
        let mut positions = Vec::new();
        let topic = self.config.topics.locations();
        for events in decision.location_events.chunks(self.config.chunk.max(1)) {
            let records: Vec<Record> = events
                .iter()
                .map(|e| Record {
                    key: e.subject.clone(),
                    value: e.to_bytes(),
                })
                .collect();
            match self.log.append(&topic, records).await {
                Ok(landed) => {
                    for (event, position) in events.iter().zip(landed) {
                        self.state.apply_location_event(&event.to_bytes());
                        positions.push(PositionRecord {
                            topic: topic.clone(),
                            partition: position.partition,
                            offset: position.offset,
                        });
                    }
                }
                Err(e) => {
                    // Some records may have landed: re-read the log before deciding again.
                    self.dirty = true;
                    return Err(e.into());
                }
            }
        }
        let entity_events = decision.entity_events.into_iter().map(Outgoing::event).collect();
        let appending = self.start_append(entity_events);
        positions.extend(self.finish_append(appending).await?);
        Ok(positions)
    }

    /// Starts appending entity events in the background, applying them to the state now, so the
    /// next events can be decided while these are built, serialised and written. The caller
    /// awaits it with [`Writer::finish_append`] before starting the next one, which keeps appends
    /// in order. If it fails, the state is ahead of the log: it is marked for a rebuild, as after
    /// any failed append, and the events decided meanwhile are never appended.
    fn start_append(&mut self, mut events: Vec<Outgoing>) -> Appending {
        if let Some(cause) = &self.cause {
            for event in &mut events {
                event.caused_by(cause);
            }
        }
        for event in &events {
            self.state.apply_outgoing(event);
        }
        let log = self.log.clone();
        let topic = self.config.topics.entities();
        let chunk = self.config.chunk.max(1);
        Appending(tokio::spawn(async move {
            let mut positions = Vec::with_capacity(events.len());
            let mut events = events;
            while !events.is_empty() {
                let rest = events.split_off(chunk.min(events.len()));
                let batch = std::mem::replace(&mut events, rest);
                // Building and serialising payloads is CPU work: off the async threads.
                let records = tokio::task::spawn_blocking(move || {
                    batch
                        .into_iter()
                        .map(|e| Record {
                            key: e.subject().to_owned(),
                            value: e.into_bytes(),
                        })
                        .collect::<Vec<Record>>()
                })
                .await
                .map_err(|e| LogError::Other(format!("serialising events failed: {e}")))?;
                for position in log.append(&topic, records).await? {
                    positions.push(PositionRecord {
                        topic: topic.clone(),
                        partition: position.partition,
                        offset: position.offset,
                    });
                }
            }
            Ok(positions)
        }))
    }

    /// Waits for a background append; on failure the state is rebuilt before the next decision.
    async fn finish_append(&mut self, appending: Appending) -> Result<Vec<PositionRecord>, WriterError> {
        let result = appending
            .0
            .await
            .unwrap_or_else(|e| Err(LogError::Other(format!("the append task failed: {e}"))));
        if result.is_err() {
            self.dirty = true;
        }
        Ok(result?)
    }

    /// Registers a location (no event when it is registered already). It is scanned by
    /// [`Writer::sync`].
    pub async fn register(
        &mut self,
        location: &LocationRecord,
        actor: &str,
    ) -> Result<Vec<PositionRecord>, WriterError> {
        self.refresh_if_dirty().await?;
        let decision = decide_register(&self.state, location, actor);
        self.append(decision).await
    }

    /// Unregisters a location, deleting what came through it.
    pub async fn unregister(
        &mut self,
        location: &LocationRecord,
        actor: &str,
    ) -> Result<(Counts, Vec<PositionRecord>), WriterError> {
        self.refresh_if_dirty().await?;
        let decision = decide_unregister(&self.state, location, actor);
        let counts = decision.counts;
        self.watched.remove(&location.key());
        Ok((counts, self.append(decision).await?))
    }

    /// Scans a registered location and appends what changed, deciding and appending while the
    /// scan reads files.
    #[tracing::instrument(skip(self), fields(location = %location.key()))]
    pub async fn sync(&mut self, location: &LocationRecord) -> Result<SyncReport, WriterError> {
        self.refresh_if_dirty().await?;
        // Each message is about a thousand documents: two in flight keep the pipeline full without
        // holding a large part of the catalog in memory.
        let (sender, mut receiver) = mpsc::channel::<Vec<Scanned>>(2);
        let scanner = self.scanner.clone();
        let root = location.clone();
        let actor = self.acting.clone().unwrap_or_else(|| self.config.actor.clone());
        let scanning = {
            let actor = actor.clone();
            tokio::spawn(async move { scanner.scan_into(&root, &actor, Some(sender)).await })
        };
        let mut session = SyncSession::new(location.key(), actor);
        let mut positions = Vec::new();
        let mut buffer: Vec<Scanned> = Vec::new();
        let chunk = self.config.chunk.max(1);
        // Decide the next documents while the events before are appended (one append in flight).
        let mut appending: Option<Appending> = None;
        loop {
            let received = receiver.recv().await;
            let done = received.is_none();
            buffer.extend(received.unwrap_or_default());
            if buffer.len() >= chunk || (done && !buffer.is_empty()) {
                let events = session.feed(&self.state, std::mem::take(&mut buffer));
                if let Some(previous) = appending.take() {
                    positions.extend(self.finish_append(previous).await?);
                }
                appending = Some(self.start_append(events));
            }
            if done {
                break;
            }
        }
        if let Some(previous) = appending.take() {
            positions.extend(self.finish_append(previous).await?);
        }
        let Scan {
            batch,
            files,
            folders,
            files_read,
        } = scanning
            .await
            .map_err(|e| WriterError::Log(LogError::Other(format!("the scan failed: {e}"))))?;
        for protected in batch.protected {
            session.protect(protected);
        }
        let complete = batch.complete;
        let events = session.finish(&self.state, complete);
        let appending = self.start_append(events);
        positions.extend(self.finish_append(appending).await?);
        if let Some(watcher) = &mut self.watcher {
            watcher.watch(&files, &folders);
        }
        self.watched.insert(location.key(), (files, folders));
        let counts = session.counts();
        tracing::info!(
            upserted = counts.upserted,
            deleted = counts.deleted,
            rejected = counts.rejected,
            cleared = counts.cleared,
            unchanged = counts.unchanged,
            files_read,
            complete,
            "location synced"
        );
        Ok(SyncReport {
            counts,
            files_read,
            positions,
            complete,
        })
    }

    /// Scans every registered location.
    pub async fn sync_all(&mut self) -> Result<SyncReport, WriterError> {
        let locations: Vec<LocationRecord> = self.state.registered().map(|r| r.location.clone()).collect();
        let mut total = SyncReport {
            complete: true,
            ..SyncReport::default()
        };
        for location in locations {
            let report = self.sync(&location).await?;
            total.counts.add(report.counts);
            total.files_read += report.files_read;
            total.positions.extend(report.positions);
            total.complete &= report.complete;
        }
        Ok(total)
    }

    /// Carries out one command from the commands topic.
    #[tracing::instrument(skip_all, fields(command = %command.id, kind = %command.event_type, actor = %command.actor))]
    pub async fn handle(&mut self, command: &CloudEvent) -> CommandCompleted {
        let completed = |status, positions, refs, problems, message| CommandCompleted {
            command_id: command.id.clone(),
            status,
            positions,
            entity_refs: refs,
            problems,
            message,
        };
        if let Err(e) = self.refresh_if_dirty().await {
            return completed(
                CommandStatus::Failed,
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Some(e.to_string()),
            );
        }
        let actor = command.actor.clone();
        self.cause = Some(command.id.clone());
        self.acting = Some(actor.clone());
        let result = self.carry_out(command, &actor).await;
        self.cause = None;
        self.acting = None;
        match result {
            Ok((positions, refs)) => completed(CommandStatus::Ok, positions, refs, Vec::new(), None),
            Err((status, problems, message)) => completed(status, Vec::new(), Vec::new(), problems, Some(message)),
        }
    }

    async fn carry_out(&mut self, command: &CloudEvent, actor: &str) -> CommandResult {
        let actor = actor.to_owned();
        match command.known_type() {
            Some(EventType::ApplyEntity) => match serde_json::from_value::<ApplyEntity>(command.data.clone()) {
                Ok(apply) => {
                    self.apply_pushed(apply.entity, &actor, &command.source, &command.id)
                        .await
                }
                Err(e) => Err((CommandStatus::Rejected, Vec::new(), format!("malformed command: {e}"))),
            },
            Some(EventType::DeleteEntity) => match serde_json::from_value::<DeleteEntity>(command.data.clone()) {
                Ok(delete) => {
                    let entity_ref = delete.entity_ref.to_lowercase();
                    match decide_push_delete(&self.state, &entity_ref, &actor, &command.source) {
                        Ok(decision) => self
                            .append_caused(decision, &command.id)
                            .await
                            .map(|p| (p, vec![entity_ref])),
                        Err(refusal) => Err(refusal_error(refusal)),
                    }
                }
                Err(e) => Err((CommandStatus::Rejected, Vec::new(), format!("malformed command: {e}"))),
            },
            Some(t @ (EventType::RegisterLocation | EventType::UnregisterLocation | EventType::RefreshLocation)) => {
                match serde_json::from_value::<LocationCommand>(command.data.clone()) {
                    Ok(LocationCommand { location }) => self.location_command(t, &location, &actor).await,
                    Err(e) => Err((CommandStatus::Rejected, Vec::new(), format!("malformed command: {e}"))),
                }
            }
            _ => Err((
                CommandStatus::Rejected,
                Vec::new(),
                format!("unknown command type {}", command.event_type),
            )),
        }
    }

    async fn append_caused(
        &mut self,
        mut decision: Decision,
        command_id: &str,
    ) -> Result<Vec<PositionRecord>, (CommandStatus, Vec<ProblemRecord>, String)> {
        for event in decision
            .entity_events
            .iter_mut()
            .chain(decision.location_events.iter_mut())
        {
            event.causationid = Some(command_id.to_owned());
        }
        self.append(decision)
            .await
            .map_err(|e| (CommandStatus::Failed, Vec::new(), e.to_string()))
    }

    async fn apply_pushed(
        &mut self,
        entity: Value,
        actor: &str,
        source: &str,
        command_id: &str,
    ) -> Result<(Vec<PositionRecord>, Vec<String>), (CommandStatus, Vec<ProblemRecord>, String)> {
        let mut entity = entity;
        // Pushed entities carry location annotations like every other entity.
        let push = LocationRef {
            location_type: "push".into(),
            target: actor.to_owned(),
        };
        let annotations: Vec<(&'static str, Value)> = location_annotations(&push, &push)
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        annotate(&mut entity, &annotations);
        let entity = match validate(entity) {
            Ok(entity) => entity,
            Err(rejection) => {
                let problems: Vec<ProblemRecord> = rejection
                    .diagnostics
                    .iter()
                    .map(|d| ProblemRecord {
                        rule: d.rule.code().into(),
                        field: if d.path.is_root() {
                            String::new()
                        } else {
                            d.path.to_string()
                        },
                        message: d.message.clone(),
                        hint: d.hint.clone(),
                        line: None,
                        column: None,
                    })
                    .collect();
                let message = problems.first().map(|p| p.message.clone()).unwrap_or_default();
                return Err((CommandStatus::Rejected, problems, message));
            }
        };
        let entity_ref = entity.entity_ref().to_string();
        match decide_push_apply(&self.state, &entity, actor, source) {
            Ok(decision) => self
                .append_caused(decision, command_id)
                .await
                .map(|p| (p, vec![entity_ref])),
            Err(refusal) => Err(refusal_error(refusal)),
        }
    }

    async fn location_command(
        &mut self,
        kind: EventType,
        location: &LocationRecord,
        actor: &str,
    ) -> Result<(Vec<PositionRecord>, Vec<String>), (CommandStatus, Vec<ProblemRecord>, String)> {
        let failed = |e: WriterError| (CommandStatus::Failed, Vec::new(), e.to_string());
        match kind {
            EventType::RegisterLocation => {
                if !matches!(location.location_type.as_str(), "url" | "file" | "discovery") {
                    return Err((
                        CommandStatus::Rejected,
                        Vec::new(),
                        format!(
                            "location type {:?} is not supported; use url, file or discovery",
                            location.location_type
                        ),
                    ));
                }
                let mut positions = self.register(location, actor).await.map_err(failed)?;
                positions.extend(self.sync(location).await.map_err(failed)?.positions);
                Ok((positions, Vec::new()))
            }
            EventType::UnregisterLocation => {
                Ok((self.unregister(location, actor).await.map_err(failed)?.1, Vec::new()))
            }
            _ => {
                if !self.state.registered().any(|r| r.location == *location) {
                    return Err((
                        CommandStatus::Rejected,
                        Vec::new(),
                        format!("{} is not registered", location.key()),
                    ));
                }
                Ok((self.sync(location).await.map_err(failed)?.positions, Vec::new()))
            }
        }
    }

    /// Serves the writer role until `shutdown` resolves: commands from the API, file changes,
    /// and scheduled rescans.
    pub async fn run(
        mut self,
        mut commands: Box<dyn Subscription>,
        mut changes: mpsc::Receiver<PathBuf>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), WriterError> {
        let commands_topic = self.config.topics.commands();
        let mut next_scan: HashMap<String, Instant> = HashMap::new();
        let mut pending_paths: HashSet<PathBuf> = HashSet::new();
        let mut changes_open = true;
        let mut backoff = Backoff::default();
        tokio::pin!(shutdown);
        loop {
            // Scheduled rescans, with ±10% jitter so many locations do not scan in lockstep.
            let now = Instant::now();
            let registered: Vec<LocationRecord> = self.state.registered().map(|r| r.location.clone()).collect();
            for location in &registered {
                let key = location.key();
                let interval = if location.location_type == "file" {
                    self.config.file_rescan_interval
                } else {
                    self.config.rescan_interval
                };
                let due = *next_scan.entry(key.clone()).or_insert_with(|| now + jittered(interval));
                if due <= now {
                    if let Err(e) = self.sync(location).await {
                        tracing::warn!(location = %key, error = %e, "scheduled scan failed");
                    }
                    next_scan.insert(key, Instant::now() + jittered(interval));
                }
            }

            tokio::select! {
                () = &mut shutdown => return Ok(()),
                polled = commands.poll(64, Duration::from_millis(250)) => {
                    let answered = match polled {
                        Ok(messages) => self.answer(commands.as_mut(), &commands_topic, messages).await,
                        Err(e) => Err(e.into()),
                    };
                    match answered {
                        Ok(()) => backoff.reset(),
                        // The log is away (a broker restart): wait and poll again. A command
                        // whose answer was not written is not committed either, so a writer
                        // that starts over reads it again; its client may time out first.
                        Err(WriterError::Log(e @ LogError::Unavailable(_))) => {
                            let delay = backoff.next_delay();
                            tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "the writer lost the event log; it retries");
                            tokio::select! {
                                () = &mut shutdown => return Ok(()),
                                () = tokio::time::sleep(delay) => {}
                            }
                        }
                        Err(e) => return Err(e),
                    }
                }
                changed = changes.recv(), if changes_open => {
                    match changed {
                        Some(path) => {
                            pending_paths.insert(path);
                            // Collect the burst an editor's save produces, then rescan once.
                            let settle = tokio::time::sleep(Duration::from_millis(50));
                            tokio::pin!(settle);
                            loop {
                                tokio::select! {
                                    () = &mut settle => break,
                                    more = changes.recv() => match more {
                                        Some(path) => { pending_paths.insert(path); }
                                        None => { changes_open = false; break; }
                                    },
                                }
                            }
                            let affected = self.affected(&pending_paths);
                            pending_paths.clear();
                            for location in affected {
                                if let Err(e) = self.sync(&location).await {
                                    tracing::warn!(location = %location.key(), error = %e, "scan after a file change failed");
                                }
                            }
                        }
                        None => changes_open = false,
                    }
                }
            }
        }
    }

    /// Handles polled commands in order, appending each one's answer and committing it.
    async fn answer(
        &mut self,
        commands: &mut dyn Subscription,
        commands_topic: &str,
        messages: Vec<Message>,
    ) -> Result<(), WriterError> {
        for message in messages {
            // Unreadable messages and answers (this topic carries both) are passed over.
            let command = CloudEvent::from_bytes(&message.value)
                .ok()
                .filter(|c| c.known_type() != Some(EventType::CommandCompleted));
            let Some(command) = command else {
                commands
                    .commit(&message.topic, message.partition, message.offset + 1)
                    .await?;
                continue;
            };
            let outcome = self.handle(&command).await;
            let reply = CloudEvent::new(
                EventType::CommandCompleted,
                command.subject.clone(),
                0,
                "callboard:writer",
                "callboard:writer",
                serde_json::to_value(&outcome).unwrap_or_default(),
            )
            .caused_by(Some(command.id.clone()));
            self.log
                .append(
                    commands_topic,
                    vec![Record {
                        key: command.subject.clone(),
                        value: reply.to_bytes(),
                    }],
                )
                .await?;
            commands
                .commit(&message.topic, message.partition, message.offset + 1)
                .await?;
        }
        Ok(())
    }

    /// Registered locations whose last scan read one of `paths`, or whose discovery folder holds one.
    fn affected(&self, paths: &HashSet<PathBuf>) -> Vec<LocationRecord> {
        self.state
            .registered()
            .filter(|r| {
                self.watched.get(&r.location.key()).is_some_and(|(files, folders)| {
                    paths
                        .iter()
                        .any(|p| files.contains(p) || folders.iter().any(|f| p.starts_with(f)))
                })
            })
            .map(|r| r.location.clone())
            .collect()
    }
}

fn refusal_error(refusal: PushRefusal) -> (CommandStatus, Vec<ProblemRecord>, String) {
    match refusal {
        PushRefusal::Invalid(problems) => {
            let message = problems.first().map(|p| p.message.clone()).unwrap_or_default();
            (CommandStatus::Rejected, problems, message)
        }
        PushRefusal::ManagedElsewhere(location) => (
            CommandStatus::Rejected,
            Vec::new(),
            format!("the entity is defined by {location}; change it there"),
        ),
    }
}

/// `interval` ± 10%.
fn jittered(interval: Duration) -> Duration {
    let factor = 0.9 + rand::random::<f64>() * 0.2;
    interval.mul_f64(factor)
}
