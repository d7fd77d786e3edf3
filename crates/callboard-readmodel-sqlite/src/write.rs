//! Writing a catalog batch's changes, one transaction per batch: many rows per statement,
//! the full-text index last. (Loading what a batch touches is the shared SQL's.)

use std::collections::HashMap;

use async_trait::async_trait;
use callboard_projection::{Batch, Generation, ProjectionStore, StoreError};
use callboard_readmodel::catalog::{Changes, EntityWrite, Loaded};
use callboard_readmodel::search;
use callboard_readmodel::sql::reader::load_catalog;
use sqlx::{AssertSqlSafe, QueryBuilder, Row, Sqlite};

use crate::{CATALOG, SqliteStore, db, query};

/// A catalog statement for a generation.
fn sql(generation: Generation, template: &str) -> AssertSqlSafe<String> {
    AssertSqlSafe(CATALOG.sql(generation, template))
}

/// The stored columns of an entity row.
const ENTITY_WRITE_COLUMNS: &str = "entity_ref, uid, kind, namespace, name, sequence, content_hash, location_key, origin, created_at, updated_at, owner, title, spec_type, lifecycle, relations";

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

#[async_trait]
impl ProjectionStore<Loaded, Changes> for SqliteStore {
    async fn load(&self, generation: Generation, subjects: &[String]) -> Result<Loaded, StoreError> {
        load_catalog(&self.tables, generation, subjects).await
    }

    async fn write(&self, batch: Batch<'_, Changes>) -> Result<(), StoreError> {
        let (generation, changes) = (batch.generation, batch.changes);
        let p = CATALOG.prefix(generation);
        let Changes {
            history,
            entity_upserts,
            entity_deletes,
            rejection_upserts,
            rejection_deletes,
            facet_deltas,
            location_upserts,
            location_deletes,
            relations_changed,
        } = changes;
        let mut tx = self.db.pool().begin_with("begin immediate").await.map_err(db)?;
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
            .bind(crate::json_list(&entity_deletes))
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
            index_gone.extend(rows.into_iter().map(|r| r.get::<i64, _>("id")));
        }
        let mut entities = entity_upserts.into_iter().peekable();
        while entities.peek().is_some() {
            // Per row of the chunk: its ref, whether it replaces a row, its text and key words.
            let mut indexed: Vec<(String, bool, String, String)> = Vec::with_capacity(1_000);
            let mut insert = QueryBuilder::<Sqlite>::new(format!("insert into {p}entities ({ENTITY_WRITE_COLUMNS}) "));
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
                .map(|r| (r.get("entity_ref"), r.get("id")))
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
            .bind(crate::json_list(&rejection_deletes))
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
        for statement in self
            .tables
            .position_statements(generation, batch.group, batch.positions)
        {
            query(statement).execute(&mut *tx).await.map_err(db)?;
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
}
