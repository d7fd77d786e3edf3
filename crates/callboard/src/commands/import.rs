//! `callboard import`: register locations and write their entities to the event log once, with a
//! progress display — the way to load a large catalog before serving it.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use callboard_events::types::LocationRecord;
use callboard_ingest::{Scanner, Writer, WriterConfig};
use indicatif::{ProgressBar, ProgressStyle};

use callboard::backend::{LogArgs, lock_writer};
use callboard::locations::{location_of, reader_for};

/// Arguments of `callboard import`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files, folders (searched for catalog-info.yaml) or URLs to register and import.
    #[arg(required = true, value_name = "LOCATION")]
    locations: Vec<String>,
    #[command(flatten)]
    log: LogArgs,
    /// Also allow reading from this host (repeatable).
    #[arg(long, env = "CALLBOARD_ALLOW_HOST", value_delimiter = ',', value_name = "HOST")]
    allow_host: Vec<String>,
    /// Also read hidden files and folders (`.env`, `.git/…`) below the locations' folders.
    #[arg(long, env = "CALLBOARD_ALLOW_HIDDEN_FILES")]
    allow_hidden_files: bool,
    /// Glob for descriptor files in folders.
    #[arg(long, env = "CALLBOARD_GLOB", default_value = callboard_ingest::scan::DEFAULT_DISCOVERY_GLOB)]
    glob: String,
    /// Do not show a progress bar.
    #[arg(long, env = "CALLBOARD_QUIET")]
    quiet: bool,
}

/// Runs the command.
pub async fn run(args: Args) -> Result<ExitCode> {
    let locations: Vec<LocationRecord> = args.locations.iter().map(|l| location_of(l)).collect::<Result<_>>()?;
    let _lock = if args.log.embedded() {
        Some(lock_writer(&args.log.data_dir)?)
    } else {
        None
    };
    let log = args.log.open().await?;
    let topics = args.log.topics();
    let started = Instant::now();
    let _role = Writer::acquire_role(log.as_ref(), &topics, Duration::from_secs(60)).await?;

    let reader = Arc::new(reader_for(&locations, &args.allow_host, args.allow_hidden_files));
    let scanner = Scanner::with_glob(reader, &args.glob).context("invalid --glob")?;
    let files_read = scanner.files_read();
    let config = WriterConfig {
        topics,
        partitions: args.log.partitions,
        replication: args.log.replication,
        actor: "provider:import".into(),
        ..WriterConfig::default()
    };
    let progress = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    progress.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    progress.enable_steady_tick(Duration::from_millis(120));
    progress.set_message(format!("reading the event log ({})", log.describe()));
    let mut writer = Writer::start(log.clone(), scanner, config).await?;
    progress.set_message(format!("{} entities known", writer.state().live_count()));

    let ticker = {
        let progress = progress.clone();
        let files_read = files_read.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                progress.set_message(format!("{} files read", files_read.load(Ordering::Relaxed)));
            }
        })
    };
    let mut total = callboard_ingest::Counts::default();
    let mut complete = true;
    for location in &locations {
        writer.register(location, "provider:import").await?;
        let report = writer.sync(location).await?;
        total.add(report.counts);
        complete &= report.complete;
    }
    ticker.abort();
    progress.finish_and_clear();
    let elapsed = started.elapsed();
    let events = total.upserted + total.deleted + total.rejected + total.cleared;
    println!(
        "imported {} location{} in {:.1}s: {} files read, {} events ({} upserted, {} deleted, {} rejected, {} cleared), {} unchanged; {} entities in the catalog",
        locations.len(),
        if locations.len() == 1 { "" } else { "s" },
        elapsed.as_secs_f64(),
        files_read.load(Ordering::Relaxed),
        events,
        total.upserted,
        total.deleted,
        total.rejected,
        total.cleared,
        total.unchanged,
        writer.state().live_count(),
    );
    if !complete {
        eprintln!("warning: some files could not be read; nothing was deleted on their account (see the rejections)");
    }
    Ok(ExitCode::SUCCESS)
}
