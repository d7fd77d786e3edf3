//! `callboard project`: the projector role on its own — consume the entity and location topics
//! and keep the read model up to date. Several processes in one consumer group share the
//! partitions.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use callboard_readmodel::projector::{self, ProjectorConfig};

use crate::backend::{LogArgs, StoreArgs};

/// Arguments of `callboard project`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    store: StoreArgs,
    /// Consumer group (processes in one group split the partitions).
    #[arg(long, env = "CALLBOARD_PROJECTOR_GROUP")]
    group: Option<String>,
    /// Events per transaction.
    #[arg(long, default_value_t = 2_000)]
    batch: usize,
    /// Stop once everything in the log is projected (for scripts and benchmarks).
    #[arg(long)]
    until_caught_up: bool,
    /// Serve `/metrics` (Prometheus text: lag per partition, events applied, batch times) and
    /// `/healthz` on this address, e.g. `0.0.0.0:9464`.
    #[arg(long, env = "CALLBOARD_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
}

/// Runs the command.
pub async fn run(args: Args) -> Result<ExitCode> {
    let log = args.log.open().await?;
    let stores = args.store.open(&args.log.data_dir).await?;
    let mut config = ProjectorConfig::new(args.log.topics());
    if let Some(group) = args.group {
        config.group = group;
    }
    config.batch = args.batch;
    tracing::info!(log = %log.describe(), store = %stores.describe, group = %config.group, "projecting");
    // The tables must exist before the lag sampler and the caught-up check read positions from
    // them; the projector's own `prepare` then finds them ready. (Without this, a check racing
    // the first `prepare` on a fresh database failed with a missing positions table.)
    stores.store.prepare().await.context("preparing the read model")?;
    let mut sampler = None;
    if let Some(addr) = args.metrics_listen {
        let bound = crate::metrics::listen(addr, crate::metrics::install()?).await?;
        // Printed, not logged: scripts (and tests) read the bound port from here.
        eprintln!("metrics on http://{bound}/metrics");
        sampler = Some(tokio::spawn(crate::metrics::sample_lag(
            log.clone(),
            stores.store.clone(),
            args.log.topics(),
            config.group.clone(),
        )));
    }
    let applied = Arc::new(AtomicUsize::new(0));
    let counter = applied.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = {
        let (log, store, config) = (log.clone(), stores.store.clone(), config.clone());
        let group = config.group.clone();
        tokio::spawn(async move {
            projector::run(
                log,
                store,
                config,
                move |n, took| {
                    counter.fetch_add(n, Ordering::Relaxed);
                    crate::metrics::batch_applied(&group, n, took);
                },
                async move {
                    let _ = stopped.await;
                },
            )
            .await
        })
    };
    let topics = args.log.topics();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        if running.is_finished() {
            break;
        }
        if args.until_caught_up
            && projector::caught_up(log.as_ref(), stores.store.as_ref(), &topics, &config.group).await?
        {
            break;
        }
    }
    let _ = stop.send(());
    running.await??;
    if let Some(sampler) = sampler {
        sampler.abort();
    }
    eprintln!("projected {} events", applied.load(Ordering::Relaxed));
    Ok(ExitCode::SUCCESS)
}
