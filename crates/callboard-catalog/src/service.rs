//! The catalog service: every question a client can ask and every change it can ask for, each
//! on behalf of a [`Principal`]. Transports (GraphQL today; the Backstage REST API, the UI's
//! session, the scaffolder and scorecards next) translate their requests into these calls and
//! the answers back, and hold nothing else: no store, log or cache handle.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use callboard_events::EventView;
use callboard_events::cloudevent::normalize_time;
use callboard_events::commands::CommandClient;
use callboard_events::log::{EventLog, read_range};
use callboard_events::topics::Topics;
use callboard_events::types::{LocationRecord, PositionRecord};
use callboard_graph::{GraphService, Hop, Question, Reached, SharedCache};
use callboard_model::{EntityRef, Relation};
use callboard_projection::{Positions, Progress, default_group};
use callboard_readmodel::activity::{ActivityKey, ActivityQuery, ActivityReader, ActivityRow};
use callboard_readmodel::filter::Filter;
use callboard_readmodel::rows::{EntityRow, HistoryRow, LocationRow, RejectionRow};
use callboard_readmodel::search;
use callboard_readmodel::store::{CatalogReader, EntityQuery, Order, RejectionsBy, RelationView};
use futures::Stream;
use serde_json::Value;

use crate::cache::{CachedReader, CurrentPage, EntityCache, Include, Outgoing, Single};
use crate::commands::{Commands, LocationCommand, Outcome};
use crate::error::{CatalogError, ErrorCode, Result};
use crate::feed::{self, Change, Cursor, Feed, Missed};
use crate::principal::Principal;

/// An instant in the past (or future) to read the catalog as of: RFC 3339, kept in the one
/// fixed-width form stored rows use, so instants compare as strings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(String);

impl Instant {
    /// Parses any RFC 3339 date-time.
    pub fn parse(text: &str) -> Result<Self> {
        normalize_time(text)
            .map(Self)
            .ok_or_else(|| CatalogError::bad_input(format!("{text:?} is not an RFC 3339 date-time")))
    }

    /// The stored form, e.g. `2026-11-22T10:00:00.000Z`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A page of entities as they were at an instant: ref and document, in ref order.
#[derive(Debug, Clone, Default)]
pub struct PastPage {
    /// The entities.
    pub rows: Vec<(EntityRef, Value)>,
    /// Whether more follow.
    pub has_more: bool,
}

/// The parts the service is built from: the ports it reads and writes through.
#[derive(Debug)]
pub struct Parts {
    /// The catalog's read side.
    pub reader: Arc<dyn CatalogReader>,
    /// The catalog projection's positions (read-only), for read-your-writes and the feed.
    pub positions: Arc<dyn Positions>,
    /// The activity feed.
    pub activity: Arc<dyn ActivityReader>,
    /// A graph cache shared by replicas, if any.
    pub shared_cache: Option<Arc<dyn SharedCache>>,
    /// The event log: commands go out through it, the change feed tails it. `None`: a read-only
    /// process without subscriptions.
    pub log: Option<Arc<dyn EventLog>>,
    /// Topic names.
    pub topics: Topics,
    /// The catalog projectors' consumer group (whose positions read-your-writes waits for).
    pub projector_group: Option<String>,
    /// Hot entities kept in memory (0: none).
    pub cached_entities: u64,
    /// How many changes a subscriber may fall behind before it skips some.
    pub feed_capacity: usize,
}

/// The catalog service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Catalog {
    reader: CachedReader,
    positions: Arc<dyn Positions>,
    graph: Arc<GraphService>,
    activity: Arc<dyn ActivityReader>,
    commands: Commands,
    progress: Progress,
    feed: Feed,
    log: Option<Arc<dyn EventLog>>,
    topics: Topics,
}

/// The most changes a subscription resuming from a cursor is sent from the log; further behind,
/// it must read the current state instead.
const MAX_RESUMED: usize = 10_000;

/// How long a resuming subscription waits for the feed to catch up after a start.
const FEED_CATCH_UP: Duration = Duration::from_secs(60);

/// Subjects read per round when paging through history for a list as of an instant.
const PAST_CHUNK: usize = 500;

