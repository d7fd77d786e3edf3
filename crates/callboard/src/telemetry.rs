//! Logging and tracing setup, in one place. `CALLBOARD_LOG` (or `RUST_LOG`) sets the filter;
//! `CALLBOARD_LOG_FORMAT=json` switches to JSON lines. Logs go to standard error.

use tracing_subscriber::EnvFilter;

/// Directives added to every default filter: PostgreSQL's notices ("relation already exists,
/// skipping" on each idempotent `create … if not exists`) say nothing an operator needs.
const QUIET: &str = "sqlx::postgres::notice=warn";

/// Installs the global subscriber with `default` as the filter when none is configured.
pub fn init(default: &str) {
    let default = format!("{default},{QUIET}");
    let default = default.as_str();
    let filter = std::env::var("CALLBOARD_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default.to_owned());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if std::env::var("CALLBOARD_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}
