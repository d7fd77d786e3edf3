//! Read-model fixtures: an SQLite file or a fresh PostgreSQL database per test.

use std::sync::Arc;

use callboard_readmodel::store::{CatalogReader, ReadStore};
use callboard_readmodel_postgres::PostgresStore;
use callboard_readmodel_sqlite::SqliteStore;

/// The PostgreSQL server the tests use (trust authentication).
pub fn postgres_server() -> String {
    std::env::var("CALLBOARD_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Which read model a test runs on.
pub enum Store {
    /// `catalog.db` in this folder.
    Sqlite(std::path::PathBuf),
    /// A database of its own.
    Postgres(String),
}

impl Store {
    /// An SQLite read model in `dir` (the embedded log's data directory, usually).
    pub fn sqlite(dir: &std::path::Path) -> Self {
        Store::Sqlite(dir.to_path_buf())
    }

    /// A fresh PostgreSQL database.
    pub fn postgres() -> Self {
        Store::Postgres(format!("cb_it_{}", uuid::Uuid::new_v4().simple()))
    }

    pub fn url(&self) -> Option<String> {
        match self {
            Store::Sqlite(_) => None,
            // TLS to a local server only costs time.
            Store::Postgres(name) => Some(format!("{}/{name}?sslmode=disable", postgres_server())),
        }
    }

    /// Both ports of the read model.
    pub async fn open(&self) -> (Arc<dyn ReadStore>, Arc<dyn CatalogReader>) {
        match self {
            Store::Sqlite(dir) => {
                let store = Arc::new(
                    SqliteStore::open(&dir.join("catalog.db"))
                        .await
                        .expect("sqlite read model"),
                );
                (store.clone(), store)
            }
            Store::Postgres(_) => {
                let url = self.url().expect("url");
                let store = Arc::new(
                    PostgresStore::connect(&url)
                        .await
                        .expect("PostgreSQL at 127.0.0.1:5432 (set CALLBOARD_TEST_POSTGRES)"),
                );
                (store.clone(), store)
            }
        }
    }

    /// Arguments pointing `callboard` at this read model (`--data-dir` comes from the log side).
    pub fn cli_args(&self) -> Vec<String> {
        match self.url() {
            Some(url) => vec!["--database-url".into(), url],
            None => Vec::new(),
        }
    }

    /// Drops the test database.
    pub async fn cleanup(&self) {
        if let Store::Postgres(name) = self
            && let Ok(admin) = PostgresStore::connect(&format!("{}/postgres", postgres_server())).await
        {
            let statement = format!("drop database if exists {name} with (force)");
            let _ = sqlx::query(sqlx::AssertSqlSafe(statement)).execute(admin.pool()).await;
        }
    }
}
