//! `kill -9` at random points of an import's progress, then a restart: no entity is missing and
//! no sequence is duplicated. Twenty rounds on each stack, for `callboard import` and for
//! `callboard serve` (whose restart must also leave the read model with every entity once).

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use callboard_testkit::CatalogSpec;

use crate::common::{Backend, assert_contiguous, callboard, live, read_events, write_catalog};
use crate::serve::{Server, http};
use crate::stores::Store;

const ROUNDS: usize = 20;

async fn kill_and_restart(make: fn() -> Backend) {
    let catalog = tempfile::tempdir().expect("tempdir");
    let files = write_catalog(catalog.path(), &CatalogSpec::valid(5_000).seed(3));
    let valid: usize = files.iter().map(|f| f.1).sum();
    // Each round kills the importer once it has appended a random number of the events, watching
    // the log: kills land at random points of the import's progress, however fast or loaded the
    // machine is (random delays mostly hit start-up or shutdown once imports got fast).
    let mut killed_mid_import = 0;
    let mut rounds: Vec<String> = Vec::new();
    for round in 0..ROUNDS {
        let backend = make();
        let log = backend.open().await;
        let topic = backend.topics().entities();
        let target = rand::random_range(1..=valid as i64);
        let mut child = callboard()
            .arg("import")
            .arg("--quiet")
            .args(backend.cli_args())
            .arg(catalog.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn import");
        let started = std::time::Instant::now();
        let mut finished_before_kill = false;
        loop {
            let appended: i64 = log.end_offsets(&topic).await.map(|ends| ends.iter().sum()).unwrap_or(0);
            if appended >= target {
                break;
            }
            if child.try_wait().expect("wait").is_some() {
                finished_before_kill = true;
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "round {round}: the import hangs"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        drop(log);
        let log = backend.open().await;
        let partial = read_events(log.as_ref(), &backend.topics().entities()).await.len();
        if !finished_before_kill && partial > 0 && partial < valid + 1 {
            killed_mid_import += 1;
        }
        rounds.push(format!(
            "{target}:{partial}{}",
            if finished_before_kill { "(done)" } else { "" }
        ));
        drop(log);

        let restart = callboard()
            .args(["import", "--quiet"])
            .args(backend.cli_args())
            .arg(catalog.path())
            .output()
            .expect("restart");
        assert!(
            restart.status.success(),
            "round {round}: restart failed: {}",
            String::from_utf8_lossy(&restart.stderr)
        );
        let log = backend.open().await;
        let events = read_events(log.as_ref(), &backend.topics().entities()).await;
        assert_contiguous(&events);
        let live = live(&events);
        assert_eq!(
            live.len(),
            valid + 1,
            "round {round} (killed after {target} events, {partial} then): entities"
        );
        let upserts: BTreeSet<&str> = events.iter().map(|e| e.subject.as_str()).collect();
        assert_eq!(
            upserts.len(),
            events.len(),
            "round {round}: every entity was upserted exactly once"
        );
    }
    // The random delays must actually hit imports in progress, or the test proves little.
    assert!(
        killed_mid_import >= ROUNDS / 4,
        "only {killed_mid_import} of {ROUNDS} kills interrupted an import (target:events when killed: {})",
        rounds.join(" ")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_embedded() {
    kill_and_restart(Backend::embedded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_kafka() {
    kill_and_restart(Backend::kafka).await;
}

/// `callboard serve --location CATALOG` killed with SIGKILL once the log holds a random number of
/// the catalog's events, then started again: every entity is in the log once (contiguous
/// sequences, one upsert each) and in the read model once, and the server is ready.
async fn kill_serve_and_restart(make: fn() -> Backend, postgres: bool) {
    let catalog = tempfile::tempdir().expect("tempdir");
    let files = write_catalog(catalog.path(), &CatalogSpec::valid(3_000).seed(9));
    let valid: usize = files.iter().map(|f| f.1).sum();
    let location = catalog.path().display().to_string();
    let mut killed_mid_import = 0;
    let mut rounds: Vec<String> = Vec::new();
    let mut recoveries: Vec<Duration> = Vec::new();
    for round in 0..ROUNDS {
        let backend = make();
        let store = postgres.then(Store::postgres);
        let mut args: Vec<String> = backend.cli_args();
        args.extend(store.iter().flat_map(Store::cli_args));
        // A stable identity: the restarted process takes its Kafka partitions (and the writer
        // role) back at once instead of waiting for the killed one's session to expire.
        args.extend([
            "--instance-id".into(),
            format!("crash-{round}"),
            "--location".into(),
            location.clone(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let log = backend.open().await;
        let topic = backend.topics().entities();
        let target = rand::random_range(1..=valid as i64);
        let mut child = callboard()
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve");
        let started = std::time::Instant::now();
        let mut exited = false;
        loop {
            let appended: i64 = log.end_offsets(&topic).await.map(|ends| ends.iter().sum()).unwrap_or(0);
            if appended >= target {
                break;
            }
            if child.try_wait().expect("wait").is_some() {
                exited = true;
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "round {round}: serve hangs"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert!(!exited, "round {round}: serve exited by itself");
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let partial = read_events(log.as_ref(), &topic).await.len();
        if partial > 0 && partial < valid + 1 {
            killed_mid_import += 1;
        }
        rounds.push(format!("{target}:{partial}"));

        // Started again: ready, with every entity once.
        let restarted = std::time::Instant::now();
        let server = Server::launch(&args, &[], Stdio::null());
        let total = loop {
            let total = server
                .graphql("{ entities { totalCount } }", serde_json::json!({}))
                .1["data"]["entities"]["totalCount"]
                .as_u64();
            let ready = http(&server.addr, "GET", "/readyz", &[], b"").0 == 200;
            if ready && total == Some(valid as u64 + 1) {
                break total;
            }
            assert!(
                restarted.elapsed() < Duration::from_secs(120),
                "round {round} (killed after {partial} events): {total:?} of {} entities 120 s after the restart",
                valid + 1
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        recoveries.push(restarted.elapsed());
        drop(server);
        assert_eq!(total, Some(valid as u64 + 1));
        let events = read_events(log.as_ref(), &topic).await;
        assert_contiguous(&events);
        assert_eq!(live(&events).len(), valid + 1, "round {round}: entities in the log");
        let subjects: BTreeSet<&str> = events.iter().map(|e| e.subject.as_str()).collect();
        assert_eq!(
            subjects.len(),
            events.len(),
            "round {round}: every entity was upserted exactly once"
        );
        if let Some(store) = store {
            store.cleanup().await;
        }
    }
    recoveries.sort();
    eprintln!(
        "serve killed {ROUNDS} times (target:events when killed: {}); restart to all {} entities ready: median {:?}, max {:?}",
        rounds.join(" "),
        valid + 1,
        recoveries[recoveries.len() / 2],
        recoveries[recoveries.len() - 1]
    );
    assert!(
        killed_mid_import >= ROUNDS / 4,
        "only {killed_mid_import} of {ROUNDS} kills interrupted an import ({})",
        rounds.join(" ")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_serve_embedded() {
    kill_serve_and_restart(Backend::embedded, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_serve_kafka_postgres() {
    kill_serve_and_restart(Backend::kafka, true).await;
}
