//! The embedded read model: the rows of `callboard-readmodel` in an SQLite file.
//!
//! Each generation's tables carry the prefix `g<n>_`; the `read_model` table names the active
//! one. Filter keys (hashed into words) and the search text live in one FTS5 index keyed by the
//! entity row's id, so a filter or a search is an index lookup; an entity's document is stored once,
//! in the history row of its current version; its relations are packed in its row (and in each
//! history row), found from their other ends through the same index; counted facets are kept in a
//! table.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use callboard_readmodel::filter::{Filter, Resolved};
use callboard_readmodel::project::{Changes, Current, EntityWrite, Loaded, counted_facet_key, stored_document};
use callboard_readmodel::relations::{self, Version};
use callboard_readmodel::rows::{EntityRow, HistoryRow, LocationRow, RejectionRow, SpanRow};
use callboard_readmodel::search::{self, KeyPlan};
use callboard_readmodel::store::{
    CatalogReader, EntityPage, EntityQuery, Generation, Order, PackedRelations, ReadStore, RejectionsBy, RelationView,
    StoreError, template_statements,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{AssertSqlSafe, QueryBuilder, Row, Sqlite, SqlitePool};

/// The read model in an SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

fn db(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(e.to_string())
        }
        other => StoreError::Other(other.to_string()),
    }
}

/// Migrations of the registry tables (`migrations/sqlite`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// The tables of one generation; `{p}` is the prefix.
const SCHEMA: &str = include_str!("../../../migrations/templates/sqlite-generation.sql");

/// The identity of [`SCHEMA`], kept in each generation's `meta`.
fn layout() -> i64 {
    search::key_hash64(SCHEMA)
}

/// Tables (and their ordering columns) compared by checksums.
const CHECKED: [(&str, &str, &str); 6] = [
    (
        "entities",
        "entity_ref, uid, kind, namespace, name, sequence, content_hash, location_key, origin, created_at, updated_at, owner, title, spec_type, lifecycle, relations",
        "entity_ref",
    ),
    (
        "history",
        "subject, sequence, event_id, event_type, time, source, actor, causation, uid, entity, relations, diff, detail",
        "subject, sequence",
    ),
    (
        "rejections",
        "subject, entity_ref, location, origin, document_index, problems, conflicts_with, time, sequence",
        "subject",
    ),
    ("facets", "key, value, count", "key, value"),
    (
        "locations",
        "key, location_type, target, id, entity_ref, registered_at",
        "key",
    ),
    (
        "positions",
        "grp, topic, partition, offset, event_time",
        "grp, topic, partition",
    ),
];

fn prefix(generation: Generation) -> String {
    format!("g{}_", generation.0)
}

/// A statement for a generation: the prefix is an integer we format, never input.
fn sql(generation: Generation, template: &str) -> AssertSqlSafe<String> {
    AssertSqlSafe(template.replace("{p}", &prefix(generation)))
}

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

/// The stored columns of an entity row.
const ENTITY_COLUMNS: &str = "entity_ref, uid, kind, namespace, name, sequence, content_hash, location_key, origin, created_at, updated_at, owner, title, spec_type, lifecycle, relations";

/// What entity reads select, from [`ENTITY_FROM`]: the row and its current version's document.
const ENTITY_SELECT: &str = "e.entity_ref, e.uid, e.kind, e.namespace, e.name, e.sequence, e.content_hash, e.location_key, e.origin, e.created_at, e.updated_at, e.owner, e.title, e.spec_type, e.lifecycle, h.entity as document";

/// Entity rows joined to the history row holding their document.
const ENTITY_FROM: &str = "{p}entities e join {p}history h on h.subject = e.entity_ref and h.sequence = e.sequence";

/// An entity row as read, its document with its uid put back.
fn entity_row(row: &SqliteRow) -> Result<EntityRow, StoreError> {
    let document: Option<String> = row.try_get("document").map_err(db)?;
    let uid: String = row.try_get("uid").map_err(db)?;
    Ok(EntityRow {
        entity_ref: row.try_get("entity_ref").map_err(db)?,
        document: document.map_or(Value::Null, |d| stored_document(&d, &uid)),
        uid,
        kind: row.try_get("kind").map_err(db)?,
        namespace: row.try_get("namespace").map_err(db)?,
        name: row.try_get("name").map_err(db)?,
        sequence: row.try_get("sequence").map_err(db)?,
        content_hash: row.try_get("content_hash").map_err(db)?,
        location_key: row.try_get("location_key").map_err(db)?,
        origin: row.try_get("origin").map_err(db)?,
        created_at: row.try_get("created_at").map_err(db)?,
        updated_at: row.try_get("updated_at").map_err(db)?,
        owner: row.try_get("owner").map_err(db)?,
        title: row.try_get("title").map_err(db)?,
        spec_type: row.try_get("spec_type").map_err(db)?,
        lifecycle: row.try_get("lifecycle").map_err(db)?,
    })
}

