//! Writing a catalog batch's changes, one transaction per batch: one array per column through
//! `unnest`. (Loading what a batch touches is the shared SQL's.)

use async_trait::async_trait;
use callboard_projection::{Batch, Generation, ProjectionStore, StoreError};
use callboard_readmodel::catalog::{Changes, Loaded};
use callboard_readmodel::sql::reader::load_catalog;
use sqlx::{AssertSqlSafe, Postgres, QueryBuilder};

use crate::{CATALOG, PostgresStore, db, numbered, query};

/// A catalog statement for a generation, numbered for PostgreSQL.
fn sql(generation: Generation, template: &str) -> AssertSqlSafe<String> {
    numbered(&CATALOG.sql(generation, template))
}

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

#[async_trait]
impl ProjectionStore<Loaded, Changes> for PostgresStore {
    async fn load(&self, generation: Generation, subjects: &[String]) -> Result<Loaded, StoreError> {
        load_catalog(&self.tables, generation, subjects).await
    }

    async fn write(&self, batch: Batch<'_, Changes>) -> Result<(), StoreError> {
        let (generation, changes) = (batch.generation, batch.changes);
        let changes = &changes;
        let p = CATALOG.prefix(generation);
        let mut tx = self.db.pool().begin().await.map_err(db)?;
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
            let list = changes.entity_deletes.clone();
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
                .bind(changes.rejection_deletes.clone())
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
        for statement in self
            .tables
            .position_statements(generation, batch.group, batch.positions)
        {
            query(statement).execute(&mut *tx).await.map_err(db)?;
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
}