impl Catalog {
    /// The service over `parts`.
    pub fn new(parts: Parts) -> Self {
        let feed = Feed::with_cache(parts.feed_capacity, parts.cached_entities);
        let group = parts
            .projector_group
            .unwrap_or_else(|| default_group(&parts.topics, "catalog"));
        let progress = Progress::new(parts.positions.clone(), group);
        let client = parts
            .log
            .as_ref()
            .map(|log| CommandClient::new(log.clone(), parts.topics.clone()));
        Self {
            reader: CachedReader::new(parts.reader.clone(), feed.cache_handle()),
            positions: parts.positions,
            graph: Arc::new(GraphService::new(parts.reader, parts.shared_cache)),
            activity: parts.activity,
            commands: Commands::new(client, progress.clone(), feed.clone(), parts.topics.entities()),
            progress,
            feed,
            log: parts.log,
            topics: parts.topics,
        }
    }

    /// Keeps subscriptions and the entity cache fed until `shutdown` resolves: tails the entity
    /// topic and publishes each change once the read model reflects it. Without a log it waits
    /// for `shutdown` (nothing changes that it could see).
    pub async fn run_feed(&self, shutdown: impl Future<Output = ()> + Send) {
        match &self.log {
            Some(log) => {
                feed::run(
                    log.clone(),
                    self.positions.clone(),
                    self.progress.clone(),
                    self.topics.clone(),
                    self.feed.clone(),
                    shutdown,
                )
                .await
            }
            None => shutdown.await,
        }
    }

    /// The entity cache (for metrics and tests).
    pub fn cache(&self) -> &EntityCache {
        self.reader.cache()
    }

    // Entities now.

    /// Current entities by ref, absent ones left out (a batch: transports that resolve many refs
    /// at once ask here once).
    #[tracing::instrument(skip_all, fields(principal = %principal, refs = refs.len()))]
    pub async fn entities(
        &self,
        principal: &Principal,
        refs: &[EntityRef],
    ) -> Result<HashMap<EntityRef, Arc<EntityRow>>> {
        let _ = principal;
        Ok(self.reader.entities(refs).await?)
    }

    /// What the entity cache holds of `refs`, without reading anything: the rows found, and the
    /// refs to ask [`Catalog::load_entities`] for. Transports that batch their reads (GraphQL's
    /// data loaders wait a moment to gather keys) answer cache hits at once this way.
    pub fn cached_entities(
        &self,
        principal: &Principal,
        refs: &[EntityRef],
    ) -> (HashMap<EntityRef, Arc<EntityRow>>, Vec<EntityRef>) {
        let _ = principal;
        self.reader.cached_entities(refs)
    }

    /// Current entities by ref that [`Catalog::cached_entities`] did not have, read from the
    /// read model (and kept in the cache).
    pub async fn load_entities(
        &self,
        principal: &Principal,
        refs: &[EntityRef],
    ) -> Result<HashMap<EntityRef, Arc<EntityRow>>> {
        let _ = principal;
        Ok(self.reader.load(refs).await?)
    }

    /// What the entity cache holds of an entity's outgoing relations (see
    /// [`Catalog::cached_entities`]).
    pub fn cached_outgoing(&self, principal: &Principal, entity_ref: &EntityRef) -> Option<Outgoing> {
        let _ = principal;
        self.reader.cache().relations(entity_ref)
    }

    /// One current entity.
    pub async fn entity(&self, principal: &Principal, entity_ref: &EntityRef) -> Result<Option<Arc<EntityRow>>> {
        Ok(self
            .entities(principal, std::slice::from_ref(entity_ref))
            .await?
            .remove(entity_ref))
    }

    /// The current outgoing relations of each of `refs` (a batch).
    #[tracing::instrument(skip_all, fields(principal = %principal, refs = refs.len()))]
    pub async fn outgoing(&self, principal: &Principal, refs: &[EntityRef]) -> Result<HashMap<EntityRef, Outgoing>> {
        let _ = principal;
        Ok(self.reader.outgoing(refs).await?)
    }

    /// Current relations pointing at `entity_ref`.
    pub async fn incoming(&self, principal: &Principal, entity_ref: &EntityRef) -> Result<Vec<RelationView>> {
        let _ = principal;
        Ok(self
            .reader
            .uncached()
            .relations(std::slice::from_ref(entity_ref), true)
            .await?)
    }

    /// One current entity read on its own, with what `include` asks for (its relations and the
    /// entities they point at), without waiting to be batched with other reads.
    #[tracing::instrument(skip_all, fields(principal = %principal))]
    pub async fn entity_with(
        &self,
        principal: &Principal,
        entity_ref: &EntityRef,
        include: Include,
    ) -> Result<Option<Single>> {
        let _ = principal;
        Ok(self.reader.one(entity_ref, include).await?)
    }

