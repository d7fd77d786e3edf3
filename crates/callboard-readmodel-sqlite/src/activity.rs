//! The activity feed in an SQLite file of its own.

use std::path::Path;

use async_trait::async_trait;
use callboard_projection::{BatchPosition, Generation, Positions, StoreError};
use callboard_readmodel::FastMap;
use callboard_readmodel::activity::{
    ACTIVITY_COLUMNS, ActivityChanges, ActivityLoaded, ActivityQuery, ActivityReader, ActivityRow, ActivityStore,
    SubjectState,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use crate::generations::{Layout, Tables};
use crate::{Named, db, open_pool};

/// The activity feed's tables.
static ACTIVITY: Layout = Layout {
    name: "activity",
    letter: 'a',
    schema: include_str!("../../../migrations/templates/sqlite-activity.sql"),
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

/// The activity feed in an SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteActivityStore {
    pool: SqlitePool,
    tables: Tables,
}

impl SqliteActivityStore {
    /// Opens (creating if needed) the activity feed at `path`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let pool = open_pool(path).await?;
        Ok(Self {
            tables: Tables {
                pool: pool.clone(),
                layout: &ACTIVITY,
            },
            pool,
        })
    }
}

callboard_projection::generations_through!(SqliteActivityStore, tables);

#[async_trait]
impl ActivityStore for SqliteActivityStore {
    async fn load(&self, generation: Generation, subjects: &[(String, String)]) -> Result<ActivityLoaded, StoreError> {
        let mut loaded = FastMap::default();
        for chunk in subjects.chunks(10_000) {
            let keys: Vec<[&str; 2]> = chunk.iter().map(|(s, x)| [s.as_str(), x.as_str()]).collect();
            let rows = sqlx::query(ACTIVITY.sql(
                generation,
                "select stream, subject, sequence, owner from {p}subjects
                 where (stream, subject) in (select value ->> 0, value ->> 1 from json_each(?))",
            ))
            .bind(serde_json::to_string(&keys).unwrap_or_else(|_| "[]".into()))
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
        let p = ACTIVITY.prefix(generation);
        let mut tx = self.pool.begin_with("begin immediate").await.map_err(db)?;
        // Eleven parameters a row, under SQLite's limit of 32,766.
        let mut rows = changes.rows.into_iter().peekable();
        while rows.peek().is_some() {
            let mut insert = QueryBuilder::<Sqlite>::new(format!("insert into {p}activity ({ACTIVITY_COLUMNS}) "));
            insert.push_values(rows.by_ref().take(2_000), |mut b, r| {
                b.push_bind(r.time)
                    .push_bind(r.stream)
                    .push_bind(r.subject)
                    .push_bind(r.sequence)
                    .push_bind(r.event_id)
                    .push_bind(r.event_type)
                    .push_bind(r.actor)
                    .push_bind(r.source)
                    .push_bind(r.entity_ref)
                    .push_bind(r.owner)
                    .push_bind(r.causation);
            });
            insert.push(" on conflict do nothing");
            insert.build().execute(&mut *tx).await.map_err(db)?;
        }
        let mut subjects = changes.subjects.into_iter().peekable();
        while subjects.peek().is_some() {
            let mut upsert =
                QueryBuilder::<Sqlite>::new(format!("insert into {p}subjects (stream, subject, sequence, owner) "));
            upsert.push_values(subjects.by_ref().take(5_000), |mut b, ((stream, subject), state)| {
                b.push_bind(stream)
                    .push_bind(subject)
                    .push_bind(state.sequence)
                    .push_bind(state.owner);
            });
            upsert.push(format!(
                " on conflict (stream, subject) do update set sequence = excluded.sequence, owner = excluded.owner
                  where excluded.sequence > {p}subjects.sequence"
            ));
            upsert.build().execute(&mut *tx).await.map_err(db)?;
        }
        self.tables
            .write_positions(&mut tx, generation, group, positions)
            .await?;
        tx.commit().await.map_err(db)
    }
}

#[async_trait]
impl ActivityReader for SqliteActivityStore {
    async fn activity(&self, query: &ActivityQuery) -> Result<(Vec<ActivityRow>, bool), StoreError> {
        let g = self.active().await?;
        let p = ACTIVITY.prefix(g);
        let mut q = QueryBuilder::<Sqlite>::new(format!("select {ACTIVITY_COLUMNS} from {p}activity where 1 = 1"));
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
