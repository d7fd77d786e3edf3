//! The graph cache shared by API replicas, in Redis: an adapter of `callboard-graph`'s
//! [`SharedCache`] port. Keys live under a prefix (the deployment's topic prefix), values expire
//! after ten minutes (every key also carries the read model's graph version, so a stale answer is
//! never read; expiry only bounds memory).
//!
//! Every operation is bounded in time and its failures are swallowed (logged): Redis is an
//! accelerator, never a dependency. After a failed connection attempt the next is made no sooner
//! than five seconds later, so an outage costs requests nothing but a missed cache.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use callboard_graph::SharedCache;
use redis::AsyncCommands;
use tokio::sync::Mutex;

/// The shared cache. Every operation is bounded in time and its failures are swallowed (logged):
/// Redis is an accelerator, never a dependency.
#[derive(Clone)]
pub struct RedisCache {
    client: redis::Client,
    prefix: String,
    ttl: Duration,
    connection: Arc<Mutex<Option<redis::aio::ConnectionManager>>>,
    /// When the last connection attempt failed, to retry only now and then.
    failed_at: Arc<Mutex<Option<Instant>>>,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

const REDIS_TIMEOUT: Duration = Duration::from_millis(200);

impl RedisCache {
    /// A cache at `url` (`redis://127.0.0.1:6379`), with keys under `prefix`. Connecting is lazy.
    pub fn new(url: &str, prefix: impl Into<String>) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            prefix: prefix.into(),
            ttl: Duration::from_secs(600),
            connection: Arc::new(Mutex::new(None)),
            failed_at: Arc::new(Mutex::new(None)),
        })
    }

    async fn connection(&self) -> Option<redis::aio::ConnectionManager> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Some(connection.clone());
        }
        let mut failed_at = self.failed_at.lock().await;
        if failed_at.is_some_and(|t| t.elapsed() < Duration::from_secs(5)) {
            return None;
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1);
        match tokio::time::timeout(
            REDIS_TIMEOUT * 2,
            self.client.get_connection_manager_with_config(config),
        )
        .await
        {
            Ok(Ok(connection)) => {
                *failed_at = None;
                *slot = Some(connection.clone());
                Some(connection)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Redis is unavailable; answering without the shared cache");
                *failed_at = Some(Instant::now());
                None
            }
            Err(_) => {
                tracing::warn!("Redis did not answer in time; answering without the shared cache");
                *failed_at = Some(Instant::now());
                None
            }
        }
    }
}

#[async_trait]
impl SharedCache for RedisCache {
    async fn get(&self, key: &str) -> Option<String> {
        let mut connection = self.connection().await?;
        let key = format!("{}{key}", self.prefix);
        match tokio::time::timeout(REDIS_TIMEOUT, connection.get::<_, Option<String>>(&key)).await {
            Ok(Ok(Some(text))) => Some(text),
            Ok(Ok(None)) => None,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "Redis read failed");
                None
            }
            Err(_) => None,
        }
    }

    async fn set(&self, key: &str, text: String) {
        let Some(mut connection) = self.connection().await else {
            return;
        };
        let key = format!("{}{key}", self.prefix);
        let ttl = self.ttl.as_secs();
        if let Ok(Err(e)) = tokio::time::timeout(REDIS_TIMEOUT, connection.set_ex::<_, _, ()>(&key, text, ttl)).await {
            tracing::debug!(error = %e, "Redis write failed");
        }
    }
}
