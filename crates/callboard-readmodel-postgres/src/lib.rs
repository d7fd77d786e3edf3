//! The production read models: the rows of `callboard-readmodel` in PostgreSQL.
//!
//! * [`PostgresStore`]: the catalog. Each generation's tables carry the prefix `g<n>_`; the
//!   `read_model` table names the active one. Filter keys are 64-bit hashes in a `bigint[]` per
//!   entity with a GIN index (`&&`, `@>`), full-text search a generated `tsvector` column with a
//!   GIN index, and counted facets are kept in a table. An entity's document is stored once, in
//!   the history row of its current version; its relations are packed in its row (and in each
//!   history row), found from their other ends through endpoint keys among its filter keys.
//!   Writing a batch is in [`write`].
//! * [`PostgresActivityStore`]: the activity feed, in the same database (prefix `a<n>_`).
//!
//! Reading, loading, generations and positions are the SQL `callboard-readmodel` shares with
//! SQLite ([`callboard_readmodel::sql`]), run through [`PostgresDb`] in PostgreSQL's
//! [`dialect`]. Every value is bound; only a generation's prefix (a letter and a number) is
//! formatted into statements.

mod activity;
mod dialect;
mod write;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use callboard_projection::StoreError;
use callboard_readmodel::rows::Columns;
use callboard_readmodel::sql::{Arg, Dialect, Layout, Row, SqlCatalog, SqlDatabase, Statement, Tables};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, ConnectOptions, PgPool, Postgres, Row as _};

pub use activity::PostgresActivityStore;

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

/// What every projection's generation has: positions and meta.
const BOOKKEEPING: &str = include_str!("../../../migrations/templates/postgres-bookkeeping.sql");

/// The catalog's tables.
pub(crate) static CATALOG: Layout = Layout {
    name: "catalog",
    letter: 'g',
    templates: [
        BOOKKEEPING,
        include_str!("../../../migrations/templates/postgres-generation.sql"),
    ],
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

/// SQL with `?` placeholders as PostgreSQL takes it (`$1`, `$2`, …); no statement here has a `?`
/// inside a literal.
pub(crate) fn numbered(text: &str) -> AssertSqlSafe<String> {
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

/// A statement as sqlx takes it: the SQL text and its arguments bound in order.
pub(crate) fn query(statement: Statement) -> sqlx::query::Query<'static, Postgres, PgArguments> {
    let mut query = sqlx::query(numbered(&statement.text));
    for arg in statement.args {
        query = match arg {
            Arg::Text(text) => query.bind(text),
            Arg::MaybeText(text) => query.bind(text),
            Arg::Int(n) => query.bind(n),
            Arg::Texts(items) => query.bind(items),
            Arg::Ints(items) => query.bind(items),
        };
    }
    query
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

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl SqlDatabase for PostgresDb {
    fn dialect(&self) -> &dyn Dialect {
        &dialect::POSTGRES
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Database(Box::new(e)))
    }

    async fn fetch(&self, statement: Statement) -> Result<Vec<Row>, StoreError> {
        let rows = query(statement).fetch_all(&self.pool).await.map_err(db)?;
        Ok(rows.into_iter().map(|row| Box::new(Named(row)) as Row).collect())
    }

    async fn execute(&self, statements: Vec<Statement>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        for statement in statements {
            query(statement).execute(&mut *tx).await.map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }
}

/// The catalog's read model in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    db: Arc<PostgresDb>,
    tables: Tables,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://…`), creating the database when it does
    /// not exist yet.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let db = Arc::new(PostgresDb::connect(url).await?);
        Ok(Self {
            tables: Tables::new(db.clone(), &CATALOG),
            db,
        })
    }

    /// The connection pool (for tests and administration).
    pub fn pool(&self) -> &PgPool {
        self.db.pool()
    }
}

impl SqlCatalog for PostgresStore {
    fn catalog_tables(&self) -> &Tables {
        &self.tables
    }
}

callboard_projection::generations_through!(PostgresStore, tables);

/// A row read by column name.
pub(crate) struct Named(pub PgRow);

impl Columns for Named {
    fn text(&self, column: &str) -> Result<String, StoreError> {
        self.0.try_get(column).map_err(db)
    }

    fn text_or_null(&self, column: &str) -> Result<Option<String>, StoreError> {
        self.0.try_get(column).map_err(db)
    }

    fn int(&self, column: &str) -> Result<i64, StoreError> {
        // Positions' partitions are `integer`; every other number is `bigint`.
        self.0
            .try_get::<i64, _>(column)
            .or_else(|_| self.0.try_get::<i32, _>(column).map(i64::from))
            .map_err(db)
    }

    fn int_or_null(&self, column: &str) -> Result<Option<i64>, StoreError> {
        self.0.try_get(column).map_err(db)
    }

    fn width(&self) -> usize {
        self.0.len()
    }

    fn cell(&self, index: usize) -> Result<Option<String>, StoreError> {
        self.0
            .try_get::<Option<String>, _>(index)
            .or_else(|_| {
                self.0
                    .try_get::<Option<i64>, _>(index)
                    .map(|v| v.map(|n| n.to_string()))
            })
            .or_else(|_| {
                self.0
                    .try_get::<Option<i32>, _>(index)
                    .map(|v| v.map(|n| n.to_string()))
            })
            .map_err(db)
    }
}
