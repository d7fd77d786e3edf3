//! Logging and tracing setup, in one place. `CALLBOARD_LOG` (or `RUST_LOG`) sets the filter;
//! `CALLBOARD_LOG_FORMAT=json` switches to JSON lines. Logs go to standard error.
//!
//! Spans (one per request, per projection batch, …) are also exported over OTLP/HTTP (protobuf)
//! when an OpenTelemetry endpoint is configured the standard way: `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (`/v1/traces` is appended) or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is), with the
//! other standard variables (`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME`,
//! `OTEL_BSP_SCHEDULE_DELAY`, …). Without one, nothing is exported and nothing is loaded.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Directives added to every default filter: PostgreSQL's notices ("relation already exists,
/// skipping" on each idempotent `create … if not exists`) say nothing an operator needs.
const QUIET: &str = "sqlx::postgres::notice=warn";

/// Keeps the trace exporter alive; dropping it flushes the spans not yet sent. Drop it outside
/// the async runtime (the exporter's HTTP client blocks).
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("warning: flushing traces failed: {error}");
        }
    }
}

fn otlp_configured() -> bool {
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()))
}

/// The OTLP trace pipeline, when an endpoint is configured. Call it outside the async runtime:
/// the exporter's blocking HTTP client must not be built inside one.
fn otlp_provider() -> Option<SdkTracerProvider> {
    if !otlp_configured() {
        return None;
    }
    // rustls needs a process-wide crypto provider (for https endpoints); ring is the one we build.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The endpoint, headers and timeouts come from the standard environment variables.
    let exporter = match opentelemetry_otlp::SpanExporter::builder().with_http().build() {
        Ok(exporter) => exporter,
        Err(error) => {
            eprintln!("warning: OTLP trace export is configured but cannot start: {error}");
            return None;
        }
    };
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "callboard".into());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build();
    Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build(),
    )
}

/// Installs the global subscriber with `default` as the filter when none is configured, and the
/// OTLP exporter when one is configured.
pub fn init(default: &str) -> Telemetry {
    let default = format!("{default},{QUIET}");
    let default = default.as_str();
    let filter = std::env::var("CALLBOARD_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default.to_owned());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new(default));
    let logs = if std::env::var("CALLBOARD_LOG_FORMAT").is_ok_and(|f| f == "json") {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed()
    };
    let provider = otlp_provider();
    let traces = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("callboard")));
    // A second init (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(traces)
        .try_init();
    Telemetry { provider }
}
