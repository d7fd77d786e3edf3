//! The production read models: the rows of `callboard-readmodel` in PostgreSQL.
//!
//! * [`catalog`]: the catalog. Each generation's tables carry the prefix `g<n>_`; the
//!   `read_model` table names the active one. Filter keys are 64-bit hashes in a `bigint[]` per
//!   entity with a GIN index (`&&`, `@>`), full-text search a generated `tsvector` column with a
//!   GIN index, and counted facets are kept in a table. An entity's document is stored once, in
//!   the history row of its current version; its relations are packed in its row (and in each
//!   history row), found from their other ends through endpoint keys among its filter keys.
//!   Writing its entity rows is in [`write`].
//! * [`activity`]: the activity feed, in the same database (prefix `a<n>_`).
//!
//! Everything else — reading, loading, writing the other rows, generations and positions — is the
//! SQL `callboard-readmodel` shares with SQLite ([`callboard_readmodel::sql`]), run through
//! [`PostgresDb`] in PostgreSQL's [`dialect`]. Every value is bound; only a generation's prefix (a
//! letter and a number) is formatted into statements.

mod dialect;
mod write;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use callboard_projection::StoreError;
use callboard_readmodel::sql::store::catalog_layout;
use callboard_readmodel::sql::{Layout, SqlActivityStore, SqlCatalogStore};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, ConnectOptions, PgPool, Postgres, Transaction};

/// Migrations of the registry tables (`migrations/postgres`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// The catalog's tables.
static CATALOG: Layout = catalog_layout(include_str!("../../../migrations/templates/postgres-generation.sql"));

/// SQL with `?` placeholders as PostgreSQL takes it (`$1`, `$2`, …); no statement here has a `?`
/// inside a literal.
pub(crate) fn numbered(text: String) -> AssertSqlSafe<String> {
    let mut out = String::with_capacity(text.len() + 8);
    let mut n = 0;
    for c in text.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    AssertSqlSafe(out)
}

/// A PostgreSQL database the shared SQL runs on.
#[derive(Debug, Clone)]
pub struct PostgresDb {
    pool: PgPool,
}

impl PostgresDb {
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
        Ok(Self { pool })
    }

    /// The connection pool (for tests and administration).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A write transaction.
    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(db)
    }
}

callboard_readmodel::sqlx_database!(
    PostgresDb,
    database: Postgres,
    row: PgRow,
    arguments: PgArguments,
    sql: numbered,
    list: |items| items,
    dialect: dialect::POSTGRES,
    migrator: MIGRATOR,
    entities: write::entities,
);

/// The catalog's read model in the database.
pub fn catalog(db: Arc<PostgresDb>) -> SqlCatalogStore {
    SqlCatalogStore::new(db, &CATALOG)
}

/// The activity feed's read model in the database.
pub fn activity(db: Arc<PostgresDb>) -> SqlActivityStore {
    SqlActivityStore::new(db)
}
