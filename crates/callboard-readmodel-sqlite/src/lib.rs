//! The embedded read models: the rows of `callboard-readmodel` in SQLite files.
//!
//! * [`SqliteStore`]: the catalog. Each generation's tables carry the prefix `g<n>_`; the
//!   `read_model` table names the active one. Filter keys (hashed into words) and the search text
//!   live in one FTS5 index keyed by the entity row's id, so a filter or a search is an index
//!   lookup; an entity's document is stored once, in the history row of its current version; its
//!   relations are packed in its row (and in each history row), found from their other ends
//!   through the same index; counted facets are kept in a table. Writing a batch is in
//!   [`write`].
//! * [`SqliteActivityStore`]: the activity feed, in a file of its own (prefix `a<n>_`), so that
//!   its writes never wait for the catalog's (SQLite has one writer per file).
//!
//! Reading, loading, generations and positions are the SQL `callboard-readmodel` shares with
//! PostgreSQL ([`callboard_readmodel::sql`]), run through [`SqliteDb`] in SQLite's
//! [`dialect`].

mod activity;
mod dialect;
mod write;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use callboard_projection::StoreError;
use callboard_readmodel::rows::Columns;
use callboard_readmodel::sql::{Arg, Dialect, Layout, Row, SqlCatalog, SqlDatabase, Statement, Tables};
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row as _, Sqlite, SqlitePool};

pub use activity::SqliteActivityStore;

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

/// Migrations of the registry tables (`migrations/sqlite`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// What every projection's generation has: positions and meta.
const BOOKKEEPING: &str = include_str!("../../../migrations/templates/sqlite-bookkeeping.sql");

/// The catalog's tables.
pub(crate) static CATALOG: Layout = Layout {
    name: "catalog",
    letter: 'g',
    templates: [
        BOOKKEEPING,
        include_str!("../../../migrations/templates/sqlite-generation.sql"),
    ],
    tables: &[
        "entities",
        "fts",
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
            "entity_ref, uid, kind, namespace, name, sequence, content_hash, location_key, origin, created_at, updated_at, owner, title, spec_type, lifecycle, relations",
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

/// An SQLite database the shared SQL runs on.
#[derive(Debug, Clone)]
pub struct SqliteDb {
    pool: SqlitePool,
}

impl SqliteDb {
    /// Opens (creating if needed) a database tuned for a projection: WAL, and a page cache and
    /// memory map large enough that batch inserts do not re-read pages.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(db)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // A read model can always be rebuilt from the log: NORMAL is durable across a process
            // crash, which is all a projection needs.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            // Projection inserts land all over the relation and history B-trees: with SQLite's
            // default 2 MiB page cache nearly every insert re-read pages through a system call
            // (45 s for 100,000 entities, half of it in the kernel). A larger cache and
            // memory-mapped reads keep the hot pages close.
            .pragma("cache_size", "-65536")
            .pragma("mmap_size", "4294967296")
            .pragma("temp_store", "memory")
            // Checkpoint every 64 MiB of WAL rather than every 4 MiB: a page changed by several
            // batches in a row is then copied into the database once.
            .pragma("wal_autocheckpoint", "16384");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(db)?;
        Ok(Self { pool })
    }

    /// The connection pool.
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// A statement as sqlx takes it: the SQL text and its arguments bound in order.
pub(crate) fn query(statement: Statement) -> sqlx::query::Query<'static, Sqlite, SqliteArguments> {
    let mut query = sqlx::query(AssertSqlSafe(statement.text));
    for arg in statement.args {
        query = match arg {
            Arg::Text(text) => query.bind(text),
            Arg::MaybeText(text) => query.bind(text),
            Arg::Int(n) => query.bind(n),
            // SQLite has no arrays: lists travel as JSON, read with `json_each` (see `dialect`).
            Arg::Texts(items) => query.bind(serde_json::to_string(&items).unwrap_or_else(|_| "[]".into())),
            Arg::Ints(items) => query.bind(serde_json::to_string(&items).unwrap_or_else(|_| "[]".into())),
        };
    }
    query
}

#[async_trait]
impl SqlDatabase for SqliteDb {
    fn dialect(&self) -> &dyn Dialect {
        &dialect::SQLITE
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
        let mut tx = self.pool.begin_with("begin immediate").await.map_err(db)?;
        for statement in statements {
            query(statement).execute(&mut *tx).await.map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }
}

/// The catalog's read model in an SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    db: Arc<SqliteDb>,
    tables: Tables,
}

impl SqliteStore {
    /// Opens (creating if needed) the catalog's read model at `path`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Arc::new(SqliteDb::open(path).await?);
        Ok(Self {
            tables: Tables::new(db.clone(), &CATALOG),
            db,
        })
    }
}

impl SqlCatalog for SqliteStore {
    fn catalog_tables(&self) -> &Tables {
        &self.tables
    }
}

callboard_projection::generations_through!(SqliteStore, tables);

/// A row read by column name.
pub(crate) struct Named(pub SqliteRow);

impl Columns for Named {
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
            .map_err(db)
    }
}

/// A list argument: SQLite reads it with `json_each`.
pub(crate) fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}
