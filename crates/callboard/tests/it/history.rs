//! Time travel: a scripted history (an ownership move, a dependency added then removed, an entity
//! deleted and recreated), then entity-as-of and graph-as-of answers at instants between the
//! changes, on both stacks; and graph answers with Redis stopped mid-test.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use callboard_cache_redis::RedisCache;
use callboard_events::cloudevent::now_rfc3339;
use callboard_graph::{GraphService, Question, Served, SharedCache};
use callboard_model::EntityRef;
use callboard_readmodel::store::CatalogReader;

use crate::common::Backend;
use crate::projection::{import, project};
use crate::stores::Store;

const GROUPS: &str = "\
apiVersion: backstage.io/v1alpha1
kind: Group
metadata: {name: org}
spec: {type: organization, children: []}
---
apiVersion: backstage.io/v1alpha1
kind: Group
metadata: {name: team-a}
spec: {type: team, parent: org, children: []}
---
apiVersion: backstage.io/v1alpha1
kind: Group
metadata: {name: team-b}
spec: {type: team, parent: org, children: []}
";

const OTHERS: &str = "\
apiVersion: backstage.io/v1alpha1
kind: Resource
metadata: {name: db-1}
spec: {type: database, owner: team-a}
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata: {name: svc-b}
spec: {type: service, lifecycle: production, owner: team-b}
";

fn svc_a(owner: &str, depends_on: &[&str], description: &str) -> String {
    format!(
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: svc-a\n  description: {description}\n\
         spec:\n  type: service\n  lifecycle: production\n  owner: {owner}\n  dependsOn: [{}]\n",
        depends_on.join(", ")
    )
}

const SVC_A: &str = "component:default/svc-a";
const SVC_B: &str = "component:default/svc-b";
const DB: &str = "resource:default/db-1";

fn r(text: &str) -> EntityRef {
    text.parse().expect("a ref")
}

/// The instant now, with a little room on either side so no event shares its millisecond.
async fn instant() -> String {
    tokio::time::sleep(Duration::from_millis(15)).await;
    let now = now_rfc3339();
    tokio::time::sleep(Duration::from_millis(15)).await;
    now
}

/// Applies the script, importing after each step; returns the instant after each step (the
/// first one is before anything was imported).
async fn script(backend: &Backend, scratch: &Path, catalog: &Path) -> Vec<String> {
    std::fs::create_dir_all(catalog.join("org")).expect("mkdir");
    std::fs::create_dir_all(catalog.join("others")).expect("mkdir");
    std::fs::create_dir_all(catalog.join("svc-a")).expect("mkdir");
    std::fs::write(catalog.join("org/catalog-info.yaml"), GROUPS).expect("write");
    std::fs::write(catalog.join("others/catalog-info.yaml"), OTHERS).expect("write");
    let svc_a_file = catalog.join("svc-a/catalog-info.yaml");
    let steps: [Option<String>; 5] = [
        Some(svc_a("team-a", &["resource:db-1"], "first")),
        // The ownership moves and a dependency is added.
        Some(svc_a("team-b", &["resource:db-1", "component:svc-b"], "moved")),
        // The dependency is removed again.
        Some(svc_a("team-b", &["resource:db-1"], "trimmed")),
        // The entity is deleted...
        None,
        // ...and recreated.
        Some(svc_a("team-a", &["resource:db-1"], "reborn")),
    ];
    let mut instants = vec![instant().await];
    for step in steps {
        match step {
            Some(text) => std::fs::write(&svc_a_file, text).expect("write"),
            None => std::fs::remove_file(&svc_a_file).expect("remove"),
        }
        import(backend, scratch, catalog);
        instants.push(instant().await);
    }
    instants
}

async fn description_at(reader: &dyn CatalogReader, time: &str) -> Option<String> {
    let entity = reader.entity_at(&r(SVC_A), time).await.expect("entity_at")?;
    Some(
        entity["metadata"]["description"]
            .as_str()
            .expect("description")
            .to_owned(),
    )
}

