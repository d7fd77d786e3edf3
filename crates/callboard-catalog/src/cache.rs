//! Hot entities in memory: current rows and, separately, outgoing relations (a query that asks
//! for an owner's ref needs its row, not the hundreds of relations a group can have), kept in
//! moka and invalidated by the change feed.
//!
//! Correctness rests on three rules:
//! - **Invalidate before publishing.** The feed calls [`EntityCache::on_change`] after the read
//!   model reflects a change and before subscribers hear of it, so a subscriber that queries on
//!   notification never reads a cached old version.
//! - **Invalidate what a change can reach.** A change to `y` changes `y`'s row, the relations of
//!   every entity related to `y` (the inverse rows `y` declares, and `target_exists` of relations
//!   pointing at `y` when it appears or disappears). So it invalidates `y`, every cached entry
//!   that mentions `y` (a reverse index), and the targets of `y`'s new relations (entities that
//!   were not related to `y` before).
//! - **Never insert a value read before an invalidation.** Readers note the invalidation epoch
//!   before reading the database, and drop what they inserted if the epoch moved meanwhile.
//!
//! The cache is off until the feed is live (it has seen the log up to where it started and the
//! read model reflects that), and cleared whenever the feed restarts or the active generation
//! changes, since changes in between would not have been seen.
//!
//! [`CachedReader`] is the read side with the cache in front: the only way the service layer
//! reads current rows and outgoing relations, so every path fills and uses it the same way.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use callboard_model::EntityRef;
use callboard_projection::StoreError;
use callboard_readmodel::filter::Filter;
use callboard_readmodel::rows::EntityRow;
use callboard_readmodel::store::{CatalogReader, EntityQuery, RelationView};

/// Outgoing relations of one entity, shared.
pub type Outgoing = Arc<Vec<RelationView>>;

/// A cached answer to a whole question.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A page of entities.
    Page(Arc<CurrentPage>),
    /// Facet counts.
    Facets(Arc<Vec<(String, i64)>>),
}

impl Answer {
    /// Its weight in the cache: the entities it holds (facet counts weigh one per 64 values), at
    /// least one.
    fn weight(&self) -> u32 {
        let entities = match self {
            Answer::Page(page) => page.rows.len() + page.neighbours.as_ref().map_or(0, |n| n.len()),
            Answer::Facets(counts) => counts.len() / 64,
        };
        u32::try_from(entities).unwrap_or(u32::MAX).max(1)
    }
}

/// The cache. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct EntityCache {
    rows: moka::sync::Cache<EntityRef, Arc<EntityRow>>,
    relations: moka::sync::Cache<EntityRef, Outgoing>,
    /// Answers to whole questions (a page, facet counts), each valid only at the epoch it was
    /// read in: any change makes every answer unreachable, since one entity's change can move it
    /// into or out of any list, count or facet.
    answers: moka::future::Cache<(String, u64), Answer>,
    /// ref → cached refs whose entry mentions it (as a relation target).
    mentions: Mutex<HashMap<EntityRef, HashSet<EntityRef>>>,
    epoch: AtomicU64,
    live: AtomicBool,
    /// Bumped whenever the feed (re)starts, so a late "live" from an earlier start is ignored.
    session: AtomicU64,
    capacity: u64,
}

impl EntityCache {
    /// A cache of at most `capacity` entities (0 turns it off).
    pub fn new(capacity: u64) -> Self {
        Self {
            rows: moka::sync::Cache::builder().max_capacity(capacity).build(),
            relations: moka::sync::Cache::builder().max_capacity(capacity).build(),
            // Weighed by the entities they hold: an answer keeps its rows alive after the entity
            // cache lets them go, so answers together hold no more entities than it may.
            answers: moka::future::Cache::builder()
                .max_capacity(capacity)
                .weigher(|_, answer: &Answer| answer.weight())
                .build(),
            mentions: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            live: AtomicBool::new(false),
            session: AtomicU64::new(0),
            capacity,
        }
    }

    /// A cached row, when the cache is live and holds it.
    pub fn row(&self, entity_ref: &EntityRef) -> Option<Arc<EntityRow>> {
        if !self.live.load(Ordering::SeqCst) {
            return None;
        }
        self.rows.get(entity_ref)
    }

