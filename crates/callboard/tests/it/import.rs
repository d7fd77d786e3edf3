//! Importing a generated 10,000-entity catalog (with invalid documents): exactly one upsert per
//! valid entity and one rejection per invalid document; re-importing unchanged adds nothing;
//! deleting one file deletes exactly its entities. On Kafka, a stock client from outside the
//! project (Python confluent-kafka) reads the topic and validates every message against
//! `schema/events/`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use callboard_testkit::CatalogSpec;

use crate::common::{Backend, assert_contiguous, callboard, kafka_brokers, read_events, succeed, write_catalog};

const UPSERTED: &str = "dev.callboard.entity.upserted.v1";
const REJECTED: &str = "dev.callboard.entity.rejected.v1";
const DELETED: &str = "dev.callboard.entity.deleted.v1";

fn import(backend: &Backend, dir: &Path) {
    succeed(
        callboard()
            .args(["import", "--quiet"])
            .args(backend.cli_args())
            .arg(dir),
        "callboard import",
    );
}

fn python() -> String {
    std::env::var("CALLBOARD_PYTHON").unwrap_or_else(|_| "python3".into())
}

async fn import_catalog(backend: Backend) {
    let catalog = tempfile::tempdir().expect("tempdir");
    let spec = CatalogSpec::valid(10_000).invalid_every(50).seed(7);
    let files = write_catalog(catalog.path(), &spec);
    let valid: usize = files.iter().map(|f| f.1).sum();
    let invalid: usize = files.iter().map(|f| f.2).sum();
    assert_eq!((valid, invalid), (10_000, 200));

    import(&backend, catalog.path());
    let log = backend.open().await;
    let topic = backend.topics().entities();
    let events = read_events(log.as_ref(), &topic).await;
    let upserted: Vec<_> = events.iter().filter(|e| e.event_type == UPSERTED).collect();
    let rejected: Vec<_> = events.iter().filter(|e| e.event_type == REJECTED).collect();
    // Every valid document, plus the Location entity generated for the registered folder.
    assert_eq!(upserted.len(), valid + 1, "one upsert per valid entity");
    assert_eq!(
        upserted.iter().map(|e| &e.subject).collect::<BTreeSet<_>>().len(),
        valid + 1,
        "no entity twice"
    );
    assert_eq!(rejected.len(), invalid, "one rejection per invalid document");
    assert!(
        rejected
            .iter()
            .all(|e| e.data["problems"][0]["rule"] == "policy.field-format")
    );
    assert_eq!(events.len(), upserted.len() + rejected.len());
    assert_contiguous(&events);

    // Re-importing unchanged: no event.
    import(&backend, catalog.path());
    assert_eq!(
        read_events(log.as_ref(), &topic).await.len(),
        events.len(),
        "an unchanged re-import appends nothing"
    );

    // Deleting one file: deletions for exactly its entities.
    let (victim, _, _) = &files[17];
    let text = std::fs::read_to_string(victim).expect("read");
    let victims: BTreeSet<String> = text
        .split("---\n")
        .filter_map(|doc| {
            let kind = doc.lines().find_map(|l| l.strip_prefix("kind: "))?;
            let name = doc.lines().find_map(|l| l.strip_prefix("  name: "))?;
            Some(format!("{}:default/{}", kind.to_lowercase(), name))
        })
        .collect();
    assert_eq!(victims.len(), 4);
    std::fs::remove_file(victim).expect("delete the file");
    import(&backend, catalog.path());
    let after = read_events(log.as_ref(), &topic).await;
    // Events are read partition by partition, so the new ones are found by id, not position.
    let old_ids: BTreeSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let new: Vec<_> = after.iter().filter(|e| !old_ids.contains(e.id.as_str())).collect();
    assert!(
        new.iter().all(|e| e.event_type == DELETED),
        "only deletions: {:?}",
        new.iter()
            .map(|e| (&e.event_type, &e.subject, &e.data))
            .collect::<Vec<_>>()
    );
    assert_eq!(new.iter().map(|e| e.subject.clone()).collect::<BTreeSet<_>>(), victims);
    assert_contiguous(&after);

    if let Backend::Kafka(_) = backend {
        let schemas = callboard_testkit::workspace_root().join("schema/events");
        let script = callboard_testkit::workspace_root().join("crates/callboard/tests/it/stock_client.py");
        // The stock client needs python3 with confluent-kafka and jsonschema (scripts/test
        // installs them).
        let output = succeed(
            Command::new(python())
                .arg(script)
                .args([
                    "--brokers",
                    &kafka_brokers(),
                    "--topic",
                    &topic,
                    "--expect",
                    &after.len().to_string(),
                ])
                .arg("--schemas")
                .arg(schemas),
            "the stock Kafka client",
        );
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON report");
        assert_eq!(report["problems"], serde_json::json!([]), "{report}");
        assert_eq!(report["read"], after.len());
        assert_eq!(report["counts"][UPSERTED], valid + 1);
        assert_eq!(report["counts"][REJECTED], invalid);
        assert_eq!(report["counts"][DELETED], 4);
    }
}

crate::common::on_embedded_and_kafka!(import_catalog: import_catalog_embedded, import_catalog_kafka);

/// librdkafka properties (security settings) reach every Kafka client from the environment,
/// and their values stay out of what is printed.
#[tokio::test(flavor = "multi_thread")]
async fn kafka_properties_reach_the_client_and_stay_unprinted() {
    let backend = Backend::kafka();
    let catalog = tempfile::tempdir().expect("tempdir");
    write_catalog(catalog.path(), &CatalogSpec::valid(20).seed(5));
    // Accepted properties: the import works.
    succeed(
        callboard()
            .args(["import", "--quiet"])
            .args(backend.cli_args())
            .arg(catalog.path())
            .env("CALLBOARD_KAFKA_PROPERTY_CLIENT_ID", "callboard-it")
            .args(["--kafka-property", "socket.keepalive.enable=true"]),
        "callboard import with Kafka properties",
    );
    let events = read_events(backend.open().await.as_ref(), &backend.topics().entities()).await;
    assert_eq!(events.len(), 21, "20 entities and the location");
    // A property librdkafka refuses: the command fails, naming it, and a secret set beside it is
    // not printed.
    let output = callboard()
        .args(["import", "--quiet"])
        .args(backend.cli_args())
        .arg(catalog.path())
        .env("CALLBOARD_KAFKA_PROPERTY_SECURITY_PROTOCOL", "carrier-pigeon")
        .env("CALLBOARD_KAFKA_PROPERTY_SSL_KEY_PASSWORD", "s3cret-key")
        .env("CALLBOARD_KAFKA_PROPERTY_SASL_PASSWORD", "s3cret-kafka")
        .env("CALLBOARD_LOG", "debug")
        .output()
        .expect("callboard import");
    assert!(!output.status.success());
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(printed.contains("security.protocol"), "{printed}");
    for secret in ["s3cret-kafka", "s3cret-key", "carrier-pigeon"] {
        assert!(!printed.contains(secret), "a value was printed:\n{printed}");
    }
}
