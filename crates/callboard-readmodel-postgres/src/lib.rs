//! The production read model: the rows of `callboard-readmodel` in PostgreSQL.
//!
//! Each generation's tables carry the prefix `g<n>_`; the `read_model` table names the active
//! one. Filter keys are 64-bit hashes in a `bigint[]` per entity with a GIN index (`&&`, `@>`),
//! full-text search a generated `tsvector` column with a GIN index, and counted facets are kept in
//! a table. An entity's document is stored once, in the history row of its current version; its
//! relations are packed in its row (and in each history row), found from their other ends through
//! endpoint keys among its filter keys. Every value is bound; only the generation prefix (a
//! number) is formatted into statements.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use callboard_readmodel::filter::{Filter, Resolved};
use callboard_readmodel::project::{Changes, Current, Loaded, counted_facet_key, stored_document};
use callboard_readmodel::relations::{self, Version};
use callboard_readmodel::rows::{EntityRow, HistoryRow, LocationRow, RejectionRow, SpanRow};
use callboard_readmodel::search::{self, KeyPlan};
use callboard_readmodel::store::{
    CatalogReader, EntityPage, EntityQuery, Generation, Order, PackedRelations, ReadStore, RejectionsBy, RelationView,
    StoreError, template_statements,
};
use futures::StreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, ConnectOptions, PgPool, Postgres, QueryBuilder, Row};

/// The read model in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

fn db(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(e.to_string())
        }
        other => StoreError::Other(other.to_string()),
    }
}

/// Migrations of the registry tables (`migrations/postgres`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// The tables of one generation; `{p}` is the prefix.
const SCHEMA: &str = include_str!("../../../migrations/templates/postgres-generation.sql");

/// The identity of [`SCHEMA`], kept in each generation's `meta`.
fn layout() -> i64 {
    search::key_hash64(SCHEMA)
}

/// Tables (and their ordering columns) compared by checksums.
const CHECKED: [(&str, &str, &str); 6] = [
    (
        "entities",
        "entity_ref, uid, kind, namespace, name, sequence, content_hash, location_key, origin, created_at, updated_at, owner, title, spec_type, lifecycle, relations, search_keys::text, search_text",
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
        "grp, topic, partition, \"offset\", event_time",
        "grp, topic, partition",
    ),
];

fn prefix(generation: Generation) -> String {
    format!("g{}_", generation.0)
}

/// A statement for a generation: the prefix is an integer we format, never input; `?`
/// placeholders become `$1`, `$2`, … (no statement here has a `?` inside a literal).
fn sql(generation: Generation, template: &str) -> AssertSqlSafe<String> {
    let text = template.replace("{p}", &prefix(generation));
    let mut out = String::with_capacity(text.len() + 8);
    let mut n = 0;
    for c in text.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    AssertSqlSafe(out)
}

/// A list parameter (`= any($n)` binds a `text[]`).
fn json_list(items: &[String]) -> Vec<String> {
    items.to_vec()
}

/// What entity reads select, from [`ENTITY_FROM`]: the row and its current version's document.
const ENTITY_SELECT: &str = "e.entity_ref, e.uid, e.kind, e.namespace, e.name, e.sequence, e.content_hash, e.location_key, e.origin, e.created_at, e.updated_at, e.owner, e.title, e.spec_type, e.lifecycle, h.entity as document";

/// Entity rows joined to the history row holding their document.
const ENTITY_FROM: &str = "{p}entities e join {p}history h on h.subject = e.entity_ref and h.sequence = e.sequence";

/// The array literal of a set of filter-key hashes.
fn key_array(keys: &[u64]) -> String {
    let mut out = String::with_capacity(keys.len() * 21 + 2);
    out.push('{');
    for (i, key) in keys.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&(*key as i64).to_string());
    }
    out.push('}');
    out
}

