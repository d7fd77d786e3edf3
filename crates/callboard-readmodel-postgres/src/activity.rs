//! The activity feed in PostgreSQL, beside the catalog: writing a batch's rows, one array per
//! column. (Reading and loading are the shared SQL's.)

use std::sync::Arc;

use async_trait::async_trait;
use callboard_projection::{Batch, Generation, ProjectionStore, StoreError};
use callboard_readmodel::activity::{ActivityChanges, ActivityLoaded, layout};
use callboard_readmodel::sql::reader::load_activity;
use callboard_readmodel::sql::{Layout, SqlActivity, Tables};
use sqlx::AssertSqlSafe;

use crate::{BOOKKEEPING, PostgresDb, PostgresStore, db, numbered, query};

/// The activity feed's tables.
static ACTIVITY: Layout = layout([
    BOOKKEEPING,
    include_str!("../../../migrations/templates/postgres-activity.sql"),
]);

/// An activity statement for a generation, numbered for PostgreSQL.
fn sql(generation: Generation, template: &str) -> AssertSqlSafe<String> {
    numbered(&ACTIVITY.sql(generation, template))
}

/// The activity feed in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresActivityStore {
    db: Arc<PostgresDb>,
    tables: Tables,
}

impl PostgresActivityStore {
    /// The activity feed in the catalog's database.
    pub fn beside(catalog: &PostgresStore) -> Self {
        Self {
            tables: Tables::new(catalog.db.clone(), &ACTIVITY),
            db: catalog.db.clone(),
        }
    }
}

impl SqlActivity for PostgresActivityStore {
    fn activity_tables(&self) -> &Tables {
        &self.tables
    }
}

callboard_projection::generations_through!(PostgresActivityStore, tables);

#[async_trait]
impl ProjectionStore<ActivityLoaded, ActivityChanges> for PostgresActivityStore {
    async fn load(&self, generation: Generation, subjects: &[String]) -> Result<ActivityLoaded, StoreError> {
        load_activity(&self.tables, generation, subjects).await
    }

    async fn write(&self, batch: Batch<'_, ActivityChanges>) -> Result<(), StoreError> {
        let (generation, changes) = (batch.generation, batch.changes);
        let mut tx = self.db.pool().begin().await.map_err(db)?;
        // As for the catalog: positions commit with the rows, so a commit lost in a database
        // crash is lost whole and projected again.
        sqlx::query("set local synchronous_commit = off")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if !changes.rows.is_empty() {
            let r = &changes.rows;
            sqlx::query(sql(
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
            sqlx::query(sql(
                generation,
                "insert into {p}subjects (stream, subject, sequence, owner)
                 select * from unnest(?::text[], ?::text[], ?::int8[], ?::text[])
                 on conflict (subject, stream) do update set sequence = excluded.sequence, owner = excluded.owner
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
        for statement in self
            .tables
            .position_statements(generation, batch.group, batch.positions)
        {
            query(statement).execute(&mut *tx).await.map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }
}
