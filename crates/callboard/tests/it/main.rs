//! Integration tests of the event log and providers, against real components: the embedded
//! SQLite log and a real Kafka-protocol broker (`scripts/kafka` starts one; set
//! `CALLBOARD_TEST_KAFKA` to use another). One binary, so rdkafka and friends link once.

mod api_batching;
mod common;
mod crash;
mod faults;
mod freshness;
mod history;
mod import;
mod log_behaviour;
mod metrics;
mod projection;
mod push;
mod serve;
mod stores;
mod telemetry;
mod url_reads;
