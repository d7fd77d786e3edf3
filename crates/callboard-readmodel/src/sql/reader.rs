//! Reading the catalog and the activity feed, and loading what a batch touches, in the SQL both
//! databases share.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use callboard_model::{EntityRef, Relation};
use callboard_projection::{Generation, StoreError};
use serde_json::Value;

use super::{Arg, SqlActivityStore, SqlCatalogStore, Statement, Tables};
use crate::activity::{ACTIVITY_COLUMNS, ActivityLoaded, ActivityQuery, ActivityReader, ActivityRow, SubjectState};
use crate::catalog::{COUNTED_FACETS, Current, Loaded, counted_facet_key};
use crate::filter::{Filter, RelationCondition, Resolved};
use crate::relations::{self, Version};
use crate::rows::{
    ENTITY_COLUMNS, EntityRow, HISTORY_COLUMNS, HistoryRow, LOCATION_COLUMNS, LocationRow, REJECTION_COLUMNS,
    RejectionRow, SpanRow, version_document,
};
use crate::search;
use crate::store::{
    CatalogReader, EntityPage, EntityQuery, Order, RejectionsBy, RelationView, ranking_word, sort_key, split_sort_key,
};

/// The most entities a facet is counted from when the kept counts cannot answer it.
pub const MAX_COUNTED_DOCUMENTS: usize = 200_000;

/// Entity rows joined to the history row holding their document.
const ENTITY_FROM: &str = "{p}entities e join {p}history h on h.subject = e.entity_ref and h.sequence = e.sequence";

fn canonical(refs: &[EntityRef]) -> Vec<String> {
    refs.iter().map(EntityRef::canonical).collect()
}

/// What a catalog batch touches: each subject's last sequence, its entity (document, uid,
/// relations) if live, and whether it has a pending rejection.
pub async fn load_catalog(t: &Tables, g: Generation, subjects: &[String]) -> Result<Loaded, StoreError> {
    let mut loaded = Loaded::default();
    if subjects.is_empty() {
        return Ok(loaded);
    }
    let dialect = t.db().dialect();
    let mut applied = t.statement(g, "select subject, max(sequence) as sequence from {p}history where ");
    dialect.in_list("subject", subjects, &mut applied);
    applied.push(" group by subject");
    for row in t.db().fetch(applied).await? {
        loaded.applied.insert(row.text("subject")?, row.int("sequence")?);
    }
    let mut live = t.statement(
        g,
        "select e.entity_ref, e.uid, e.created_at, e.relations, h.entity from {p}entities e
         join {p}history h on h.subject = e.entity_ref and h.sequence = e.sequence where ",
    );
    dialect.in_list("e.entity_ref", subjects, &mut live);
    for row in t.db().fetch(live).await? {
        loaded.entities.insert(
            row.text("entity_ref")?,
            Current {
                uid: row.text("uid")?,
                created_at: row.text("created_at")?,
                relations: row.text("relations")?,
                document: row.text_or_null("entity")?.unwrap_or_default(),
            },
        );
    }
    let mut rejected = t.statement(g, "select subject from {p}rejections where ");
    dialect.in_list("subject", subjects, &mut rejected);
    for row in t.db().fetch(rejected).await? {
        loaded.rejections.insert(row.text("subject")?);
    }
    Ok(loaded)
}

/// What an activity batch touches: its subjects' state, on either stream.
pub async fn load_activity(t: &Tables, g: Generation, subjects: &[String]) -> Result<ActivityLoaded, StoreError> {
    let mut loaded = ActivityLoaded::default();
    for chunk in subjects.chunks(10_000) {
        let mut statement = t.statement(g, "select stream, subject, sequence, owner from {p}subjects where ");
        t.db().dialect().in_list("subject", chunk, &mut statement);
        for row in t.db().fetch(statement).await? {
            loaded.insert(
                (row.text("stream")?, row.text("subject")?),
                SubjectState {
                    sequence: row.int("sequence")?,
                    owner: row.text_or_null("owner")?,
                },
            );
        }
    }
    Ok(loaded)
}

