//! `callboard serve`: every role in one process by default — the API (GraphQL on `/graphql`,
//! `/healthz`, `/readyz`, `/metrics`), the writer (providers: registered locations, file
//! watching, scheduled rescans, commands from the API) and the projector. `--roles` picks a
//! subset, so each role scales apart.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use callboard_api::feed::{self, Feed};
use callboard_api::{Limits, Services};
use callboard_events::log::EventLog;
use callboard_events::topics::Topics;
use callboard_events::types::LocationRecord;
use callboard_graph::{GraphService, RedisCache};
use callboard_ingest::commands::CommandClient;
use callboard_ingest::watch::FileWatcher;
use callboard_ingest::{Scanner, Writer, WriterConfig};
use callboard_readmodel::projector::{self, ProjectorConfig};
use callboard_readmodel::store::ReadStore;
use tokio::sync::watch;

use crate::backend::{LogArgs, StoreArgs, lock_writer};
use crate::commands::import::{location_of, reader_for};

/// Arguments of `callboard serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    store: StoreArgs,
    /// Register this file, folder (searched for catalog-info.yaml) or URL at start (repeatable).
    #[arg(long, env = "CALLBOARD_LOCATION", value_delimiter = ',', value_name = "PATH_OR_URL")]
    location: Vec<String>,
    /// Address of the HTTP listener.
    #[arg(
        long,
        env = "CALLBOARD_LISTEN",
        default_value = "127.0.0.1:7007",
        value_name = "ADDR"
    )]
    listen: SocketAddr,
    /// Roles to run: api, writer, projector (comma-separated).
    #[arg(
        long,
        env = "CALLBOARD_ROLES",
        value_delimiter = ',',
        default_value = "api,writer,projector"
    )]
    roles: Vec<String>,
    /// Redis URL for the graph cache shared by API replicas (`redis://…`).
    #[arg(long = "redis-url", env = "CALLBOARD_REDIS_URL", value_name = "URL")]
    redis_url: Option<String>,
    /// Also allow reading from this host (repeatable).
    #[arg(long, env = "CALLBOARD_ALLOW_HOST", value_delimiter = ',', value_name = "HOST")]
    allow_host: Vec<String>,
    /// Projector consumer group.
    #[arg(long, env = "CALLBOARD_PROJECTOR_GROUP")]
    group: Option<String>,
    /// Maximum GraphQL query depth.
    #[arg(long, env = "CALLBOARD_MAX_DEPTH", default_value_t = Limits::default().depth)]
    max_depth: usize,
    /// Maximum GraphQL query complexity.
    #[arg(long, env = "CALLBOARD_MAX_COMPLEXITY", default_value_t = Limits::default().complexity)]
    max_complexity: usize,
    /// Maximum page size of lists.
    #[arg(long, env = "CALLBOARD_MAX_PAGE", default_value_t = Limits::default().max_page)]
    max_page: usize,
    /// Maximum request body in bytes.
    #[arg(long, env = "CALLBOARD_MAX_BODY", default_value_t = Limits::default().body_bytes)]
    max_body: usize,
    /// Time limit of one request, in seconds.
    #[arg(long, env = "CALLBOARD_REQUEST_TIMEOUT", default_value_t = 30)]
    request_timeout: u64,
    /// Subscriptions one WebSocket connection may hold.
    #[arg(long, env = "CALLBOARD_MAX_SUBSCRIPTIONS", default_value_t = Limits::default().subscriptions_per_connection)]
    max_subscriptions: usize,
    /// Turn GraphQL introspection off (the IDE then cannot show the schema).
    #[arg(long, env = "CALLBOARD_NO_INTROSPECTION")]
    no_introspection: bool,
    /// Hot entities each API process keeps in memory, kept fresh by the change feed (0: none).
    #[arg(long, env = "CALLBOARD_ENTITY_CACHE", default_value_t = 20_000)]
    entity_cache: u64,
}

#[derive(Clone)]
struct Health {
    log: Arc<dyn EventLog>,
    store: Arc<dyn ReadStore>,
    topics: Topics,
    group: String,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
}

