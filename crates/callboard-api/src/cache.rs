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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use callboard_readmodel::rows::EntityRow;

use crate::entity::Relation;

/// The cache. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct EntityCache {
    rows: moka::sync::Cache<String, Arc<EntityRow>>,
    relations: moka::sync::Cache<String, Arc<Vec<Relation>>>,
    /// ref → cached refs whose entry mentions it (as a relation target).
    mentions: Mutex<HashMap<String, HashSet<String>>>,
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
            mentions: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            live: AtomicBool::new(false),
            session: AtomicU64::new(0),
            capacity,
        }
    }

    /// A cached row, when the cache is live and holds it.
    pub fn row(&self, entity_ref: &str) -> Option<Arc<EntityRow>> {
        if !self.live.load(Ordering::SeqCst) {
            return None;
        }
        self.rows.get(entity_ref)
    }

    /// Cached outgoing relations, when the cache is live and holds them.
    pub fn relations(&self, entity_ref: &str) -> Option<Arc<Vec<Relation>>> {
        if !self.live.load(Ordering::SeqCst) {
            return None;
        }
        self.relations.get(entity_ref)
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
    pub fn insert_relations(&self, epoch: u64, relations: impl IntoIterator<Item = (String, Arc<Vec<Relation>>)>) {
        if !self.accepts(epoch) {
            return;
        }
        let relations: Vec<(String, Arc<Vec<Relation>>)> = relations.into_iter().collect();
        {
            let mut mentions = self.mentions.lock().unwrap_or_else(|e| e.into_inner());
            // The index only grows between invalidations (evicted entries leave their
            // mentions); past a bound, start over rather than grow without limit.
            if mentions.len() as u64 > self.capacity.saturating_mul(8) {
                mentions.clear();
                self.relations.invalidate_all();
            }
            for (source, rows) in &relations {
                for relation in rows.iter() {
                    mentions
                        .entry(relation.target_ref.clone())
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
    pub fn on_change<'a>(&self, entity_ref: &str, new_targets: impl IntoIterator<Item = &'a str>) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let mut stale: HashSet<String> = new_targets.into_iter().map(str::to_owned).collect();
        stale.insert(entity_ref.to_owned());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(entity_ref: &str) -> Arc<EntityRow> {
        Arc::new(EntityRow {
            entity_ref: entity_ref.into(),
            uid: "u".into(),
            kind: "component".into(),
            namespace: "default".into(),
            name: entity_ref.into(),
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

    fn relations(entity_ref: &str, targets: &[&str]) -> (String, Arc<Vec<Relation>>) {
        let rows = targets
            .iter()
            .map(|t| Relation {
                relation_type: "dependsOn".into(),
                source_ref: entity_ref.into(),
                target_ref: (*t).into(),
                dangling: true,
            })
            .collect();
        (entity_ref.into(), Arc::new(rows))
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
        assert!(cache.row("a").is_none());
        let session = cache.restart();
        cache.go_live(session);
        cache.insert_rows(cache.epoch(), [row("a")]);
        assert!(cache.row("a").is_some());
        let stale = session;
        cache.restart();
        assert!(cache.row("a").is_none());
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
        cache.on_change("y", ["v"]);
        assert!(cache.row("y").is_none(), "y itself");
        assert!(cache.relations("x").is_none(), "x relates to y");
        assert!(cache.relations("v").is_none(), "y relates to v now");
        assert!(
            cache.relations("z").is_some() && cache.row("z").is_some(),
            "z is unrelated"
        );
    }

    #[test]
    fn rows_read_before_an_invalidation_are_not_cached() {
        let cache = live();
        let before = cache.epoch();
        cache.on_change("a", []);
        cache.insert_rows(before, [row("a")]);
        cache.insert_relations(before, [relations("a", &[])]);
        assert!(cache.row("a").is_none() && cache.relations("a").is_none());
    }

    #[test]
    fn capacity_zero_caches_nothing() {
        let cache = EntityCache::new(0);
        cache.go_live(cache.restart());
        cache.insert_rows(cache.epoch(), [row("a")]);
        assert!(cache.row("a").is_none());
    }
}
