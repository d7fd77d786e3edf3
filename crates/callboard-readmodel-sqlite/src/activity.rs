//! The activity feed in an SQLite file of its own: writing a batch's rows. (Reading and loading
//! are the shared SQL's.)

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use callboard_projection::{Batch, Generation, ProjectionStore, StoreError};
use callboard_readmodel::activity::{ACTIVITY_COLUMNS, ActivityChanges, ActivityLoaded, layout};
use callboard_readmodel::sql::reader::load_activity;
use callboard_readmodel::sql::{Layout, SqlActivity, Tables};
use sqlx::{QueryBuilder, Sqlite};

use crate::{BOOKKEEPING, SqliteDb, db, query};

/// The activity feed's tables.
static ACTIVITY: Layout = layout([
    BOOKKEEPING,
    include_str!("../../../migrations/templates/sqlite-activity.sql"),
]);

/// The activity feed in an SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteActivityStore {
    db: Arc<SqliteDb>,
    tables: Tables,
}

impl SqliteActivityStore {
    /// Opens (creating if needed) the activity feed at `path`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Arc::new(SqliteDb::open(path).await?);
        Ok(Self {
            tables: Tables::new(db.clone(), &ACTIVITY),
            db,
        })
    }
}

impl SqlActivity for SqliteActivityStore {
    fn activity_tables(&self) -> &Tables {
        &self.tables
    }
}

callboard_projection::generations_through!(SqliteActivityStore, tables);

#[async_trait]
impl ProjectionStore<ActivityLoaded, ActivityChanges> for SqliteActivityStore {
    async fn load(&self, generation: Generation, subjects: &[String]) -> Result<ActivityLoaded, StoreError> {
        load_activity(&self.tables, generation, subjects).await
    }

    async fn write(&self, batch: Batch<'_, ActivityChanges>) -> Result<(), StoreError> {
        let (generation, changes) = (batch.generation, batch.changes);
        let p = ACTIVITY.prefix(generation);
        let mut tx = self.db.pool().begin_with("begin immediate").await.map_err(db)?;
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
                " on conflict (subject, stream) do update set sequence = excluded.sequence, owner = excluded.owner
                  where excluded.sequence > {p}subjects.sequence"
            ));
            upsert.build().execute(&mut *tx).await.map_err(db)?;
        }
        for statement in self
            .tables
            .position_statements(generation, batch.group, batch.positions)
        {
            query(statement).execute(&mut *tx).await.map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }
}