async fn refs(graph: &GraphService, question: Question, root: &str, at: Option<&str>) -> Vec<String> {
    let (reached, _) = graph.reached(question, &r(root), 5, at).await.expect("graph");
    let mut refs: Vec<String> = reached.into_iter().map(|x| x.entity_ref.into_string()).collect();
    refs.sort();
    refs
}

async fn time_travel(backend: Backend, store: Store, shared: Option<Arc<dyn SharedCache>>) {
    let scratch = tempfile::tempdir().expect("tempdir");
    let catalog = tempfile::tempdir().expect("tempdir");
    let t = script(&backend, scratch.path(), catalog.path()).await;
    project(&backend, &store, scratch.path(), &[]);
    let reader = store.open().await.reader;

    // The entity as of each instant.
    let expected = [
        None,
        Some("first"),
        Some("moved"),
        Some("trimmed"),
        None,
        Some("reborn"),
    ];
    for (time, want) in t.iter().zip(expected) {
        assert_eq!(
            description_at(reader.as_ref(), time).await.as_deref(),
            want,
            "svc-a as of {time}"
        );
    }
    let owner_at = |i: usize| {
        let reader = reader.clone();
        let time = t[i].clone();
        async move {
            let entity = reader
                .entity_at(&r(SVC_A), &time)
                .await
                .expect("entity_at")
                .expect("alive");
            entity["spec"]["owner"].as_str().expect("owner").to_owned()
        }
    };
    // Every entity as of an instant (but the generated Location), paged two subjects at a time
    // (deleted ones come back as None so pages continue past them).
    let live_at = |i: usize| {
        let reader = reader.clone();
        let time = t[i].clone();
        async move {
            let mut live = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let chunk = reader
                    .entities_at(&time, after.as_deref(), 2)
                    .await
                    .expect("entities_at");
                let done = chunk.len() < 2;
                for (r, document) in chunk {
                    if let Some(document) = document
                        && !r.starts_with("location:")
                    {
                        assert_eq!(document["metadata"]["name"], r.rsplit('/').next().unwrap(), "{r}");
                        live.push(r.clone());
                    }
                    after = Some(r);
                }
                if done {
                    return live;
                }
            }
        }
    };
    assert!(live_at(0).await.is_empty(), "nothing before the script");
    let others = [
        SVC_B,
        "group:default/org",
        "group:default/team-a",
        "group:default/team-b",
        DB,
    ];
    let mut with_svc_a: Vec<&str> = others.iter().copied().chain([SVC_A]).collect();
    with_svc_a.sort();
    let mut without: Vec<&str> = others.to_vec();
    without.sort();
    assert_eq!(live_at(3).await, with_svc_a);
    assert_eq!(live_at(4).await, without, "svc-a deleted by then");
    assert_eq!(live_at(5).await, with_svc_a, "and recreated");

    assert_eq!(owner_at(1).await, "team-a");
    assert_eq!(owner_at(2).await, "team-b");
    assert_eq!(owner_at(5).await, "team-a");

    // Its history: five versions, contiguous, each with the event that made it; the recreated
    // entity is a new life with a new uid.
    let history = reader.history(SVC_A, 100, None).await.expect("history");
    let types: Vec<&str> = history.iter().rev().map(|h| h.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "entity.upserted.v1",
            "entity.upserted.v1",
            "entity.upserted.v1",
            "entity.deleted.v1",
            "entity.upserted.v1"
        ]
    );
    let sequences: Vec<i64> = history.iter().rev().map(|h| h.sequence).collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5]);
    for version in &history {
        assert!(!version.actor.is_empty() && !version.source.is_empty(), "{version:?}");
        assert!(
            t[0] < version.time && version.time < t[5],
            "event time {} inside the script",
            version.time
        );
    }
    let moved = &history[3];
    let patch = moved.diff.as_ref().expect("a diff from the first version").to_string();
    assert!(patch.contains("/spec/owner") && patch.contains("team-b"), "{patch}");
    let uid = |h: &callboard_readmodel::rows::HistoryRow| h.entity.as_ref().map(|e| e["metadata"]["uid"].clone());
    assert_eq!(uid(&history[4]), uid(&history[2]), "uid stable for the entity's life");
    assert_ne!(uid(&history[0]), uid(&history[4]), "a recreated entity is a new life");

    // The graph as of each instant, through the service the API uses (with Redis when given).
    let graph = GraphService::new(reader.clone(), shared);
    let deps: [&[&str]; 6] = [&[], &[DB], &[SVC_B, DB], &[DB], &[], &[DB]];
    for (time, want) in t.iter().zip(deps) {
        assert_eq!(
            refs(&graph, Question::Dependencies, SVC_A, Some(time)).await,
            want,
            "dependencies as of {time}"
        );
    }
    assert_eq!(refs(&graph, Question::Dependents, SVC_B, Some(&t[2])).await, [SVC_A]);
    assert!(refs(&graph, Question::Dependents, SVC_B, Some(&t[3])).await.is_empty());
    assert_eq!(refs(&graph, Question::Dependencies, SVC_A, None).await, [DB]);
    // Ownership roll-up follows the move; the organisation owns svc-a throughout its lives.
    let owned = |i: usize, group: &'static str| {
        let graph = graph.clone();
        let time = t[i].clone();
        async move {
            refs(&graph, Question::Owned, group, Some(&time))
                .await
                .contains(&SVC_A.to_owned())
        }
    };
    assert!(owned(1, "group:default/team-a").await);
    assert!(!owned(2, "group:default/team-a").await);
    assert!(owned(2, "group:default/team-b").await);
    assert!(owned(3, "group:default/org").await);
    assert!(!owned(4, "group:default/org").await);
    assert!(owned(5, "group:default/team-a").await);
    // A path exists only while the dependency did.
    let path = |i: usize| {
        let graph = graph.clone();
        let time = t[i].clone();
        async move { graph.path(&r(SVC_A), &r(SVC_B), 5, Some(&time)).await.expect("path").0 }
    };
    let hops = path(2).await.expect("a path while svc-a depended on svc-b");
    assert_eq!(hops.len(), 1);
    assert_eq!(hops[0].relation_type.as_str(), "dependsOn");
    // Afterwards the only way is through ownership (svc-a → team-b → svc-b) or none at all.
    assert!(
        path(3)
            .await
            .is_none_or(|hops| hops.iter().all(|h| h.relation_type.as_str() != "dependsOn"))
    );
    assert!(path(4).await.is_none());
    // Asked again, the answers come from a cache and agree.
    let (again, served) = graph
        .reached(Question::Dependencies, &r(SVC_A), 5, Some(&t[2]))
        .await
        .expect("graph");
    assert_eq!(served, Served::Local);
    assert_eq!(again.len(), 2);
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn time_travel_embedded_sqlite() {
    let backend = Backend::embedded();
    let store = match &backend {
        Backend::Embedded(dir) => Store::sqlite(dir.path()),
        _ => unreachable!(),
    };
    time_travel(backend, store, None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn time_travel_kafka_postgres_redis() {
    let redis = std::env::var("CALLBOARD_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("cb-it-{}:", uuid::Uuid::new_v4().simple());
    let shared = RedisCache::new(&redis, prefix).expect("redis url");
    time_travel(Backend::kafka(), Store::postgres(), Some(Arc::new(shared))).await;
}

/// A private redis-server on a free port, stopped on drop.
pub(crate) struct PrivateRedis {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl PrivateRedis {
    pub(crate) fn start(port: Option<u16>) -> Self {
        let port = port.unwrap_or_else(|| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            listener.local_addr().expect("addr").port()
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let child = std::process::Command::new(
            std::env::var("CALLBOARD_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into()),
        )
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server (apt install redis-server)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port, _dir: dir }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub(crate) fn stop(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replicas share answers through Redis; when Redis stops, every replica keeps answering
/// correctly from the read model (and promptly), including about changes made since; when it
/// comes back, sharing resumes.
#[tokio::test(flavor = "multi_thread")]
async fn graph_answers_with_redis_stopped() {
    let backend = Backend::kafka();
    let store = Store::postgres();
    let scratch = tempfile::tempdir().expect("tempdir");
    let catalog = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(catalog.path().join("org")).expect("mkdir");
    std::fs::write(catalog.path().join("org/catalog-info.yaml"), GROUPS).expect("write");
    std::fs::create_dir_all(catalog.path().join("others")).expect("mkdir");
    std::fs::write(catalog.path().join("others/catalog-info.yaml"), OTHERS).expect("write");
    std::fs::create_dir_all(catalog.path().join("svc-a")).expect("mkdir");
    let svc_a_file = catalog.path().join("svc-a/catalog-info.yaml");
    std::fs::write(&svc_a_file, svc_a("team-a", &["resource:db-1"], "first")).expect("write");
    import(&backend, scratch.path(), catalog.path());
    project(&backend, &store, scratch.path(), &[]);
    let reader = store.open().await.reader;

    let redis = PrivateRedis::start(None);
    let prefix = format!("cb-it-{}:", uuid::Uuid::new_v4().simple());
    let url = redis.url();
    let replica = |reader: Arc<dyn CatalogReader>| {
        GraphService::new(
            reader,
            Some(Arc::new(RedisCache::new(&url, prefix.clone()).expect("url"))),
        )
    };
    let first = replica(reader.clone());
    let (deps, served) = first
        .reached(Question::Dependencies, &r(SVC_A), 3, None)
        .await
        .expect("graph");
    assert_eq!(served, Served::Computed);
    assert_eq!(deps.len(), 1);
    // Another replica finds the answer in Redis.
    let second = replica(reader.clone());
    let (deps, served) = second
        .reached(Question::Dependencies, &r(SVC_A), 3, None)
        .await
        .expect("graph");
    assert_eq!(served, Served::Shared);
    assert_eq!(deps.len(), 1);

    // Redis goes away. The catalog changes meanwhile.
    let port = redis.stop();
    std::fs::write(
        &svc_a_file,
        svc_a("team-b", &["resource:db-1", "component:svc-b"], "moved"),
    )
    .expect("write");
    import(&backend, scratch.path(), catalog.path());
    project(&backend, &store, scratch.path(), &[]);
    for service in [&first, &second, &replica(reader.clone())] {
        let started = std::time::Instant::now();
        let (deps, served) = service
            .reached(Question::Dependencies, &r(SVC_A), 3, None)
            .await
            .expect("graph without Redis");
        assert_eq!(served, Served::Computed);
        let mut deps: Vec<String> = deps.into_iter().map(|x| x.entity_ref.into_string()).collect();
        deps.sort();
        assert_eq!(deps, [SVC_B, DB]);
        let (owned, _) = service
            .reached(Question::Owned, &r("group:default/team-b"), 3, None)
            .await
            .expect("graph without Redis");
        assert!(owned.iter().any(|x| x.entity_ref.as_str() == SVC_A));
        let (path, _) = service
            .path(&r(SVC_A), &r(SVC_B), 3, None)
            .await
            .expect("path without Redis");
        assert!(path.is_some());
        // Bounded by the cache's timeouts, not by TCP's.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "answers took {:?} without Redis",
            started.elapsed()
        );
    }

    // Redis comes back (empty); after the reconnect back-off, replicas share again.
    let _redis = PrivateRedis::start(Some(port));
    tokio::time::sleep(Duration::from_secs(6)).await;
    let third = replica(reader.clone());
    let (_, served) = third
        .reached(Question::Dependents, &r(DB), 3, None)
        .await
        .expect("graph");
    assert_eq!(served, Served::Computed);
    let fourth = replica(reader.clone());
    let (dependents, served) = fourth
        .reached(Question::Dependents, &r(DB), 3, None)
        .await
        .expect("graph");
    assert_eq!(served, Served::Shared);
    assert_eq!(dependents.len(), 1);
    store.cleanup().await;
}
