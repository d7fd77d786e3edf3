//! The embedded event log: topics, partitions and offsets in one SQLite file, for the
//! no-servers default deployment.
//!
//! Durability: the database runs in WAL mode with `synchronous=FULL`, so an append that returned
//! survives `kill -9` (and power loss). Ordering: a record's partition is a stable hash of its key,
//! so one key's records stay in order. Appends from several processes serialise on SQLite's write
//! lock (`BEGIN IMMEDIATE`). Consumer groups have one member per process; group positions are
//! stored in the same file.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use callboard_events::local::{LocalLog, LocalSubscription};
use callboard_events::log::{
    EventLog, LogError, Message, Position, Record, Retention, Subscription, TopicSpec, partition_for_key,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use tokio::sync::watch;

/// The page size of new log files.
const PAGE_SIZE: u32 = 16_384;

/// The embedded log.
#[derive(Debug, Clone)]
pub struct SqliteLog {
    pool: SqlitePool,
    path: PathBuf,
    /// Bumped after every append in this process, to wake subscriptions without polling.
    appended: Arc<watch::Sender<u64>>,
}

fn db_error(e: sqlx::Error) -> LogError {
    LogError::Other(e.to_string())
}

impl SqliteLog {
    /// Opens (creating if needed) the log at `path`.
    pub async fn open(path: &Path) -> Result<Self, LogError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| LogError::Other(format!("cannot create {}: {e}", parent.display())))?;
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(db_error)?
            .create_if_missing(true)
            // Events are a few kilobytes: with the default 4 KiB pages most rows spill into an
            // overflow page each, doubling what an append writes. Takes effect when the file is
            // created (an existing log keeps its page size).
            .page_size(PAGE_SIZE)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            // Readers (projectors, replays) stream the whole log through the kernel's cache, not
            // a memory map: a system call per 16 KiB page is cheap, and mapped pages counted in
            // the process's resident memory (47 MiB of `serve`'s peak at 100,000 entities,
            // growing with the log).
            .pragma("cache_size", "-16384")
            .pragma("mmap_size", "0");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(db_error)?;
        for statement in [
            "create table if not exists topics (
                name text primary key,
                partitions integer not null,
                retention_ms integer
            )",
            "create table if not exists messages (
                topic text not null,
                partition integer not null,
                offset integer not null,
                key text not null,
                value blob not null,
                timestamp_ms integer not null,
                primary key (topic, partition, offset)
            ) without rowid",
            "create table if not exists group_offsets (
                grp text not null,
                topic text not null,
                partition integer not null,
                next_offset integer not null,
                primary key (grp, topic, partition)
            ) without rowid",
        ] {
            sqlx::query(statement).execute(&pool).await.map_err(db_error)?;
        }
        let (appended, _) = watch::channel(0);
        Ok(Self {
            pool,
            path: path.to_path_buf(),
            appended: Arc::new(appended),
        })
    }

    async fn topic_partitions(&self, topic: &str) -> Result<i32, LogError> {
        let row = sqlx::query("select partitions from topics where name = ?")
            .bind(topic)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        match row {
            Some(row) => Ok(row.get::<i64, _>("partitions") as i32),
            None => Err(LogError::UnknownTopic(topic.to_owned())),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[async_trait]
impl EventLog for SqliteLog {
    async fn ensure_topics(&self, specs: &[TopicSpec]) -> Result<(), LogError> {
        for spec in specs {
            let retention = match spec.retention {
                Retention::Forever => None,
                Retention::Millis(ms) => Some(ms),
            };
            sqlx::query(
                "insert into topics (name, partitions, retention_ms) values (?, ?, ?) on conflict (name) do nothing",
            )
            .bind(&spec.name)
            .bind(i64::from(spec.partitions.max(1)))
            .bind(retention)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        }
        Ok(())
    }

    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Position>, LogError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let partitions = self.topic_partitions(topic).await?;
        // IMMEDIATE takes the write lock up front, so concurrent appenders queue instead of
        // failing when a read transaction tries to upgrade.
        let mut tx = self.pool.begin_with("begin immediate").await.map_err(db_error)?;
        let mut next: Vec<Option<i64>> = vec![None; partitions as usize];
        let mut positions = Vec::with_capacity(records.len());
        let timestamp = now_ms();
        // Assign partitions and offsets first, then insert in multi-row statements: one statement
        // per row would cost a round trip to SQLite's worker thread per event.
        let mut rows = Vec::with_capacity(records.len());
        for record in records {
            let partition = partition_for_key(&record.key, partitions);
            let slot = &mut next[partition as usize];
            let offset = match *slot {
                Some(offset) => offset,
                None => {
                    let row = sqlx::query(
                        "select coalesce(max(offset) + 1, 0) as next from messages where topic = ? and partition = ?",
                    )
                    .bind(topic)
                    .bind(partition)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_error)?;
                    row.get::<i64, _>("next")
                }
            };
            *slot = Some(offset + 1);
            positions.push(Position { partition, offset });
            rows.push((partition, offset, record));
        }
        // SQLite allows 32,766 bound parameters per statement; six per row. Keys and values are
        // bound by value and the topic as one shared `Arc<str>`: sqlx copies what it borrows, and
        // copying every event's bytes was a twentieth of an import.
        let topic_name: Arc<str> = Arc::from(topic);
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "insert into messages (topic, partition, offset, key, value, timestamp_ms) ",
            );
            insert.push_values(rows.by_ref().take(2_000), |mut row, (partition, offset, record)| {
                row.push_bind(topic_name.clone())
                    .push_bind(partition)
                    .push_bind(offset)
                    .push_bind(record.key)
                    .push_bind(record.value)
                    .push_bind(timestamp);
            });
            // Not kept in the statement cache: its text changes with the row count, and each
            // cached one held a program of thousands of instructions.
            insert
                .build()
                .persistent(false)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        self.appended.send_modify(|n| *n += 1);
        Ok(positions)
    }

    async fn partitions(&self, topic: &str) -> Result<i32, LogError> {
        self.topic_partitions(topic).await
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<i64>, LogError> {
        let partitions = self.topic_partitions(topic).await?;
        // One seek per partition: `max` over a primary-key prefix reads one index entry, while
        // `group by partition` would scan the whole topic (every event ever written).
        let mut out = Vec::with_capacity(partitions as usize);
        for partition in 0..partitions {
            let end: Option<i64> =
                sqlx::query_scalar("select max(offset) + 1 from messages where topic = ? and partition = ?")
                    .bind(topic)
                    .bind(partition)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db_error)?;
            out.push(end.unwrap_or(0));
        }
        Ok(out)
    }

    async fn read(&self, topic: &str, partition: i32, from: i64, max: usize) -> Result<Vec<Message>, LogError> {
        read_messages(&self.pool, topic, partition, from, max).await
    }

    async fn subscribe(&self, group: &str, topics: &[String]) -> Result<Box<dyn Subscription>, LogError> {
        let appended = self.appended.subscribe();
        // Woken by appends in this process; re-checked every 100 ms for other processes'.
        let recheck = Some(Duration::from_millis(100));
        Ok(Box::new(
            LocalSubscription::start(self.clone(), group, topics, appended, recheck).await?,
        ))
    }

    fn describe(&self) -> String {
        format!("embedded log at {}", self.path.display())
    }
}

