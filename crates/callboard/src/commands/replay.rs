//! `callboard replay`: rebuild the read models from the start of the log, each into fresh tables,
//! and switch readers over atomically; the old tables keep serving until then.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use callboard::projections;
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `callboard replay`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    projection: projections::ProjectionArgs,
    /// Events per transaction.
    #[arg(long, env = "CALLBOARD_BATCH", default_value_t = 5_000)]
    batch: usize,
    /// Do not show a progress bar.
    #[arg(long, env = "CALLBOARD_QUIET")]
    quiet: bool,
}

/// Runs the command.
pub async fn run(args: Args) -> Result<ExitCode> {
    let (names, log, stores, settings) = args.projection.open(args.batch).await?;
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
