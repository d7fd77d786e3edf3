//! Projections end to end: incremental projection equals a full replay (table checksums, both
//! read models), `kill -9` of the projector during an import, two projector processes sharing a
//! consumer group, and the queries every read model answers.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use callboard_projection::{Batch, Generation, ProjectionStore, StoreError, StoredEvent};
use callboard_readmodel::catalog::{CatalogProjection, Changes, Loaded, fold};
use callboard_readmodel::filter::Filter;
use callboard_readmodel::store::{EntityQuery, Order, ReadStore, RejectionsBy};
use callboard_testkit::CatalogSpec;

use crate::common::{Backend, callboard, live, read_events, succeed, write_catalog};
use crate::stores::Store;

/// The data directory of the CLI for a backend (the embedded log's folder, or a scratch one).
pub(crate) fn data_dir_args(backend: &Backend, scratch: &Path) -> Vec<String> {
    match backend {
        Backend::Embedded(_) | Backend::Memory(_) => Vec::new(),
        Backend::Kafka(_) => vec!["--data-dir".into(), scratch.display().to_string()],
    }
}

pub(crate) fn run(args: &[String]) {
    succeed(callboard().args(args), &format!("callboard {args:?}"));
}

pub(crate) fn import(backend: &Backend, scratch: &Path, location: &Path) {
    let mut args: Vec<String> = vec!["import".into(), "--quiet".into()];
    args.extend(backend.cli_args());
    args.extend(data_dir_args(backend, scratch));
    args.push(location.display().to_string());
    run(&args);
}

