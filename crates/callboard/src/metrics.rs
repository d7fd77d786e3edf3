//! Metrics: recorded anywhere through the `metrics` facade, rendered here in the Prometheus text
//! format. Every role that runs on its own (`callboard project`, later `serve --role …`) can expose
//! them on a small HTTP listener; `serve` mounts the same handler on its main port.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use callboard_events::log::EventLog;
use callboard_events::topics::Topics;
use callboard_readmodel::projector;
use callboard_readmodel::store::ReadStore;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// How often the projector lag is sampled. Each sample reads the log's end offsets and the stored
/// positions (and one event per lagging partition), so it is cheap enough to be frequent.
pub const LAG_INTERVAL: Duration = Duration::from_secs(1);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once) and returns the handle that renders it.
pub fn install() -> Result<PrometheusHandle> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    describe();
    // The upkeep task drains histogram buffers; without it they would grow between scrapes.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    Ok(HANDLE.get_or_init(|| handle).clone())
}

fn describe() {
    metrics::describe_gauge!(
        "callboard_projector_lag_events",
        "Events in the log not yet applied to the read model, per consumer group, topic and partition"
    );
    metrics::describe_gauge!(
        "callboard_projector_lag_seconds",
        metrics::Unit::Seconds,
        "How long the oldest event not yet applied has been in the log (0 when caught up)"
    );
    metrics::describe_counter!(
        "callboard_projector_events_total",
        "Events applied to the read model by this process"
    );
    metrics::describe_histogram!(
        "callboard_projector_batch_seconds",
        metrics::Unit::Seconds,
        "Time to apply one projection batch"
    );
    metrics::describe_gauge!(
        "callboard_uptime_seconds",
        metrics::Unit::Seconds,
        "Seconds since this process started serving metrics"
    );
}

/// Samples the lag of `group` every [`LAG_INTERVAL`] into the lag gauges, until the task is
/// dropped. With several processes in a group each reports every partition (positions live in the
/// shared read model), so dashboards take the maximum over instances.
pub async fn sample_lag(log: Arc<dyn EventLog>, store: Arc<dyn ReadStore>, topics: Topics, group: String) {
    loop {
        match projector::lag(log.as_ref(), store.as_ref(), &topics, &group).await {
            Ok(lags) => {
                for lag in lags {
                    let labels = [
                        ("group", lag.group),
                        ("topic", lag.topic),
                        ("partition", lag.partition.to_string()),
                    ];
                    metrics::gauge!("callboard_projector_lag_events", &labels).set(lag.events_behind as f64);
                    metrics::gauge!("callboard_projector_lag_seconds", &labels).set(lag.seconds_behind);
                }
            }
            Err(error) => tracing::warn!(%error, "could not sample the projector lag"),
        }
        tokio::time::sleep(LAG_INTERVAL).await;
    }
}

/// Records one applied batch.
pub fn batch_applied(group: &str, events: usize, took: Duration) {
    let labels = [("group", group.to_owned())];
    metrics::counter!("callboard_projector_events_total", &labels).increment(events as u64);
    metrics::histogram!("callboard_projector_batch_seconds", &labels).record(took.as_secs_f64());
}

#[derive(Clone)]
struct Endpoint {
    handle: PrometheusHandle,
    started: Instant,
}

/// `/metrics` (Prometheus text format) and `/healthz` for a role running without the API.
pub fn router(handle: PrometheusHandle) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(Endpoint {
            handle,
            started: Instant::now(),
        })
}

async fn render(State(endpoint): State<Endpoint>) -> impl IntoResponse {
    metrics::gauge!("callboard_uptime_seconds").set(endpoint.started.elapsed().as_secs_f64());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        endpoint.handle.render(),
    )
}

/// Serves [`router`] on `addr` in the background; returns the bound address (port 0 picks one).
pub async fn listen(addr: SocketAddr, handle: PrometheusHandle) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening for metrics on {addr}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router(handle)).await {
            tracing::error!(%error, "the metrics listener stopped");
        }
    });
    Ok(bound)
}
