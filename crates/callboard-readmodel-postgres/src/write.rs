//! Writing a catalog batch's entity rows, in the batch's transaction: one array per column
//! through `unnest`, the filter keys as a `bigint[]` and the search text beside them (the
//! `tsvector` is a generated column). (Every other row is the shared SQL's.)

use callboard_projection::StoreError;
use callboard_readmodel::sql::EntityWrites;
use sqlx::{Postgres, Transaction};

use crate::{db, numbered};

/// The array literal of a set of filter-key hashes (`{1,2,3}`).
fn key_array(keys: &[u64]) -> String {
    let signed: Vec<String> = keys.iter().map(|key| (*key as i64).to_string()).collect();
    format!("{{{}}}", signed.join(","))
}

/// Deletes and upserts the entity rows of the generation prefixed `p`.
pub(crate) async fn entities(
    tx: &mut Transaction<'static, Postgres>,
    p: &str,
    entities: EntityWrites,
) -> Result<(), StoreError> {
    if !entities.deletes.is_empty() {
        sqlx::query(numbered(format!("delete from {p}entities where entity_ref = any(?)")))
            .bind(entities.deletes)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    }
    if entities.upserts.is_empty() {
        return Ok(());
    }
    let e = &entities.upserts;
    // Arrays of arrays must be rectangular in PostgreSQL, so each entity's key hashes travel as
    // one text (`{1,2,3}`, an array literal) and are cast back.
    let keys: Vec<String> = e.iter().map(|r| key_array(&r.keys)).collect();
    sqlx::query(numbered(format!(
        "insert into {p}entities (entity_ref, uid, kind, namespace, name, sequence, content_hash, location_key, origin,
           created_at, updated_at, owner, title, spec_type, lifecycle, relations, facet_values, search_keys, search_text)
         select r, u, k, n, nm, s, ch, lk, o, ca, ua, ow, ti, st, lc, rel, fv,
           keys::int8[], txt
         from unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::int8[], ?::text[], ?::text[], ?::text[],
           ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[])
           as t(r, u, k, n, nm, s, ch, lk, o, ca, ua, ow, ti, st, lc, rel, fv, keys, txt)
         on conflict (entity_ref) do update set uid = excluded.uid, kind = excluded.kind, namespace = excluded.namespace,
           name = excluded.name, sequence = excluded.sequence, content_hash = excluded.content_hash,
           location_key = excluded.location_key, origin = excluded.origin, created_at = excluded.created_at,
           updated_at = excluded.updated_at, owner = excluded.owner, title = excluded.title, spec_type = excluded.spec_type,
           lifecycle = excluded.lifecycle, relations = excluded.relations, facet_values = excluded.facet_values,
           search_keys = excluded.search_keys,
           search_text = excluded.search_text
         where excluded.sequence > {p}entities.sequence",
    )))
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
    .bind(e.iter().map(|r| r.facets.as_str()).collect::<Vec<_>>())
    .bind(keys)
    .bind(e.iter().map(|r| r.text.as_str()).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}
