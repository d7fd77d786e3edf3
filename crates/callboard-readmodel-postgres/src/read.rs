//! Answering readers: entities, lists and counts through GIN indexes, facets, relations (from
//! their packed form), history and time travel.

use std::collections::HashSet;

use async_trait::async_trait;
use callboard_model::{EntityRef, Relation};
use callboard_projection::{Generation, Positions, StoreError};
use callboard_readmodel::catalog::counted_facet_key;
use callboard_readmodel::filter::{Filter, Resolved};
use callboard_readmodel::relations::{self, Version};
use callboard_readmodel::rows::{
    ENTITY_COLUMNS, EntityRow, HISTORY_COLUMNS, HistoryRow, LOCATION_COLUMNS, LocationRow, REJECTION_COLUMNS,
    RejectionRow, SpanRow, version_document,
};
use callboard_readmodel::search::{self, KeyPlan};
use callboard_readmodel::store::{
    CatalogReader, EntityPage, EntityQuery, Order, PackedRelations, RejectionsBy, RelationView, sort_key,
    split_sort_key,
};
use serde_json::Value;
use sqlx::{Postgres, QueryBuilder, Row};

use crate::{CATALOG, Named, PostgresStore, db};

/// Entity rows joined to the history row holding their document.
const ENTITY_FROM: &str = "{p}entities e join {p}history h on h.subject = e.entity_ref and h.sequence = e.sequence";

/// Packed relation lists as `(ref, packed)`.
fn packed(rows: Vec<sqlx::postgres::PgRow>) -> Vec<(String, String)> {
    rows.into_iter()
        .map(|r| (r.get("entity_ref"), r.get("relations")))
        .collect()
}

#[async_trait]
impl PackedRelations for PostgresStore {
    async fn relation_candidates(&self, g: Generation, refs: &[String]) -> Result<Vec<(String, String)>, StoreError> {
        let ends: Vec<i64> = refs
            .iter()
            .map(|r| search::key_hash64(&search::endpoint_key(r)))
            .collect();
        let rows = sqlx::query(CATALOG.sql(
            g,
            "select entity_ref, relations from {p}entities where entity_ref = any(?) or search_keys && ?",
        ))
        .bind(refs)
        .bind(ends)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(packed(rows))
    }

    async fn packed_relations(&self, g: Generation) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(CATALOG.sql(g, "select entity_ref, relations from {p}entities"))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(packed(rows))
    }

    async fn existing(&self, g: Generation, refs: &[String]) -> Result<HashSet<String>, StoreError> {
        let rows = sqlx::query(CATALOG.sql(g, "select entity_ref from {p}entities where entity_ref = any(?)"))
            .bind(refs)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows.into_iter().map(|r| r.get("entity_ref")).collect())
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

fn push_conditions(query: &mut QueryBuilder<Postgres>, filter: Option<&Resolved>, text: Option<&str>) {
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
}

fn canonical(refs: &[EntityRef]) -> Vec<String> {
    refs.iter().map(EntityRef::canonical).collect()
}

#[async_trait]
impl CatalogReader for PostgresStore {
    async fn entities(&self, refs: &[EntityRef]) -> Result<Vec<EntityRow>, StoreError> {
        if refs.is_empty() {
            return Ok(Vec::new());
        }
        let g = self.active().await?;
        let statement = format!("select {ENTITY_COLUMNS} from {ENTITY_FROM} where e.entity_ref = any(?)");
        let rows = sqlx::query(CATALOG.sql(g, &statement))
            .bind(canonical(refs))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(|r| EntityRow::read(&Named(r))).collect()
    }