/// An entity row as read, its document with its uid put back.
fn entity_row(row: &PgRow) -> Result<EntityRow, StoreError> {
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

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://…`), creating the database when it does
    /// not exist yet.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(db)?
            .log_statements(tracing::log::LevelFilter::Trace)
            // A projection batch of thousands of rows legitimately takes a second or two while
            // catching up; sqlx's default (a warning with the whole statement past 1 s) would
            // flood the log of every replay.
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(10));
        let pool = match PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
        {
            Ok(pool) => pool,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {
                // 3D000: invalid_catalog_name — the database does not exist: create it.
                let name = options.get_database().unwrap_or("callboard").to_owned();
                if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(StoreError::Other(format!("will not create a database named {name:?}")));
                }
                let admin = PgPoolOptions::new()
                    .max_connections(1)
                    .connect_with(options.clone().database("postgres"))
                    .await
                    .map_err(db)?;
                match sqlx::query(AssertSqlSafe(format!("create database {name}")))
                    .execute(&admin)
                    .await
                {
                    Ok(_) => {}
                    // Another process created it at the same moment.
                    Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42P04" | "23505")) => {}
                    Err(e) => return Err(db(e)),
                }
                admin.close().await;
                PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await
                    .map_err(db)?
            }
            Err(e) => return Err(db(e)),
        };
        Ok(Self { pool })
    }

    /// The connection pool (for tests and administration).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates a generation's tables if missing (and, with `readers`, the indexes only readers
    /// need); tells whether they have the current layout.
    async fn create_tables(&self, generation: Generation, readers: bool) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // Concurrent projector processes may prepare at once: serialise schema changes.
        sqlx::query("select pg_advisory_xact_lock(8147001)")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let existed: bool = sqlx::query(sql(generation, "select to_regclass('{p}meta') is not null"))
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

    /// Which of `refs` are entities now.
    async fn existing(&self, g: Generation, refs: &[String]) -> Result<HashSet<String>, StoreError> {
        let rows = sqlx::query(sql(g, "select entity_ref from {p}entities where entity_ref = any(?)"))
            .bind(refs.to_vec())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    async fn reader_generation(&self) -> Result<Generation, StoreError> {
        self.active().await
    }
}

