//! Choosing and opening the adapters: the event log (Kafka when `CALLBOARD_KAFKA_BROKERS` or
//! `--kafka` is set, otherwise the embedded log in the data directory) and the read models
//! (PostgreSQL when `CALLBOARD_DATABASE_URL` is set, otherwise SQLite files in the data directory).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use callboard_events::log::EventLog;
use callboard_events::topics::{DEFAULT_PREFIX, Topics};
use callboard_readmodel::activity::{ActivityReader, ActivityStore};
use callboard_readmodel::store::{CatalogReader, ReadStore};

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
    /// A librdkafka property for every Kafka client (repeatable), e.g.
    /// `--kafka-property security.protocol=SASL_SSL`. Secrets belong in the environment instead,
    /// out of the process list: `CALLBOARD_KAFKA_PROPERTY_<KEY>` sets `<key>` with `_` read as
    /// `.` (`CALLBOARD_KAFKA_PROPERTY_SASL_PASSWORD` is `sasl.password`).
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = kafka_property)]
    pub kafka_properties: Vec<(String, String)>,
}

/// `KEY=VALUE`.
fn kafka_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.to_owned())),
        _ => Err("expected KEY=VALUE, e.g. security.protocol=SASL_SSL".into()),
    }
}

/// The properties `CALLBOARD_KAFKA_PROPERTY_<KEY>` variables set: `<key>` lowercased, `_` read
/// as `.`.
fn kafka_properties_from(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut properties: Vec<(String, String)> = vars
        .filter_map(|(name, value)| {
            let key = name.strip_prefix("CALLBOARD_KAFKA_PROPERTY_")?;
            (!key.is_empty()).then(|| (key.to_lowercase().replace('_', "."), value))
        })
        .collect();
    properties.sort();
    properties
}

impl LogArgs {
    /// The topic names.
    pub fn topics(&self) -> Topics {
        Topics::new(self.topic_prefix.clone())
    }

    /// Opens the configured log.
    pub async fn open(&self) -> Result<Arc<dyn EventLog>> {
        if let Some(brokers) = &self.kafka_brokers {
            // The environment first, so that a flag can override it.
            let mut properties = kafka_properties_from(std::env::vars());
            properties.extend(self.kafka_properties.iter().cloned());
            return open_kafka(brokers, self.instance_id.clone(), properties);
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
fn open_kafka(
    brokers: &str,
    instance_id: Option<String>,
    properties: Vec<(String, String)>,
) -> Result<Arc<dyn EventLog>> {
    let mut config = callboard_kafka::KafkaConfig::new(brokers);
    config.instance_id = instance_id;
    // Keys only: values may be secrets.
    let keys: Vec<&str> = properties.iter().map(|(k, _)| k.as_str()).collect();
    if !keys.is_empty() {
        tracing::info!(properties = ?keys, "Kafka client properties set");
    }
    config.extra = properties;
    let log =
        callboard_kafka::KafkaLog::connect(config).with_context(|| format!("cannot connect to Kafka at {brokers}"))?;
    Ok(Arc::new(log))
}

#[cfg(not(feature = "kafka"))]
fn open_kafka(_: &str, _: Option<String>, _: Vec<(String, String)>) -> Result<Arc<dyn EventLog>> {
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
    #[arg(
        long = "database-url",
        env = "CALLBOARD_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
}

/// The read models, each as the ports its projection writes through and its readers read.
#[derive(Debug, Clone)]
pub struct Stores {
    /// The catalog's write side.
    pub store: Arc<dyn ReadStore>,
    /// The catalog's read side.
    pub reader: Arc<dyn CatalogReader>,
    /// The activity feed's write side.
    pub activity: Arc<dyn ActivityStore>,
    /// The activity feed's read side.
    pub activity_reader: Arc<dyn ActivityReader>,
    /// A description for logs.
    pub describe: String,
}

impl Stores {
    /// The read models in SQLite files in `data_dir` (`catalog.db`, `activity.db`).
    pub async fn embedded(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join("catalog.db");
        let store = Arc::new(
            callboard_readmodel_sqlite::open_catalog(&path)
                .await
                .with_context(|| format!("cannot open the read model at {}", path.display()))?,
        );
        let activity_path = data_dir.join("activity.db");
        let activity = Arc::new(
            callboard_readmodel_sqlite::open_activity(&activity_path)
                .await
                .with_context(|| format!("cannot open the activity feed at {}", activity_path.display()))?,
        );
        Ok(Self {
            reader: store.clone(),
            store,
            activity_reader: activity.clone(),
            activity,
            describe: format!("SQLite at {}", path.display()),
        })
    }

    /// The read models in PostgreSQL at `url` (the database is created when missing).
    pub async fn postgres(url: &str) -> Result<Self> {
        let db = callboard_readmodel_postgres::PostgresDb::connect(url)
            .await
            .context("cannot connect to the read model in PostgreSQL")?;
        let db = Arc::new(db);
        let store = Arc::new(callboard_readmodel_postgres::catalog(db.clone()));
        let activity = Arc::new(callboard_readmodel_postgres::activity(db));
        // Never log the URL: it may carry a password.
        Ok(Self {
            reader: store.clone(),
            store,
            activity_reader: activity.clone(),
            activity,
            describe: "PostgreSQL".into(),
        })
    }

    /// Prepares every read model's tables (before anyone reads them).
    pub async fn prepare(&self) -> Result<()> {
        self.store
            .prepare()
            .await
            .context("preparing the catalog's read model")?;
        self.activity.prepare().await.context("preparing the activity feed")?;
        Ok(())
    }
}

impl StoreArgs {
    /// Opens the configured read models.
    pub async fn open(&self, data_dir: &Path) -> Result<Stores> {
        match &self.database_url {
            Some(url) => Stores::postgres(url).await,
            None => Stores::embedded(data_dir).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_properties_come_from_the_environment_with_dots() {
        let vars = [
            ("CALLBOARD_KAFKA_PROPERTY_SASL_PASSWORD", "s3cret"),
            ("CALLBOARD_KAFKA_PROPERTY_SECURITY_PROTOCOL", "SASL_SSL"),
            ("CALLBOARD_KAFKA_BROKERS", "kafka:9092"),
            ("CALLBOARD_KAFKA_PROPERTY_", "ignored"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(
            kafka_properties_from(vars.into_iter()),
            [
                ("sasl.password".to_owned(), "s3cret".to_owned()),
                ("security.protocol".to_owned(), "SASL_SSL".to_owned())
            ]
        );
        assert_eq!(
            kafka_property("ssl.ca.location=/etc/ca.pem"),
            Ok(("ssl.ca.location".into(), "/etc/ca.pem".into()))
        );
        assert!(kafka_property("no-equals").is_err());
    }
}