    /// Cached outgoing relations, when the cache is live and holds them.
    pub fn relations(&self, entity_ref: &EntityRef) -> Option<Outgoing> {
        if !self.live.load(Ordering::SeqCst) {
            return None;
        }
        self.relations.get(entity_ref)
    }

    /// The answer to `question`: kept from earlier at the current epoch, else `read` — once,
    /// however many ask the same question at the same moment (the others wait for its answer
    /// instead of each reading it: a popular question asked as the catalog changes would
    /// otherwise be read by every request in flight at once). Kept under the epoch noted before
    /// reading, so an answer read across a change is never found again.
    pub async fn answer(
        &self,
        question: String,
        read: impl Future<Output = Result<Answer, StoreError>>,
    ) -> Result<Answer, StoreError> {
        if self.capacity == 0 || !self.live.load(Ordering::SeqCst) {
            return read.await;
        }
        let key = (question, self.epoch());
        if let Some(hit) = self.answers.get(&key).await {
            metrics::counter!("callboard_api_answer_cache_hits_total").increment(1);
            return Ok(hit);
        }
        metrics::counter!("callboard_api_answer_cache_misses_total").increment(1);
        self.answers.try_get_with(key, read).await.map_err(shared_error)
    }

    /// The invalidation epoch: note it before reading the database, pass it to the inserts.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    fn accepts(&self, epoch: u64) -> bool {
        self.capacity > 0 && self.live.load(Ordering::SeqCst) && self.epoch() == epoch
    }

    /// Caches rows read from the database after `epoch` was noted; nothing when an invalidation
    /// happened since (the rows may predate it).
    pub fn insert_rows(&self, epoch: u64, rows: impl IntoIterator<Item = Arc<EntityRow>>) {
        if !self.accepts(epoch) {
            return;
        }
        let rows: Vec<Arc<EntityRow>> = rows.into_iter().collect();
        for row in &rows {
            self.rows.insert(row.entity_ref.clone(), row.clone());
        }
        // An invalidation that ran while inserting may have missed these entries.
        if self.epoch() != epoch {
            for row in &rows {
                self.rows.invalidate(&row.entity_ref);
            }
        }
    }

    /// Caches outgoing relations by source ref, read after `epoch` was noted.
    pub fn insert_relations(&self, epoch: u64, relations: impl IntoIterator<Item = (EntityRef, Outgoing)>) {
        if !self.accepts(epoch) {
            return;
        }
        let relations: Vec<(EntityRef, Outgoing)> = relations.into_iter().collect();
        {
            let mut mentions = self.mentions.lock().unwrap_or_else(|e| e.into_inner());
            // The index only grows between invalidations (evicted entries leave their
            // mentions); past a bound, start over rather than grow without limit.
            if mentions.len() as u64 > self.capacity.saturating_mul(8) {
                mentions.clear();
                self.relations.invalidate_all();
            }
            for (source, rows) in &relations {
                for view in rows.iter() {
                    mentions
                        .entry(view.relation.target.clone())
                        .or_default()
                        .insert(source.clone());
                }
            }
        }
        for (source, rows) in &relations {
            self.relations.insert(source.clone(), rows.clone());
        }
        if self.epoch() != epoch {
            for (source, _) in &relations {
                self.relations.invalidate(source);
            }
        }
    }

    /// Forgets what a change to `entity_ref` can reach; `new_targets` are the targets of the
    /// relations it declares now.
    pub fn on_change(&self, entity_ref: &EntityRef, new_targets: impl IntoIterator<Item = EntityRef>) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let mut stale: HashSet<EntityRef> = new_targets.into_iter().collect();
        stale.insert(entity_ref.clone());
        {
            let mut mentions = self.mentions.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(mentioning) = mentions.remove(entity_ref) {
                stale.extend(mentioning);
            }
        }
        for key in &stale {
            self.rows.invalidate(key);
            self.relations.invalidate(key);
        }
    }

    /// Forgets everything.
    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.mentions.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.rows.invalidate_all();
        self.relations.invalidate_all();
        self.answers.invalidate_all();
    }

    /// Whether an answer to `question` is kept at the current epoch (for tests).
    pub async fn holds_answer(&self, question: &str) -> bool {
        self.answers.contains_key(&(question.to_owned(), self.epoch()))
    }

    /// Turns the cache off and clears it (the feed (re)starts); returns the session to pass to
    /// [`Self::go_live`] once the feed is live.
    pub fn restart(&self) -> u64 {
        self.live.store(false, Ordering::SeqCst);
        self.clear();
        self.session.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Turns the cache on, unless the feed restarted since `session` began.
    pub fn go_live(&self, session: u64) {
        self.clear();
        if self.capacity > 0 && self.session.load(Ordering::SeqCst) == session {
            self.live.store(true, Ordering::SeqCst);
        }
    }

    /// Whether the cache is serving.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    /// How many rows are cached now (approximate; for metrics and tests).
    pub fn len(&self) -> u64 {
        self.rows.run_pending_tasks();
        self.rows.entry_count()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The read side with the entity cache in front: current rows and outgoing relations come from
/// the cache when it holds them and fill it when read; whatever reads rows goes through here.
#[derive(Debug, Clone)]
pub struct CachedReader {
    inner: Arc<dyn CatalogReader>,
    cache: Arc<EntityCache>,
}

impl CachedReader {
    /// `inner` behind `cache`.
    pub fn new(inner: Arc<dyn CatalogReader>, cache: Arc<EntityCache>) -> Self {
        Self { inner, cache }
    }

    /// The cache.
    pub fn cache(&self) -> &Arc<EntityCache> {
        &self.cache
    }

    /// The read side without the cache, for questions the cache does not answer.
    pub fn uncached(&self) -> &dyn CatalogReader {
        self.inner.as_ref()
    }

    /// The cached rows of `refs`, and the refs not cached.
    pub fn cached_entities(&self, refs: &[EntityRef]) -> (HashMap<EntityRef, Arc<EntityRow>>, Vec<EntityRef>) {
        let (found, missing) = split(refs, |r| self.cache.row(r));
        if self.cache.is_live() {
            metrics::counter!("callboard_api_entity_cache_hits_total").increment(found.len() as u64);
            metrics::counter!("callboard_api_entity_cache_misses_total").increment(missing.len() as u64);
        }
        (found, missing)
    }

    /// Current rows by ref (absent ones left out): cached ones, the rest in one read.
    pub async fn entities(&self, refs: &[EntityRef]) -> Result<HashMap<EntityRef, Arc<EntityRow>>, StoreError> {
        let (mut found, missing) = self.cached_entities(refs);
        found.extend(self.load(&missing).await?);
        Ok(found)
    }

    /// Current rows by ref read from the store (the cache was asked already), into the cache.
    pub async fn load(&self, refs: &[EntityRef]) -> Result<HashMap<EntityRef, Arc<EntityRow>>, StoreError> {
        if refs.is_empty() {
            return Ok(HashMap::new());
        }
        let epoch = self.cache.epoch();
        let rows: Vec<Arc<EntityRow>> = self.inner.entities(refs).await?.into_iter().map(Arc::new).collect();
        self.cache.insert_rows(epoch, rows.iter().cloned());
        Ok(rows.into_iter().map(|row| (row.entity_ref.clone(), row)).collect())
    }

    /// Current outgoing relations of each of `refs` (empty for those without): cached ones, the
    /// rest in one read.
    pub async fn outgoing(&self, refs: &[EntityRef]) -> Result<HashMap<EntityRef, Outgoing>, StoreError> {
        let (mut found, missing) = split(refs, |r| self.cache.relations(r));
        if !missing.is_empty() {
            let epoch = self.cache.epoch();
            let mut read: HashMap<EntityRef, Vec<RelationView>> =
                missing.iter().map(|r| (r.clone(), Vec::new())).collect();
            for view in self.inner.relations(&missing, false).await? {
                read.entry(view.relation.source.clone()).or_default().push(view);
            }
            let read: Vec<(EntityRef, Outgoing)> = read.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
            self.cache.insert_relations(epoch, read.iter().cloned());
            found.extend(read);
        }
        Ok(found)
    }

    /// A page of entities, with what `include` asks for: their outgoing relations and the
    /// entities those point at (nodes resolve their relation fields from these without further
    /// reads; whatever is left out loads on demand), and the number of matching entities,
    /// counted while the page is read. At most three rounds of reads whatever the page size.
    /// Everything read goes into the cache: a page read whole is as good as entities read one by
    /// one.
    pub async fn page(
        &self,
        query: &EntityQuery,
        include: Include,
        asker: &str,
    ) -> Result<Arc<CurrentPage>, StoreError> {
        // Who asks is part of the question: once permissions apply, two principals' pages differ.
        let question = format!("page {asker} {include:?} {query:?}");
        let read = async { Ok(Answer::Page(self.read_page(query, include).await?)) };
        match self.cache.answer(question, read).await? {
            Answer::Page(page) => Ok(page),
            Answer::Facets(_) => Err(StoreError::Other("a page question answered with facets".into())),
        }
    }

    async fn read_page(&self, query: &EntityQuery, include: Include) -> Result<Arc<CurrentPage>, StoreError> {
        let epoch = self.cache.epoch();
        let count = async {
            match include.total {
                true => self
                    .inner
                    .count(query.filter.as_ref(), query.text.as_deref())
                    .await
                    .map(Some),
                false => Ok(None),
            }
        };
        let (page, total) = futures::try_join!(self.inner.list(query), count)?;
        let refs: Vec<EntityRef> = page.rows.iter().map(|(_, row)| row.entity_ref.clone()).collect();
        let rows: Vec<(String, Arc<EntityRow>)> =
            page.rows.into_iter().map(|(key, row)| (key, Arc::new(row))).collect();
        let mut outgoing: HashMap<EntityRef, Outgoing> = HashMap::new();
        let mut neighbours: HashMap<EntityRef, Arc<EntityRow>> = HashMap::new();
        if include.relations || include.neighbours {
            let (read, targets) = self.read_outgoing(&refs).await?;
            outgoing = read;
            if include.neighbours {
                // Owners, systems and APIs recur across pages: ask the cache first.
                neighbours = self.entities(&targets).await?;
            }
        }
        self.cache.insert_rows(
            epoch,
            rows.iter()
                .map(|(_, row)| row.clone())
                .chain(neighbours.values().cloned()),
        );
        self.cache
            .insert_relations(epoch, outgoing.iter().map(|(k, v)| (k.clone(), v.clone())));
        let page = Arc::new(CurrentPage {
            rows,
            outgoing,
            neighbours: include.neighbours.then(|| Arc::new(neighbours)),
            has_more: page.has_more,
            total,
        });
        Ok(page)
    }

    /// Value counts of `field` over the entities matching `filter`, most frequent first (kept
    /// until the catalog changes: counted from documents, they can take a while).
    pub async fn facets(
        &self,
        field: &str,
        filter: Option<&Filter>,
        asker: &str,
    ) -> Result<Arc<Vec<(String, i64)>>, StoreError> {
        let question = format!("facets {asker} {field} {filter:?}");
        let read = async { Ok(Answer::Facets(Arc::new(self.inner.facets(field, filter).await?))) };
        match self.cache.answer(question, read).await? {
            Answer::Facets(counts) => Ok(counts),
            Answer::Page(_) => Err(StoreError::Other("a facets question answered with a page".into())),
        }
    }

    /// One entity, read on its own (no batching window to wait for), with what `include` asks
    /// for: its row and outgoing relations (from the cache, or read at the same time), and the
    /// existing entities those point at.
    pub async fn one(&self, entity_ref: &EntityRef, include: Include) -> Result<Option<Single>, StoreError> {
        let refs = std::slice::from_ref(entity_ref);
        let epoch = self.cache.epoch();
        let row = async {
            match self.cache.row(entity_ref) {
                Some(row) => Ok(Some(row)),
                None => Ok::<_, StoreError>(self.load(refs).await?.remove(entity_ref)),
            }
        };
        let relations = async {
            if !(include.relations || include.neighbours) {
                return Ok(None);
            }
            if let Some(hit) = self.cache.relations(entity_ref) {
                return Ok(Some(hit));
            }
            let (mut read, _) = self.read_outgoing(refs).await?;
            self.cache
                .insert_relations(epoch, read.iter().map(|(k, v)| (k.clone(), v.clone())));
            Ok(read.remove(entity_ref))
        };
        let (row, relations) = futures::try_join!(row, relations)?;
        let Some(row) = row else { return Ok(None) };
        let mut neighbours = None;
        if include.neighbours
            && let Some(relations) = &relations
        {
            let mut targets: Vec<EntityRef> = relations
                .iter()
                .filter(|view| view.target_exists)
                .map(|view| view.relation.target.clone())
                .collect();
            targets.sort();
            targets.dedup();
            neighbours = Some(Arc::new(self.entities(&targets).await?));
        }
        Ok(Some(Single {
            row,
            relations,
            neighbours,
        }))
    }

    /// The outgoing relations of `refs` read from the store (empty for those without), and the
    /// existing targets, sorted.
    async fn read_outgoing(
        &self,
        refs: &[EntityRef],
    ) -> Result<(HashMap<EntityRef, Outgoing>, Vec<EntityRef>), StoreError> {
        let mut outgoing: HashMap<EntityRef, Vec<RelationView>> =
            refs.iter().map(|r| (r.clone(), Vec::new())).collect();
        let mut targets: Vec<EntityRef> = Vec::new();
        for view in self.inner.relations(refs, false).await? {
            if view.target_exists {
                targets.push(view.relation.target.clone());
            }
            outgoing.entry(view.relation.source.clone()).or_default().push(view);
        }
        targets.sort();
        targets.dedup();
        Ok((outgoing.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(), targets))
    }
}

/// What to read with entities besides their rows. Transports ask for what their answer needs: a
/// list of names needs no relations, a list with owners needs the owners' rows too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Include {
    /// Their outgoing relations.
    pub relations: bool,
    /// The existing entities their relations point at (implies `relations`).
    pub neighbours: bool,
    /// For a list: how many entities match across all pages.
    pub total: bool,
}

impl Include {
    /// Everything.
    pub const ALL: Include = Include {
        relations: true,
        neighbours: true,
        total: true,
    };
}

/// One entity with what [`Include`] asked for.
#[derive(Debug, Clone)]
pub struct Single {
    /// Its row.
    pub row: Arc<EntityRow>,
    /// Its outgoing relations, when asked for.
    pub relations: Option<Outgoing>,
    /// The existing entities those point at, when asked for.
    pub neighbours: Option<Arc<HashMap<EntityRef, Arc<EntityRow>>>>,
}

/// A page of current entities, with what their relation fields need.
#[derive(Debug, Clone, Default)]
pub struct CurrentPage {
    /// The rows, each with its sort key (for cursors).
    pub rows: Vec<(String, Arc<EntityRow>)>,
    /// The outgoing relations of every row.
    pub outgoing: HashMap<EntityRef, Outgoing>,
    /// The existing entities those relations point at, when asked for.
    pub neighbours: Option<Arc<HashMap<EntityRef, Arc<EntityRow>>>>,
    /// Whether more rows follow.
    pub has_more: bool,
    /// How many entities match across all pages, when asked for.
    pub total: Option<i64>,
}

/// An error one read gave every caller waiting for it, as each caller's own (same kind, so the
/// same code reaches clients; the original is the source).
fn shared_error(error: Arc<StoreError>) -> StoreError {
    match error.as_ref() {
        StoreError::Unavailable(_) => StoreError::Unavailable(Box::new(Shared(error))),
        StoreError::Database(_) => StoreError::Database(Box::new(Shared(error))),
        StoreError::Invalid(message) => StoreError::Invalid(message.clone()),
        StoreError::TooCostly(message) => StoreError::TooCostly(message.clone()),
        StoreError::Other(message) => StoreError::Other(message.clone()),
    }
}

/// A shared error, as the source of each waiter's own.
#[derive(Debug)]
struct Shared(Arc<StoreError>);

impl std::fmt::Display for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.chain())
    }
}

