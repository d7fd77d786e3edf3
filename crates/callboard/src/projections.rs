//! The projections this binary runs — the catalog and the activity feed — on the runtime of
//! `callboard-projection`: which exist, their groups, running them (the projector role), how far
//! behind they are, and replaying them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use callboard_events::log::EventLog;
use callboard_events::topics::Topics;
use callboard_projection::{Generation, Positions, Precedence, Projection, ProjectorConfig, projector_group};
use callboard_readmodel::activity::ActivityProjection;
use callboard_readmodel::catalog::CatalogProjection;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backend::{LogArgs, StoreArgs, Stores};

/// Every projection, by name, in the order they run and replay.
pub const ALL: [&str; 2] = [CatalogProjection::NAME, ActivityProjection::NAME];

/// Checks a list of projection names (empty: all).
pub fn select(names: &[String]) -> Result<Vec<&'static str>> {
    if names.is_empty() {
        return Ok(ALL.to_vec());
    }
    let mut out = Vec::new();
    for name in names {
        let name = name.trim().to_lowercase();
        match ALL.iter().find(|n| **n == name) {
            Some(known) if !out.contains(known) => out.push(*known),
            Some(_) => {}
            None => bail!("unknown projection {name:?}: use {}", ALL.join(", ")),
        }
    }
    Ok(out)
}

/// Options of the commands that run projections (`project`, `replay`).
#[derive(Debug, clap::Args)]
pub struct ProjectionArgs {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Consumer group of the catalog's projectors (processes in one group split the partitions);
    /// the activity feed's group is this one with `-activity` appended.
    #[arg(long, env = "CALLBOARD_PROJECTOR_GROUP")]
    pub group: Option<String>,
    /// The projections (comma-separated): catalog, activity. Default: all.
    #[arg(long, env = "CALLBOARD_PROJECTIONS", value_delimiter = ',')]
    pub projections: Vec<String>,
}

impl ProjectionArgs {
    /// Checks the projections' names and opens the log and the read models: the projections,
    /// the log, the read models, and the settings for batches of at most `batch` events.
    pub async fn open(&self, batch: usize) -> Result<(Vec<&'static str>, Arc<dyn EventLog>, Stores, Settings)> {
        let names = select(&self.projections)?;
        let log = self.log.open().await?;
        let stores = self.store.open(&self.log.data_dir).await?;
        let settings = Settings {
            topics: self.log.topics(),
            group: self.group.clone(),
            batch,
        };
        Ok((names, log, stores, settings))
    }
}

/// Settings shared by every projection a process runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Topic names.
    pub topics: Topics,
    /// The catalog's consumer group; the others add their name to it (see
    /// `callboard_projection::projector_group`). `None`: the default.
    pub group: Option<String>,
    /// Most events per transaction.
    pub batch: usize,
}

impl Settings {
    /// The runtime's settings for `projection`.
    pub fn config(&self, projection: &str) -> ProjectorConfig {
        let mut config = ProjectorConfig::new(self.topics.clone(), projection);
        if let Some(base) = &self.group {
            config.group = projector_group(base, projection);
        }
        config.batch = self.batch;
        config
    }
}

/// A projection's positions (read-only) and its topics: what lag and readiness read.
pub fn progress_of(stores: &Stores, topics: &Topics, projection: &str) -> (Arc<dyn Positions>, Vec<String>) {
    let positions: Arc<dyn Positions> = match projection {
        ActivityProjection::NAME => stores.activity.clone(),
        _ => stores.store.clone(),
    };
    (positions, vec![topics.entities(), topics.locations()])
}

/// Runs the named projections until `stop` turns true, each in a task of its own; after every
/// batch, `applied(projection, group, events, took)` is told. The catalog goes first: while it
/// catches up, the others wait (see `callboard_projection::precedence`), so that entities are
/// queryable as soon as they would be without them.
pub fn spawn(
    log: &Arc<dyn EventLog>,
    stores: &Stores,
    settings: &Settings,
    names: &[&'static str],
    applied: impl Fn(&'static str, &str, usize, Duration) + Clone + Send + Sync + 'static,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<Result<()>>> {
    let leader = names.contains(&CatalogProjection::NAME).then(Precedence::default);
    names
        .iter()
        .map(|name| {
            let mut stop = stop.clone();
            let shutdown = async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            let mut config = settings.config(name);
            match *name {
                ActivityProjection::NAME => {
                    config.follows = leader.clone();
                    let projection = Arc::new(ActivityProjection::new(stores.activity.clone(), &settings.topics));
                    spawn_one(log, projection, config, applied.clone(), shutdown)
                }
                _ => {
                    config.leads = leader.clone();
                    let projection = Arc::new(CatalogProjection::new(stores.store.clone()));
                    spawn_one(log, projection, config, applied.clone(), shutdown)
                }
            }
        })
        .collect()
}

fn spawn_one<P: Projection>(
    log: &Arc<dyn EventLog>,
    projection: Arc<P>,
    config: ProjectorConfig,
    applied: impl Fn(&'static str, &str, usize, Duration) + Send + Sync + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<Result<()>> {
    let name = projection.name();
    let group = config.group.clone();
    let log = log.clone();
    tokio::spawn(async move {
        let wrote = |n, took| applied(name, &group, n, took);
        callboard_projection::run(log, projection, config, wrote, shutdown)
            .await
            .with_context(|| format!("the {name} projector stopped"))
    })
}

/// Whether every named projection has applied the log up to its current end; the names of those
/// still behind otherwise.
pub async fn behind(
    log: &dyn EventLog,
    stores: &Stores,
    settings: &Settings,
    names: &[&'static str],
) -> Result<Vec<&'static str>> {
    let mut out = Vec::new();
    for name in names {
        let (positions, topics) = progress_of(stores, &settings.topics, name);
        let group = settings.config(name).group;
        if !callboard_projection::caught_up(log, positions.as_ref(), &topics, &group).await? {
            out.push(*name);
        }
    }
    Ok(out)
}

/// Rebuilds the named projections from the start of the log, one after the other, each into a
/// new generation that readers switch to when it is complete. `progress(projection, done,
/// total)` reports events read.
pub async fn replay(
    log: Arc<dyn EventLog>,
    stores: &Stores,
    settings: &Settings,
    names: &[&'static str],
    progress: impl Fn(&'static str, u64, u64) + Send + Sync,
) -> Result<Vec<(&'static str, Generation)>> {
    let mut out = Vec::new();
    for name in names {
        let config = settings.config(name);
        let report = |done, total| progress(name, done, total);
        let generation = match *name {
            ActivityProjection::NAME => {
                let projection = Arc::new(ActivityProjection::new(stores.activity.clone(), &settings.topics));
                callboard_projection::replay(log.clone(), projection, &config, report).await
            }
            _ => {
                let projection = Arc::new(CatalogProjection::new(stores.store.clone()));
                callboard_projection::replay(log.clone(), projection, &config, report).await
            }
        }
        .with_context(|| format!("replaying the {name} projection"))?;
        out.push((*name, generation));
    }
    Ok(out)
}
