//! `callboard replay`: rebuild every read model from the start of the log into fresh tables and
//! switch readers over atomically; the old tables keep serving until then.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use callboard_readmodel::projector::{self, ProjectorConfig};
use indicatif::{ProgressBar, ProgressStyle};

use crate::backend::{LogArgs, StoreArgs};

/// Arguments of `callboard replay`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    store: StoreArgs,
    /// Consumer group of the projectors that continue from the rebuilt model.
    #[arg(long, env = "CALLBOARD_PROJECTOR_GROUP")]
    group: Option<String>,
    /// Events per transaction.
    #[arg(long, default_value_t = 5_000)]
    batch: usize,
    /// Do not show a progress bar.
    #[arg(long)]
    quiet: bool,
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
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let generation = projector::replay(log, stores.store, &config, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await?;
    bar.finish_and_clear();
    println!(
        "replayed {} events into generation {} in {:.1}s; readers switched to it",
        bar.position(),
        generation.0,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
