//! Choosing and opening the event log: Kafka when `CALLBOARD_KAFKA_BROKERS` (or `--kafka`) is
//! set, otherwise the embedded log in the data directory.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use callboard_events::log::EventLog;
use callboard_events::topics::{DEFAULT_PREFIX, Topics};

/// Options shared by every command that touches the log.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Folder of the embedded log and read model.
    #[arg(long, env = "CALLBOARD_DATA_DIR", default_value = ".callboard", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Kafka bootstrap servers; when set, the event log is Kafka instead of the embedded file.
    #[arg(long = "kafka", env = "CALLBOARD_KAFKA_BROKERS", value_name = "HOSTS")]
    pub kafka_brokers: Option<String>,
    /// Prefix of every topic name.
    #[arg(long, env = "CALLBOARD_TOPIC_PREFIX", default_value = DEFAULT_PREFIX, value_name = "PREFIX")]
    pub topic_prefix: String,
    /// Partitions of the entities topic when it is created.
    #[arg(long, env = "CALLBOARD_PARTITIONS", default_value_t = 6)]
    pub partitions: i32,
    /// Replication factor of created Kafka topics.
    #[arg(long, env = "CALLBOARD_REPLICATION", default_value_t = 1)]
    pub replication: i16,
    /// A stable identity for this process (e.g. the pod name of a StatefulSet): a restart then
    /// takes its Kafka partitions back at once. Never give two running processes the same one.
    #[arg(long, env = "CALLBOARD_INSTANCE_ID", value_name = "NAME")]
    pub instance_id: Option<String>,
}

impl LogArgs {
    /// The topic names.
    pub fn topics(&self) -> Topics {
        Topics::new(self.topic_prefix.clone())
    }

    /// Opens the configured log.
    pub async fn open(&self) -> Result<Arc<dyn EventLog>> {
        if let Some(brokers) = &self.kafka_brokers {
            return open_kafka(brokers, self.instance_id.clone());
        }
        let path = self.data_dir.join("events.db");
        let log = callboard_log_sqlite::SqliteLog::open(&path)
            .await
            .with_context(|| format!("cannot open the embedded log at {}", path.display()))?;
        Ok(Arc::new(log))
    }

    /// True for the embedded log.
    pub fn embedded(&self) -> bool {
        self.kafka_brokers.is_none()
    }
}

#[cfg(feature = "kafka")]
fn open_kafka(brokers: &str, instance_id: Option<String>) -> Result<Arc<dyn EventLog>> {
    let mut config = callboard_kafka::KafkaConfig::new(brokers);
    config.instance_id = instance_id;
    let log =
        callboard_kafka::KafkaLog::connect(config).with_context(|| format!("cannot connect to Kafka at {brokers}"))?;
    Ok(Arc::new(log))
}

#[cfg(not(feature = "kafka"))]
fn open_kafka(_: &str, _: Option<String>) -> Result<Arc<dyn EventLog>> {
    bail!("this callboard was built without Kafka support (the `kafka` cargo feature)")
}

/// Holds the embedded writer lock: one process writes a data directory at a time.
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
}

/// Takes the writer lock of an embedded data directory.
pub fn lock_writer(data_dir: &Path) -> Result<WriterLock> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    let path = data_dir.join("writer.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(WriterLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another callboard process is writing to {}; stop it first (only one writer per data directory)",
            data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

/// Options of commands that touch the read model.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// PostgreSQL URL of the read model (`postgres://…`); without it, the read model is an
    /// SQLite file in the data directory.
    #[arg(long = "database-url", env = "CALLBOARD_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
}

/// The read model, as both of its ports.
pub struct Stores {
    /// The write side.
    pub store: Arc<dyn callboard_readmodel::store::ReadStore>,
    /// The read side.
    pub reader: Arc<dyn callboard_readmodel::store::CatalogReader>,
    /// A description for logs.
    pub describe: String,
}

impl StoreArgs {
    /// Opens the configured read model.
    pub async fn open(&self, data_dir: &Path) -> Result<Stores> {
        if let Some(url) = &self.database_url {
            let store = Arc::new(
                callboard_readmodel_postgres::PostgresStore::connect(url)
                    .await
                    .context("cannot connect to the read model in PostgreSQL")?,
            );
            // Never log the URL: it may carry a password.
            return Ok(Stores {
                reader: store.clone(),
                store,
                describe: "PostgreSQL".into(),
            });
        }
        let path = data_dir.join("catalog.db");
        let store = Arc::new(
            callboard_readmodel_sqlite::SqliteStore::open(&path)
                .await
                .with_context(|| format!("cannot open the read model at {}", path.display()))?,
        );
        Ok(Stores {
            reader: store.clone(),
            store,
            describe: format!("SQLite at {}", path.display()),
        })
    }
}
