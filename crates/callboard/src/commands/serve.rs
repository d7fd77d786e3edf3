//! `callboard serve`: every role in one process by default — the API (GraphQL on `/graphql`,
//! `/healthz`, `/readyz`, `/metrics`), the writer (providers: registered locations, file
//! watching, scheduled rescans, commands from the API) and the projectors (catalog and activity
//! feed). `--roles` picks a subset, so each role scales apart. The roles themselves are
//! `callboard::server`'s; this parses the arguments and opens the adapters.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use callboard::backend::{LogArgs, StoreArgs, lock_writer};
use callboard::locations::location_of;
use callboard::server::{Backend, Config, Roles, Server};
use callboard_api::Limits;
use callboard_cache_redis::RedisCache;
use callboard_events::types::LocationRecord;
use callboard_graph::SharedCache;

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
    #[arg(
        long = "redis-url",
        env = "CALLBOARD_REDIS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    redis_url: Option<String>,
    /// Also allow reading from this host (repeatable).
    #[arg(long, env = "CALLBOARD_ALLOW_HOST", value_delimiter = ',', value_name = "HOST")]
    allow_host: Vec<String>,
    /// Also read hidden files and folders (`.env`, `.git/…`) below the locations' folders, for
    /// placeholders and Location targets; refused by default, as they often hold secrets.
    #[arg(long, env = "CALLBOARD_ALLOW_HIDDEN_FILES")]
    allow_hidden_files: bool,
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
    /// WebSocket connections the server holds at once.
    #[arg(long, env = "CALLBOARD_MAX_WEBSOCKETS", default_value_t = Limits::default().websockets)]
    max_websockets: usize,
    /// Seconds a new WebSocket may take to send `connection_init` before it is closed.
    #[arg(long, env = "CALLBOARD_CONNECTION_INIT_TIMEOUT", default_value_t = Limits::default().connection_init.as_secs())]
    connection_init_timeout: u64,
    /// Most operations in one batched GraphQL POST.
    #[arg(long, env = "CALLBOARD_MAX_BATCH", default_value_t = Limits::default().batch)]
    max_batch: usize,
    /// Also accept WebSocket connections from pages of this origin, e.g. `https://portal.example.com`
    /// (repeatable; the server's own origin is always accepted).
    #[arg(long, env = "CALLBOARD_ALLOW_ORIGIN", value_delimiter = ',', value_name = "ORIGIN")]
    allow_origin: Vec<String>,
    /// Turn GraphQL introspection off (the IDE then cannot show the schema).
    #[arg(long, env = "CALLBOARD_NO_INTROSPECTION")]
    no_introspection: bool,
    /// Hot entities each API process keeps in memory, kept fresh by the change feed (0: none).
    #[arg(long, env = "CALLBOARD_ENTITY_CACHE", default_value_t = 20_000)]
    entity_cache: u64,
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

/// Runs the command.
pub async fn run(args: Args) -> Result<ExitCode> {
    let roles = Roles::parse(&args.roles)?;
    let locations: Vec<LocationRecord> = args.location.iter().map(|l| location_of(l)).collect::<Result<_>>()?;
    if !locations.is_empty() && !roles.writer {
        bail!("--location needs the writer role");
    }
    let _lock = if args.log.embedded() && roles.writer {
        Some(lock_writer(&args.log.data_dir)?)
    } else {
        None
    };
    let shared_cache: Option<Arc<dyn SharedCache>> = match &args.redis_url {
        Some(url) => Some(Arc::new(
            RedisCache::new(url, args.log.topic_prefix.clone()).context("invalid --redis-url")?,
        )),
        None => None,
    };
    let backend = Backend {
        log: args.log.open().await?,
        topics: args.log.topics(),
        partitions: args.log.partitions,
        replication: args.log.replication,
        stores: args.store.open(&args.log.data_dir).await?,
        shared_cache,
    };
    let config = Config {
        roles,
        locations,
        allow_hosts: args.allow_host.clone(),
        hidden_files: args.allow_hidden_files,
        limits: Limits {
            depth: args.max_depth,
            complexity: args.max_complexity,
            max_page: args.max_page,
            body_bytes: args.max_body,
            timeout: Duration::from_secs(args.request_timeout),
            introspection: !args.no_introspection,
            subscriptions_per_connection: args.max_subscriptions,
            batch: args.max_batch,
            websockets: args.max_websockets,
            connection_init: Duration::from_secs(args.connection_init_timeout),
            allowed_origins: args.allow_origin.clone(),
            ..Limits::default()
        },
        entity_cache: args.entity_cache,
        projector_group: args.group.clone(),
        ..Config::default()
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let server = Server::start(listener, backend, config).await?;
    // Printed, not logged: the first thing a newcomer needs, and what scripts read the port from.
    println!(
        "Callboard is serving on http://{}/graphql (open it in a browser for the GraphQL IDE)",
        server.local_addr()?
    );
    server.serve(shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
