//! Metrics: recorded anywhere through the `metrics` facade, rendered here in the Prometheus text
//! format. Every role that runs on its own (`callboard project`, later `serve --role …`) can expose
//! them on a small HTTP listener; `serve` mounts the same handler on its main port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use callboard_events::log::EventLog;
use callboard_projection::Positions;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// How often the projector lag is sampled. Each sample reads the log's end offsets and the stored
/// positions (and one event per lagging partition), so it is cheap enough to be frequent.
pub const LAG_INTERVAL: Duration = Duration::from_secs(1);

static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Installs the process-wide recorder (once, also when servers start concurrently, as in-process
/// tests do) and returns the handle that renders it.
pub fn install() -> Result<PrometheusHandle> {
    let mut slot = HANDLE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(handle) = slot.as_ref() {
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
    *slot = Some(handle.clone());
    Ok(handle)
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
        "Events applied to read models by this process, per projection and consumer group"
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

/// Samples the lag of a projection's `group` on `topics` every [`LAG_INTERVAL`] into the lag
/// gauges, until the task is dropped. With several processes in a group each reports every
/// partition (positions live in the shared read model), so dashboards take the maximum over
/// instances.
pub async fn sample_lag(
    log: Arc<dyn EventLog>,
    positions: Arc<dyn Positions>,
    projection: &'static str,
    topics: Vec<String>,
    group: String,
) {
    loop {
        match callboard_projection::lag(log.as_ref(), positions.as_ref(), &topics, &group).await {
            Ok(lags) => {
                for lag in lags {
                    let labels = [
                        ("projection", projection.to_owned()),
                        ("group", lag.group),
                        ("topic", lag.topic),
                        ("partition", lag.partition.to_string()),
                    ];
                    metrics::gauge!("callboard_projector_lag_events", &labels).set(lag.events_behind as f64);
                    metrics::gauge!("callboard_projector_lag_seconds", &labels).set(lag.seconds_behind);
                }
            }
            Err(error) => tracing::warn!(%error, projection, "could not sample the projector lag"),
        }
        tokio::time::sleep(LAG_INTERVAL).await;
    }
}

/// Records one applied batch of a projection.
pub fn batch_applied(projection: &'static str, group: &str, events: usize, took: Duration) {
    let labels = [("projection", projection.to_owned()), ("group", group.to_owned())];
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