    /// A page of current entities, with what `include` asks for: their relations, the entities
    /// those point at, the number of matching entities.
    #[tracing::instrument(skip_all, fields(principal = %principal, limit = query.limit))]
    pub async fn list(
        &self,
        principal: &Principal,
        mut query: EntityQuery,
        include: Include,
    ) -> Result<Arc<CurrentPage>> {
        query.text = query.text.filter(|t| !t.trim().is_empty());
        Ok(self.reader.page(&query, include, &principal.to_string()).await?)
    }

    /// How many current entities match.
    pub async fn count(&self, principal: &Principal, filter: Option<&Filter>, text: Option<&str>) -> Result<i64> {
        let _ = principal;
        let text = text.filter(|t| !t.trim().is_empty());
        Ok(self.reader.uncached().count(filter, text).await?)
    }

    /// Value counts of a field over the entities matching a filter, most frequent first.
    pub async fn facets(
        &self,
        principal: &Principal,
        field: &str,
        filter: Option<&Filter>,
    ) -> Result<Arc<Vec<(String, i64)>>> {
        Ok(self
            .reader
            .facets(&field.to_lowercase(), filter, &principal.to_string())
            .await?)
    }

    // The past.

    /// An entity as it was at `at` (`None`: it did not exist then).
    pub async fn entity_at(
        &self,
        principal: &Principal,
        entity_ref: &EntityRef,
        at: &Instant,
    ) -> Result<Option<Value>> {
        let _ = principal;
        Ok(self.reader.uncached().entity_at(entity_ref, at.as_str()).await?)
    }

    /// The relations an entity declared at `at`, sorted by type and target.
    pub async fn relations_at(
        &self,
        principal: &Principal,
        entity_ref: &EntityRef,
        at: &Instant,
    ) -> Result<Vec<Relation>> {
        let _ = principal;
        let at = at.as_str();
        let mut out: Vec<Relation> = self
            .reader
            .uncached()
            .spans(entity_ref)
            .await?
            .into_iter()
            .filter(|s| {
                s.relation.source == *entity_ref
                    && s.valid_from.as_str() <= at
                    && s.valid_to.as_deref().is_none_or(|to| to > at)
            })
            .map(|s| s.relation)
            .collect();
        out.sort_by(|a, b| (a.kind.as_str(), &a.target).cmp(&(b.kind.as_str(), &b.target)));
        out.dedup_by(|a, b| a.kind == b.kind && a.target == b.target);
        Ok(out)
    }

    /// A page of entities as they were at `at`, in ref order after `after`, filtered on the
    /// documents of that instant (with the flattening the read model uses now). Search, other
    /// orderings and `relations.*` conditions are not available in the past.
    pub async fn list_at(&self, principal: &Principal, query: EntityQuery, at: &Instant) -> Result<PastPage> {
        let _ = principal;
        if query.text.as_ref().is_some_and(|t| !t.trim().is_empty()) {
            return Err(CatalogError::bad_input(
                "search is not available with asOf: use filters",
            ));
        }
        if query.order != Order::Ref {
            return Err(CatalogError::bad_input("lists asOf an instant are ordered by REF only"));
        }
        if query.filter.as_ref().is_some_and(Filter::mentions_relations) {
            return Err(CatalogError::bad_input(
                "relations.* filters are not available with asOf: ask the graph (owned, dependents, …) with asOf",
            ));
        }
        let (rows, has_more) = self
            .past_page(at, query.filter.as_ref(), query.after, query.limit, true)
            .await?;
        Ok(PastPage { rows, has_more })
    }

    /// How many entities matched at `at`. Counting the past reads the history of every subject.
    pub async fn count_at(&self, principal: &Principal, filter: Option<&Filter>, at: &Instant) -> Result<i64> {
        let _ = principal;
        let (all, _) = self.past_page(at, filter, None, usize::MAX, false).await?;
        Ok(all.len() as i64)
    }