impl std::error::Error for Shared {}

/// What `cached` holds of `refs`, and the refs it does not hold.
fn split<V>(refs: &[EntityRef], cached: impl Fn(&EntityRef) -> Option<V>) -> (HashMap<EntityRef, V>, Vec<EntityRef>) {
    let mut found = HashMap::with_capacity(refs.len());
    let mut missing = Vec::new();
    for r in refs {
        match cached(r) {
            Some(hit) => {
                found.insert(r.clone(), hit);
            }
            None => missing.push(r.clone()),
        }
    }
    (found, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str) -> EntityRef {
        EntityRef::new("component", "default", name).expect("a ref")
    }

    fn row(name: &str) -> Arc<EntityRow> {
        Arc::new(EntityRow {
            entity_ref: r(name),
            uid: "u".into(),
            kind: "component".into(),
            namespace: "default".into(),
            name: name.into(),
            sequence: 1,
            content_hash: "h".into(),
            location_key: "l".into(),
            origin: "o".into(),
            created_at: "t".into(),
            updated_at: "t".into(),
            owner: None,
            title: None,
            spec_type: None,
            lifecycle: None,
            document: serde_json::Value::Null,
        })
    }

    fn relations(name: &str, targets: &[&str]) -> (EntityRef, Outgoing) {
        let rows = targets
            .iter()
            .map(|t| RelationView {
                relation: callboard_model::Relation {
                    kind: callboard_model::RelationType::DependsOn,
                    source: r(name),
                    target: r(t),
                },
                target_exists: false,
            })
            .collect();
        (r(name), Arc::new(rows))
    }

    fn live() -> EntityCache {
        let cache = EntityCache::new(100);
        cache.go_live(cache.restart());
        cache
    }

    #[test]
    fn off_until_live() {
        let cache = EntityCache::new(100);
        cache.insert_rows(cache.epoch(), [row("a")]);
        assert!(cache.row(&r("a")).is_none());
        let session = cache.restart();
        cache.go_live(session);
        cache.insert_rows(cache.epoch(), [row("a")]);
        assert!(cache.row(&r("a")).is_some());
        let stale = session;
        cache.restart();
        assert!(cache.row(&r("a")).is_none());
        cache.go_live(stale);
        assert!(!cache.is_live(), "a late go-live of an earlier start is ignored");
    }

    #[test]
    fn a_change_invalidates_the_entity_and_whoever_mentions_it() {
        let cache = live();
        cache.insert_rows(cache.epoch(), [row("x"), row("y"), row("z"), row("v")]);
        cache.insert_relations(
            cache.epoch(),
            [relations("x", &["y"]), relations("z", &["w"]), relations("v", &[])],
        );
        cache.on_change(&r("y"), [r("v")]);
        assert!(cache.row(&r("y")).is_none(), "y itself");
        assert!(cache.relations(&r("x")).is_none(), "x relates to y");
        assert!(cache.relations(&r("v")).is_none(), "y relates to v now");
        assert!(
            cache.relations(&r("z")).is_some() && cache.row(&r("z")).is_some(),
            "z is unrelated"
        );
    }

    #[test]
    fn rows_read_before_an_invalidation_are_not_cached() {
        let cache = live();
        let before = cache.epoch();
        cache.on_change(&r("a"), []);
        cache.insert_rows(before, [row("a")]);
        cache.insert_relations(before, [relations("a", &[])]);
        assert!(cache.row(&r("a")).is_none() && cache.relations(&r("a")).is_none());
    }

    #[tokio::test]
    async fn an_answer_lasts_until_any_change_and_is_read_once() {
        let cache = live();
        let reads = std::sync::atomic::AtomicUsize::new(0);
        let read = || async {
            reads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            Ok(Answer::Facets(Arc::new(vec![("service".into(), 3)])))
        };
        let ask = || cache.answer("q".into(), read());
        let (a, b, c) = tokio::join!(ask(), ask(), ask());
        assert!(a.is_ok() && b.is_ok() && c.is_ok());
        assert_eq!(reads.load(Ordering::SeqCst), 1, "asked at once, read once");
        ask().await.expect("an answer");
        assert_eq!(reads.load(Ordering::SeqCst), 1, "asked again before any change");
        cache.on_change(&r("unrelated"), []);
        assert!(!cache.holds_answer("q").await, "any change can move any answer");
        ask().await.expect("an answer");
        assert_eq!(reads.load(Ordering::SeqCst), 2, "read again after a change");
        let session = cache.restart();
        ask().await.expect("an answer");
        ask().await.expect("an answer");
        assert_eq!(
            reads.load(Ordering::SeqCst),
            4,
            "nothing is kept while the feed restarts"
        );
        cache.go_live(session);
        let failed = cache
            .answer("bad".into(), async { Err(StoreError::TooCostly("narrow it".into())) })
            .await;
        assert!(
            matches!(failed, Err(StoreError::TooCostly(_))),
            "errors keep their kind"
        );
        assert!(!cache.holds_answer("bad").await, "errors are not kept");
    }

    #[test]
    fn capacity_zero_caches_nothing() {
        let cache = EntityCache::new(0);
        cache.go_live(cache.restart());
        cache.insert_rows(cache.epoch(), [row("a")]);
        assert!(cache.row(&r("a")).is_none());
    }
}