async fn readyz(State(health): State<Health>) -> impl IntoResponse {
    // Positions against the log's ends only: a probe reads no events.
    match projector::caught_up(
        health.log.as_ref(),
        health.store.as_ref(),
        &health.topics,
        &health.group,
    )
    .await
    {
        Ok(true) => (StatusCode::OK, "ready\n".to_owned()),
        Ok(false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "projections are catching up\n".to_owned(),
        ),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")),
    }
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

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Runs the command.
pub async fn run(args: Args) -> Result<ExitCode> {
    let roles: BTreeSet<String> = args.roles.iter().map(|r| r.trim().to_lowercase()).collect();
    for role in &roles {
        if !matches!(role.as_str(), "api" | "writer" | "projector") {
            bail!("unknown role {role:?}: use api, writer and projector");
        }
    }
    let locations: Vec<LocationRecord> = args.location.iter().map(|l| location_of(l)).collect::<Result<_>>()?;
    if !locations.is_empty() && !roles.contains("writer") {
        bail!("--location needs the writer role");
    }
    let _lock = if args.log.embedded() && roles.contains("writer") {
        Some(lock_writer(&args.log.data_dir)?)
    } else {
        None
    };
    let log = args.log.open().await?;
    let topics = args.log.topics();
    let stores = args.store.open(&args.log.data_dir).await?;
    let metrics = crate::metrics::install()?;
    let mut config = ProjectorConfig::new(topics.clone());
    if let Some(group) = &args.group {
        config.group = group.clone();
    }
    // The read model's tables exist before anyone reads them.
    stores.store.prepare().await.context("preparing the read model")?;
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();

    if roles.contains("writer") {
        let role = Writer::acquire_role(log.as_ref(), &topics, Duration::from_secs(60)).await?;
        let reader = Arc::new(reader_for(&locations, &args.allow_host));
        let scanner = Scanner::new(reader);
        let writer_config = WriterConfig {
            topics: topics.clone(),
            partitions: args.log.partitions,
            replication: args.log.replication,
            actor: "provider:serve".into(),
            ..WriterConfig::default()
        };
        let mut writer = Writer::start(log.clone(), scanner, writer_config).await?;
        for location in &locations {
            writer.register(location, "provider:serve").await?;
            let report = writer.sync(location).await?;
            tracing::info!(location = %location.key(), upserted = report.counts.upserted, rejected = report.counts.rejected, "location read");
        }
        let (mut watcher, changes) = FileWatcher::new().context("starting the file watcher")?;
        for (files, folders) in writer.watched().values() {
            watcher.watch(files, folders);
        }
        let stop = stopped(stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            let _watcher = watcher;
            writer.run(role, changes, stop).await.context("the writer stopped")
        }));
    }

    if roles.contains("projector") {
        let (projector_log, store, projector_config) = (log.clone(), stores.store.clone(), config.clone());
        let group = config.group.clone();
        let stop = stopped(stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            projector::run(
                projector_log,
                store,
                projector_config,
                move |n, took| crate::metrics::batch_applied(&group, n, took),
                stop,
            )
            .await
            .context("the projector stopped")
        }));
        let sampler = tokio::spawn(crate::metrics::sample_lag(
            log.clone(),
            stores.store.clone(),
            topics.clone(),
            config.group.clone(),
        ));
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _ = stop.wait_for(|s| *s).await;
            sampler.abort();
        });
    }

    let health = Health {
        log: log.clone(),
        store: stores.store.clone(),
        topics: topics.clone(),
        group: config.group.clone(),
        metrics,
    };
    // Probes and scrapes stay out of the request trace: they are frequent, and a 503 from
    // /readyz while projections catch up is an answer, not a failure.
    let mut app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(health);
    if roles.contains("api") {
        let limits = Limits {
            depth: args.max_depth,
            complexity: args.max_complexity,
            max_page: args.max_page,
            body_bytes: args.max_body,
            timeout: Duration::from_secs(args.request_timeout),
            introspection: !args.no_introspection,
            subscriptions_per_connection: args.max_subscriptions,
            ..Limits::default()
        };
        let shared = match &args.redis_url {
            Some(url) => Some(RedisCache::new(url, topics.prefix()).context("invalid --redis-url")?),
            None => None,
        };
        let reader = stores.reader.clone();
        let feed = Feed::with_cache(4_096, args.entity_cache);
        let services = Services {
            reader: reader.clone(),
            store: stores.store.clone(),
            graph: Arc::new(GraphService::new(reader, shared)),
            commands: Some(CommandClient::new(log.clone(), topics.clone())),
            feed: feed.clone(),
            projector_group: config.group.clone(),
        };
        tokio::spawn(feed::run(
            log.clone(),
            stores.store.clone(),
            topics.clone(),
            config.group.clone(),
            feed,
            stopped(stop_rx.clone()),
        ));
        let schema = callboard_api::build(services, &limits);
        let api = callboard_api::http::routes(schema, &limits)
            .route("/", get(|| async { axum::response::Redirect::temporary("/graphql") }))
            .layer(
                tower_http::trace::TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
                    tracing::info_span!("request", method = %request.method(), path = %request.uri().path())
                }),
            );
        app = app.merge(api);
    }

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let bound = listener.local_addr()?;
    // Printed, not logged: the first thing a newcomer needs, and what scripts read the port from.
    println!("Callboard is serving on http://{bound}/graphql (open it in a browser for the GraphQL IDE)");
    let server = axum::serve(listener, app).with_graceful_shutdown({
        let stop = stop.clone();
        async move {
            shutdown_signal().await;
            tracing::info!("shutting down: draining requests and the current projection batch");
            let _ = stop.send(true);
        }
    });
    server.await.context("the HTTP server failed")?;
    let _ = stop.send(true);
    for task in tasks {
        task.await.context("a role panicked")??;
    }
    Ok(ExitCode::SUCCESS)
}
