//! Graph answers with caching: moka (in process) and Redis (shared), keyed by the read model's
//! graph version, so they are invalidated the moment the projector changes relation rows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use callboard_readmodel::store::{CatalogReader, StoreError};
use moka::future::Cache;
use redis::AsyncCommands;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use crate::graph::{Graph, Hop, Reached};

/// Why a graph question could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// The read model failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Building the graph failed (shared by every caller that waited for the same build).
    #[error("building the graph failed: {0}")]
    Build(String),
}

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

    async fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let mut connection = self.connection().await?;
        let key = format!("{}{key}", self.prefix);
        match tokio::time::timeout(REDIS_TIMEOUT, connection.get::<_, Option<String>>(&key)).await {
            Ok(Ok(Some(text))) => serde_json::from_str(&text).ok(),
            Ok(Ok(None)) => None,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "Redis read failed");
                None
            }
            Err(_) => None,
        }
    }

    async fn set<T: Serialize>(&self, key: &str, value: &T) {
        let Some(mut connection) = self.connection().await else {
            return;
        };
        let Ok(text) = serde_json::to_string(value) else { return };
        let key = format!("{}{key}", self.prefix);
        let ttl = self.ttl.as_secs();
        if let Ok(Err(e)) = tokio::time::timeout(REDIS_TIMEOUT, connection.set_ex::<_, _, ()>(&key, text, ttl)).await {
            tracing::debug!(error = %e, "Redis write failed");
        }
    }
}

/// Where an answer came from (for tests and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// The process's own cache.
    Local,
    /// Redis.
    Shared,
    /// Computed from the read model.
    Computed,
}

/// Answers graph questions for API requests.
#[derive(Clone)]
pub struct GraphService {
    reader: Arc<dyn CatalogReader>,
    /// Built graphs by version (`v<token>` now, `v<token>@<time>` in the past).
    graphs: Cache<String, Arc<Graph>>,
    /// Answers by key.
    answers: Cache<String, Arc<String>>,
    shared: Option<RedisCache>,
}

impl std::fmt::Debug for GraphService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphService")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

/// Which question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Question<'a> {
    /// Transitive dependencies.
    Dependencies,
    /// Transitive dependents.
    Dependents,
    /// Impact of a change.
    Impact,
    /// Everything owned by a group and its sub-groups.
    Owned,
    /// The shortest path to another entity.
    Path(&'a str),
}

impl GraphService {
    /// A service reading from `reader`, sharing answers through `shared` when given.
    pub fn new(reader: Arc<dyn CatalogReader>, shared: Option<RedisCache>) -> Self {
        Self {
            reader,
            graphs: Cache::builder()
                .max_capacity(8)
                .time_to_idle(Duration::from_secs(600))
                .build(),
            answers: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(600))
                .build(),
            shared,
        }
    }

    /// The graph now, or as of `time` (RFC 3339, normalised by the caller).
    pub async fn graph(&self, at: Option<&str>) -> Result<(String, Arc<Graph>), GraphError> {
        let version = self.version(at).await?;
        // One build per version however many requests ask at once: the others wait for it
        // (building from every relation row takes seconds at a million rows).
        let graph = self
            .graphs
            .try_get_with(version.clone(), async {
                let rows = match at {
                    None => self.reader.all_relations().await?,
                    Some(time) => self.reader.relations_at(time).await?,
                };
                let started = Instant::now();
                let graph = tokio::task::spawn_blocking(move || Graph::from_edges(rows))
                    .await
                    .map_err(|e| GraphError::Build(e.to_string()))?;
                tracing::debug!(
                    nodes = graph.size().0,
                    edges = graph.size().1,
                    ms = started.elapsed().as_millis() as u64,
                    "graph built"
                );
                Ok::<_, GraphError>(Arc::new(graph))
            })
            .await
            .map_err(|e: Arc<GraphError>| match e.as_ref() {
                GraphError::Build(message) => GraphError::Build(message.clone()),
                other => GraphError::Build(other.to_string()),
            })?;
        Ok((version, graph))
    }

    /// Answers a traversal question about `root`, with where the answer came from.
    pub async fn reached(
        &self,
        question: Question<'_>,
        root: &str,
        depth: usize,
        at: Option<&str>,
    ) -> Result<(Vec<Reached>, Served), GraphError> {
        let version = self.version(at).await?;
        let name = match question {
            Question::Dependencies => "dependencies",
            Question::Dependents => "dependents",
            Question::Impact => "impact",
            Question::Owned => "owned",
            Question::Path(_) => "path",
        };
        let key = format!("{version}|{name}|{root}|{depth}");
        self.cached(&key, async {
            let (_, graph) = self.graph(at).await?;
            Ok(match question {
                Question::Dependencies => graph.dependencies(root, depth),
                Question::Dependents => graph.dependents(root, depth),
                Question::Impact => graph.impact(root, depth),
                Question::Owned => graph.owned_rollup(root, depth),
                Question::Path(_) => Vec::new(),
            })
        })
        .await
    }

    /// The shortest path between two entities.
    pub async fn path(
        &self,
        from: &str,
        to: &str,
        depth: usize,
        at: Option<&str>,
    ) -> Result<(Option<Vec<Hop>>, Served), GraphError> {
        let version = self.version(at).await?;
        let key = format!("{version}|path|{from}|{to}|{depth}");
        self.cached(&key, async {
            let (_, graph) = self.graph(at).await?;
            Ok(graph.path(from, to, None, depth))
        })
        .await
    }

    /// Dependency cycles.
    pub async fn cycles(&self, at: Option<&str>) -> Result<(Vec<Vec<String>>, Served), GraphError> {
        let version = self.version(at).await?;
        let key = format!("{version}|cycles");
        self.cached(&key, async {
            let (_, graph) = self.graph(at).await?;
            Ok(graph.cycles())
        })
        .await
    }

    /// The cache key of the graph asked for. A past graph is keyed by the current version too:
    /// the log may still deliver an event stamped before `time` (another partition lagging), and
    /// an instant in the future is a moving target.
    async fn version(&self, at: Option<&str>) -> Result<String, GraphError> {
        let now = self.reader.graph_version().await?;
        Ok(match at {
            None => format!("v{now}"),
            Some(time) => format!("v{now}@{time}"),
        })
    }

    async fn cached<T: Serialize + DeserializeOwned>(
        &self,
        key: &str,
        compute: impl Future<Output = Result<T, GraphError>>,
    ) -> Result<(T, Served), GraphError> {
        if let Some(text) = self.answers.get(key).await
            && let Ok(value) = serde_json::from_str(&text)
        {
            return Ok((value, Served::Local));
        }
        if let Some(shared) = &self.shared
            && let Some(value) = shared.get::<T>(key).await
        {
            if let Ok(text) = serde_json::to_string(&value) {
                self.answers.insert(key.to_owned(), Arc::new(text)).await;
            }
            return Ok((value, Served::Shared));
        }
        let value = compute.await?;
        if let Ok(text) = serde_json::to_string(&value) {
            self.answers.insert(key.to_owned(), Arc::new(text)).await;
        }
        if let Some(shared) = &self.shared {
            shared.set(key, &value).await;
        }
        Ok((value, Served::Computed))
    }
}