#[async_trait]
impl PackedRelations for PostgresStore {
    async fn relation_candidates(&self, g: Generation, refs: &[String]) -> Result<Vec<(String, String)>, StoreError> {
        let ends: Vec<i64> = refs
            .iter()
            .map(|r| search::key_hash64(&search::endpoint_key(r)))
            .collect();
        let rows = sqlx::query(sql(
            g,
            "select entity_ref, relations from {p}entities where entity_ref = any(?) or search_keys && ?",
        ))
        .bind(refs.to_vec())
        .bind(ends)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
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
impl ReadStore for PostgresStore {
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
        // The readers' indexes of a replayed generation are built here, two at a time on their
        // own connections: each build is one backend (one core), and builds of indexes of one
        // table do not block each other.
        let builds = template_statements(SCHEMA).1.into_iter().map(|statement| {
            let pool = self.pool.clone();
            async move {
                let started = std::time::Instant::now();
                let mut tx = pool.begin().await.map_err(db)?;
                // Index builds sort in memory up to this much (the server's default is 64 MB),
                // for this transaction only.
                sqlx::query("set local maintenance_work_mem = '256MB'")
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                sqlx::query(sql(generation, &statement))
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                tx.commit().await.map_err(db)?;
                tracing::debug!(%statement, took_ms = started.elapsed().as_millis() as u64, "readers' index built");
                Ok::<(), StoreError>(())
            }
        });
        futures::stream::iter(builds)
            .buffer_unordered(2)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<()>, StoreError>>()?;
        sqlx::query("update read_model set active = $1 where name = 'catalog'")
            .bind(generation.0)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn drop_generation(&self, generation: Generation) -> Result<(), StoreError> {
        for table in [
            "entities",
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
        let rows = sqlx::query(sql(
            generation,
            "select subject, max(sequence) from {p}history where subject = any(?) group by subject",
        ))
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
             where e.entity_ref = any(?)",
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
            "select subject from {p}rejections where subject = any(?)",
        ))
        .bind(&list)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        loaded.rejections = rows.into_iter().map(|r| r.get(0)).collect();
        Ok(loaded)
    }

    async fn write(&self, generation: Generation, group: &str, changes: Changes) -> Result<(), StoreError> {
        let changes = &changes;
        let p = prefix(generation);
        let mut tx = self.pool.begin().await.map_err(db)?;
        // Not waiting for the commit's WAL flush is safe here: the positions commit with the rows,
        // so a commit lost in a database crash is lost whole, and the projector applies those
        // events again from the stored positions. It takes a disk flush off every batch.
        sqlx::query("set local synchronous_commit = off")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        // Rows go in as one array per column through `unnest`: one small statement that the
        // connection prepares once, instead of a statement with thousands of parameters that
        // PostgreSQL parses and plans anew for every batch.
        if !changes.history.is_empty() {
            let h = &changes.history;
            sqlx::query(sql(
                generation,
                "insert into {p}history (subject, sequence, event_id, event_type, time, source, actor, causation, uid, entity, relations, diff, detail)
                 select * from unnest(?::text[], ?::int8[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[])
                 on conflict (subject, sequence) do nothing",
            ))
            .bind(h.iter().map(|r| r.subject.as_str()).collect::<Vec<_>>())
            .bind(h.iter().map(|r| r.sequence).collect::<Vec<_>>())
            .bind(h.iter().map(|r| r.event_id.as_str()).collect::<Vec<_>>())
            .bind(h.iter().map(|r| r.event_type.as_str()).collect::<Vec<_>>())
            .bind(h.iter().map(|r| r.time.as_str()).collect::<Vec<_>>())
            .bind(h.iter().map(|r| r.source.as_str()).collect::<Vec<_>>())
            .bind(h.iter().map(|r| r.actor.as_str()).collect::<Vec<_>>())
            .bind(h.iter().map(|r| r.causation.as_deref()).collect::<Vec<_>>())
            .bind(h.iter().map(|r| r.uid.as_deref()).collect::<Vec<_>>())
            .bind(h.iter().map(|r| r.entity.as_deref()).collect::<Vec<_>>())
            .bind(h.iter().map(|r| r.relations.as_deref()).collect::<Vec<_>>())
            .bind(h.iter().map(|r| r.diff.as_deref()).collect::<Vec<_>>())
            .bind(h.iter().map(|r| r.detail.as_deref()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        if !changes.entity_deletes.is_empty() {
            let list = json_list(&changes.entity_deletes);
            sqlx::query(sql(generation, "delete from {p}entities where entity_ref = any(?)"))
                .bind(&list)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        if !changes.entity_upserts.is_empty() {
            let e = &changes.entity_upserts;
            // Arrays of arrays must be rectangular in PostgreSQL, so each entity's key hashes
            // travel as one text (`{1,2,3}`, an array literal) and are cast back.
            let keys: Vec<String> = e.iter().map(|r| key_array(&r.keys)).collect();
            sqlx::query(sql(
                generation,
                "insert into {p}entities (entity_ref, uid, kind, namespace, name, sequence, content_hash, location_key, origin,
                   created_at, updated_at, owner, title, spec_type, lifecycle, relations, search_keys, search_text)
                 select r, u, k, n, nm, s, ch, lk, o, ca, ua, ow, ti, st, lc, rel,
                   keys::int8[], txt
                 from unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::int8[], ?::text[], ?::text[], ?::text[],
                   ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[])
                   as t(r, u, k, n, nm, s, ch, lk, o, ca, ua, ow, ti, st, lc, rel, keys, txt)
                 on conflict (entity_ref) do update set uid = excluded.uid, kind = excluded.kind, namespace = excluded.namespace,
                   name = excluded.name, sequence = excluded.sequence, content_hash = excluded.content_hash,
                   location_key = excluded.location_key, origin = excluded.origin, created_at = excluded.created_at,
                   updated_at = excluded.updated_at, owner = excluded.owner, title = excluded.title, spec_type = excluded.spec_type,
                   lifecycle = excluded.lifecycle, relations = excluded.relations, search_keys = excluded.search_keys,
                   search_text = excluded.search_text
                 where excluded.sequence > {p}entities.sequence",
            ))
            .bind(e.iter().map(|r| r.entity_ref.as_str()).collect::<Vec<_>>())
            .bind(e.iter().map(|r| r.uid.as_str()).collect::<Vec<_>>())
            .bind(e.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>())
            .bind(e.iter().map(|r| r.namespace.as_str()).collect::<Vec<_>>())
            .bind(e.iter().map(|r| r.name.as_str()).collect::<Vec<_>>())
            .bind(e.iter().map(|r| r.sequence).collect::<Vec<_>>())
            .bind(e.iter().map(|r| r.content_hash.as_str()).collect::<Vec<_>>())
            .bind(e.iter().map(|r| r.location_key.as_str()).collect::<Vec<_>>())
            .bind(e.iter().map(|r| r.origin.as_str()).collect::<Vec<_>>())
            .bind(e.iter().map(|r| r.created_at.as_str()).collect::<Vec<_>>())
            .bind(e.iter().map(|r| r.updated_at.as_str()).collect::<Vec<_>>())
            .bind(e.iter().map(|r| r.owner.as_deref()).collect::<Vec<_>>())
            .bind(e.iter().map(|r| r.title.as_deref()).collect::<Vec<_>>())
            .bind(e.iter().map(|r| r.spec_type.as_deref()).collect::<Vec<_>>())
            .bind(e.iter().map(|r| r.lifecycle.as_deref()).collect::<Vec<_>>())
            .bind(e.iter().map(|r| r.relations.as_str()).collect::<Vec<_>>())
            .bind(keys)
            .bind(e.iter().map(|r| r.text.as_str()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        if !changes.rejection_deletes.is_empty() {
            sqlx::query(sql(generation, "delete from {p}rejections where subject = any(?)"))
                .bind(json_list(&changes.rejection_deletes))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        for chunk in changes.rejection_upserts.chunks(2_000) {
            let mut insert = QueryBuilder::<Postgres>::new(format!(
                "insert into {p}rejections (subject, entity_ref, location, origin, document_index, problems, conflicts_with, time, sequence) "
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
            insert.push(
                " on conflict (subject) do update set entity_ref = excluded.entity_ref, location = excluded.location,
                  origin = excluded.origin, document_index = excluded.document_index, problems = excluded.problems,
                  conflicts_with = excluded.conflicts_with, time = excluded.time, sequence = excluded.sequence",
            );
            insert.build().execute(&mut *tx).await.map_err(db)?;
        }
        for chunk in changes.facet_deltas.chunks(5_000) {
            let mut insert = QueryBuilder::<Postgres>::new(format!("insert into {p}facets (key, value, count) "));
            insert.push_values(chunk, |mut b, f| {
                b.push_bind(&f.key).push_bind(&f.value).push_bind(f.delta);
            });
            insert.push(format!(
                " on conflict (key, value) do update set count = {p}facets.count + excluded.count"
            ));
            insert.build().execute(&mut *tx).await.map_err(db)?;
        }
        if !changes.facet_deltas.is_empty() {
            sqlx::query(sql(generation, "delete from {p}facets where count <= 0"))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        for location in &changes.location_upserts {
            sqlx::query(sql(generation, "insert into {p}locations (key, location_type, target, id, entity_ref, registered_at) values (?, ?, ?, ?, ?, ?)
                 on conflict (key) do update set location_type = excluded.location_type, target = excluded.target,
                 id = excluded.id, entity_ref = excluded.entity_ref, registered_at = excluded.registered_at"))
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
        for key in &changes.location_deletes {
            sqlx::query(sql(generation, "delete from {p}locations where key = ?"))
                .bind(key)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let times: HashMap<(&str, i32), &str> = changes
            .last_times
            .iter()
            .map(|(t, p, time)| ((t.as_str(), *p), time.as_str()))
            .collect();
        for (topic, position) in &changes.positions {
            let time = times.get(&(topic.as_str(), position.partition)).copied().unwrap_or("");
            sqlx::query(sql(
                generation,
                "insert into {p}positions (grp, topic, partition, \"offset\", event_time) values (?, ?, ?, ?, ?)
                 on conflict (grp, topic, partition) do update set \"offset\" = greatest({p}positions.\"offset\", excluded.\"offset\"),
                 event_time = case when excluded.event_time = '' or excluded.\"offset\" < {p}positions.\"offset\"
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
        if changes.relations_changed {
            sqlx::query(sql(
                generation,
                "update {p}meta set value = value + 1 where key = 'graph_version'",
            ))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    fn parallel_writes(&self) -> usize {
        // Each connection is one PostgreSQL backend, one core: a second write in flight keeps
        // the database busy while the first commits and the next batch is projected.
        2
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
            "select \"offset\" from {p}positions where grp = ? and topic = ? and partition = ?",
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
            "select grp, topic, partition, \"offset\", event_time from {p}positions",
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
                        .or_else(|_| row.try_get::<Option<i32>, _>(i).map(|v| v.map(|n| n.to_string())))
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
fn push_filter(query: &mut QueryBuilder<Postgres>, filter: &Resolved) {
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
                push_filter(query, item);
            }
            query.push(")");
        }
        Resolved::Not(inner) => {
            query.push("not (");
            push_filter(query, inner);
            query.push(")");
        }
        Resolved::Refs(refs) => {
            query.push("e.entity_ref = any(");
            query.push_bind(refs.clone());
            query.push(")");
        }
        Resolved::Field { key, values } => match search::plan(key, values) {
            KeyPlan::Always => {
                query.push("true");
            }
            KeyPlan::Column(column, values) => {
                query.push(format!("e.{column} = any("));
                query.push_bind(values);
                query.push(")");
            }
            KeyPlan::Hashes(hashes) => {
                // GIN-indexed: `&&` (any of these keys) on the entity's filter keys.
                query.push("e.search_keys && ");
                query.push_bind(hashes.into_iter().map(|h| h as i64).collect::<Vec<i64>>());
            }
        },
    }
}

/// A `tsquery` matching every term as a prefix (`pay & serv` → `pay:* & serv:*`).
fn fts_query(text: &str) -> Option<String> {
    let terms: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(|t| format!("{}:*", t.to_lowercase()))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" & "))
}

fn push_conditions(query: &mut QueryBuilder<Postgres>, filter: Option<&Resolved>, text: Option<&str>, p: &str) {
    query.push(" where 1 = 1");
    if let Some(filter) = filter {
        query.push(" and ");
        push_filter(query, filter);
    }
    if let Some(fts) = text.and_then(fts_query) {
        query.push(" and e.search_vector @@ to_tsquery('simple', ");
        query.push_bind(fts);
        query.push(")");
    }
    let _ = p;
}

fn sort_key(order: Order, row: &EntityRow) -> String {
    match order {
        Order::Ref => row.entity_ref.clone(),
        Order::Name => format!("{}\u{0}{}", row.name, row.entity_ref),
        Order::UpdatedDesc => format!("{}\u{0}{}", row.updated_at, row.entity_ref),
    }
}

#[async_trait]
impl CatalogReader for PostgresStore {
    async fn entities(&self, refs: &[String]) -> Result<Vec<EntityRow>, StoreError> {
        if refs.is_empty() {
            return Ok(Vec::new());
        }
        let g = self.reader_generation().await?;
        let statement = format!("select {ENTITY_SELECT} from {ENTITY_FROM} where e.entity_ref = any(?)");
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
        let filter = self.resolve(g, query.filter.as_ref()).await?;
        let from = ENTITY_FROM.replace("{p}", &p);
        let mut q = QueryBuilder::<Postgres>::new(format!("select {ENTITY_SELECT} from {from}"));
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
        let mut q = QueryBuilder::<Postgres>::new(format!("select count(*) from {p}entities e"));
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
        let filter = Resolved::having_key(self.resolve(g, filter).await?, &key);
        let from = ENTITY_FROM.replace("{p}", &p);
        let mut q = QueryBuilder::<Postgres>::new(format!("select h.entity, e.uid from {from}"));
        push_conditions(&mut q, Some(&filter), None, &p);
        let rows = q.build().fetch_all(&self.pool).await.map_err(db)?;
        let documents: Vec<(String, String)> = rows
            .into_iter()
            .filter_map(|row| Some((row.get::<Option<String>, _>(0)?, row.get(1))))
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
        // Each subject's latest upsert or deletion by then (the primary key walks subjects in
        // order, newest version first).
        let rows = sqlx::query(sql(
            g,
            "select distinct on (subject) subject, event_type, relations from {p}history
             where time <= ? and event_type in ('entity.upserted.v1', 'entity.deleted.v1')
             order by subject, sequence desc",
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
        // The primary key (subject, sequence) walks subjects in order, newest version first.
        let rows = sqlx::query(sql(
            g,
            "select distinct on (subject) subject, event_type, entity, uid from {p}history
             where subject > ? and time <= ? and event_type in ('entity.upserted.v1', 'entity.deleted.v1')
             order by subject, sequence desc limit ?",
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
                format!("select {columns} from {{p}}rejections where ?::text is null order by subject"),
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
