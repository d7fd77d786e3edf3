//! The activity feed in PostgreSQL, beside the catalog.

use async_trait::async_trait;
use callboard_projection::{BatchPosition, Generation, Positions, StoreError};
use callboard_readmodel::FastMap;
use callboard_readmodel::activity::{
    ACTIVITY_COLUMNS, ActivityChanges, ActivityLoaded, ActivityQuery, ActivityReader, ActivityRow, ActivityStore,
    SubjectState,
};
use sqlx::{PgPool, Postgres, QueryBuilder, Row};

use crate::generations::{Layout, Tables};
use crate::{Named, PostgresStore, db};

/// The activity feed's tables.
static ACTIVITY: Layout = Layout {
    name: "activity",
    letter: 'a',
    schema: include_str!("../../../migrations/templates/postgres-activity.sql"),
    tables: &["activity", "subjects", "positions", "meta"],
    checked: &[
        (
            "activity",
            "time, stream, subject, sequence, event_id, event_type, actor, source, entity_ref, owner, causation",
            "time, stream, subject, sequence",
        ),
        ("subjects", "stream, subject, sequence, owner", "stream, subject"),
    ],
};

/// The activity feed in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresActivityStore {
    pool: PgPool,
    tables: Tables,
}

impl PostgresActivityStore {
    /// The activity feed in the catalog's database.
    pub fn beside(catalog: &PostgresStore) -> Self {
        Self {
            pool: catalog.pool.clone(),
            tables: Tables {
                pool: catalog.pool.clone(),
                layout: &ACTIVITY,
            },
        }
    }
}

callboard_projection::generations_through!(PostgresActivityStore, tables);

#[async_trait]
impl ActivityStore for PostgresActivityStore {
    async fn load(&self, generation: Generation, subjects: &[(String, String)]) -> Result<ActivityLoaded, StoreError> {
        let mut loaded = FastMap::default();
        let rows = sqlx::query(ACTIVITY.sql(
            generation,
            "select s.stream, s.subject, s.sequence, s.owner from {p}subjects s
             join unnest(?::text[], ?::text[]) as k(stream, subject) on s.stream = k.stream and s.subject = k.subject",
        ))
        .bind(subjects.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>())
        .bind(subjects.iter().map(|(_, x)| x.as_str()).collect::<Vec<_>>())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        for row in rows {
            loaded.insert(
                (row.get("stream"), row.get("subject")),
                SubjectState {
                    sequence: row.get("sequence"),
                    owner: row.get("owner"),
                },
            );
        }
        Ok(loaded)
    }

    async fn write(
        &self,
        generation: Generation,
        group: &str,
        changes: ActivityChanges,
        positions: &[BatchPosition],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // As for the catalog: positions commit with the rows, so a commit lost in a database
        // crash is lost whole and projected again.
        sqlx::query("set local synchronous_commit = off")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if !changes.rows.is_empty() {
            let r = &changes.rows;
            sqlx::query(ACTIVITY.sql(
                generation,
                "insert into {p}activity (time, stream, subject, sequence, event_id, event_type, actor, source, entity_ref, owner, causation)
                 select * from unnest(?::text[], ?::text[], ?::text[], ?::int8[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[])
                 on conflict do nothing",
            ))
            .bind(r.iter().map(|r| r.time.as_str()).collect::<Vec<_>>())
            .bind(r.iter().map(|r| r.stream.as_str()).collect::<Vec<_>>())
            .bind(r.iter().map(|r| r.subject.as_str()).collect::<Vec<_>>())
            .bind(r.iter().map(|r| r.sequence).collect::<Vec<_>>())
            .bind(r.iter().map(|r| r.event_id.as_str()).collect::<Vec<_>>())
            .bind(r.iter().map(|r| r.event_type.as_str()).collect::<Vec<_>>())
            .bind(r.iter().map(|r| r.actor.as_str()).collect::<Vec<_>>())
            .bind(r.iter().map(|r| r.source.as_str()).collect::<Vec<_>>())
            .bind(r.iter().map(|r| r.entity_ref.as_deref()).collect::<Vec<_>>())
            .bind(r.iter().map(|r| r.owner.as_deref()).collect::<Vec<_>>())
            .bind(r.iter().map(|r| r.causation.as_deref()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        if !changes.subjects.is_empty() {
            let s = &changes.subjects;
            sqlx::query(ACTIVITY.sql(
                generation,
                "insert into {p}subjects (stream, subject, sequence, owner)
                 select * from unnest(?::text[], ?::text[], ?::int8[], ?::text[])
                 on conflict (stream, subject) do update set sequence = excluded.sequence, owner = excluded.owner
                 where excluded.sequence > {p}subjects.sequence",
            ))
            .bind(s.iter().map(|((stream, _), _)| stream.as_str()).collect::<Vec<_>>())
            .bind(s.iter().map(|((_, subject), _)| subject.as_str()).collect::<Vec<_>>())
            .bind(s.iter().map(|(_, state)| state.sequence).collect::<Vec<_>>())
            .bind(s.iter().map(|(_, state)| state.owner.as_deref()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        self.tables
            .write_positions(&mut tx, generation, group, positions)
            .await?;
        tx.commit().await.map_err(db)
    }
}

#[async_trait]
impl ActivityReader for PostgresActivityStore {
    async fn activity(&self, query: &ActivityQuery) -> Result<(Vec<ActivityRow>, bool), StoreError> {
        let g = self.active().await?;
        let p = ACTIVITY.prefix(g);
        let mut q = QueryBuilder::<Postgres>::new(format!("select {ACTIVITY_COLUMNS} from {p}activity where true"));
        if let Some(actor) = &query.actor {
            q.push(" and actor = ").push_bind(actor.clone());
        }
        if let Some(owner) = &query.owner {
            q.push(" and owner = ").push_bind(owner.clone());
        }
        if let Some(before) = &query.before {
            q.push(" and (time, stream, subject, sequence) < (")
                .push_bind(before.time.clone())
                .push(", ")
                .push_bind(before.stream.clone())
                .push(", ")
                .push_bind(before.subject.clone())
                .push(", ")
                .push_bind(before.sequence)
                .push(")");
        }
        q.push(" order by time desc, stream desc, subject desc, sequence desc limit ")
            .push_bind(query.limit as i64 + 1);
        let rows = q.build().fetch_all(&self.pool).await.map_err(db)?;
        let mut out: Vec<ActivityRow> = rows
            .iter()
            .map(|r| ActivityRow::read(&Named(r)))
            .collect::<Result<_, _>>()?;
        let more = out.len() > query.limit;
        out.truncate(query.limit);
        Ok((out, more))
    }
}
