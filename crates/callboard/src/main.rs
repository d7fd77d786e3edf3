//! The `callboard` command. Thin: it parses arguments and hands over to a command module.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod allocator;
mod commands;
mod config;
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
    /// A TOML file with a key for any flag (`max-batch = 10`; a `[serve]` table for one command
    /// only). The command line and the environment win over it.
    #[arg(long, global = true, env = "CALLBOARD_CONFIG", value_name = "FILE")]
    config: Option<std::path::PathBuf>,
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
    let argv = match config::apply(&Cli::command(), std::env::args_os().collect(), &|name| {
        std::env::var_os(name)
    }) {
        Ok(argv) => argv,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(argv);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The design's promise: every flag has a `CALLBOARD_…` variable (and so, through
    /// `config::apply`, a config-file key). `--kafka-property` is the exception by design: its
    /// variables are `CALLBOARD_KAFKA_PROPERTY_<KEY>`, one per property.
    #[test]
    fn every_flag_has_an_environment_variable() {
        Cli::command().debug_assert();
        let mut missing = Vec::new();
        for command in Cli::command().get_subcommands() {
            for arg in command.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                if ["help", "version", "kafka-property"].contains(&long) {
                    continue;
                }
                match arg.get_env() {
                    Some(name) if name.to_string_lossy().starts_with("CALLBOARD_") => {}
                    _ => missing.push(format!("{} --{long}", command.get_name())),
                }
            }
        }
        assert!(missing.is_empty(), "flags without a CALLBOARD_ variable: {missing:?}");
    }

    /// One config file drives every command: each flag of each command is set from it.
    #[test]
    fn every_flag_has_a_config_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = Cli::command();
        for command in root.get_subcommands() {
            for arg in command.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                if ["help", "version", "config"].contains(&long) {
                    continue;
                }
                let value = if arg.get_action().takes_values() {
                    "\"x\""
                } else {
                    "true"
                };
                let path = dir.path().join("callboard.toml");
                std::fs::write(&path, format!("[{}]\n{long} = {value}\n", command.get_name())).expect("write");
                let argv = vec![
                    "callboard".into(),
                    "--config".into(),
                    path.clone().into(),
                    command.get_name().into(),
                ];
                let out = config::apply(&root, argv, &|_| None).expect("apply");
                let flag = out[4].to_string_lossy().into_owned();
                assert!(
                    flag == format!("--{long}") || flag == format!("--{long}=x"),
                    "{} --{long}: {out:?}",
                    command.get_name()
                );
            }
        }
    }
}
