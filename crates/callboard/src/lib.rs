//! The `callboard` binary's library: what the commands share and what tests start in-process.
//!
//! * [`server`]: every role of `callboard serve` (API, writer, projectors) on a listener — the one
//!   entry point for the binary and the in-process tests ([`server::run`], [`server::Server`]).
//! * [`backend`]: choosing and opening the adapters (event log, read models) from settings.
//! * [`projections`]: the projections the binary runs (catalog, activity feed), their groups,
//!   readiness and replay.
//! * [`locations`]: locations named on the command line.
//! * [`metrics`]: the Prometheus recorder and the projectors' metrics.
//!
//! This is the only place that knows both the adapters and the transports: it wires adapters
//! into the service layer (`callboard-catalog`) and the service into the GraphQL transport.

pub mod backend;
pub mod locations;
pub mod metrics;
pub mod projections;
pub mod server;
