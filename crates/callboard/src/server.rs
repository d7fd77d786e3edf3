//! The server: every role of `callboard serve` — the API, the writer, the projectors — started on
//! a listener from a [`Backend`] (the adapters) and a [`Config`], and served until a shutdown
//! signal. `callboard serve` and the in-process tests start it the same way:
//!
//! ```ignore
//! let server = Server::start(listener, backend, config).await?;   // roles running
//! println!("serving on {}", server.local_addr()?);
//! server.serve(shutdown).await?;                                   // until `shutdown`
//! ```
//!
//! or, in one call, [`run`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use callboard_api::{Limits, PrincipalResolver};
use callboard_catalog::{Catalog, Parts};
use callboard_events::log::EventLog;
use callboard_events::topics::Topics;
use callboard_events::types::LocationRecord;
use callboard_graph::SharedCache;
use callboard_ingest::watch::FileWatcher;
use callboard_ingest::{Scanner, Writer, WriterConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backend::Stores;
use crate::locations::reader_for;
use crate::projections::{self, Settings};

/// Which roles a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// GraphQL on `/graphql`, subscriptions, the IDE.
    pub api: bool,
    /// The providers: registered locations, file watching, scheduled rescans, commands.
    pub writer: bool,
    /// The projectors (catalog and activity feed).
    pub projector: bool,
}

impl Roles {
    /// Every role.
    pub const ALL: Roles = Roles {
        api: true,
        writer: true,
        projector: true,
    };

    /// Roles named in a list (`api`, `writer`, `projector`).
    pub fn parse(names: &[String]) -> Result<Self> {
        let mut roles = Roles {
            api: false,
            writer: false,
            projector: false,
        };
        for name in names {
            match name.trim().to_lowercase().as_str() {
                "api" => roles.api = true,
                "writer" => roles.writer = true,
                "projector" => roles.projector = true,
                other => bail!("unknown role {other:?}: use api, writer and projector"),
            }
        }
        Ok(roles)
    }
}

/// The adapters a server runs on.
#[derive(Debug)]
pub struct Backend {
    /// The event log.
    pub log: Arc<dyn EventLog>,
    /// Topic names.
    pub topics: Topics,
    /// Partitions of the entity topic when the writer creates it.
    pub partitions: i32,
    /// Replication of created topics.
    pub replication: i16,
    /// The read models.
    pub stores: Stores,
    /// A graph cache shared by API replicas, if any.
    pub shared_cache: Option<Arc<dyn SharedCache>>,
}

/// What a server does.
#[derive(Clone)]
pub struct Config {
    /// The roles it runs.
    pub roles: Roles,
    /// Locations registered (and read) at start; needs the writer.
    pub locations: Vec<LocationRecord>,
    /// Hosts URL locations may be read from, besides the defaults.
    pub allow_hosts: Vec<String>,
    /// Whether hidden files (`.env`, `.git/…`) below the locations' folders may be read.
    pub hidden_files: bool,
    /// GraphQL's limits.
    pub limits: Limits,
    /// Hot entities the API keeps in memory (0: none).
    pub entity_cache: u64,
    /// The projectors' group and batch size.
    pub projector_group: Option<String>,
    /// Most events per projection transaction.
    pub batch: usize,
    /// How a request's principal is found.
    pub principal: PrincipalResolver,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("roles", &self.roles)
            .field("locations", &self.locations)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            roles: Roles::ALL,
            locations: Vec::new(),
            allow_hosts: Vec::new(),
            hidden_files: false,
            limits: Limits::default(),
            entity_cache: 20_000,
            projector_group: None,
            batch: 2_000,
            principal: callboard_api::anonymous(),
        }
    }
}

/// A server whose roles run, ready to serve its listener.
pub struct Server {
    listener: TcpListener,
    app: Router,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Result<()>>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Health {
    log: Arc<dyn EventLog>,
    stores: Stores,
    settings: Settings,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
}

async fn readyz(State(health): State<Health>) -> impl IntoResponse {
    // Positions against the log's ends only: a probe reads no events.
    match projections::behind(health.log.as_ref(), &health.stores, &health.settings, &projections::ALL).await {
        Ok(behind) if behind.is_empty() => (StatusCode::OK, "ready\n".to_owned()),
        Ok(behind) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("projections are catching up: {}\n", behind.join(", ")),
        ),
        Err(e) => {
            // The reason names the dependency; the driver's words stay in the log.
            tracing::warn!(error = %format!("{e:#}"), "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {}\n", unready_reason(&e)),
            )
        }
    }
}