/// The FTS5 words of an entity's filter keys.
fn key_words(entity: &EntityWrite) -> String {
    let mut out = String::with_capacity(entity.keys.len() * 15);
    for (i, hash) in entity.keys.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        search::push_hash_token(&mut out, *hash);
    }
    out
}

impl SqliteStore {
    /// Opens (creating if needed) the read model at `path`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Other(format!("cannot create {}: {e}", parent.display())))?;
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(db)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // The read model can always be rebuilt from the log: NORMAL is durable across a
            // process crash, which is all a projection needs.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            // Projection inserts land all over the relation and history B-trees: with SQLite's
            // default 2 MiB page cache nearly every insert re-read pages through a system call
            // (45 s for 100,000 entities, half of it in the kernel). A larger cache and
            // memory-mapped reads keep the hot pages close.
            .pragma("cache_size", "-65536")
            .pragma("mmap_size", "4294967296")
            .pragma("temp_store", "memory")
            // Checkpoint every 64 MiB of WAL rather than every 4 MiB: a page changed by several
            // batches in a row is then copied into the database once.
            .pragma("wal_autocheckpoint", "16384");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(db)?;
        Ok(Self { pool })
    }

    /// Creates a generation's tables if missing (and, with `readers`, the indexes only readers
    /// need); tells whether they have the current layout.
    async fn create_tables(&self, generation: Generation, readers: bool) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let existed: bool = sqlx::query(sql(
            generation,
            "select count(*) > 0 from sqlite_master where name = '{p}meta'",
        ))
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?
        .get(0);
        let (tables, indexes) = template_statements(SCHEMA);
        let wanted = if readers { &indexes[..] } else { &[] };
        for statement in tables.iter().chain(wanted) {
            sqlx::query(sql(generation, statement))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        // The layout these tables were built with (tables from before layouts were recorded have
        // none): a generation built from another version of the template is rebuilt rather than
        // written with statements that no longer fit it.
        if !existed {
            sqlx::query(sql(generation, "insert into {p}meta (key, value) values ('layout', ?)"))
                .bind(layout())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let built: Option<i64> = sqlx::query(sql(generation, "select value from {p}meta where key = 'layout'"))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .map(|row| row.get(0));
        tx.commit().await.map_err(db)?;
        Ok(built == Some(layout()))
    }

    async fn reader_generation(&self) -> Result<Generation, StoreError> {
        self.active().await
    }

    /// Which of `refs` are entities now.
    async fn existing(&self, g: Generation, refs: &[String]) -> Result<HashSet<String>, StoreError> {
        let mut out = HashSet::new();
        for chunk in refs.chunks(10_000) {
            let rows = sqlx::query(sql(
                g,
                "select entity_ref from {p}entities where entity_ref in (select value from json_each(?))",
            ))
            .bind(json_list(chunk))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            out.extend(rows.into_iter().map(|r| r.get::<String, _>(0)));
        }
        Ok(out)
    }
}