    async fn list(&self, query: &EntityQuery) -> Result<EntityPage, StoreError> {
        let g = self.active().await?;
        let p = CATALOG.prefix(g);
        let from = ENTITY_FROM.replace("{p}", &p);
        let filter = self.resolve(g, query.filter.as_ref()).await?;
        let mut q = QueryBuilder::<Postgres>::new(format!("select {ENTITY_COLUMNS} from {from}"));
        push_conditions(&mut q, filter.as_ref(), query.text.as_deref());
        if let Some(after) = &query.after {
            match query.order {
                Order::Ref => {
                    q.push(" and e.entity_ref > ");
                    q.push_bind(after.clone());
                }
                Order::Name => {
                    let (name, entity_ref) = split_sort_key(after)?;
                    q.push(" and (e.name, e.entity_ref) > (");
                    q.push_bind(name.to_owned());
                    q.push(", ");
                    q.push_bind(entity_ref.to_owned());
                    q.push(")");
                }
                Order::UpdatedDesc => {
                    let (time, entity_ref) = split_sort_key(after)?;
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
        let mut entities: Vec<EntityRow> = rows
            .iter()
            .map(|r| EntityRow::read(&Named(r)))
            .collect::<Result<_, _>>()?;
        let has_more = entities.len() > query.limit;
        entities.truncate(query.limit);
        Ok(EntityPage {
            rows: entities.into_iter().map(|e| (sort_key(query.order, &e), e)).collect(),
            has_more,
        })
    }

    async fn count(&self, filter: Option<&Filter>, text: Option<&str>) -> Result<i64, StoreError> {
        let g = self.active().await?;
        let p = CATALOG.prefix(g);
        let filter = self.resolve(g, filter).await?;
        let mut q = QueryBuilder::<Postgres>::new(format!("select count(*) as matching from {p}entities e"));
        push_conditions(&mut q, filter.as_ref(), text);
        let row = q.build().fetch_one(&self.pool).await.map_err(db)?;
        Ok(row.get("matching"))
    }

    async fn facets(&self, key: &str, filter: Option<&Filter>) -> Result<Vec<(String, i64)>, StoreError> {
        let g = self.active().await?;
        let key = key.to_lowercase();
        if let Some(stored) = counted_facet_key(&key, filter) {
            let rows = sqlx::query(CATALOG.sql(
                g,
                "select value, count from {p}facets where key = ? and count > 0 order by count desc, value",
            ))
            .bind(&stored)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            return Ok(rows.into_iter().map(|r| (r.get("value"), r.get("count"))).collect());
        }
        // Any other key, or a filtered set: count from the documents (original values).
        let p = CATALOG.prefix(g);
        let from = ENTITY_FROM.replace("{p}", &p);
        let filter = Resolved::having_key(self.resolve(g, filter).await?, &key);
        let mut q = QueryBuilder::<Postgres>::new(format!("select h.entity as document, e.uid from {from}"));
        push_conditions(&mut q, Some(&filter), None);
        let rows = q.build().fetch_all(&self.pool).await.map_err(db)?;
        let documents: Vec<(String, String)> = rows
            .into_iter()
            .filter_map(|row| {
                let document = row.try_get::<Option<String>, _>("document").ok().flatten()?;
                Some((document, row.get("uid")))
            })
            .collect();
        tokio::task::spawn_blocking(move || search::count_values(&documents, &key))
            .await
            .map_err(|e| StoreError::Other(format!("counting facet values failed: {e}")))
    }

    async fn relations(&self, refs: &[EntityRef], incoming: bool) -> Result<Vec<RelationView>, StoreError> {
        let g = self.active().await?;
        self.relation_views(g, refs, incoming).await
    }

    async fn all_relations(&self) -> Result<Vec<Relation>, StoreError> {
        let g = self.active().await?;
        Ok(relations::into_relations(self.all_rows(g).await?))
    }

    async fn relations_at(&self, time: &str) -> Result<Vec<Relation>, StoreError> {
        let g = self.active().await?;
        // Each subject's latest upsert or deletion by then (the primary key walks subjects in
        // order, newest version first).
        let rows = sqlx::query(CATALOG.sql(
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
            .map(|r| {
                (
                    r.get("subject"),
                    relations::of_history_row(r.get("event_type"), r.get("relations")),
                )
            })
            .collect();
        Ok(relations::into_relations(relations::at_instant(&versions)))
    }

    async fn spans(&self, origin: &EntityRef) -> Result<Vec<SpanRow>, StoreError> {
        let g = self.active().await?;
        let rows = sqlx::query(CATALOG.sql(
            g,
            "select sequence, time, event_type, relations from {p}history
             where subject = ? and event_type in ('entity.upserted.v1', 'entity.deleted.v1') order by sequence",
        ))
        .bind(origin.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let versions: Vec<Version> = rows
            .into_iter()
            .map(|r| Version {
                sequence: r.get("sequence"),
                time: r.get("time"),
                relations: relations::of_history_row(r.get("event_type"), r.get("relations")),
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
        let g = self.active().await?;
        let statement = format!(
            "select {HISTORY_COLUMNS} from {{p}}history where subject = ? and sequence < ? order by sequence desc limit ?"
        );
        let rows = sqlx::query(CATALOG.sql(g, &statement))
            .bind(subject)
            .bind(before_sequence.unwrap_or(i64::MAX))
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(|r| HistoryRow::read(&Named(r))).collect()
    }

    async fn entity_at(&self, entity_ref: &EntityRef, time: &str) -> Result<Option<Value>, StoreError> {
        let g = self.active().await?;
        let row = sqlx::query(CATALOG.sql(
            g,
            "select event_type, entity, uid from {p}history where subject = ? and time <= ?
             and event_type in ('entity.upserted.v1', 'entity.deleted.v1') order by sequence desc limit 1",
        ))
        .bind(entity_ref.as_str())
        .bind(time)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        match row {
            Some(row) => version_document(&Named(&row)),
            None => Ok(None),
        }
    }

    async fn entities_at(
        &self,
        time: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Option<Value>)>, StoreError> {
        let g = self.active().await?;
        // The primary key (subject, sequence) walks subjects in order, newest version first.
        let rows = sqlx::query(CATALOG.sql(
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
        rows.iter()
            .map(|r| Ok((r.get("subject"), version_document(&Named(r))?)))
            .collect()
    }

    async fn rejections(&self, by: RejectionsBy<'_>) -> Result<Vec<RejectionRow>, StoreError> {
        let g = self.active().await?;
        let (column, value) = match by {
            RejectionsBy::Entity(r) => ("entity_ref", Some(r.as_str())),
            RejectionsBy::Location(l) => ("location", Some(l)),
            RejectionsBy::Origin(o) => ("origin", Some(o)),
            RejectionsBy::All => ("", None),
        };
        let condition = if value.is_some() {
            format!("{column} = ?")
        } else {
            "?::text is null".to_owned()
        };
        let statement = format!("select {REJECTION_COLUMNS} from {{p}}rejections where {condition} order by subject");
        let rows = sqlx::query(CATALOG.sql(g, &statement))
            .bind(value)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(|r| RejectionRow::read(&Named(r))).collect()
    }

    async fn locations(&self) -> Result<Vec<LocationRow>, StoreError> {
        let g = self.active().await?;
        let statement = format!("select {LOCATION_COLUMNS} from {{p}}locations order by key");
        let rows = sqlx::query(CATALOG.sql(g, &statement))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(|r| LocationRow::read(&Named(r))).collect()
    }

    async fn graph_version(&self) -> Result<String, StoreError> {
        let g = self.active().await?;
        let rows = sqlx::query(CATALOG.sql(
            g,
            "select key, value from {p}meta where key in ('graph_epoch', 'graph_version')",
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let value = |name: &str| {
            rows.iter()
                .find(|r| r.get::<String, _>("key") == name)
                .map_or(0, |r| r.get::<i64, _>("value"))
        };
        Ok(format!("{:x}.{}", value("graph_epoch"), value("graph_version")))
    }
}
