//! Saving an edited descriptor in a watched location produces its event within a second (the
//! bound here is generous; `docs/benchmarks.md` records the real figure).

use std::sync::Arc;
use std::time::{Duration, Instant};

use callboard_events::types::LocationRecord;
use callboard_ingest::watch::FileWatcher;
use callboard_ingest::{Scanner, Writer, WriterConfig};
use callboard_reader::Reader;

use crate::common::{Backend, read_events};

const DOC: &str = "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: watched\n  description: {}\nspec:\n  type: service\n  lifecycle: production\n  owner: team-a\n";

async fn edit_becomes_event(backend: Backend) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("catalog-info.yaml");
    std::fs::write(&file, DOC.replace("{}", "first")).expect("write");
    let log = backend.open().await;
    let topics = backend.topics();
    let config = WriterConfig {
        topics: topics.clone(),
        ..WriterConfig::default()
    };
    let role = Writer::acquire_role(log.as_ref(), &topics, Duration::from_secs(30))
        .await
        .expect("writer role");
    let scanner = Scanner::new(Arc::new(Reader::default().allow_root(dir.path())));
    let mut writer = Writer::start(log.clone(), scanner, config).await.expect("writer");
    let location = LocationRecord {
        location_type: "file".into(),
        target: std::fs::canonicalize(&file).expect("path").display().to_string(),
    };
    writer.register(&location, "provider:test").await.expect("register");
    writer.sync(&location).await.expect("sync");
    let (watcher, changes) = FileWatcher::new().expect("watcher");
    writer.keep_watching(watcher);
    let before = read_events(log.as_ref(), &topics.entities()).await.len();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(writer.run(role, changes, async move {
        let _ = stopped.await;
    }));

    // Save an edit the way editors do: write a new file and rename it over the old one.
    let saved = Instant::now();
    let temporary = dir.path().join(".catalog-info.yaml.swp");
    std::fs::write(&temporary, DOC.replace("{}", "second")).expect("write");
    std::fs::rename(&temporary, &file).expect("rename");
    let latency = loop {
        let events = read_events(log.as_ref(), &topics.entities()).await;
        if events.len() > before {
            let latency = saved.elapsed();
            let edited = events
                .iter()
                .find(|e| e.subject == "component:default/watched" && e.sequence == 2)
                .expect("the new version");
            assert_eq!(edited.data["entity"]["metadata"]["description"], "second");
            break latency;
        }
        assert!(saved.elapsed() < Duration::from_secs(10), "no event 10 s after saving");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let _ = stop.send(());
    task.await.expect("writer task").expect("writer");
    latency
}

#[tokio::test(flavor = "multi_thread")]
async fn saved_edit_becomes_an_event_embedded() {
    let latency = edit_becomes_event(Backend::embedded()).await;
    eprintln!("embedded: saved edit to event in {latency:?}");
    assert!(latency < Duration::from_secs(5), "{latency:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn saved_edit_becomes_an_event_kafka() {
    let latency = edit_becomes_event(Backend::kafka()).await;
    eprintln!("kafka: saved edit to event in {latency:?}");
    assert!(latency < Duration::from_secs(5), "{latency:?}");
}
