//! Writing a catalog batch's entity rows, in the batch's transaction, and their entries in the
//! FTS5 index (filter keys as words, and the search text), keyed by the entity row's id. (Every
//! other row is the shared SQL's.)

use std::collections::HashMap;

use callboard_projection::StoreError;
use callboard_readmodel::catalog::{ENTITY_WRITE_COLUMNS, EntityWrite};
use callboard_readmodel::search;
use callboard_readmodel::sql::EntityWrites;
use sqlx::{AssertSqlSafe, QueryBuilder, Row, Sqlite, Transaction};

use crate::{db, json};

/// The FTS5 words of an entity's filter keys, separated by spaces.
fn key_words(entity: &EntityWrite) -> String {
    let mut out = String::with_capacity(entity.keys.len() * 15);
    for hash in &entity.keys {
        search::push_hash_token(&mut out, *hash);
        out.push(' ');
    }
    out
}

/// Deletes and upserts the entity rows of the generation prefixed `p`, then their index entries.
pub(crate) async fn entities(
    tx: &mut Transaction<'static, Sqlite>,
    p: &str,
    entities: EntityWrites,
) -> Result<(), StoreError> {
    // Full-text rows to delete (of deleted and replaced entity rows) and to insert (row id,
    // text, key words), written last (see below).
    let mut index_gone: Vec<i64> = Vec::new();
    let mut index_new: Vec<(i64, String, String)> = Vec::with_capacity(entities.upserts.len());
    if !entities.deletes.is_empty() {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "delete from {p}entities where entity_ref in (select value from json_each(?)) returning id"
        )))
        .bind(json(&entities.deletes))
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
        index_gone.extend(rows.into_iter().map(|r| r.get::<i64, _>("id")));
    }
    // Rows are bound by value: sqlx keeps a bound `String` as it is, where a borrowed one is
    // copied (documents and search text were a twentieth of a projection's time, copied).
    let mut upserts = entities.upserts.into_iter().peekable();
    while upserts.peek().is_some() {
        // Per row of the chunk: its ref, whether it replaces a row, its text and key words.
        let mut indexed: Vec<(String, bool, String, String)> = Vec::with_capacity(1_000);
        let mut insert = QueryBuilder::<Sqlite>::new(format!("insert into {p}entities ({ENTITY_WRITE_COLUMNS}) "));
        insert.push_values(upserts.by_ref().take(1_000), |mut b, e| {
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
                .push_bind(e.relations)
                .push_bind(e.facets);
        });
        insert.push(format!(
            " on conflict (entity_ref) do update set uid = excluded.uid, kind = excluded.kind, namespace = excluded.namespace,
              name = excluded.name, sequence = excluded.sequence, content_hash = excluded.content_hash,
              location_key = excluded.location_key, origin = excluded.origin, created_at = excluded.created_at,
              updated_at = excluded.updated_at, owner = excluded.owner, title = excluded.title, spec_type = excluded.spec_type,
              lifecycle = excluded.lifecycle, relations = excluded.relations, facet_values = excluded.facet_values
              where excluded.sequence > {p}entities.sequence
              returning entity_ref, id"
        ));
        // Not cached: see `Statement::one_off`.
        let ids: HashMap<String, i64> = insert
            .build()
            .persistent(false)
            .fetch_all(&mut **tx)
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
    // The full-text index last, in as few statements as possible: FTS5 flushes its pending
    // entries to disk at the start of every later write statement of the transaction (a
    // savepoint), so written first and in chunks it made many small segments to merge.
    if !index_gone.is_empty() {
        sqlx::query(AssertSqlSafe(format!(
            "delete from {p}fts where rowid in (select value from json_each(?))"
        )))
        .bind(json(&index_gone))
        .execute(&mut **tx)
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
        index.build().persistent(false).execute(&mut **tx).await.map_err(db)?;
    }
    Ok(())
}