pub(crate) fn project(backend: &Backend, store: &Store, scratch: &Path, extra: &[&str]) -> String {
    let mut args: Vec<String> = vec!["project".into(), "--until-caught-up".into()];
    args.extend(backend.cli_args());
    args.extend(data_dir_args(backend, scratch));
    args.extend(store.cli_args());
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let output = succeed(callboard().args(&args), "callboard project");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub(crate) fn replay(backend: &Backend, store: &Store, scratch: &Path) {
    let mut args: Vec<String> = vec!["replay".into(), "--quiet".into()];
    args.extend(backend.cli_args());
    args.extend(data_dir_args(backend, scratch));
    args.extend(store.cli_args());
    run(&args);
}

/// A catalog that changes: updates, a deleted file, a broken file later fixed, a duplicate.
fn evolve(catalog: &Path, step: usize, files: &[(std::path::PathBuf, usize, usize)]) {
    match step {
        0 => {}
        1 => {
            for (path, _, _) in files.iter().take(30) {
                let text = std::fs::read_to_string(path).expect("read");
                std::fs::write(
                    path,
                    text.replace("Handles part of the order flow", "Handles the order flow, now faster"),
                )
                .expect("write");
            }
            std::fs::remove_file(&files[40].0).expect("delete a file");
            std::fs::create_dir_all(catalog.join("broken")).expect("mkdir");
            std::fs::write(
                catalog.join("broken/catalog-info.yaml"),
                "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {name: [oops\n",
            )
            .expect("write");
            let first = std::fs::read_to_string(&files[50].0).expect("read");
            std::fs::write(catalog.join("teams/duplicate/catalog-info.yaml").as_path(), first).unwrap_or_else(|_| {
                std::fs::create_dir_all(catalog.join("teams/duplicate")).expect("mkdir");
                std::fs::write(
                    catalog.join("teams/duplicate/catalog-info.yaml"),
                    std::fs::read_to_string(&files[50].0).expect("read"),
                )
                .expect("write");
            });
        }
        _ => {
            std::fs::write(catalog.join("broken/catalog-info.yaml"), "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {name: fixed}\nspec: {type: service, lifecycle: production, owner: team-a}\n").expect("write");
            std::fs::remove_dir_all(catalog.join("teams/duplicate")).expect("remove the duplicate");
        }
    }
}

async fn incremental_equals_replay(backend: Backend, store: Store) {
    let scratch = tempfile::tempdir().expect("tempdir");
    let catalog = tempfile::tempdir().expect("tempdir");
    let files = write_catalog(catalog.path(), &CatalogSpec::valid(2_000).invalid_every(100).seed(11));
    for step in 0..3 {
        evolve(catalog.path(), step, &files);
        import(&backend, scratch.path(), catalog.path());
        // Small batches, several runs: the incremental path, not one big batch.
        project(&backend, &store, scratch.path(), &["--batch", "150"]);
    }
    let stores = store.open().await;
    let (read_store, reader) = (stores.store.clone(), stores.reader.clone());
    let generation = read_store.active().await.expect("active");
    let incremental = read_store.checksums(generation).await.expect("checksums");
    let activity_generation = stores.activity.active().await.expect("active");
    let activity = stores.activity.checksums(activity_generation).await.expect("checksums");
    // The read models agree with the log: a history row per entity event, an activity row per
    // event of either topic.
    let log = backend.open().await;
    let events = read_events(log.as_ref(), &backend.topics().entities()).await;
    let location_events = read_events(log.as_ref(), &backend.topics().locations()).await;
    assert!(
        activity["activity"].starts_with(&format!("{} rows", events.len() + location_events.len())),
        "{activity:?}"
    );
    let expected_live = live(&events);
    assert_eq!(
        reader.count(None, None).await.expect("count") as usize,
        expected_live.len()
    );
    // Whole kinds are counted from the kept counts, any other filter from the rows: both agree
    // with the log.
    let components = expected_live.keys().filter(|r| r.starts_with("component:")).count();
    let kind = Filter::eq("kind", "Component");
    let named_components = Filter::All(vec![
        Filter::eq("kind", "component"),
        Filter::Field {
            key: "metadata.name".into(),
            values: vec![],
        },
    ]);
    assert_eq!(
        reader.count(Some(&kind), None).await.expect("count") as usize,
        components
    );
    assert_eq!(
        reader.count(Some(&named_components), None).await.expect("count") as usize,
        components
    );
    assert_eq!(
        reader
            .count(Some(&Filter::eq("kind", "no-such-kind")), None)
            .await
            .expect("count"),
        0
    );
    assert!(
        incremental["history"].starts_with(&format!("{} rows", events.len())),
        "{incremental:?}"
    );
    assert!(
        !reader
            .rejections(RejectionsBy::All)
            .await
            .expect("rejections")
            .is_empty(),
        "the invalid documents are pending"
    );

    replay(&backend, &store, scratch.path());
    let replayed_generation = read_store.active().await.expect("active");
    assert_ne!(replayed_generation, generation, "a replay builds a new generation");
    let replayed = read_store.checksums(replayed_generation).await.expect("checksums");
    assert_eq!(
        incremental, replayed,
        "incremental projection and replay give identical tables"
    );
    let replayed_activity_generation = stores.activity.active().await.expect("active");
    assert_ne!(
        replayed_activity_generation, activity_generation,
        "both projections replay"
    );
    let replayed_activity = stores
        .activity
        .checksums(replayed_activity_generation)
        .await
        .expect("checksums");
    assert_eq!(
        activity, replayed_activity,
        "incremental and replayed activity feeds are identical"
    );
    // The projector continues on the new generation from where the replay left off.
    evolve(catalog.path(), 0, &files);
    std::fs::create_dir_all(catalog.path().join("late")).expect("mkdir");
    std::fs::write(catalog.path().join("late/catalog-info.yaml"), "apiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata: {name: late-team}\nspec: {type: team, children: []}\n").expect("write");
    import(&backend, scratch.path(), catalog.path());
    project(&backend, &store, scratch.path(), &[]);
    assert_eq!(
        reader
            .entities(&["group:default/late-team".parse().expect("a ref")])
            .await
            .expect("entities")
            .len(),
        1
    );
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn incremental_equals_replay_embedded_sqlite() {
    let backend = Backend::embedded();
    let store = match &backend {
        Backend::Embedded(dir) => Store::sqlite(dir.path()),
        _ => unreachable!(),
    };
    incremental_equals_replay(backend, store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn incremental_equals_replay_kafka_postgres() {
    incremental_equals_replay(Backend::kafka(), Store::postgres()).await;
}

/// Per subject, history holds sequences 1..n exactly once.
async fn assert_history_contiguous(
    reader: &dyn callboard_readmodel::store::CatalogReader,
    events: &[callboard_events::CloudEvent],
) {
    let mut by_subject: BTreeMap<&str, u64> = BTreeMap::new();
    for event in events {
        let slot = by_subject.entry(event.subject.as_str()).or_default();
        *slot = (*slot).max(event.sequence);
    }
    for (subject, last) in by_subject {
        let history = reader.history(subject, 10_000, None).await.expect("history");
        let mut sequences: Vec<i64> = history.iter().map(|h| h.sequence).collect();
        sequences.reverse();
        assert_eq!(sequences, (1..=last as i64).collect::<Vec<_>>(), "history of {subject}");
    }
}

/// Events in the entity topic so far.
async fn log_size(log: &std::sync::Arc<dyn callboard_events::log::EventLog>, backend: &Backend) -> i64 {
    log.end_offsets(&backend.topics().entities())
        .await
        .map(|ends| ends.iter().sum())
        .unwrap_or(0)
}

async fn kill_projector(backend: Backend, store: Store) {
    const ROUNDS: usize = 20;
    let scratch = tempfile::tempdir().expect("tempdir");
    let staging = tempfile::tempdir().expect("tempdir");
    let catalog = tempfile::tempdir().expect("tempdir");
    let files = write_catalog(staging.path(), &CatalogSpec::valid(10_000).invalid_every(0).seed(5));
    let mut import_args: Vec<String> = vec!["import".into(), "--quiet".into()];
    import_args.extend(backend.cli_args());
    import_args.extend(data_dir_args(&backend, scratch.path()));
    import_args.push(catalog.path().display().to_string());
    // A stable instance id, as a restarted pod has: the next projector takes the partitions back
    // at once instead of waiting for the killed one's session to expire.
    let mut project_args: Vec<String> = vec![
        "project".into(),
        "--batch".into(),
        "50".into(),
        "--instance-id".into(),
        "projector-0".into(),
    ];
    project_args.extend(backend.cli_args());
    project_args.extend(data_dir_args(&backend, scratch.path()));
    project_args.extend(store.cli_args());
    let reader = store.open().await.reader;
    let log = backend.open().await;
    let mut before = 0;
    // The import proceeds in twenty slices of the catalog; in each, a projector runs while the
    // slice is imported and is killed at a random moment.
    for (round, slice) in files.chunks(files.len().div_ceil(ROUNDS)).enumerate() {
        for (path, _, _) in slice {
            let relative = path.strip_prefix(staging.path()).expect("relative");
            let destination = catalog.path().join(relative);
            std::fs::create_dir_all(destination.parent().expect("parent")).expect("mkdir");
            std::fs::copy(path, destination).expect("copy");
        }
        let mut importer = callboard()
            .args(&import_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("import");
        // Start the projector once the slice's events begin to arrive, so it has work when killed.
        let appended_before = log_size(&log, &backend).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while log_size(&log, &backend).await == appended_before && importer.try_wait().expect("wait").is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the import of slice {round} appended nothing"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut projector = callboard()
            .args(&project_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("project");
        // Kill it at a random moment after it has started writing, so every kill hits a projector
        // at work (mid-batch or between batches) rather than one still joining its group.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while reader.count(None, None).await.unwrap_or(before) == before {
            assert!(
                std::time::Instant::now() < deadline,
                "the projector of slice {round} projected nothing"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..400))).await;
        let _ = projector.kill(); // SIGKILL, mid-batch or not
        let _ = projector.wait();
        assert!(importer.wait().expect("import").success(), "import of slice {round}");
        before = reader.count(None, None).await.unwrap_or(before);
    }
    project(&backend, &store, scratch.path(), &[]);

    let events = read_events(log.as_ref(), &backend.topics().entities()).await;
    let location_events = read_events(log.as_ref(), &backend.topics().locations()).await;
    let stores = store.open().await;
    let reader = stores.reader.clone();
    let expected = live(&events);
    assert_eq!(expected.len(), 10_001);
    assert_eq!(
        reader.count(None, None).await.expect("count") as usize,
        expected.len(),
        "no entity missing"
    );
    let generation = stores.store.active().await.expect("active");
    let checksums = stores.store.checksums(generation).await.expect("checksums");
    assert!(
        checksums["history"].starts_with(&format!("{} rows", events.len())),
        "no version duplicated: {checksums:?}"
    );
    // The activity projection was killed with the catalog's every time: nothing lost or doubled
    // there either.
    let generation = stores.activity.active().await.expect("active");
    let activity = stores.activity.checksums(generation).await.expect("checksums");
    assert!(
        activity["activity"].starts_with(&format!("{} rows", events.len() + location_events.len())),
        "one activity row per event: {activity:?}"
    );
    // Spot-check contiguity on a sample of subjects (all of them on the small catalogs above).
    let sample: Vec<_> = events.iter().step_by(97).cloned().collect();
    assert_history_contiguous(reader.as_ref(), &sample).await;
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_projector_embedded_sqlite() {
    let backend = Backend::embedded();
    let store = match &backend {
        Backend::Embedded(dir) => Store::sqlite(dir.path()),
        _ => unreachable!(),
    };
    kill_projector(backend, store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_projector_kafka_postgres() {
    kill_projector(Backend::kafka(), Store::postgres()).await;
}

/// Two projector processes in one consumer group split the partitions and together build the
/// same read model as one process.
#[tokio::test(flavor = "multi_thread")]
async fn two_projectors_share_a_group() {
    let backend = Backend::kafka();
    let store = Store::postgres();
    let stores = store.open().await;
    stores.prepare().await.expect("prepare");
    let read_store = stores.store.clone();
    let scratch = tempfile::tempdir().expect("tempdir");
    let catalog = tempfile::tempdir().expect("tempdir");
    write_catalog(catalog.path(), &CatalogSpec::valid(6_000).invalid_every(200).seed(9));
    // Both members join before any event exists, so the group splits the partitions between them.
    let log = backend.open().await;
    log.ensure_topics(&backend.topics().specs(6, 1)).await.expect("topics");
    let mut args: Vec<String> = vec!["project".into(), "--batch".into(), "200".into()];
    args.extend(backend.cli_args());
    args.extend(data_dir_args(&backend, scratch.path()));
    args.extend(store.cli_args());
    let spawn = || {
        callboard()
            .args(&args)
            .env("CALLBOARD_LOG", "warn")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("project")
    };
    let (first, second) = (spawn(), spawn());
    tokio::time::sleep(Duration::from_secs(3)).await;
    import(&backend, scratch.path(), catalog.path());
    let topics = backend.topics();
    let group = callboard_projection::default_group(&topics, "catalog");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !callboard_projection::caught_up(
        log.as_ref(),
        read_store.as_ref(),
        &[topics.entities(), topics.locations()],
        &group,
    )
    .await
    .expect("lag")
    {
        assert!(std::time::Instant::now() < deadline, "the projectors did not catch up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Stop both gracefully (SIGINT) to read how much each did.
    for child in [&first, &second] {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
    }
    let (first, second) = (
        first.wait_with_output().expect("first"),
        second.wait_with_output().expect("second"),
    );
    assert!(
        first.status.success() && second.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&first.stderr),
        String::from_utf8_lossy(&second.stderr)
    );
    let projected = |output: &std::process::Output| -> u64 {
        let text = String::from_utf8_lossy(&output.stderr);
        text.lines()
            .find_map(|l| l.strip_prefix("projected ")?.split(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    let (a, b) = (projected(&first), projected(&second));
    assert!(a > 0 && b > 0, "both processes did part of the work: {a} and {b}");
    let together = read_store
        .checksums(read_store.active().await.expect("active"))
        .await
        .expect("checksums");
    // One process from scratch (a replay is one process reading every partition).
    replay(&backend, &store, scratch.path());
    let alone = read_store
        .checksums(read_store.active().await.expect("active"))
        .await
        .expect("checksums");
    assert_eq!(together, alone);
    store.cleanup().await;
}

/// What every read model answers, on the demo catalog plus a broken file.
async fn queries(backend: Backend, store: Store) {
    let scratch = tempfile::tempdir().expect("tempdir");
    let demo = callboard_testkit::workspace_root().join("deploy/demo");
    let broken = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        broken.path().join("catalog-info.yaml"),
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: Bad Name\nspec: {}\n",
    )
    .expect("write");
    import(&backend, scratch.path(), &demo.join("catalog-info.yaml"));
    import(&backend, scratch.path(), broken.path());
    project(&backend, &store, scratch.path(), &[]);
    let reader = store.open().await.reader;
    let r = |text: &str| -> callboard_model::EntityRef { text.parse().expect("a ref") };

    let rows = reader
        .entities(&[r("component:default/booking-service"), r("component:default/nope")])
        .await
        .expect("entities");
    assert_eq!(rows.len(), 1);
    let booking = &rows[0];
    assert_eq!(booking.document["metadata"]["uid"], booking.uid.as_str());
    assert_eq!(booking.owner.as_deref(), Some("group:default/team-ticketing"));

    let components = Filter::eq("kind", "component");
    let total = reader.count(Some(&components), None).await.expect("count");
    assert_eq!(total, 65);
    // Paging through a filtered list visits every match once.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = reader
            .list(&EntityQuery {
                filter: Some(components.clone()),
                order: Order::Name,
                after: after.clone(),
                limit: 20,
                ..Default::default()
            })
            .await
            .expect("list");
        seen.extend(page.rows.iter().map(|(_, r)| r.entity_ref.clone()));
        after = page.rows.last().map(|(k, _)| k.clone());
        if !page.has_more {
            break;
        }
    }
    assert_eq!(seen.len(), 65);
    let mut sorted = seen.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), 65, "no duplicates across pages");

    // Backstage filter semantics: OR of ANDs, case-insensitive, existence, relations.
    let filter = Filter::parse_backstage(&[
        "kind=Component,spec.type=website".into(),
        "kind=API,spec.type=GRAPHQL".into(),
    ])
    .expect("filter");
    let websites_and_graphql = reader.count(filter.as_ref(), None).await.expect("count");
    assert_eq!(websites_and_graphql, 8 + 2);
    let owned = Filter::parse_backstage(&["relations.ownedBy=group:default/team-ticketing".into()]).expect("filter");
    assert!(reader.count(owned.as_ref(), None).await.expect("count") >= 1);
    let tagged = Filter::parse_backstage(&["metadata.tags.java".into()]).expect("filter");
    let with_java = reader.count(tagged.as_ref(), None).await.expect("count");
    assert!(with_java > 0);

    // Full-text search over names, titles, descriptions, tags.
    assert!(reader.count(None, Some("booking")).await.expect("search") >= 3);
    assert_eq!(reader.count(None, Some("zzzz-nothing")).await.expect("search"), 0);
    // Ranked search: names starting with the word first, then the rest, each by ref; paging in
    // small pages visits every match once.
    let search = |order, after, limit| EntityQuery {
        text: Some("Booking".into()),
        order,
        after,
        limit,
        ..Default::default()
    };
    let by_ref: Vec<String> = reader
        .list(&search(Order::Ref, None, 1_000))
        .await
        .expect("search")
        .rows
        .iter()
        .map(|(_, row)| row.entity_ref.canonical())
        .collect();
    let (mut ranked, mut after) = (Vec::new(), None);
    loop {
        let page = reader
            .list(&search(Order::Relevance, after.clone(), 2))
            .await
            .expect("ranked");
        ranked.extend(
            page.rows
                .iter()
                .map(|(_, row)| (row.name.starts_with("booking"), row.entity_ref.canonical())),
        );
        after = page.rows.last().map(|(key, _)| key.clone());
        if !page.has_more {
            break;
        }
    }
    let leading = ranked.iter().take_while(|(starts, _)| *starts).count();
    assert!(
        leading >= 2 && leading < ranked.len(),
        "names starting with the word lead: {ranked:?}"
    );
    assert!(ranked[leading..].iter().all(|(starts, _)| !starts), "{ranked:?}");
    for group in [&ranked[..leading], &ranked[leading..]] {
        assert!(
            group.windows(2).all(|w| w[0].1 < w[1].1),
            "each group by ref: {group:?}"
        );
    }
    let mut visited: Vec<String> = ranked.into_iter().map(|(_, r)| r).collect();
    visited.sort();
    assert_eq!(visited, by_ref, "every match once");

    // Facets: counted ones and any field, filtered or not.
    let kinds = reader.facets("kind", None).await.expect("facets");
    assert_eq!(kinds[0], ("Component".to_owned(), 65));
    let lifecycles = reader
        .facets("spec.lifecycle", Some(&components))
        .await
        .expect("facets");
    assert_eq!(lifecycles.iter().map(|(_, n)| n).sum::<i64>(), 65);
    // Counts kept per kind agree with counting each matching row's values in the database (what
    // a filter the kept counts cannot answer asks for), and both with counting the documents.
    let counted_in_database = Filter::All(vec![Filter::eq("kind", "component"), Filter::exists("metadata.name")]);
    let documents: Vec<(String, String)> = reader
        .list(&EntityQuery {
            filter: Some(components.clone()),
            limit: 1_000,
            ..Default::default()
        })
        .await
        .expect("list")
        .rows
        .iter()
        .map(|(_, row)| (row.document.to_string(), row.uid.clone()))
        .collect();
    for key in [
        "metadata.tags",
        "metadata.namespace",
        "spec.type",
        "spec.lifecycle",
        "spec.owner",
        "spec.system",
    ] {
        let kept = reader.facets(key, Some(&components)).await.expect("facets");
        let counted = reader.facets(key, Some(&counted_in_database)).await.expect("facets");
        let from_documents = callboard_readmodel::search::count_values(&documents, key, &Default::default());
        assert!(!kept.is_empty(), "{key}");
        assert_eq!(kept, counted, "facets of {key} within components");
        assert_eq!(counted, from_documents, "facets of {key} counted from the documents");
    }
    let annotations = reader
        .facets("metadata.annotations.github.com/project-slug", None)
        .await
        .expect("facets");
    assert!(!annotations.is_empty(), "facets over any field");

    // Relations, both directions, dangling targets marked.
    let relations = reader
        .relations(&[r("component:default/legacy-booking-portal")], false)
        .await
        .expect("relations");
    let dangling: Vec<_> = relations.iter().filter(|r| !r.target_exists).collect();
    assert!(
        dangling
            .iter()
            .any(|v| v.relation.target.as_str() == "resource:default/legacy-oracle-reservations"),
        "{relations:?}"
    );
    let incoming = reader
        .relations(&[r("group:default/team-ticketing")], true)
        .await
        .expect("relations");
    assert!(
        incoming
            .iter()
            .any(|v| v.relation.kind == callboard_model::RelationType::OwnedBy)
    );

    // History, rejections, locations.
    let history = reader
        .history("component:default/booking-service", 10, None)
        .await
        .expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].event_type, "entity.upserted.v1");
    let rejections = reader.rejections(RejectionsBy::All).await.expect("rejections");
    assert_eq!(rejections.len(), 1);
    assert_eq!(rejections[0].problems[0]["field"], "metadata.name");
    let by_location = reader
        .rejections(RejectionsBy::Location(&rejections[0].location))
        .await
        .expect("rejections");
    assert_eq!(by_location.len(), 1);
    assert_eq!(reader.locations().await.expect("locations").len(), 2);
    assert!(!reader.graph_version().await.expect("version").ends_with(".0"));
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn queries_embedded_sqlite() {
    let backend = Backend::embedded();
    let store = match &backend {
        Backend::Embedded(dir) => Store::sqlite(dir.path()),
        _ => unreachable!(),
    };
    queries(backend, store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn queries_kafka_postgres() {
    queries(Backend::kafka(), Store::postgres()).await;
}

/// One event of the pipelined-projection script: `owner` moves ownership (closing and opening
/// relation rows); `None` deletes the entity.
fn scripted_event(name: &str, sequence: u64, owner: Option<&str>, offset: i64) -> callboard_events::log::Message {
    use callboard_events::CloudEvent;
    use callboard_events::types::EventType;
    use serde_json::json;
    let entity_ref = format!("component:default/{name}");
    let mut event = match owner {
        Some(owner) => CloudEvent::new(
            EventType::EntityUpserted,
            entity_ref.clone(),
            sequence,
            "file:/catalog-info.yaml",
            "provider:test",
            json!({
                "entityRef": entity_ref, "uid": format!("uid-{name}"), "contentHash": format!("{name}-{sequence}"),
                "locationKey": "file:/catalog-info.yaml", "originLocation": "file:/catalog-info.yaml",
                "entity": {"apiVersion": "backstage.io/v1alpha1", "kind": "Component",
                           "metadata": {"name": name, "namespace": "default", "tags": [format!("v{sequence}")]},
                           "spec": {"type": "service", "lifecycle": "production", "owner": owner}},
                "relations": [
                    {"type": "ownedBy", "sourceRef": entity_ref, "targetRef": format!("group:default/{owner}")},
                    {"type": "ownerOf", "sourceRef": format!("group:default/{owner}"), "targetRef": entity_ref},
                ],
            }),
        ),
        None => CloudEvent::new(
            EventType::EntityDeleted,
            entity_ref.clone(),
            sequence,
            "file:/catalog-info.yaml",
            "provider:test",
            json!({"entityRef": entity_ref, "reason": "removed"}),
        ),
    };
    event.time = format!("2026-03-01T00:00:{offset:02}Z");
    callboard_events::log::Message {
        topic: "pipeline.entities".into(),
        partition: 0,
        offset,
        key: entity_ref,
        value: event.to_bytes(),
        timestamp_ms: 0,
    }
}

/// The projector writes one batch while it loads and projects the next. Batches that share a
/// subject with the batch being written (an entity changed in both) and batches that do not must
/// leave exactly the tables that applying the batches one at a time leaves.
async fn pipelined_equals_one_at_a_time(store: Store) {
    use callboard_projection::{Pipeline, batch_positions, subjects};
    let script: Vec<Vec<(&str, u64, Option<&str>)>> = vec![
        vec![("a", 1, Some("team-a")), ("b", 1, Some("team-a"))],
        // `a` again while the first batch may still be in flight.
        vec![("a", 2, Some("team-b")), ("c", 1, Some("team-c"))],
        // Disjoint from the batch before: loaded while it is written.
        vec![("d", 1, Some("team-d")), ("e", 1, Some("team-a"))],
        vec![("b", 2, None), ("d", 2, Some("team-a"))],
        vec![("a", 3, Some("team-c")), ("b", 3, Some("team-b")), ("e", 2, None)],
        vec![("c", 2, Some("team-a"))],
    ];
    let mut offset = 0;
    let batches: Vec<Vec<callboard_events::log::Message>> = script
        .iter()
        .map(|batch| {
            batch
                .iter()
                .map(|(name, sequence, owner)| {
                    offset += 1;
                    scripted_event(name, *sequence, *owner, offset)
                })
                .collect()
        })
        .collect();
    let read_store = store.open().await.store;
    let pipelined = read_store.prepare().await.expect("prepare");
    let sequential = read_store.create_generation().await.expect("generation");
    let slow = CatalogProjection::new(std::sync::Arc::new(SlowWrites(read_store.clone())));
    let mut pipeline = Pipeline::new(std::sync::Arc::new(slow), pipelined, "group");
    let mut reported = 0;
    for batch in &batches {
        for written in pipeline.push(batch.clone()).await.expect("push") {
            reported += written.applied;
        }
        let events: Vec<StoredEvent> = batch.iter().cloned().map(StoredEvent::decode).collect();
        let loaded = read_store.load(sequential, &subjects(&events)).await.expect("load");
        read_store
            .write(Batch {
                generation: sequential,
                group: "group",
                changes: fold(&events, loaded).changes,
                positions: &batch_positions(&events),
            })
            .await
            .expect("write");
    }
    for written in pipeline.finish().await.expect("finish") {
        reported += written.applied;
    }
    assert_eq!(reported, offset as usize, "every batch is reported once, when written");
    let (pipelined, sequential) = (
        read_store.checksums(pipelined).await.expect("checksums"),
        read_store.checksums(sequential).await.expect("checksums"),
    );
    assert!(
        pipelined["history"].starts_with(&format!("{offset} rows")),
        "{pipelined:?}"
    );
    assert_eq!(pipelined, sequential);
    store.cleanup().await;
}

/// A real store whose writes start 300 ms late, so that every batch is loaded and folded while the
/// batch before is still being written: the case the pipeline must get right.
#[derive(Debug)]
struct SlowWrites(std::sync::Arc<dyn ReadStore>);

callboard_projection::generations_through!(SlowWrites, 0);

#[async_trait::async_trait]
impl ProjectionStore<Loaded, Changes> for SlowWrites {
    async fn load(&self, generation: Generation, subjects: &[String]) -> Result<Loaded, StoreError> {
        self.0.load(generation, subjects).await
    }
    async fn write(&self, batch: Batch<'_, Changes>) -> Result<(), StoreError> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.0.write(batch).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_equals_one_at_a_time_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    pipelined_equals_one_at_a_time(Store::sqlite(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_equals_one_at_a_time_postgres() {
    pipelined_equals_one_at_a_time(Store::postgres()).await;
}
