//! Read-model fixtures: an SQLite file or a fresh PostgreSQL database per test.

use callboard::backend::Stores;
use callboard_readmodel_postgres::PostgresDb;

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

    /// The read models (the catalog and the activity feed), as `callboard` opens them.
    pub async fn open(&self) -> Stores {
        match self {
            Store::Sqlite(dir) => Stores::embedded(dir).await.expect("sqlite read models"),
            Store::Postgres(_) => Stores::postgres(&self.url().expect("url"))
                .await
                .expect("PostgreSQL at 127.0.0.1:5432 (set CALLBOARD_TEST_POSTGRES)"),
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
            && let Ok(admin) = PostgresDb::connect(&format!("{}/postgres", postgres_server())).await
        {
            let statement = format!("drop database if exists {name} with (force)");
            let _ = sqlx::query(sqlx::AssertSqlSafe(statement)).execute(admin.pool()).await;
        }
    }
}