/// Which dependency a failed readiness check could not reach, in words fit for a probe's answer.
fn unready_reason(error: &anyhow::Error) -> &'static str {
    for cause in error.chain() {
        if let Some(e) = cause.downcast_ref::<callboard_projection::ProjectorError>() {
            return match e {
                callboard_projection::ProjectorError::Log(_) => "the event log is unreachable",
                callboard_projection::ProjectorError::Store(_) => "the read model's database is unreachable",
            };
        }
        if cause.is::<callboard_events::log::LogError>() {
            return "the event log is unreachable";
        }
        if cause.is::<callboard_projection::StoreError>() {
            return "the read model's database is unreachable";
        }
    }
    "the projections' positions could not be read"
}

async fn metrics_text(State(health): State<Health>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        health.metrics.render(),
    )
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

impl Server {
    /// Starts the roles of `config` on `backend`: the writer registers and reads the configured
    /// locations before this returns (so that a server that answers has them), the projectors
    /// and the change feed run in the background. Nothing is served until [`Server::serve`].
    pub async fn start(listener: TcpListener, backend: Backend, config: Config) -> Result<Self> {
        let Backend {
            log,
            topics,
            partitions,
            replication,
            stores,
            shared_cache,
        } = backend;
        let roles = config.roles;
        if !config.locations.is_empty() && !roles.writer {
            bail!("registering locations needs the writer role");
        }
        let metrics = crate::metrics::install()?;
        let settings = Settings {
            topics: topics.clone(),
            group: config.projector_group.clone(),
            batch: config.batch,
        };
        // The read models' tables exist before anyone reads them.
        stores.prepare().await?;
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks: Vec<JoinHandle<Result<()>>> = Vec::new();

        // The writer starts first (it creates the topics), then the projectors, and only then
        // does the writer read the configured locations: projection runs beside the initial
        // read, on the other core, instead of after it (which made `serve` nearly twice as slow
        // from files to queryable as `import` beside `project`).
        let mut writer = None;
        if roles.writer {
            let role = Writer::acquire_role(log.as_ref(), &topics, Duration::from_secs(60)).await?;
            let reader = Arc::new(reader_for(&config.locations, &config.allow_hosts, config.hidden_files));
            let writer_config = WriterConfig {
                topics: topics.clone(),
                partitions,
                replication,
                actor: "provider:serve".into(),
                ..WriterConfig::default()
            };
            writer = Some((
                role,
                Writer::start(log.clone(), Scanner::new(reader), writer_config).await?,
            ));
        }

        if roles.projector {
            tasks.extend(projections::spawn(
                &log,
                &stores,
                &settings,
                &projections::ALL,
                crate::metrics::batch_applied,
                &stop_rx,
            ));
            for name in projections::ALL {
                let (positions, topics) = projections::progress_of(&stores, &settings.topics, name);
                let sampler = tokio::spawn(crate::metrics::sample_lag(
                    log.clone(),
                    positions,
                    name,
                    topics,
                    settings.config(name).group,
                ));
                let mut stop = stop_rx.clone();
                tokio::spawn(async move {
                    let _ = stop.wait_for(|s| *s).await;
                    sampler.abort();
                });
            }
        }

        if let Some((role, mut writer)) = writer {
            // An error returns and drops `stop`, which stops the projectors started above.
            for location in &config.locations {
                writer.register(location, "provider:serve").await?;
                let report = writer.sync(location).await?;
                tracing::info!(location = %location.key(), upserted = report.counts.upserted, rejected = report.counts.rejected, "location read");
            }
            let (watcher, changes) = FileWatcher::new().context("starting the file watcher")?;
            writer.keep_watching(watcher);
            let stop = stopped(stop_rx.clone());
            tasks.push(tokio::spawn(async move {
                writer.run(role, changes, stop).await.context("the writer stopped")
            }));
        }

        let health = Health {
            log: log.clone(),
            stores: stores.clone(),
            settings: settings.clone(),
            metrics,
        };
        // Probes and scrapes stay out of the request trace: they are frequent, and a 503 from
        // /readyz while projections catch up is an answer, not a failure.
        let mut app = Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics_text))
            .with_state(health);
        if roles.api {
            let catalog = Catalog::new(Parts {
                reader: stores.reader.clone(),
                positions: stores.store.clone(),
                activity: stores.activity_reader.clone(),
                shared_cache,
                log: Some(log.clone()),
                topics: topics.clone(),
                projector_group: Some(settings.config("catalog").group),
                cached_entities: config.entity_cache,
                // Subscribers share one buffer of every change, filtered after it (a subscriber
                // to one ref still reads past the others): a burst such as a location of 10,000
                // entities read at once must fit while a loaded machine is slow to poll them. One
                // copy of each change, shared: 16k changes are a few MiB at most.
                feed_capacity: 16_384,
            });
            {
                let (catalog, stop) = (catalog.clone(), stopped(stop_rx.clone()));
                tokio::spawn(async move { catalog.run_feed(stop).await });
            }
            let schema = callboard_api::build(catalog, &config.limits);
            let api = callboard_api::http::routes(schema, &config.limits, config.principal.clone())
                .route("/", get(|| async { axum::response::Redirect::temporary("/graphql") }))
                .layer(
                    tower_http::trace::TraceLayer::new_for_http().make_span_with(
                        |request: &axum::http::Request<_>| {
                            tracing::info_span!("request", method = %request.method(), path = %request.uri().path())
                        },
                    ),
                );
            app = app.merge(api);
        }
        Ok(Self {
            listener,
            app,
            stop,
            tasks,
        })
    }

    /// The address served.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` resolves, then drains requests and the current projection
    /// batches, stops the roles and waits for them. A role that stops with an error (one its
    /// own retries could not ride out) stops the server too, and its error is returned: a
    /// process that cannot project or write must not go on serving stale data as if healthy.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let Self {
            listener,
            app,
            stop,
            tasks,
        } = self;
        let (failed, role_failed) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(listener, app).with_graceful_shutdown({
            let stop = stop.clone();
            async move {
                tokio::select! {
                    () = shutdown => tracing::info!("shutting down: draining requests and the current projection batches"),
                    _ = role_failed => tracing::error!("a role failed: shutting down"),
                }
                let _ = stop.send(true);
            }
        });
        let server = tokio::spawn(server.into_future());
        let mut roles: futures::stream::FuturesUnordered<_> = tasks.into_iter().collect();
        let mut failure = None;
        let mut failed = Some(failed);
        while let Some(ended) = futures::StreamExt::next(&mut roles).await {
            let ended = ended.context("a role panicked").and_then(|r| r);
            if let Err(e) = ended {
                tracing::error!(error = %format!("{e:#}"), "a role stopped");
                if let Some(failed) = failed.take() {
                    let _ = failed.send(());
                }
                failure.get_or_insert(e);
            }
        }
        let served = server.await.context("the HTTP server panicked")?;
        let _ = stop.send(true);
        if let Some(e) = failure {
            return Err(e);
        }
        served.context("the HTTP server failed")
    }
}

/// Starts the server and serves until `shutdown` resolves (see [`Server`]).
pub async fn run(
    listener: TcpListener,
    backend: Backend,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    Server::start(listener, backend, config).await?.serve(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_names_the_dependency_not_the_drivers_words() {
        let driver = std::io::Error::other("password authentication failed for user \"callboard\"");
        let error = anyhow::Error::from(callboard_projection::ProjectorError::Store(
            callboard_projection::StoreError::Unavailable(Box::new(driver)),
        ))
        .context("reading the catalog's positions");
        assert_eq!(unready_reason(&error), "the read model's database is unreachable");
        let error = anyhow::Error::from(callboard_events::log::LogError::Unavailable(
            "broker 10.0.0.7:9092: connection refused".into(),
        ));
        assert_eq!(unready_reason(&error), "the event log is unreachable");
    }
}