async fn read_messages(
    pool: &SqlitePool,
    topic: &str,
    partition: i32,
    from: i64,
    max: usize,
) -> Result<Vec<Message>, LogError> {
    let rows = sqlx::query(
        "select offset, key, value, timestamp_ms from messages
         where topic = ? and partition = ? and offset >= ? order by offset limit ?",
    )
    .bind(topic)
    .bind(partition)
    .bind(from)
    .bind(max as i64)
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    Ok(rows
        .into_iter()
        .map(|row| Message {
            topic: topic.to_owned(),
            partition,
            offset: row.get("offset"),
            key: row.get("key"),
            value: row.get("value"),
            timestamp_ms: row.get("timestamp_ms"),
        })
        .collect())
}

#[async_trait]
impl LocalLog for SqliteLog {
    async fn committed(&self, group: &str, topic: &str, partition: i32) -> Result<Option<i64>, LogError> {
        sqlx::query_scalar("select next_offset from group_offsets where grp = ? and topic = ? and partition = ?")
            .bind(group)
            .bind(topic)
            .bind(partition)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)
    }

    async fn commit(&self, group: &str, topic: &str, partition: i32, next_offset: i64) -> Result<(), LogError> {
        sqlx::query(
            "insert into group_offsets (grp, topic, partition, next_offset) values (?, ?, ?, ?)
             on conflict (grp, topic, partition) do update set next_offset = excluded.next_offset",
        )
        .bind(group)
        .bind(topic)
        .bind(partition)
        .bind(next_offset)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitioning_is_stable() {
        assert_eq!(
            partition_for_key("component:default/a", 8),
            partition_for_key("component:default/a", 8)
        );
        let spread: std::collections::HashSet<i32> = (0..100).map(|i| partition_for_key(&format!("k{i}"), 8)).collect();
        assert_eq!(spread.len(), 8);
    }
}