    async fn past_page(
        &self,
        at: &Instant,
        filter: Option<&Filter>,
        mut after: Option<String>,
        limit: usize,
        keep_documents: bool,
    ) -> Result<(Vec<(EntityRef, Value)>, bool)> {
        let mut out = Vec::new();
        loop {
            let chunk = self
                .reader
                .uncached()
                .entities_at(at.as_str(), after.as_deref(), PAST_CHUNK)
                .await?;
            let exhausted = chunk.len() < PAST_CHUNK;
            for (subject, document) in chunk {
                let next = subject.clone();
                let Some(document) = document else {
                    after = Some(next);
                    continue;
                };
                after = Some(next);
                if filter.is_some_and(|f| !f.matches(&search::keys(&search::pairs(&document)))) {
                    continue;
                }
                let Ok(entity_ref) = EntityRef::from_canonical(subject) else {
                    continue;
                };
                if out.len() == limit {
                    return Ok((out, true));
                }
                out.push((entity_ref, if keep_documents { document } else { Value::Null }));
            }
            if exhausted {
                return Ok((out, false));
            }
        }
    }

    /// An entity's versions, newest first, before `before_sequence` when given.
    pub async fn history(
        &self,
        principal: &Principal,
        entity_ref: &EntityRef,
        limit: usize,
        before_sequence: Option<i64>,
    ) -> Result<Vec<HistoryRow>> {
        let _ = principal;
        Ok(self
            .reader
            .uncached()
            .history(entity_ref.as_str(), limit, before_sequence)
            .await?)
    }

    // The graph.

    /// Entities reached from `root` by a question, now or at `at`.
    pub async fn reached(
        &self,
        principal: &Principal,
        question: Question,
        root: &EntityRef,
        depth: usize,
        at: Option<&Instant>,
    ) -> Result<Vec<Reached>> {
        let _ = principal;
        let (reached, _) = self
            .graph
            .reached(question, root, depth, at.map(Instant::as_str))
            .await?;
        Ok(reached)
    }

    /// The shortest path between two entities within `depth` hops.
    pub async fn path(
        &self,
        principal: &Principal,
        from: &EntityRef,
        to: &EntityRef,
        depth: usize,
        at: Option<&Instant>,
    ) -> Result<Option<Vec<Hop>>> {
        let _ = principal;
        let (hops, _) = self.graph.path(from, to, depth, at.map(Instant::as_str)).await?;
        Ok(hops)
    }

    /// Dependency cycles.
    pub async fn cycles(&self, principal: &Principal, at: Option<&Instant>) -> Result<Vec<Vec<EntityRef>>> {
        let _ = principal;
        let (cycles, _) = self.graph.cycles(at.map(Instant::as_str)).await?;
        Ok(cycles)
    }

    // Providers' state.

    /// Pending rejections.
    pub async fn rejections(&self, principal: &Principal, by: RejectionsBy<'_>) -> Result<Vec<RejectionRow>> {
        let _ = principal;
        Ok(self.reader.uncached().rejections(by).await?)
    }

    /// Registered locations.
    pub async fn locations(&self, principal: &Principal) -> Result<Vec<LocationRow>> {
        let _ = principal;
        Ok(self.reader.uncached().locations().await?)
    }

    // Activity.

    /// A page of the activity feed, newest first: everything, or what one actor did, or what
    /// happened to one owner's entities.
    pub async fn activity(
        &self,
        principal: &Principal,
        actor: Option<String>,
        owner: Option<String>,
        before: Option<ActivityKey>,
        limit: usize,
    ) -> Result<(Vec<ActivityRow>, bool)> {
        let _ = principal;
        let query = ActivityQuery {
            actor: actor.map(|a| a.to_lowercase()),
            owner: owner.map(|o| o.to_lowercase()),
            before,
            limit,
        };
        Ok(self.activity.activity(&query).await?)
    }

    // Live changes.