/// `(ref, packed relations)` of the entities `refs` name and of those whose relations mention one
/// of them.
async fn candidates(t: &Tables, g: Generation, refs: &[String]) -> Result<Vec<(String, String)>, StoreError> {
    let mut out = Vec::new();
    for statement in t.db().dialect().relation_candidates(&t.prefix(g), refs) {
        out.extend(packed(t.db().fetch(statement).await?)?);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn packed(rows: Vec<super::Row>) -> Result<Vec<(String, String)>, StoreError> {
    rows.iter()
        .map(|r| Ok((r.text("entity_ref")?, r.text("relations")?)))
        .collect()
}

/// Every current relation row.
async fn all_rows(t: &Tables, g: Generation) -> Result<Vec<relations::Row>, StoreError> {
    let rows = t
        .db()
        .fetch(t.statement(g, "select entity_ref, relations from {p}entities"))
        .await?;
    Ok(relations::all(&packed(rows)?))
}

/// Which of `refs` are entities now.
async fn existing(t: &Tables, g: Generation, refs: &[String]) -> Result<HashSet<String>, StoreError> {
    let mut out = HashSet::new();
    for chunk in refs.chunks(10_000) {
        let mut statement = t.statement(g, "select entity_ref from {p}entities where ");
        t.db().dialect().in_list("entity_ref", chunk, &mut statement);
        for row in t.db().fetch(statement).await? {
            out.insert(row.text("entity_ref")?);
        }
    }
    Ok(out)
}

/// A filter with its relation conditions answered (see [`Resolved`]).
async fn resolve(t: &Tables, g: Generation, filter: Option<&Filter>) -> Result<Option<Resolved>, StoreError> {
    let Some(filter) = filter else { return Ok(None) };
    let mut sources: HashMap<RelationCondition, Vec<String>> = HashMap::new();
    for condition in filter.relation_conditions() {
        let rows = if condition.targets.is_empty() {
            all_rows(t, g).await?
        } else {
            relations::select(&condition.targets, true, &candidates(t, g, &condition.targets).await?)
        };
        let met = condition.sources(&rows);
        sources.insert(condition, met);
    }
    Ok(Some(filter.resolve(&sources)))
}

/// Each subject's latest version at or before `time`, with `columns` of its history row, for
/// subjects after `after`, in order.
fn latest_versions(t: &Tables, g: Generation, columns: &str, time: &str, after: &str) -> Statement {
    Statement::new(t.db().dialect().latest_versions(&t.prefix(g), columns))
        .arg(Arg::Text(time.to_owned()))
        .arg(Arg::Text(after.to_owned()))
}

/// ` where <filter> <search>` on entities `e`.
fn conditions(t: &Tables, g: Generation, filter: Option<&Resolved>, text: Option<&str>, out: &mut Statement) {
    let (dialect, p) = (t.db().dialect(), t.prefix(g));
    out.push(" where 1 = 1");
    if let Some(filter) = filter {
        out.push(" and ");
        super::filter(dialect, filter, &p, out);
    }
    let terms = text.map(search::terms).unwrap_or_default();
    if !terms.is_empty() {
        out.push(" and ");
        dialect.search(&terms, &p, out);
    }
}

#[async_trait]
impl CatalogReader for SqlCatalogStore {
    async fn entities(&self, refs: &[EntityRef]) -> Result<Vec<EntityRow>, StoreError> {
        if refs.is_empty() {
            return Ok(Vec::new());
        }
        let (t, g) = self.tables.now().await?;
        let mut statement = t.statement(g, &format!("select {ENTITY_COLUMNS} from {ENTITY_FROM} where "));
        t.db()
            .dialect()
            .in_list("e.entity_ref", &canonical(refs), &mut statement);
        t.read(statement, EntityRow::read).await
    }

    async fn list(&self, query: &EntityQuery) -> Result<EntityPage, StoreError> {
        let (t, g) = self.tables.now().await?;
        let filter = resolve(t, g, query.filter.as_ref()).await?;
        let mut q = t.statement(g, &format!("select {ENTITY_COLUMNS} from {ENTITY_FROM}"));
        conditions(t, g, filter.as_ref(), query.text.as_deref(), &mut q);
        // Relevance: 0 when the name starts with the search's first word, else 1 (as
        // `store::relevance` computes it for cursors); the word is bound, never formatted.
        let word = ranking_word(query.text.as_deref()).unwrap_or_default();
        let rank = |q: &mut Statement| {
            q.push("(case when ")
                .text(word.clone())
                .push(" <> '' and substr(e.name, 1, length(");
            q.text(word.clone())
                .push(")) = ")
                .text(word.clone())
                .push(" then 0 else 1 end)");
        };
        if let Some(after) = &query.after {
            match query.order {
                Order::Ref => {
                    q.push(" and e.entity_ref > ").text(after.clone());
                }
                Order::Name => {
                    let (name, entity_ref) = split_sort_key(after)?;
                    q.push(" and (e.name, e.entity_ref) > (").text(name).push(", ");
                    q.text(entity_ref).push(")");
                }
                Order::UpdatedDesc => {
                    let (time, entity_ref) = split_sort_key(after)?;
                    q.push(" and (e.updated_at, e.entity_ref) < (").text(time).push(", ");
                    q.text(entity_ref).push(")");
                }
                Order::Relevance => {
                    let (after_rank, entity_ref) = split_sort_key(after)?;
                    let after_rank: i64 = after_rank
                        .parse()
                        .map_err(|_| StoreError::Invalid("bad cursor".into()))?;
                    q.push(" and (");
                    rank(&mut q);
                    q.push(", e.entity_ref) > (").int(after_rank).push(", ");
                    q.text(entity_ref).push(")");
                }
            }
        }
        match query.order {
            Order::Ref => {
                q.push(" order by e.entity_ref");
            }
            Order::Name => {
                q.push(" order by e.name, e.entity_ref");
            }
            Order::UpdatedDesc => {
                q.push(" order by e.updated_at desc, e.entity_ref desc");
            }
            Order::Relevance => {
                q.push(" order by ");
                rank(&mut q);
                q.push(", e.entity_ref");
            }
        }
        let (entities, has_more) = t.page(q, query.limit, EntityRow::read).await?;
        let text = query.text.as_deref();
        Ok(EntityPage {
            rows: entities
                .into_iter()
                .map(|e| (sort_key(query.order, text, &e), e))
                .collect(),
            has_more,
        })
    }

    async fn count(&self, filter: Option<&Filter>, text: Option<&str>) -> Result<i64, StoreError> {
        let (t, g) = self.tables.now().await?;
        if text.is_none()
            && let Some(kinds) = kinds_only(filter)
        {
            // The whole catalog, or whole kinds: the kept counts of `kind` (written in the same
            // transaction as the rows) are the answer, read in a few rows instead of counting
            // every entity row — 31 ms a count at 100,000 entities on PostgreSQL, and the
            // question a catalog page or a dashboard asks most.
            let mut q = t.statement(
                g,
                "select cast(coalesce(sum(count), 0) as bigint) as matching from {p}facets where key = 'kind'",
            );
            if let Some(kinds) = kinds {
                q.push(" and ");
                t.db().dialect().in_list("lower(value)", &kinds, &mut q);
            }
            let rows = t.db().fetch(q).await?;
            return rows.first().map_or(Ok(0), |r| r.int("matching"));
        }
        let filter = resolve(t, g, filter).await?;
        let mut q = t.statement(g, "select count(*) as matching from {p}entities e");
        conditions(t, g, filter.as_ref(), text, &mut q);
        let rows = t.db().fetch(q).await?;
        rows.first().map_or(Ok(0), |r| r.int("matching"))
    }

    async fn facets(&self, key: &str, filter: Option<&Filter>) -> Result<Vec<(String, i64)>, StoreError> {
        let (t, g) = self.tables.now().await?;
        let key = key.to_lowercase();
        if let Some(stored) = counted_facet_key(&key, filter) {
            let mut q = t.statement(g, "select value, count from {p}facets where key = ");
            q.text(stored).push(" and count > 0 order by count desc, value");
            let rows = t.db().fetch(q).await?;
            return rows.iter().map(|r| Ok((r.text("value")?, r.int("count")?))).collect();
        }
        if COUNTED_FACETS.contains(&key.as_str()) {
            // A counted key under any other filter: each matching row keeps its values of the
            // counted keys, counted here by the database.
            let filter = resolve(t, g, filter).await?;
            let (join, value) = t.db().dialect().facet_values();
            let prefix = format!("{key}=");
            let mut q = t.statement(
                g,
                &format!("select {value} as value, count(*) as count from {{p}}entities e{join}"),
            );
            conditions(t, g, filter.as_ref(), None, &mut q);
            q.push(&format!(" and substr({value}, 1, length(")).text(prefix.clone());
            q.push(")) = ").text(prefix.clone());
            q.push(&format!(" group by {value}"));
            let rows = t.db().fetch(q).await?;
            let mut counts: Vec<(String, i64)> = rows
                .iter()
                .map(|r| {
                    let value = r.text("value")?;
                    Ok((
                        value.strip_prefix(&prefix).unwrap_or(&value).to_owned(),
                        r.int("count")?,
                    ))
                })
                .collect::<Result<_, StoreError>>()?;
            // The order the counted path gives (most frequent first, then by value, bytewise:
            // not the database's collation).
            counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            return Ok(counts);
        }
        // Any other key: count from the documents (original values), at most
        // MAX_COUNTED_DOCUMENTS of them — a request must not load a whole large catalog.
        let filter = Resolved::having_key(resolve(t, g, filter).await?, &key);
        let mut q = t.statement(g, &format!("select h.entity as document, e.uid from {ENTITY_FROM}"));
        conditions(t, g, Some(&filter), None, &mut q);
        q.push(" limit ").int(MAX_COUNTED_DOCUMENTS as i64 + 1);
        let documents: Vec<(String, String)> = t
            .db()
            .fetch(q)
            .await?
            .iter()
            .filter_map(|row| Some((row.text_or_null("document").ok()??, row.text("uid").ok()?)))
            .collect();
        if documents.len() > MAX_COUNTED_DOCUMENTS {
            return Err(StoreError::TooCostly(format!(
                "facets of `{key}` are counted from the matching entities, and more than \
                 {MAX_COUNTED_DOCUMENTS} match: narrow the filter (by kind, type or owner), or \
                 ask for a field whose counts are kept (kind, spec.type, spec.lifecycle, \
                 spec.owner, metadata.tags, …)"
            )));
        }
        // The count runs on the blocking pool; if the request is dropped (a timeout, a client
        // gone), the guard tells it to stop instead of finishing work nobody will read.
        let cancel = search::Cancel::default();
        let guard = cancel.on_drop();
        let counted = tokio::task::spawn_blocking(move || search::count_values(&documents, &key, &cancel))
            .await
            .map_err(|e| StoreError::Other(format!("counting facet values failed: {e}")));
        drop(guard);
        counted
    }

    async fn relations(&self, refs: &[EntityRef], incoming: bool) -> Result<Vec<RelationView>, StoreError> {
        if refs.is_empty() {
            return Ok(Vec::new());
        }
        let (t, g) = self.tables.now().await?;
        let refs = canonical(refs);
        let rows = relations::select(&refs, incoming, &candidates(t, g, &refs).await?);
        let mut targets: Vec<String> = rows.iter().map(|r| r.target.clone()).collect();
        targets.sort();
        targets.dedup();
        let existing = existing(t, g, &targets).await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let target_exists = existing.contains(&row.target);
                Some(RelationView {
                    relation: row.into_relation()?,
                    target_exists,
                })
            })
            .collect())
    }

    async fn all_relations(&self) -> Result<Vec<Relation>, StoreError> {
        let (t, g) = self.tables.now().await?;
        Ok(relations::into_relations(all_rows(t, g).await?))
    }

    async fn relations_at(&self, time: &str) -> Result<Vec<Relation>, StoreError> {
        let (t, g) = self.tables.now().await?;
        let rows = t
            .db()
            .fetch(latest_versions(t, g, "subject, event_type, relations", time, ""))
            .await?;
        let versions: Vec<(String, Option<String>)> = rows
            .iter()
            .map(|r| {
                Ok((
                    r.text("subject")?,
                    relations::of_history_row(&r.text("event_type")?, r.text_or_null("relations")?),
                ))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(relations::into_relations(relations::at_instant(&versions)))
    }

    async fn spans(&self, origin: &EntityRef) -> Result<Vec<SpanRow>, StoreError> {
        let (t, g) = self.tables.now().await?;
        let mut q = t.statement(
            g,
            "select sequence, time, event_type, relations from {p}history where subject = ",
        );
        q.text(origin.as_str())
            .push(" and event_type in ('entity.upserted.v1', 'entity.deleted.v1') order by sequence");
        let versions: Vec<Version> = t
            .db()
            .fetch(q)
            .await?
            .iter()
            .map(|r| {
                Ok(Version {
                    sequence: r.int("sequence")?,
                    time: r.text("time")?,
                    relations: relations::of_history_row(&r.text("event_type")?, r.text_or_null("relations")?),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(relations::spans_from_versions(origin, &versions))
    }

    async fn history(
        &self,
        subject: &str,
        limit: usize,
        before_sequence: Option<i64>,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        let (t, g) = self.tables.now().await?;
        let mut q = t.statement(
            g,
            &format!("select {HISTORY_COLUMNS} from {{p}}history where subject = "),
        );
        q.text(subject)
            .push(" and sequence < ")
            .int(before_sequence.unwrap_or(i64::MAX));
        q.push(" order by sequence desc limit ").int(limit as i64);
        t.read(q, HistoryRow::read).await
    }

    async fn entity_at(&self, entity_ref: &EntityRef, time: &str) -> Result<Option<Value>, StoreError> {
        let (t, g) = self.tables.now().await?;
        let mut q = t.statement(g, "select event_type, entity, uid from {p}history where subject = ");
        q.text(entity_ref.as_str()).push(" and time <= ").text(time);
        q.push(" and event_type in ('entity.upserted.v1', 'entity.deleted.v1') order by sequence desc limit 1");
        match t.db().fetch(q).await?.first() {
            Some(row) => version_document(row.as_ref()),
            None => Ok(None),
        }
    }

    async fn entities_at(
        &self,
        time: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Option<Value>)>, StoreError> {
        let (t, g) = self.tables.now().await?;
        let mut q = latest_versions(t, g, "subject, event_type, entity, uid", time, after.unwrap_or(""));
        q.push(" limit ").int(limit as i64);
        t.read(q, |r| Ok((r.text("subject")?, version_document(r)?))).await
    }

    async fn rejections(&self, by: RejectionsBy<'_>) -> Result<Vec<RejectionRow>, StoreError> {
        let (t, g) = self.tables.now().await?;
        let mut q = t.statement(g, &format!("select {REJECTION_COLUMNS} from {{p}}rejections"));
        match by {
            RejectionsBy::Entity(r) => q.push(" where entity_ref = ").text(r.as_str()),
            RejectionsBy::Location(l) => q.push(" where location = ").text(l),
            RejectionsBy::Origin(o) => q.push(" where origin = ").text(o),
            RejectionsBy::All => &mut q,
        };
        q.push(" order by subject");
        t.read(q, RejectionRow::read).await
    }

    async fn locations(&self) -> Result<Vec<LocationRow>, StoreError> {
        let (t, g) = self.tables.now().await?;
        let q = t.statement(
            g,
            &format!("select {LOCATION_COLUMNS} from {{p}}locations order by key"),
        );
        t.read(q, LocationRow::read).await
    }

    async fn graph_version(&self) -> Result<String, StoreError> {
        let (t, g) = self.tables.now().await?;
        let rows = t
            .db()
            .fetch(t.statement(
                g,
                "select key, value from {p}meta where key in ('graph_epoch', 'graph_version')",
            ))
            .await?;
        let mut values: HashMap<String, i64> = HashMap::new();
        for row in rows {
            values.insert(row.text("key")?, row.int("value")?);
        }
        let value = |name: &str| values.get(name).copied().unwrap_or(0);
        Ok(format!("{:x}.{}", value("graph_epoch"), value("graph_version")))
    }
}

#[async_trait]
impl ActivityReader for SqlActivityStore {
    async fn activity(&self, query: &ActivityQuery) -> Result<(Vec<ActivityRow>, bool), StoreError> {
        let (t, g) = self.tables.now().await?;
        let mut q = t.statement(g, &format!("select {ACTIVITY_COLUMNS} from {{p}}activity where 1 = 1"));
        if let Some(actor) = &query.actor {
            q.push(" and actor = ").text(actor.clone());
        }
        if let Some(owner) = &query.owner {
            q.push(" and owner = ").text(owner.clone());
        }
        if let Some(before) = &query.before {
            q.push(" and (time, stream, subject, sequence) < (")
                .text(before.time.clone());
            q.push(", ")
                .text(before.stream.clone())
                .push(", ")
                .text(before.subject.clone());
            q.push(", ").int(before.sequence).push(")");
        }
        q.push(" order by time desc, stream desc, subject desc, sequence desc");
        t.page(q, query.limit, ActivityRow::read).await
    }
}

/// Whether `filter` selects whole kinds and nothing else: `Some(None)` for every entity (no
/// filter, or one that only asks for a kind to exist), `Some(Some(kinds))` for entities of one of
/// `kinds` (lowercased), `None` for anything else.
fn kinds_only(filter: Option<&Filter>) -> Option<Option<Vec<String>>> {
    match filter {
        None => Some(None),
        Some(Filter::All(filters) | Filter::Any(filters)) if filters.len() == 1 => kinds_only(filters.first()),
        Some(Filter::All(filters)) if filters.is_empty() => Some(None),
        Some(Filter::Field { key, values }) if key == "kind" => Some((!values.is_empty()).then(|| values.clone())),
        Some(_) => None,
    }
}
