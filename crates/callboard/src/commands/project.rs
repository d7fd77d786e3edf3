//! `callboard project`: the projector role on its own — consume the entity and location topics
//! and keep the read models (the catalog and the activity feed) up to date. Several processes in
//! one consumer group share the partitions.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Result;
use callboard::projections;

/// Arguments of `callboard project`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    projection: projections::ProjectionArgs,
    /// Events per transaction.
    #[arg(long, env = "CALLBOARD_BATCH", default_value_t = 2_000)]
    batch: usize,
    /// Stop once everything in the log is projected (for scripts and benchmarks).
    #[arg(long, env = "CALLBOARD_UNTIL_CAUGHT_UP")]
    until_caught_up: bool,
    /// Serve `/metrics` (Prometheus text: lag per partition, events applied, batch times) and
    /// `/healthz` on this address, e.g. `0.0.0.0:9464`.
    #[arg(long, env = "CALLBOARD_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
}

/// Runs the command.
pub async fn run(args: Args) -> Result<ExitCode> {
    let (names, log, stores, settings) = args.projection.open(args.batch).await?;
    tracing::info!(log = %log.describe(), store = %stores.describe, projections = ?names, "projecting");
    // The tables must exist before the lag sampler and the caught-up check read positions from
    // them; the projectors' own `prepare` then finds them ready. (Without this, a check racing
    // the first `prepare` on a fresh database failed with a missing positions table.)
    stores.prepare().await?;
    let mut samplers = Vec::new();
    if let Some(addr) = args.metrics_listen {
        let bound = callboard::metrics::listen(addr, callboard::metrics::install()?).await?;
        // Printed, not logged: scripts (and tests) read the bound port from here.
        eprintln!("metrics on http://{bound}/metrics");
        for name in &names {
            let (positions, topics) = projections::progress_of(&stores, &settings.topics, name);
            samplers.push(tokio::spawn(callboard::metrics::sample_lag(
                log.clone(),
                positions,
                name,
                topics,
                settings.config(name).group,
            )));
        }
    }
    let applied = Arc::new(AtomicUsize::new(0));
    let counter = applied.clone();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut running = projections::spawn(
        &log,
        &stores,
        &settings,
        &names,
        move |projection, group, n, took| {
            if projection == "catalog" {
                counter.fetch_add(n, Ordering::Relaxed);
            }
            callboard::metrics::batch_applied(projection, group, n, took);
        },
        &stop_rx,
    );
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        if running.iter().any(|task| task.is_finished()) {
            break;
        }
        if args.until_caught_up {
            // A dependency that is down is the projectors' to ride out; ask again next time.
            match projections::behind(log.as_ref(), &stores, &settings, &names).await {
                Ok(behind) if behind.is_empty() => break,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot tell whether the projections caught up"),
            }
        }
    }
    let _ = stop.send(true);
    for task in running.drain(..) {
        task.await??;
    }
    for sampler in samplers {
        sampler.abort();
    }
    eprintln!("projected {} events", applied.load(Ordering::Relaxed));
    Ok(ExitCode::SUCCESS)
}
