//! The projector's metrics endpoint: lag per partition while behind, zero once caught up, and a
//! count of the events applied — read over HTTP in the Prometheus text format, as Prometheus does.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use callboard_testkit::CatalogSpec;

use crate::common::{Backend, callboard, read_events, write_catalog};
use crate::projection::import;

/// `GET path` over plain HTTP/1.1; returns the status code and the body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The samples of one metric: labels (as written) → value.
fn samples(text: &str, name: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let labels = series.strip_prefix(name)?;
            if !(labels.is_empty() || labels.starts_with('{')) {
                return None; // another metric sharing the prefix
            }
            Some((labels.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn projector_exports_lag() {
    let backend = Backend::embedded();
    let Backend::Embedded(data) = &backend else {
        unreachable!()
    };
    let catalog = tempfile::tempdir().expect("tempdir");
    write_catalog(catalog.path(), &CatalogSpec::valid(3_000).seed(3));
    import(&backend, data.path(), catalog.path());
    let log = backend.open().await;
    let events = read_events(log.as_ref(), &backend.topics().entities()).await.len();

    // One event per transaction, so the backlog lasts long enough to be seen.
    let mut projector = callboard()
        .args(["project", "--batch", "1", "--metrics-listen", "127.0.0.1:0"])
        .args(backend.cli_args())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("project");
    let mut stderr = BufReader::new(projector.stderr.take().expect("stderr"));
    let mut addr = String::new();
    let mut line = String::new();
    while stderr.read_line(&mut line).expect("read") > 0 {
        if let Some(url) = line.trim().strip_prefix("metrics on http://") {
            addr = url.trim_end_matches("/metrics").to_owned();
            break;
        }
        line.clear();
    }
    assert!(!addr.is_empty(), "the projector printed no metrics address");
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));

    assert_eq!(get(&addr, "/healthz"), (200, "ok\n".to_owned()));
    let (mut seen_behind, mut seen_seconds) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(120);
    let last = loop {
        assert!(Instant::now() < deadline, "the projector did not catch up");
        let (status, text) = get(&addr, "/metrics");
        assert_eq!(status, 200);
        let lag = samples(&text, "callboard_projector_lag_events");
        let seconds = samples(&text, "callboard_projector_lag_seconds");
        let applied: f64 = samples(&text, "callboard_projector_events_total").values().sum();
        seen_behind |= lag.values().any(|v| *v > 0.0);
        seen_seconds |= seconds.values().any(|v| *v > 0.0);
        if !lag.is_empty() && lag.values().all(|v| *v == 0.0) && applied > 0.0 {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        seen_behind && seen_seconds,
        "lag was never reported while the backlog was projected"
    );
    // One series per projection and partition of each topic, labelled with the projection and
    // its group.
    let lag = samples(&last, "callboard_projector_lag_events");
    let partitions = log.partitions(&backend.topics().entities()).await.expect("partitions") as usize;
    for (projection, group) in [
        ("catalog", "callboard.projector"),
        ("activity", "callboard.projector-activity"),
    ] {
        let series: Vec<&String> = lag
            .keys()
            .filter(|k| k.contains(&format!("projection=\"{projection}\"")))
            .collect();
        let entity_series = series
            .iter()
            .filter(|k| k.contains("topic=\"callboard.entities\""))
            .count();
        assert_eq!(entity_series, partitions, "{projection}: {lag:?}");
        assert!(
            series.iter().all(|k| k.contains(&format!("group=\"{group}\""))),
            "{lag:?}"
        );
    }
    assert!(
        samples(&last, "callboard_projector_lag_seconds")
            .values()
            .all(|v| *v == 0.0)
    );
    // Caught up means every entity event was applied (plus the location events), by each
    // projection.
    let applied = samples(&last, "callboard_projector_events_total");
    for projection in ["catalog", "activity"] {
        let by: f64 = applied
            .iter()
            .filter(|(k, _)| k.contains(&format!("projection=\"{projection}\"")))
            .map(|(_, v)| v)
            .sum();
        assert!(
            by as usize > events,
            "{projection}: {by} applied, {events} entity events"
        );
    }
    assert!(last.contains("# TYPE callboard_projector_lag_events gauge"));
    let _ = projector.kill();
    let _ = projector.wait();
}