    /// Changes from now on — or, given the cursor of a change received earlier, every change
    /// since then (read from the log, after a lost connection or a server restart), then the
    /// live ones — each delivered once the read model reflects it. A subscriber that falls
    /// behind gets one [`ErrorCode::Resync`] error, and its stream ends.
    pub async fn subscribe(
        &self,
        principal: &Principal,
        after: Option<&str>,
    ) -> Result<std::pin::Pin<Box<dyn Stream<Item = std::result::Result<Arc<Change>, CatalogError>> + Send>>> {
        let _ = principal;
        let Some(after) = after else {
            return Ok(Box::pin(futures::StreamExt::map(self.feed.subscribe(), resync)));
        };
        let after: Cursor = after.parse().map_err(CatalogError::bad_input)?;
        let Some(log) = &self.log else {
            return Err(CatalogError::bad_input("this server has no change feed to resume"));
        };
        // Until the feed has caught up with the log as it was at start-up, what lies below its
        // position may not be projected yet: wait for that (a restart's first seconds).
        let started = std::time::Instant::now();
        let start = loop {
            let start = self.feed.start();
            if start.live {
                break start;
            }
            if started.elapsed() > FEED_CATCH_UP {
                return Err(CatalogError::new(
                    ErrorCode::Unavailable,
                    "the change feed is still catching up with the log; try again shortly",
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let now = &start.cursor.0;
        if after.0.len() != now.len() {
            return Err(CatalogError::bad_input(format!(
                "the cursor has {} partitions and the feed {}: it is not a cursor of this catalog",
                after.0.len(),
                now.len()
            )));
        }
        if after.0.iter().zip(now).any(|(a, n)| a > n) {
            return Err(CatalogError::bad_input(
                "the cursor is ahead of the change feed: it is not a cursor of this catalog",
            ));
        }
        let behind: i64 = now.iter().zip(&after.0).map(|(n, a)| n - a).sum();
        if behind > MAX_RESUMED as i64 {
            return Err(CatalogError::new(
                ErrorCode::Resync,
                format!(
                    "{behind} changes happened since this cursor, more than a subscription resumes \
                     ({MAX_RESUMED}): read the current state and subscribe again"
                ),
            ));
        }
        // Every change in [after, now), partition by partition, each with the cursor that
        // resumes right after it; then the live ones, which all lie at or after `now`.
        let topic = self.topics.entities();
        let mut missed: Vec<std::result::Result<Arc<Change>, CatalogError>> = Vec::new();
        let mut cursor = after.0.clone();
        for (partition, (&from, &until)) in after.0.iter().zip(now).enumerate() {
            if from == until {
                continue;
            }
            let mut messages = Vec::new();
            read_range(log.as_ref(), &topic, partition as i32, from, until, |m| {
                messages.push(m)
            })
            .await
            .map_err(|e| CatalogError::unavailable("the event log is unavailable; try again shortly", e))?;
            if messages.first().is_none_or(|m| m.offset != from) {
                return Err(CatalogError::new(
                    ErrorCode::Resync,
                    "the changes since this cursor are no longer in the log: read the current state and \
                     subscribe again",
                ));
            }
            for message in messages {
                cursor[partition] = message.offset + 1;
                if let Ok(event) = EventView::from_bytes(&message.value) {
                    let mut change = Change::from_event(&event);
                    change.cursor = Cursor(cursor.clone()).to_string();
                    missed.push(Ok(Arc::new(change)));
                }
            }
        }
        let live = futures::StreamExt::map(start.changes, resync);
        Ok(Box::pin(futures::StreamExt::chain(futures::stream::iter(missed), live)))
    }

    // Commands.

    /// Registers a location (and reads it), unregisters one (the entities read only through it
    /// are deleted), or reads a registered one again now.
    pub async fn location(
        &self,
        principal: &Principal,
        command: LocationCommand,
        location: LocationRecord,
        wait: bool,
    ) -> Result<Outcome> {
        self.commands
            .location(principal, command.event_type(), location, wait)
            .await
    }

    /// Creates or replaces an entity (a Backstage descriptor as JSON).
    pub async fn apply_entity(&self, principal: &Principal, entity: Value, wait: bool) -> Result<Outcome> {
        self.commands.apply(principal, entity, wait).await
    }

    /// Deletes an entity that was applied through the API.
    pub async fn delete_entity(&self, principal: &Principal, entity_ref: &EntityRef, wait: bool) -> Result<Outcome> {
        self.commands.delete(principal, entity_ref, wait).await
    }

    /// Waits until the projectors have applied every position; false after `timeout`.
    pub async fn wait_projected(&self, positions: &[PositionRecord], timeout: Duration) -> bool {
        self.commands.wait_projected(positions, timeout).await
    }
}

/// A subscriber that fell behind, as clients are told.
fn resync(item: std::result::Result<Arc<Change>, Missed>) -> std::result::Result<Arc<Change>, CatalogError> {
    item.map_err(|Missed(missed)| {
        CatalogError::new(
            ErrorCode::Resync,
            format!(
                "this subscription fell {missed} changes behind and missed them: subscribe again with \
                 `after` set to the cursor of the last change received (or read the current state)"
            ),
        )
    })
}
