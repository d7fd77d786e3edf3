//! The `callboard` command. Thin: it parses arguments and hands over to a command module.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod allocator;
mod commands;
mod output;
mod telemetry;

use telemetry::Telemetry;

/// mimalloc: parsing and projecting allocate many small strings, where it is much faster than
/// the system allocator (see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Callboard: an event-sourced, Backstage-compatible software catalog.
#[derive(Debug, Parser)]
#[command(name = "callboard", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check descriptor files exactly as Backstage would, offline.
    Validate(commands::validate::Args),
    /// Register locations and write their entities to the event log once, with progress.
    Import(commands::import::Args),
    /// Run the projector role: keep the read model up to date from the log.
    Project(commands::project::Args),
    /// Rebuild the read model from the start of the log and switch over atomically.
    Replay(commands::replay::Args),
    /// Serve the catalog: GraphQL API, providers and projectors (every role by default).
    Serve(commands::serve::Args),
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // Parsing runs on the blocking pool; a few threads keep the cores busy, while hundreds (the
    // default cap is 512) would each keep a heap of their own.
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(8)
        .build()?)
}

fn main() -> ExitCode {
    allocator::configure();
    let cli = Cli::parse();
    // The telemetry guard outlives the runtime: dropping it flushes traces with a blocking client.
    let mut traces = Telemetry::default();
    let result = match cli.command {
        Command::Validate(args) => commands::validate::run(&args),
        Command::Import(args) => {
            traces = telemetry::init("warn");
            runtime().and_then(|rt| rt.block_on(commands::import::run(args)))
        }
        Command::Project(args) => {
            traces = telemetry::init("info");
            runtime().and_then(|rt| rt.block_on(commands::project::run(args)))
        }
        Command::Serve(args) => {
            traces = telemetry::init("info");
            runtime().and_then(|rt| rt.block_on(commands::serve::run(args)))
        }
        Command::Replay(args) => {
            traces = telemetry::init("warn");
            runtime().and_then(|rt| rt.block_on(commands::replay::run(args)))
        }
    };
    drop(traces);
    match result {
        Ok(code) => code,
        Err(error) => {
            // Usage problems (unreadable inputs, bad map files) exit with 2, like clap's own.
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
