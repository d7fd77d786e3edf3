//! `kill -9` of the importer at random moments, then a restart: no entity is missing and no
//! sequence is duplicated. Twenty rounds on each adapter.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use callboard_testkit::CatalogSpec;

use crate::common::{Backend, assert_contiguous, callboard, live, read_events, write_catalog};

const ROUNDS: usize = 20;

async fn kill_and_restart(make: fn() -> Backend) {
    let catalog = tempfile::tempdir().expect("tempdir");
    let files = write_catalog(
        catalog.path(),
        &CatalogSpec {
            documents: 5_000,
            invalid_every: 0,
            documents_per_file: 4,
            seed: 3,
        },
    );
    let valid: usize = files.iter().map(|f| f.1).sum();
    // Calibrate: how long does a whole import take here? Kills then land anywhere in it.
    let started = std::time::Instant::now();
    let calibration = make();
    let output = callboard()
        .arg("import")
        .arg("--quiet")
        .args(calibration.cli_args())
        .arg(catalog.path())
        .output()
        .expect("import");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let full = started.elapsed().as_millis() as u64;
    let mut killed_mid_import = 0;
    for round in 0..ROUNDS {
        let backend = make();
        let delay = Duration::from_millis(rand::random_range(full / 20..full.max(40)));
        let mut child = callboard()
            .arg("import")
            .arg("--quiet")
            .args(backend.cli_args())
            .arg(catalog.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn import");
        tokio::time::sleep(delay).await;
        let finished_before_kill = child.try_wait().expect("wait").is_some();
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let log = backend.open().await;
        let partial = read_events(log.as_ref(), &backend.topics().entities()).await.len();
        if !finished_before_kill && partial > 0 && partial < valid + 1 {
            killed_mid_import += 1;
        }
        drop(log);

        let output = callboard()
            .arg("import")
            .arg("--quiet")
            .args(backend.cli_args())
            .arg(catalog.path())
            .output()
            .expect("restart");
        assert!(
            output.status.success(),
            "round {round}: restart failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let log = backend.open().await;
        let events = read_events(log.as_ref(), &backend.topics().entities()).await;
        assert_contiguous(&events);
        let live = live(&events);
        assert_eq!(
            live.len(),
            valid + 1,
            "round {round} (killed after {delay:?}, {partial} events then): entities"
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
        "only {killed_mid_import} of {ROUNDS} kills interrupted an import"
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
