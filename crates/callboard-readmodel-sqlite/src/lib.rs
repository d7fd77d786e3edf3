//! The embedded read models: the rows of `callboard-readmodel` in SQLite files.
//!
//! * [`open_catalog`]: the catalog. Each generation's tables carry the prefix `g<n>_`; the
//!   `read_model` table names the active one. Filter keys (hashed into words) and the search text
//!   live in one FTS5 index keyed by the entity row's id, so a filter or a search is an index
//!   lookup; an entity's document is stored once, in the history row of its current version; its
//!   relations are packed in its row (and in each history row), found from their other ends
//!   through the same index; counted facets are kept in a table. Writing its entity rows (and
//!   the index) is in [`write`].
//! * [`open_activity`]: the activity feed, in a file of its own (prefix `a<n>_`), so that its
//!   writes never wait for the catalog's (SQLite has one writer per file).
//!
//! Everything else — reading, loading, writing the other rows, generations and positions — is the
//! SQL `callboard-readmodel` shares with PostgreSQL ([`callboard_readmodel::sql`]), run through
//! [`SqliteDb`] in SQLite's [`dialect`].

mod dialect;
mod write;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use callboard_projection::StoreError;
use callboard_readmodel::sql::store::catalog_layout;
use callboard_readmodel::sql::{Layout, SqlActivityStore, SqlCatalogStore};
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Sqlite, SqlitePool, Transaction};

/// Migrations of the registry tables (`migrations/sqlite`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// The catalog's tables.
static CATALOG: Layout = catalog_layout(include_str!("../../../migrations/templates/sqlite-generation.sql"));

/// An SQLite database the shared SQL runs on.
#[derive(Debug, Clone)]
pub struct SqliteDb {
    pool: SqlitePool,
}

impl SqliteDb {
    /// Opens (creating if needed) a database tuned for a projection: WAL, and a page cache large
    /// enough that batch inserts do not re-read pages.
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
            // (45 s for 100,000 entities, half of it in the kernel). 8 MiB a connection keeps
            // the hot pages close (64 MiB was no faster, and held 64–74 MiB at 100,000 entities).
            // No memory map: mapped pages count in the process's resident memory, which then
            // grew with the database (a 300 MiB catalog, read whole by maintenance or a broad
            // query, added 300 MiB); read through the kernel's cache, they are not ours to count.
            .pragma("cache_size", "-8192")
            .pragma("mmap_size", "0")
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

    /// A write transaction: `begin immediate` takes the file's write lock at once, so a
    /// transaction never fails to upgrade a read lock half-way.
    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.pool.begin_with("begin immediate").await.map_err(db)
    }
}

callboard_readmodel::sqlx_database!(
    SqliteDb,
    database: Sqlite,
    row: SqliteRow,
    arguments: SqliteArguments,
    sql: AssertSqlSafe,
    // SQLite has no arrays: lists travel as JSON, read with `json_each` (see `dialect`).
    list: |items| json(&items),
    dialect: dialect::SQLITE,
    migrator: MIGRATOR,
    entities: write::entities,
);

/// A list argument: SQLite reads it with `json_each`.
pub(crate) fn json(items: &impl serde::Serialize) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

/// Opens (creating if needed) the catalog's read model at `path`.
pub async fn open_catalog(path: &Path) -> Result<SqlCatalogStore, StoreError> {
    Ok(SqlCatalogStore::new(Arc::new(SqliteDb::open(path).await?), &CATALOG))
}

/// Opens (creating if needed) the activity feed's read model at `path`.
pub async fn open_activity(path: &Path) -> Result<SqlActivityStore, StoreError> {
    Ok(SqlActivityStore::new(Arc::new(SqliteDb::open(path).await?)))
}