#[async_trait]
impl PackedRelations for SqliteStore {
    async fn relation_candidates(&self, g: Generation, refs: &[String]) -> Result<Vec<(String, String)>, StoreError> {
        let mut out: Vec<(String, String)> = Vec::new();
        for chunk in refs.chunks(500) {
            let own = sqlx::query(sql(
                g,
                "select entity_ref, relations from {p}entities where entity_ref in (select value from json_each(?))",
            ))
            .bind(json_list(chunk))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            let words: Vec<String> = chunk
                .iter()
                .map(|r| search::key_token(&search::endpoint_key(r)))
                .collect();
            let others = sqlx::query(sql(
                g,
                "select entity_ref, relations from {p}entities where id in (select rowid from {p}fts where {p}fts match ?)",
            ))
            .bind(format!("keys : ({})", words.join(" OR ")))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            out.extend(own.into_iter().chain(others).map(|r| (r.get(0), r.get(1))));
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn packed_relations(&self, g: Generation) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(sql(g, "select entity_ref, relations from {p}entities"))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

#[async_trait]
impl ReadStore for SqliteStore {
    async fn prepare(&self) -> Result<Generation, StoreError> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Other(format!("migrations failed: {e}")))?;
        let generation = self.active().await?;
        if self.create_tables(generation, true).await? {
            return Ok(generation);
        }
        // Built by a version of Callboard with other tables: start a fresh generation, which the
        // projector fills from the start of the log (positions live in the generation).
        tracing::warn!(
            generation = generation.0,
            "the read model was built with another table layout; rebuilding it from the log"
        );
        let fresh = self.create_generation().await?;
        self.activate(fresh).await?;
        self.drop_generation(generation).await?;
        Ok(fresh)
    }

    async fn active(&self) -> Result<Generation, StoreError> {
        let row = sqlx::query("select active from read_model where name = 'catalog'")
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        Ok(Generation(row.get(0)))
    }

    async fn create_generation(&self) -> Result<Generation, StoreError> {
        let row = sqlx::query("update read_model set next = next + 1 where name = 'catalog' returning next - 1")
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        let generation = Generation(row.get(0));
        self.drop_generation(generation).await?;
        self.create_tables(generation, false).await?;
        Ok(generation)
    }

    async fn activate(&self, generation: Generation) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("begin immediate").await.map_err(db)?;
        for statement in template_statements(SCHEMA).1 {
            sqlx::query(sql(generation, &statement))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        sqlx::query("update read_model set active = ? where name = 'catalog'")
            .bind(generation.0)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn drop_generation(&self, generation: Generation) -> Result<(), StoreError> {
        for table in [
            "entities",
            "fts",
            "history",
            "rejections",
            "facets",
            "locations",
            "positions",
            "meta",
        ] {
            let statement = format!("drop table if exists {{p}}{table}");
            sqlx::query(sql(generation, &statement))
                .execute(&self.pool)
                .await
                .map_err(db)?;
        }
        Ok(())
    }

    async fn load(&self, generation: Generation, subjects: &[String]) -> Result<Loaded, StoreError> {
        let mut loaded = Loaded::default();
        if subjects.is_empty() {
            return Ok(loaded);
        }
        let list = json_list(subjects);
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let rows = sqlx::query(sql(generation, "select subject, max(sequence) from {p}history where subject in (select value from json_each(?)) group by subject"))
            .bind(&list)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        for row in rows {
            loaded.applied.insert(row.get(0), row.get(1));
        }
        let rows = sqlx::query(sql(
            generation,
            "select e.entity_ref, e.uid, e.created_at, e.relations, h.entity from {p}entities e
             join {p}history h on h.subject = e.entity_ref and h.sequence = e.sequence
             where e.entity_ref in (select value from json_each(?))",
        ))
        .bind(&list)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        for row in rows {
            loaded.entities.insert(
                row.get(0),
                Current {
                    uid: row.get(1),
                    created_at: row.get(2),
                    relations: row.get(3),
                    document: row.get::<Option<String>, _>(4).unwrap_or_default(),
                },
            );
        }
        let rows = sqlx::query(sql(
            generation,
            "select subject from {p}rejections where subject in (select value from json_each(?))",
        ))
        .bind(&list)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        loaded.rejections = rows.into_iter().map(|r| r.get(0)).collect();
        Ok(loaded)
    }

    async fn write(&self, generation: Generation, group: &str, changes: Changes) -> Result<(), StoreError> {
        let p = prefix(generation);
        let Changes {
            history,
            entity_upserts,
            entity_deletes,
            rejection_upserts,
            rejection_deletes,
            facet_deltas,
            location_upserts,
            location_deletes,
            positions,
            last_times,
            relations_changed,
            ..
        } = changes;
        let mut tx = self.pool.begin_with("begin immediate").await.map_err(db)?;
        // Rows are bound by value: sqlx keeps a bound `String` as it is, where a borrowed one is
        // copied (documents and search text were a twentieth of a projection's time, copied).
        let mut history = history.into_iter().peekable();
        while history.peek().is_some() {
            let mut insert = QueryBuilder::<Sqlite>::new(format!(
                "insert into {p}history (subject, sequence, event_id, event_type, time, source, actor, causation, uid, entity, relations, diff, detail) "
            ));
            insert.push_values(history.by_ref().take(2_000), |mut b, h| {
                b.push_bind(h.subject)
                    .push_bind(h.sequence)
                    .push_bind(h.event_id)
                    .push_bind(h.event_type)
                    .push_bind(h.time)
                    .push_bind(h.source)
                    .push_bind(h.actor)
                    .push_bind(h.causation)
                    .push_bind(h.uid)
                    .push_bind(h.entity)
                    .push_bind(h.relations)
                    .push_bind(h.diff)
                    .push_bind(h.detail);
            });
            insert.push(" on conflict (subject, sequence) do nothing");
            insert.build().execute(&mut *tx).await.map_err(db)?;
        }
        // Full-text rows to delete (of deleted and replaced entity rows) and to insert (row id,
        // text, key words), written last (see below).
        let mut index_gone: Vec<i64> = Vec::new();
        let mut index_new: Vec<(i64, String, String)> = Vec::with_capacity(entity_upserts.len());
        if !entity_deletes.is_empty() {
            let rows = sqlx::query(sql(
                generation,
                "delete from {p}entities where entity_ref in (select value from json_each(?)) returning id",
            ))
            .bind(json_list(&entity_deletes))
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
            index_gone.extend(rows.into_iter().map(|r| r.get::<i64, _>(0)));
        }
        let mut entities = entity_upserts.into_iter().peekable();
        while entities.peek().is_some() {
            // Per row of the chunk: its ref, whether it replaces a row, its text and key words.
            let mut indexed: Vec<(String, bool, String, String)> = Vec::with_capacity(1_000);
            let mut insert = QueryBuilder::<Sqlite>::new(format!("insert into {p}entities ({ENTITY_COLUMNS}) "));
            insert.push_values(entities.by_ref().take(1_000), |mut b, e| {
                let words = key_words(&e);
                indexed.push((e.entity_ref.clone(), e.replaces, e.text, words));
                b.push_bind(e.entity_ref)
                    .push_bind(e.uid)
                    .push_bind(e.kind)
                    .push_bind(e.namespace)
                    .push_bind(e.name)
                    .push_bind(e.sequence)
                    .push_bind(e.content_hash)
                    .push_bind(e.location_key)
                    .push_bind(e.origin)
                    .push_bind(e.created_at)
                    .push_bind(e.updated_at)
                    .push_bind(e.owner)
                    .push_bind(e.title)
                    .push_bind(e.spec_type)
                    .push_bind(e.lifecycle)
                    .push_bind(e.relations);
            });
            insert.push(format!(
                " on conflict (entity_ref) do update set uid = excluded.uid, kind = excluded.kind, namespace = excluded.namespace,
                  name = excluded.name, sequence = excluded.sequence, content_hash = excluded.content_hash,
                  location_key = excluded.location_key, origin = excluded.origin, created_at = excluded.created_at,
                  updated_at = excluded.updated_at, owner = excluded.owner, title = excluded.title, spec_type = excluded.spec_type,
                  lifecycle = excluded.lifecycle, relations = excluded.relations
                  where excluded.sequence > {p}entities.sequence
                  returning entity_ref, id"
            ));
            let ids: HashMap<String, i64> = insert
                .build()
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?
                .into_iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            // The index rows follow the entity rows' ids: a replaced row's go before its new ones.
            for (entity_ref, replaces, text, words) in indexed {
                if let Some(id) = ids.get(&entity_ref) {
                    if replaces {
                        index_gone.push(*id);
                    }
                    index_new.push((*id, text, words));
                }
            }
        }
        if !rejection_deletes.is_empty() {
            sqlx::query(sql(
                generation,
                "delete from {p}rejections where subject in (select value from json_each(?))",
            ))
            .bind(json_list(&rejection_deletes))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        for chunk in rejection_upserts.chunks(2_000) {
            let mut insert = QueryBuilder::<Sqlite>::new(format!(
                "insert or replace into {p}rejections (subject, entity_ref, location, origin, document_index, problems, conflicts_with, time, sequence) "
            ));
            insert.push_values(chunk, |mut b, r| {
                b.push_bind(&r.subject)
                    .push_bind(&r.entity_ref)
                    .push_bind(&r.location)
                    .push_bind(&r.origin)
                    .push_bind(r.document_index)
                    .push_bind(r.problems.to_string())
                    .push_bind(&r.conflicts_with)
                    .push_bind(&r.time)
                    .push_bind(r.sequence);
            });
            insert.build().execute(&mut *tx).await.map_err(db)?;
        }
        for chunk in facet_deltas.chunks(5_000) {
            let mut insert = QueryBuilder::<Sqlite>::new(format!("insert into {p}facets (key, value, count) "));
            insert.push_values(chunk, |mut b, f| {
                b.push_bind(&f.key).push_bind(&f.value).push_bind(f.delta);
            });
            insert.push(" on conflict (key, value) do update set count = count + excluded.count");
            insert.build().execute(&mut *tx).await.map_err(db)?;
        }
        if !facet_deltas.is_empty() {
            sqlx::query(sql(generation, "delete from {p}facets where count <= 0"))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        for location in &location_upserts {
            sqlx::query(sql(generation, "insert or replace into {p}locations (key, location_type, target, id, entity_ref, registered_at) values (?, ?, ?, ?, ?, ?)"))
                .bind(&location.key)
                .bind(&location.location_type)
                .bind(&location.target)
                .bind(&location.id)
                .bind(&location.entity_ref)
                .bind(&location.registered_at)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        for key in &location_deletes {
            sqlx::query(sql(generation, "delete from {p}locations where key = ?"))
                .bind(key)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let times: HashMap<(&str, i32), &str> = last_times
            .iter()
            .map(|(t, p, time)| ((t.as_str(), *p), time.as_str()))
            .collect();
        for (topic, position) in &positions {
            let time = times.get(&(topic.as_str(), position.partition)).copied().unwrap_or("");
            sqlx::query(sql(
                generation,
                "insert into {p}positions (grp, topic, partition, offset, event_time) values (?, ?, ?, ?, ?)
                 on conflict (grp, topic, partition) do update set offset = max({p}positions.offset, excluded.offset),
                 event_time = case when excluded.event_time = '' or excluded.offset < {p}positions.offset
                   then {p}positions.event_time else excluded.event_time end",
            ))
            .bind(group)
            .bind(topic)
            .bind(position.partition)
            .bind(position.offset)
            .bind(time)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        if relations_changed {
            sqlx::query(sql(
                generation,
                "update {p}meta set value = value + 1 where key = 'graph_version'",
            ))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        // The full-text index last, in as few statements as possible: FTS5 flushes its pending
        // entries to disk at the start of every later write statement of the transaction (a
        // savepoint), so written first and in chunks it made many small segments to merge.
        if !index_gone.is_empty() {
            let id_list = serde_json::to_string(&index_gone).unwrap_or_else(|_| "[]".into());
            sqlx::query(sql(
                generation,
                "delete from {p}fts where rowid in (select value from json_each(?))",
            ))
            .bind(&id_list)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        // Three parameters a row, under SQLite's limit of 32,766.
        let mut index_new = index_new.into_iter().peekable();
        while index_new.peek().is_some() {
            let mut index = QueryBuilder::<Sqlite>::new(format!("insert into {p}fts (rowid, text, keys) "));
            index.push_values(index_new.by_ref().take(10_000), |mut b, (id, text, words)| {
                b.push_bind(id).push_bind(text).push_bind(words);
            });
            index.build().execute(&mut *tx).await.map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn position(
        &self,
        generation: Generation,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(sql(
            generation,
            "select offset from {p}positions where grp = ? and topic = ? and partition = ?",
        ))
        .bind(group)
        .bind(topic)
        .bind(partition)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn positions(
        &self,
        generation: Generation,
    ) -> Result<BTreeMap<(String, String, i32), (i64, String)>, StoreError> {
        let rows = sqlx::query(sql(
            generation,
            "select grp, topic, partition, offset, event_time from {p}positions",
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|r| ((r.get(0), r.get(1), r.get(2)), (r.get(3), r.get(4))))
            .collect())
    }

    async fn checksums(&self, generation: Generation) -> Result<BTreeMap<String, String>, StoreError> {
        let mut out = BTreeMap::new();
        for (table, columns, order) in CHECKED {
            if table == "positions" {
                continue;
            }
            let statement = format!("select {columns} from {{p}}{table} order by {order}");
            let rows = sqlx::query(sql(generation, &statement))
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
            let mut hasher = Sha256::new();
            for row in &rows {
                for i in 0..row.len() {
                    let text: Option<String> = row
                        .try_get::<Option<String>, _>(i)
                        .or_else(|_| row.try_get::<Option<i64>, _>(i).map(|v| v.map(|n| n.to_string())))
                        .map_err(db)?;
                    hasher.update(text.as_deref().unwrap_or("\u{0}NULL").as_bytes());
                    hasher.update(b"\x01");
                }
                hasher.update(b"\n");
            }
            out.insert(
                table.to_owned(),
                format!("{} rows {}", rows.len(), hex::encode(hasher.finalize())),
            );
        }
        Ok(out)
    }
}

/// Appends the SQL of a filter to a query, with bound values.
fn push_filter(query: &mut QueryBuilder<Sqlite>, filter: &Resolved, p: &str) {
    match filter {
        Resolved::All(items) | Resolved::Any(items) if items.is_empty() => {
            query.push(if matches!(filter, Resolved::All(_)) {
                "1 = 1"
            } else {
                "1 = 0"
            });
        }
        Resolved::All(items) | Resolved::Any(items) => {
            let joiner = if matches!(filter, Resolved::All(_)) {
                " and "
            } else {
                " or "
            };
            query.push("(");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    query.push(joiner);
                }
                push_filter(query, item, p);
            }
            query.push(")");
        }
        Resolved::Not(inner) => {
            query.push("not (");
            push_filter(query, inner, p);
            query.push(")");
        }
        Resolved::Refs(refs) => {
            query.push("e.entity_ref in (select value from json_each(");
            query.push_bind(json_list(refs));
            query.push("))");
        }
        Resolved::Field { key, values } => match search::plan(key, values) {
            KeyPlan::Always => {
                query.push("1 = 1");
            }
            KeyPlan::Column(column, values) => {
                query.push(format!("e.{column} in (select value from json_each("));
                query.push_bind(json_list(&values));
                query.push("))");
            }
            KeyPlan::Hashes(hashes) => {
                let words: Vec<String> = hashes.into_iter().map(search::hash_token).collect();
                query.push(format!("e.id in (select rowid from {p}fts where {p}fts match "));
                query.push_bind(format!("keys : ({})", words.join(" OR ")));
                query.push(")");
            }
        },
    }
}

/// An FTS5 query matching every term as a prefix.
fn fts_query(text: &str) -> Option<String> {
    let terms: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(|t| format!("\"{}\"*", t.replace('"', "")))
        .collect();
    (!terms.is_empty()).then(|| format!("text : ({})", terms.join(" AND ")))
}

fn push_conditions(query: &mut QueryBuilder<Sqlite>, filter: Option<&Resolved>, text: Option<&str>, p: &str) {
    query.push(" where 1 = 1");
    if let Some(filter) = filter {
        query.push(" and ");
        push_filter(query, filter, p);
    }
    if let Some(fts) = text.and_then(fts_query) {
        query.push(format!(" and e.id in (select rowid from {p}fts where {p}fts match "));
        query.push_bind(fts);
        query.push(")");
    }
}

fn sort_key(order: Order, row: &EntityRow) -> String {
    match order {
        Order::Ref => row.entity_ref.clone(),
        Order::Name => format!("{}\u{0}{}", row.name, row.entity_ref),
        Order::UpdatedDesc => format!("{}\u{0}{}", row.updated_at, row.entity_ref),
    }
}

#[async_trait]
impl CatalogReader for SqliteStore {
    async fn entities(&self, refs: &[String]) -> Result<Vec<EntityRow>, StoreError> {
        if refs.is_empty() {
            return Ok(Vec::new());
        }
        let g = self.reader_generation().await?;
        let statement =
            format!("select {ENTITY_SELECT} from {ENTITY_FROM} where e.entity_ref in (select value from json_each(?))");
        let rows = sqlx::query(sql(g, &statement))
            .bind(json_list(refs))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(entity_row).collect()
    }

    async fn list(&self, query: &EntityQuery) -> Result<EntityPage, StoreError> {
        let g = self.reader_generation().await?;
        let p = prefix(g);
        let from = ENTITY_FROM.replace("{p}", &p);
        let filter = self.resolve(g, query.filter.as_ref()).await?;
        let mut q = QueryBuilder::<Sqlite>::new(format!("select {ENTITY_SELECT} from {from}"));
        push_conditions(&mut q, filter.as_ref(), query.text.as_deref(), &p);
        if let Some(after) = &query.after {
            match query.order {
                Order::Ref => {
                    q.push(" and e.entity_ref > ");
                    q.push_bind(after.clone());
                }
                Order::Name => {
                    let (name, entity_ref) = after
                        .split_once('\u{0}')
                        .ok_or_else(|| StoreError::Invalid("bad cursor".into()))?;
                    q.push(" and (e.name, e.entity_ref) > (");
                    q.push_bind(name.to_owned());
                    q.push(", ");
                    q.push_bind(entity_ref.to_owned());
                    q.push(")");
                }
                Order::UpdatedDesc => {
                    let (time, entity_ref) = after
                        .split_once('\u{0}')
                        .ok_or_else(|| StoreError::Invalid("bad cursor".into()))?;
                    q.push(" and (e.updated_at, e.entity_ref) < (");
                    q.push_bind(time.to_owned());
                    q.push(", ");
                    q.push_bind(entity_ref.to_owned());
                    q.push(")");
                }
            }
        }
        q.push(match query.order {
            Order::Ref => " order by e.entity_ref",
            Order::Name => " order by e.name, e.entity_ref",
            Order::UpdatedDesc => " order by e.updated_at desc, e.entity_ref desc",
        });
        q.push(" limit ");
        q.push_bind(query.limit as i64 + 1);
        let rows = q.build().fetch_all(&self.pool).await.map_err(db)?;
        let mut entities: Vec<EntityRow> = rows.iter().map(entity_row).collect::<Result<_, _>>()?;
        let has_more = entities.len() > query.limit;
        entities.truncate(query.limit);
        Ok(EntityPage {
            rows: entities.into_iter().map(|e| (sort_key(query.order, &e), e)).collect(),
            has_more,
        })
    }

    async fn count(&self, filter: Option<&Filter>, text: Option<&str>) -> Result<i64, StoreError> {
        let g = self.reader_generation().await?;
        let p = prefix(g);
        let filter = self.resolve(g, filter).await?;
        let mut q = QueryBuilder::<Sqlite>::new(format!("select count(*) from {p}entities e"));
        push_conditions(&mut q, filter.as_ref(), text, &p);
        let row = q.build().fetch_one(&self.pool).await.map_err(db)?;
        Ok(row.get(0))
    }

    async fn facets(&self, key: &str, filter: Option<&Filter>) -> Result<Vec<(String, i64)>, StoreError> {
        let g = self.reader_generation().await?;
        let key = key.to_lowercase();
        if let Some(stored) = counted_facet_key(&key, filter) {
            let rows = sqlx::query(sql(
                g,
                "select value, count from {p}facets where key = ? and count > 0 order by count desc, value",
            ))
            .bind(&stored)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            return Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect());
        }
        // Any other key, or a filtered set: count from the documents (original values).
        let p = prefix(g);
        let from = ENTITY_FROM.replace("{p}", &p);
        let filter = Resolved::having_key(self.resolve(g, filter).await?, &key);
        let mut q = QueryBuilder::<Sqlite>::new(format!("select h.entity as document, e.uid from {from}"));
        push_conditions(&mut q, Some(&filter), None, &p);
        let rows = q.build().fetch_all(&self.pool).await.map_err(db)?;
        let documents: Vec<(String, String)> = rows
            .into_iter()
            .filter_map(|row| Some((row.try_get::<Option<String>, _>(0).ok().flatten()?, row.get(1))))
            .collect();
        tokio::task::spawn_blocking(move || search::count_values(&documents, &key))
            .await
            .map_err(|e| StoreError::Other(e.to_string()))
    }

    async fn relations(&self, refs: &[String], incoming: bool) -> Result<Vec<RelationView>, StoreError> {
        if refs.is_empty() {
            return Ok(Vec::new());
        }
        let g = self.reader_generation().await?;
        let rows = self.relation_rows(g, refs, incoming).await?;
        let mut targets: Vec<String> = rows.iter().map(|r| r.target.clone()).collect();
        targets.sort();
        targets.dedup();
        let existing = self.existing(g, &targets).await?;
        Ok(rows
            .into_iter()
            .map(|row| RelationView {
                target_exists: existing.contains(&row.target),
                source: row.source,
                relation_type: row.relation_type,
                target: row.target,
            })
            .collect())
    }

    async fn all_relations(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let g = self.reader_generation().await?;
        self.all_rows(g).await
    }

    async fn relations_at(&self, time: &str) -> Result<Vec<(String, String, String)>, StoreError> {
        let g = self.reader_generation().await?;
        // SQLite takes the bare columns of an aggregate query from the row holding the max: each
        // subject's latest upsert or deletion by then.
        let rows = sqlx::query(sql(
            g,
            "select subject, event_type, relations, max(sequence) from {p}history
             where time <= ? and event_type in ('entity.upserted.v1', 'entity.deleted.v1') group by subject",
        ))
        .bind(time)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let versions: Vec<(String, Option<String>)> = rows
            .into_iter()
            .map(|r| (r.get(0), relations::of_history_row(r.get(1), r.get(2))))
            .collect();
        Ok(relations::at_instant(&versions))
    }

    async fn spans(&self, origin: &str) -> Result<Vec<SpanRow>, StoreError> {
        let g = self.reader_generation().await?;
        let rows = sqlx::query(sql(
            g,
            "select sequence, time, event_type, relations from {p}history
             where subject = ? and event_type in ('entity.upserted.v1', 'entity.deleted.v1') order by sequence",
        ))
        .bind(origin)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let versions: Vec<Version> = rows
            .into_iter()
            .map(|r| Version {
                sequence: r.get(0),
                time: r.get(1),
                relations: relations::of_history_row(r.get(2), r.get(3)),
            })
            .collect();
        Ok(relations::spans_from_versions(origin, &versions))
    }

    async fn history(
        &self,
        subject: &str,
        limit: usize,
        before_sequence: Option<i64>,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        let g = self.reader_generation().await?;
        let rows = sqlx::query(sql(
            g,
            "select subject, sequence, event_id, event_type, time, source, actor, causation, entity, diff, detail, uid from {p}history
             where subject = ? and sequence < ? order by sequence desc limit ?",
        ))
        .bind(subject)
        .bind(before_sequence.unwrap_or(i64::MAX))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let parse = |text: Option<String>| text.and_then(|t| serde_json::from_str(&t).ok());
        Ok(rows
            .into_iter()
            .map(|r| HistoryRow {
                subject: r.get(0),
                sequence: r.get(1),
                event_id: r.get(2),
                event_type: r.get(3),
                time: r.get(4),
                source: r.get(5),
                actor: r.get(6),
                causation: r.get(7),
                entity: r
                    .get::<Option<String>, _>(8)
                    .map(|text| stored_document(&text, &r.get::<Option<String>, _>(11).unwrap_or_default())),
                diff: parse(r.get(9)),
                detail: parse(r.get(10)),
            })
            .collect())
    }

    async fn entity_at(&self, entity_ref: &str, time: &str) -> Result<Option<Value>, StoreError> {
        let g = self.reader_generation().await?;
        let row = sqlx::query(sql(
            g,
            "select entity, uid from {p}history where subject = ? and time <= ?
             and event_type in ('entity.upserted.v1', 'entity.deleted.v1') order by sequence desc limit 1",
        ))
        .bind(entity_ref)
        .bind(time)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(row.and_then(|r| {
            let text: Option<String> = r.get(0);
            let uid: Option<String> = r.get(1);
            text.map(|t| stored_document(&t, &uid.unwrap_or_default()))
                .filter(|document| !document.is_null())
        }))
    }

    async fn entities_at(
        &self,
        time: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Option<Value>)>, StoreError> {
        let g = self.reader_generation().await?;
        // SQLite takes the bare columns of an aggregate query from the row holding the max.
        let rows = sqlx::query(sql(
            g,
            "select subject, event_type, entity, uid, max(sequence) from {p}history
             where subject > ? and time <= ? and event_type in ('entity.upserted.v1', 'entity.deleted.v1')
             group by subject order by subject limit ?",
        ))
        .bind(after.unwrap_or(""))
        .bind(time)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let entity: Option<String> = r.get(2);
                let uid: Option<String> = r.get(3);
                let document = (r.get::<String, _>(1) == "entity.upserted.v1")
                    .then(|| entity.map(|t| stored_document(&t, &uid.unwrap_or_default())))
                    .flatten()
                    .filter(|document| !document.is_null());
                (r.get(0), document)
            })
            .collect())
    }

    async fn rejections(&self, by: RejectionsBy<'_>) -> Result<Vec<RejectionRow>, StoreError> {
        let g = self.reader_generation().await?;
        let columns = "subject, entity_ref, location, origin, document_index, problems, conflicts_with, time, sequence";
        let (statement, value) = match by {
            RejectionsBy::Entity(r) => (
                format!("select {columns} from {{p}}rejections where entity_ref = ? order by subject"),
                Some(r),
            ),
            RejectionsBy::Location(l) => (
                format!("select {columns} from {{p}}rejections where location = ? order by subject"),
                Some(l),
            ),
            RejectionsBy::Origin(o) => (
                format!("select {columns} from {{p}}rejections where origin = ? order by subject"),
                Some(o),
            ),
            RejectionsBy::All => (
                format!("select {columns} from {{p}}rejections where ? is null order by subject"),
                None,
            ),
        };
        let rows = sqlx::query(sql(g, &statement))
            .bind(value)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|r| RejectionRow {
                subject: r.get(0),
                entity_ref: r.get(1),
                location: r.get(2),
                origin: r.get(3),
                document_index: r.get(4),
                problems: serde_json::from_str(&r.get::<String, _>(5)).unwrap_or(Value::Null),
                conflicts_with: r.get(6),
                time: r.get(7),
                sequence: r.get(8),
            })
            .collect())
    }

    async fn locations(&self) -> Result<Vec<LocationRow>, StoreError> {
        let g = self.reader_generation().await?;
        let rows = sqlx::query(sql(
            g,
            "select key, location_type, target, id, entity_ref, registered_at from {p}locations order by key",
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|r| LocationRow {
                key: r.get(0),
                location_type: r.get(1),
                target: r.get(2),
                id: r.get(3),
                entity_ref: r.get(4),
                registered_at: r.get(5),
            })
            .collect())
    }

    async fn graph_version(&self) -> Result<String, StoreError> {
        let g = self.reader_generation().await?;
        let rows = sqlx::query(sql(
            g,
            "select key, value from {p}meta where key in ('graph_epoch', 'graph_version')",
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let value = |name: &str| {
            rows.iter()
                .find(|r| r.get::<String, _>(0) == name)
                .map_or(0, |r| r.get::<i64, _>(1))
        };
        Ok(format!("{:x}.{}", value("graph_epoch"), value("graph_version")))
    }
}
