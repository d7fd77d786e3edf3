//! Graph answers with caching: moka (in process) and a shared cache (Redis), keyed by the read model's
//! graph version, so they are invalidated the moment the projector changes relation rows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use callboard_model::EntityRef;
use callboard_readmodel::store::{CatalogReader, StoreError};
use moka::future::Cache;
use serde::Serialize;
use serde::de::DeserializeOwned;

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

/// A cache shared by every API replica (Redis in production, in `callboard-cache-redis`): text
/// values by key, each kept for a while. Implementations bound every operation in time and
/// swallow (log) their failures: a shared cache is an accelerator, never a dependency, so a miss
/// and an outage look the same here.
#[async_trait]
pub trait SharedCache: Send + Sync + std::fmt::Debug {
    /// The value at `key`, if the cache has it.
    async fn get(&self, key: &str) -> Option<String>;

    /// Stores `value` at `key`.
    async fn set(&self, key: &str, value: String);
}

/// Where an answer came from (for tests and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// The process's own cache.
    Local,
    /// The shared cache.
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
    shared: Option<Arc<dyn SharedCache>>,
    /// Past graphs are built one at a time: each distinct past instant is a build from the whole
    /// history (seconds at a million rows), so a client asking for many instants at once must
    /// queue — within its request's time limit — rather than take every core.
    past_builds: Arc<tokio::sync::Semaphore>,
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
pub enum Question {
    /// Transitive dependencies.
    Dependencies,
    /// Transitive dependents.
    Dependents,
    /// Impact of a change.
    Impact,
    /// Everything owned by a group and its sub-groups.
    Owned,
}

impl GraphService {
    /// A service reading from `reader`, sharing answers through `shared` when given.
    pub fn new(reader: Arc<dyn CatalogReader>, shared: Option<Arc<dyn SharedCache>>) -> Self {
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
            past_builds: Arc::new(tokio::sync::Semaphore::new(1)),
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
                let _permit = match at {
                    Some(_) => Some(
                        self.past_builds
                            .acquire()
                            .await
                            .map_err(|e| GraphError::Build(e.to_string()))?,
                    ),
                    None => None,
                };
                let rows = match at {
                    None => self.reader.all_relations().await?,
                    Some(time) => self.reader.relations_at(time).await?,
                };
                let started = Instant::now();
                let graph = tokio::task::spawn_blocking(move || Graph::from_relations(rows))
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
        question: Question,
        root: &EntityRef,
        depth: usize,
        at: Option<&str>,
    ) -> Result<(Vec<Reached>, Served), GraphError> {
        let version = self.version(at).await?;
        let name = match question {
            Question::Dependencies => "dependencies",
            Question::Dependents => "dependents",
            Question::Impact => "impact",
            Question::Owned => "owned",
        };
        let key = format!("{version}|{name}|{root}|{depth}");
        self.cached(&key, async {
            let (_, graph) = self.graph(at).await?;
            Ok(match question {
                Question::Dependencies => graph.dependencies(root, depth),
                Question::Dependents => graph.dependents(root, depth),
                Question::Impact => graph.impact(root, depth),
                Question::Owned => graph.owned_rollup(root, depth),
            })
        })
        .await
    }

    /// The shortest path between two entities.
    pub async fn path(
        &self,
        from: &EntityRef,
        to: &EntityRef,
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
    pub async fn cycles(&self, at: Option<&str>) -> Result<(Vec<Vec<EntityRef>>, Served), GraphError> {
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
            && let Some(text) = shared.get(key).await
            && let Ok(value) = serde_json::from_str(&text)
        {
            self.answers.insert(key.to_owned(), Arc::new(text)).await;
            return Ok((value, Served::Shared));
        }
        let value = compute.await?;
        if let Ok(text) = serde_json::to_string(&value) {
            if let Some(shared) = &self.shared {
                shared.set(key, text.clone()).await;
            }
            self.answers.insert(key.to_owned(), Arc::new(text)).await;
        }
        Ok((value, Served::Computed))
    }
}
