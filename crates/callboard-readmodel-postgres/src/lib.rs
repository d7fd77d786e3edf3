//! The production read models: the rows of `callboard-readmodel` in PostgreSQL.
//!
//! * [`PostgresStore`]: the catalog. Each generation's tables carry the prefix `g<n>_`; the
//!   `read_model` table names the active one. Filter keys are 64-bit hashes in a `bigint[]` per
//!   entity with a GIN index (`&&`, `@>`), full-text search a generated `tsvector` column with a
//!   GIN index, and counted facets are kept in a table. An entity's document is stored once, in
//!   the history row of its current version; its relations are packed in its row (and in each
//!   history row), found from their other ends through endpoint keys among its filter keys.
//!   Writing is in [`write`], reading in [`read`].
//! * [`PostgresActivityStore`]: the activity feed, in the same database (prefix `a<n>_`).
//!
//! [`generations`] manages both projections' generations and positions the same way. Every value
//! is bound; only a generation's prefix (a letter and a number) is formatted into statements.

mod activity;
mod generations;
mod read;
mod write;

use std::str::FromStr;
use std::time::Duration;

use callboard_projection::StoreError;
use callboard_readmodel::rows::Columns;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, ConnectOptions, PgPool, Row};

pub use activity::PostgresActivityStore;
use generations::{Layout, Tables};

/// The catalog's read model in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    tables: Tables,
}

/// A driver error as a store error: connection trouble is "unavailable" (worth retrying), the
/// rest a database failure; the driver's error is kept as the source either way.
pub(crate) fn db(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(Box::new(e))
        }
        other => StoreError::Database(Box::new(other)),
    }
}

/// Migrations of the registry tables (`migrations/postgres`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// The catalog's tables.
pub(crate) static CATALOG: Layout = Layout {
    name: "catalog",
    letter: 'g',
    schema: include_str!("../../../migrations/templates/postgres-generation.sql"),
    tables: &[
        "entities",
        "history",
        "rejections",
        "facets",
        "locations",
        "positions",
        "meta",
    ],
    checked: &[
        (
            "entities",
            "entity_ref, uid, kind, namespace, name, sequence, content_hash, location_key, origin, created_at, updated_at, owner, title, spec_type, lifecycle, relations, search_keys::text, search_text",
            "entity_ref",
        ),
        (
            "history",
            "subject, sequence, event_id, event_type, time, source, actor, causation, uid, entity, relations, diff, detail",
            "subject, sequence",
        ),
        (
            "rejections",
            "subject, entity_ref, location, origin, document_index, problems, conflicts_with, time, sequence",
            "subject",
        ),
        ("facets", "key, value, count", "key, value"),
        (
            "locations",
            "key, location_type, target, id, entity_ref, registered_at",
            "key",
        ),
    ],
};

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://…`), creating the database when it does
    /// not exist yet.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(db)?
            .log_statements(tracing::log::LevelFilter::Trace)
            // A projection batch of thousands of rows legitimately takes a second or two while
            // catching up; sqlx's default (a warning with the whole statement past 1 s) would
            // flood the log of every replay.
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(10));
        let pool = match PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
        {
            Ok(pool) => pool,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {
                // 3D000: invalid_catalog_name — the database does not exist: create it.
                let name = options.get_database().unwrap_or("callboard").to_owned();
                if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(StoreError::Invalid(format!(
                        "will not create a database named {name:?}"
                    )));
                }
                let admin = PgPoolOptions::new()
                    .max_connections(1)
                    .connect_with(options.clone().database("postgres"))
                    .await
                    .map_err(db)?;
                match sqlx::query(AssertSqlSafe(format!("create database {name}")))
                    .execute(&admin)
                    .await
                {
                    Ok(_) => {}
                    // Another process created it at the same moment.
                    Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42P04" | "23505")) => {}
                    Err(e) => return Err(db(e)),
                }
                admin.close().await;
                PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await
                    .map_err(db)?
            }
            Err(e) => return Err(db(e)),
        };
        Ok(Self {
            tables: Tables {
                pool: pool.clone(),
                layout: &CATALOG,
            },
            pool,
        })
    }

    /// The connection pool (for tests and administration).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

callboard_projection::generations_through!(PostgresStore, tables);

/// Rows read by column name.
pub(crate) struct Named<'a>(pub &'a PgRow);

impl Columns for Named<'_> {
    fn text(&self, column: &str) -> Result<String, StoreError> {
        self.0.try_get(column).map_err(db)
    }

    fn text_or_null(&self, column: &str) -> Result<Option<String>, StoreError> {
        self.0.try_get(column).map_err(db)
    }

    fn int(&self, column: &str) -> Result<i64, StoreError> {
        self.0.try_get(column).map_err(db)
    }

    fn int_or_null(&self, column: &str) -> Result<Option<i64>, StoreError> {
        self.0.try_get(column).map_err(db)
    }
}
