//! The embedded read models: the rows of `callboard-readmodel` in SQLite files.
//!
//! * [`SqliteStore`]: the catalog. Each generation's tables carry the prefix `g<n>_`; the
//!   `read_model` table names the active one. Filter keys (hashed into words) and the search text
//!   live in one FTS5 index keyed by the entity row's id, so a filter or a search is an index
//!   lookup; an entity's document is stored once, in the history row of its current version; its
//!   relations are packed in its row (and in each history row), found from their other ends
//!   through the same index; counted facets are kept in a table. Writing is in [`write`],
//!   reading in [`read`].
//! * [`SqliteActivityStore`]: the activity feed, in a file of its own (prefix `a<n>_`), so that
//!   its writes never wait for the catalog's (SQLite has one writer per file).
//!
//! [`generations`] manages both projections' generations and positions the same way.

mod activity;
mod generations;
mod read;
mod write;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use callboard_projection::StoreError;
use callboard_readmodel::rows::Columns;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

pub use activity::SqliteActivityStore;
use generations::{Layout, Tables};

/// The catalog's read model in an SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
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

/// Migrations of the registry tables (`migrations/sqlite`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// The catalog's tables.
pub(crate) static CATALOG: Layout = Layout {
    name: "catalog",
    letter: 'g',
    schema: include_str!("../../../migrations/templates/sqlite-generation.sql"),
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

/// Opens (creating if needed) an SQLite database tuned for a projection: WAL, and a page cache
/// and memory map large enough that batch inserts do not re-read pages.
pub(crate) async fn open_pool(path: &Path) -> Result<SqlitePool, StoreError> {
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
    SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .map_err(db)
}

impl SqliteStore {
    /// Opens (creating if needed) the catalog's read model at `path`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let pool = open_pool(path).await?;
        Ok(Self {
            tables: Tables {
                pool: pool.clone(),
                layout: &CATALOG,
            },
            pool,
        })
    }
}

callboard_projection::generations_through!(SqliteStore, tables);

/// Rows read by column name.
pub(crate) struct Named<'a>(pub &'a SqliteRow);

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

/// A list parameter: SQLite reads it with `json_each`.
pub(crate) fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}
