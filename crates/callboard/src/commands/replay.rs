//! `callboard replay`: rebuild the read models from the start of the log, each into fresh tables,
//! and switch readers over atomically; the old tables keep serving until then.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use callboard::backend::{LogArgs, StoreArgs};
use callboard::projections::{self, Settings};
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `callboard replay`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    store: StoreArgs,
    /// Consumer group of the projectors that continue from the rebuilt models.
    #[arg(long, env = "CALLBOARD_PROJECTOR_GROUP")]
    group: Option<String>,
    /// Events per transaction.
    #[arg(long, default_value_t = 5_000)]
    batch: usize,
    /// The projections to rebuild (comma-separated): catalog, activity. Default: all.
    #[arg(long, env = "CALLBOARD_PROJECTIONS", value_delimiter = ',')]
    projections: Vec<String>,
    /// Do not show a progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Runs the command.
pub async fn run(args: Args) -> Result<ExitCode> {
    let names = projections::select(&args.projections)?;
    let log = args.log.open().await?;
    let stores = args.store.open(&args.log.data_dir).await?;
    let settings = Settings {
        topics: args.log.topics(),
        group: args.group.clone(),
        batch: args.batch,
    };
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} {prefix} [{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let replayed = projections::replay(log, &stores, &settings, &names, |projection, done, total| {
        bar.set_prefix(projection);
        bar.set_length(total);
        bar.set_position(done);
    })
    .await?;
    bar.finish_and_clear();
    for (projection, generation) in replayed {
        println!(
            "replayed the {projection} projection into generation {}; readers switched to it",
            generation.0
        );
    }
    println!(
        "replayed {} events per projection in {:.1}s",
        bar.position(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
