//! Faults of the services Callboard runs on, injected for real, each while `serve` projects a
//! 10,000-entity catalog with queries running: a PostgreSQL server of the test's own (started
//! from the distribution's binaries, so restarting it disturbs no other test) is restarted, a
//! Kafka-protocol broker of the test's own (nisshi, keeping its log in PostgreSQL so that it
//! survives) is killed and started again, and a Redis server of the test's own is stopped and
//! started again.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use callboard_testkit::CatalogSpec;
use serde_json::{Value, json};

use crate::common::{succeed, write_catalog};
use crate::history::PrivateRedis;
use crate::serve::{Server, http};

/// A PostgreSQL server in a folder of its own on a free port; stopped on drop.
struct PrivatePostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivatePostgres {
    /// `initdb` and start. As root (CI, the development machines), through `runuser` as the
    /// `postgres` user: PostgreSQL refuses to run as root.
    fn start() -> Self {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let pg = Self { bin, dir, port };
        if is_root() {
            succeed(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(pg.dir.path()),
                "chown",
            );
        }
        succeed(
            pg.command("initdb")
                .args(["--auth=trust", "--username=postgres", "--no-sync", "-D"])
                .arg(pg.data()),
            "initdb",
        );
        pg.ctl("start");
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable", self.port)
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    /// `psql` connected to this server as postgres.
    fn psql(&self) -> Command {
        let mut command = self.command("psql");
        command
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(self.port.to_string());
        command
    }

    /// The answer of one SQL statement (one value).
    fn sql(&self, statement: &str) -> String {
        let output = self
            .psql()
            .args(["-tAc", statement, "postgres"])
            .output()
            .expect("psql");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// `pg_ctl <action>` (start, restart, stop), waiting for it to finish.
    fn ctl(&self, action: &str) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        succeed(
            self.command("pg_ctl")
                .args(["-w", "-m", "fast", "-D"])
                .arg(self.data())
                .args(["-l"])
                .arg(self.dir.path().join("log"))
                .args(["-o", &options, action]),
            &format!("pg_ctl {action}"),
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-w", "-m", "immediate", "-D"])
            .arg(self.data())
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The server binaries: `pg_config --bindir`, else the newest `/usr/lib/postgresql/<v>/bin`.
fn postgres_bin() -> PathBuf {
    let from_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.join("initdb").is_file());
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.flatten()
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("initdb").is_file())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    from_config.or_else(|| versions.pop()).expect(
        "PostgreSQL's server binaries (initdb, pg_ctl) were not found: install the distribution's \
         postgresql package (scripts/test does)",
    )
}

/// A generated catalog of 10,000 entities (from `seed`) in a folder of its own, and how many of
/// them are valid.
fn catalog(seed: u64) -> (tempfile::TempDir, usize) {
    let catalog = tempfile::tempdir().expect("tempdir");
    let valid = write_catalog(catalog.path(), &CatalogSpec::valid(10_000).seed(seed))
        .iter()
        .map(|(_, valid, _)| valid)
        .sum();
    (catalog, valid)
}

/// `callboard serve` started as a user starts it, not waiting for readiness, its log read.
struct Serve {
    server: Server,
    /// Times the server logged that a projector lost a dependency and starts again.
    retries: Arc<AtomicUsize>,
}

impl Serve {
    fn start(data: &Path, catalog: &Path, database_url: &str, env: &[(&str, &str)]) -> Self {
        let (data, catalog) = (data.display().to_string(), catalog.display().to_string());
        let mut vars = vec![("CALLBOARD_DATABASE_URL", database_url), ("NO_COLOR", "1")];
        vars.extend_from_slice(env);
        let mut server = Server::launch(&["--data-dir", &data, "--location", &catalog], &vars, Stdio::piped());
        let retries = Arc::new(AtomicUsize::new(0));
        let stderr = BufReader::new(server.child.stderr.take().expect("stderr"));
        std::thread::spawn({
            let retries = retries.clone();
            move || {
                for line in stderr.lines().map_while(Result::ok) {
                    if line.contains("the projector lost a dependency") {
                        retries.fetch_add(1, Ordering::SeqCst);
                    }
                    eprintln!("serve: {line}");
                }
            }
        });
        Serve { server, retries }
    }

    fn graphql(&self, query: &str, variables: Value) -> Value {
        self.server.graphql(query, variables).1
    }

    fn total(&self) -> Option<u64> {
        self.graphql("{ entities { totalCount } }", json!({}))["data"]["entities"]["totalCount"].as_u64()
    }

    fn ready(&self) -> (u16, String) {
        http(&self.server.addr, "GET", "/readyz", &[], b"")
    }

    fn running(&mut self) -> bool {
        self.server.child.try_wait().expect("try_wait").is_none()
    }

    /// Waits until some entity is projected (at most a minute): the import is under way.
    fn projecting(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.total().is_none_or(|n| n == 0) {
            assert!(Instant::now() < deadline, "nothing was projected");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the server is ready with more than `valid` entities (the catalog's and its
    /// location), at most `limit` after `since` (`what` happened then); the entity count.
    fn whole(&mut self, valid: usize, since: Instant, limit: Duration, what: &str) -> u64 {
        loop {
            assert!(self.running(), "serve exited after {what}");
            let (status, reason) = self.ready();
            let total = self.total();
            if status == 200
                && let Some(total) = total
                && total as usize > valid
            {
                return total;
            }
            assert!(
                since.elapsed() < limit,
                "not ready with every entity {limit:?} after {what}: {status} {reason}, {total:?} of {}",
                valid + 1
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The scenario of issue 17: PostgreSQL restarted about a second into the projection of a
/// 10,000-entity catalog. Every entity arrives, `/readyz` says ready again, and a mutation made
/// after the restart is queryable — within 30 s of the restart.
#[test]
fn postgres_restart_while_projecting_recovers() {
    let pg = PrivatePostgres::start();
    let (catalog, valid) = catalog(17);
    let data = tempfile::tempdir().expect("tempdir");
    let mut serve = Serve::start(data.path(), catalog.path(), &pg.url(), &[]);

    // Restart while the projector is busy: some entities projected, not all.
    serve.projecting();
    // A restart cuts off the statements in flight; between statements the pool reconnects
    // unnoticed. So that this test sees a batch cut off half-way every time, the positions
    // tables are locked against writes first (reads go on): the projectors' next commits wait
    // on the lock — in flight — when PostgreSQL restarts.
    let before = serve.total().unwrap_or(0);
    let mut locker = pg
        .psql()
        .args(["-q", "postgres"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("psql");
    locker
        .stdin
        .as_mut()
        .expect("stdin")
        .write_all(
            b"begin;\n\
              do $$ declare t text; begin\n\
                for t in select tablename from pg_tables where tablename like '%positions' loop\n\
                  execute format('lock table %I in exclusive mode', t);\n\
                end loop; end $$;\n",
        )
        .expect("lock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while pg.sql("select count(*) from pg_stat_activity where wait_event_type = 'Lock'") == "0" {
        assert!(Instant::now() < deadline, "no projector waited on the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    pg.ctl("restart");
    let restarted = Instant::now();
    let _ = locker.kill();
    let _ = locker.wait();
    assert!(
        (before as usize) < valid,
        "the catalog was projected before the restart ({before} of {valid}): nothing was tested"
    );

    // Ready again, with every entity (the catalog's and its location's).
    let total = serve.whole(valid, restarted, Duration::from_secs(30), "the PostgreSQL restart");
    assert!(total as usize > valid, "{total} entities, {valid} in the catalog");

    // A mutation after the restart is applied and projected.
    let body = serve.graphql(
        r#"mutation($e: JSON!) { applyEntity(entity: $e, wait: true) { status projected } }"#,
        json!({"e": {"apiVersion": "backstage.io/v1alpha1", "kind": "Resource",
                     "metadata": {"name": "after-the-restart"}, "spec": {"type": "database", "owner": "team-a"}}}),
    );
    assert_eq!(body["data"]["applyEntity"]["status"], "OK", "{body}");
    assert_eq!(body["data"]["applyEntity"]["projected"], true, "{body}");
    let found = serve.graphql(
        r#"{ entity(ref: "resource:default/after-the-restart") { ref } }"#,
        json!({}),
    );
    assert_eq!(
        found["data"]["entity"]["ref"], "resource:default/after-the-restart",
        "{found}"
    );
    assert!(
        restarted.elapsed() < Duration::from_secs(30),
        "recovered, but {:?} after the restart",
        restarted.elapsed()
    );
    assert!(
        serve.retries.load(Ordering::SeqCst) > 0,
        "no projector reported losing PostgreSQL: the restart cut nothing off"
    );
    // Every entity once: the count did not grow past the catalog, its location and the mutation.
    assert_eq!(serve.total(), Some(total + 1));
    eprintln!(
        "restarted PostgreSQL with {before} of {total} entities projected; recovered in {:?}",
        restarted.elapsed()
    );
}

/// Redis (the graph cache replicas share) stopped and started again while `serve` projects a
/// 10,000-entity catalog with graph questions running: every question is answered (from the
/// read model while Redis is away, within the cache's timeouts), the catalog arrives whole, and
/// answers are shared through Redis again once it is back.
#[test]
fn redis_restart_under_load_is_ridden_out() {
    let store = crate::stores::Store::postgres();
    let (catalog, valid) = catalog(18);
    let data = tempfile::tempdir().expect("tempdir");
    let redis = PrivateRedis::start(None);
    let mut serve = Serve::start(
        data.path(),
        catalog.path(),
        &store.url().expect("a PostgreSQL URL"),
        &[("CALLBOARD_REDIS_URL", &redis.url())],
    );
    serve.projecting();

    // Graph questions (and a list) from another thread for the whole test.
    let addr = serve.server.addr.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Each question's start, end and failure (if any).
    let asker = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let ask = |query: Value| {
                let started = Instant::now();
                let (status, body) = http(
                    &addr,
                    "POST",
                    "/graphql",
                    &[("Content-Type", "application/json")],
                    query.to_string().as_bytes(),
                );
                let failed = (status != 200 || body.contains("\"errors\"")).then(|| format!("{status} {body}"));
                ((started, Instant::now(), failed), body)
            };
            let mut asked = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let (question, body) = ask(
                    json!({"query": "{ entities(first: 5, filter: [{all: [\"kind=component\"]}]) { nodes { ref } } \
                    owned(ref: \"group:default/team-a\", depth: 3) { ref } }"}),
                );
                asked.push(question);
                if let Some(first) = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|b| b["data"]["entities"]["nodes"][0]["ref"].as_str().map(str::to_owned))
                {
                    let query = "query($r: String!) { dependencies(ref: $r, depth: 3) { ref } }";
                    asked.push(ask(json!({"query": query, "variables": {"r": first}})).0);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            asked
        }
    });

    std::thread::sleep(Duration::from_millis(300));
    let before = serve.total().unwrap_or(0);
    let port = redis.stop();
    let stopped = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let redis = PrivateRedis::start(Some(port));
    let restarted = Instant::now();

    let total = serve.whole(valid, restarted, Duration::from_secs(60), "Redis came back");
    assert_eq!(
        total as usize,
        valid + 1,
        "every entity once (the catalog's and its location)"
    );
    // After the cache's reconnect back-off, answers go to Redis again: questions not asked
    // before (answers already computed stay in each process's own cache and never reach Redis).
    let components = serve.graphql(
        r#"{ entities(first: 100, filter: [{all: ["kind=component"]}]) { nodes { ref } } }"#,
        json!({}),
    );
    let refs: Vec<String> = components["data"]["entities"]["nodes"]
        .as_array()
        .expect("components")
        .iter()
        .filter_map(|n| n["ref"].as_str().map(str::to_owned))
        .collect();
    assert!(!refs.is_empty(), "{components}");
    let deadline = Instant::now() + Duration::from_secs(30);
    for question in 0.. {
        let answer = serve.graphql(
            "query($r: String!, $d: Int!) { dependents(ref: $r, depth: $d) { ref } }",
            json!({"r": refs[question % refs.len()], "d": 1 + question / refs.len()}),
        );
        assert!(answer.get("errors").is_none(), "{answer}");
        let keys = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "dbsize"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<u64>().unwrap_or(0))
            .unwrap_or(0);
        if keys > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nothing was shared through Redis 30 s after it came back"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::SeqCst);
    let asked = asker.join().expect("asker");
    let failures: Vec<&String> = asked.iter().filter_map(|(_, _, failed)| failed.as_ref()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} questions failed: {:?}",
        failures.len(),
        asked.len(),
        &failures[..failures.len().min(3)]
    );
    // Questions were being answered while Redis was away (graph questions during an import
    // rebuild the graph, so they are few and slow in a debug build: what matters is that they
    // are answered, and not after a TCP timeout).
    let during = asked
        .iter()
        .filter(|(start, end, _)| *start < restarted && *end > stopped)
        .count();
    assert!(during > 0, "no question was in flight while Redis was away");
    let slowest = asked
        .iter()
        .map(|(start, end, _)| *end - *start)
        .max()
        .unwrap_or_default();
    assert!(slowest < Duration::from_secs(15), "a question took {slowest:?}");
    let asked = asked.len();
    eprintln!(
        "stopped Redis for 2 s with {before} of {total} entities projected; {asked} questions ({during} while Redis was away), none failed, slowest {slowest:?}; ready {:?} after Redis came back",
        restarted.elapsed()
    );
    drop(redis);
    drop(serve);
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(store.cleanup());
}

/// A nisshi broker of the test's own on a free port, keeping its log in a fresh PostgreSQL
/// database (not in memory, as the shared test broker does), so a restart loses nothing — the
/// way a Kafka broker keeps its log on disk. Killed on drop.
struct PrivateBroker {
    child: Option<std::process::Child>,
    port: u16,
    storage: String,
    database: String,
    dir: tempfile::TempDir,
}

impl PrivateBroker {
    fn start() -> Self {
        let database = format!("cb_it_broker_{}", uuid::Uuid::new_v4().simple());
        let server = crate::stores::postgres_server();
        succeed(
            Command::new("psql")
                .args(["-q", &format!("{server}/postgres"), "-c"])
                .arg(format!("create database {database}")),
            "create the broker's database",
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut broker = PrivateBroker {
            child: None,
            port,
            storage: format!("{server}/{database}?sslmode=disable"),
            database,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        broker.run();
        broker
    }

    /// The binary scripts/kafka installs (or `CALLBOARD_TEST_NISSHI`).
    fn binary() -> PathBuf {
        std::env::var_os("CALLBOARD_TEST_NISSHI").map_or_else(
            || {
                let cache = std::env::var_os("CALLBOARD_CACHE").map_or_else(
                    || PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/callboard"),
                    PathBuf::from,
                );
                cache.join("nisshi/bin/nisshi")
            },
            PathBuf::from,
        )
    }

    fn run(&mut self) {
        let binary = Self::binary();
        assert!(
            binary.is_file(),
            "no nisshi at {} (scripts/kafka installs it; or set CALLBOARD_TEST_NISSHI)",
            binary.display()
        );
        // nisshi reads ./.env from its working directory: give it an empty one of its own.
        std::fs::write(self.dir.path().join(".env"), "").expect("write .env");
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(binary)
            .args([
                "broker",
                "--listener-url",
                &listener,
                "--advertised-listener-url",
                &listener,
            ])
            .args(["--storage-engine", &self.storage])
            .env("GROUP_INITIAL_REBALANCE_DELAY", "0s")
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nisshi");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "the private broker did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL: the broker gets no chance to tidy up
            let _ = child.wait();
        }
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.kill();
        let _ = Command::new("psql")
            .args(["-q", &format!("{}/postgres", crate::stores::postgres_server()), "-c"])
            .arg(format!("drop database if exists {} with (force)", self.database))
            .output();
    }
}

/// The broker killed and started again while `serve` (Kafka + PostgreSQL) imports and projects a
/// 10,000-entity catalog with queries running: every entity arrives once (the log holds each
/// upsert once, sequences contiguous), `/readyz` returns to 200, and a mutation made after the
/// restart is applied and queryable — within 30 s of the restart.
#[test]
fn broker_restart_while_importing_recovers() {
    let mut broker = PrivateBroker::start();
    let store = crate::stores::Store::postgres();
    let (catalog, valid) = catalog(19);
    // `serve` starts with a one-entity seed (its folder, the catalog's, becomes readable), and
    // the catalog is registered afterwards, so the broker can be killed while the writer is
    // importing it — not only while the projectors catch up.
    let seed = catalog.path().join("seed.yaml");
    std::fs::write(
        &seed,
        "apiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata: {name: seed-team}\nspec: {type: team, children: []}\n",
    )
    .expect("write the seed");
    let data = tempfile::tempdir().expect("tempdir");
    let prefix = crate::common::unique_prefix();
    let serve = Serve::start(
        data.path(),
        &seed,
        &store.url().expect("a PostgreSQL URL"),
        &[
            ("CALLBOARD_KAFKA_BROKERS", &broker.address()),
            ("CALLBOARD_TOPIC_PREFIX", &prefix),
            ("CALLBOARD_INSTANCE_ID", "broker-restart"),
        ],
    );
    // A subscriber listening through the restart gets the change made after it.
    let mut subscriber = Subscriber::open(
        &serve.server.addr,
        r#"subscription { entityChanged(refs: ["resource:default/after-the-broker-restart"]) { ref cursor } }"#,
    );
    // The registration is answered once the writer has read the location (or, if the broker
    // goes away meanwhile, by an error or a timeout): sent from a thread of its own, its answer
    // is not what this test checks — the catalog arriving whole is.
    let register = std::thread::spawn({
        let (addr, target) = (serve.server.addr.clone(), catalog.path().display().to_string());
        move || {
            let query = json!({"query": "mutation($t: String!) { registerLocation(type: \"discovery\", target: $t) { status } }",
                               "variables": {"t": target}});
            http(
                &addr,
                "POST",
                "/graphql",
                &[("Content-Type", "application/json")],
                query.to_string().as_bytes(),
            )
        }
    });
    // Besides the catalog: its Location, the seed group and the seed's Location.
    let (valid, seeded) = (valid + 2, 2);
    let deadline = Instant::now() + Duration::from_secs(60);
    while serve.total().is_none_or(|n| n <= seeded + 100) {
        assert!(Instant::now() < deadline, "the catalog's import did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = serve.total().unwrap_or(0);
    broker.kill();
    assert!(
        (before as usize) < valid,
        "the catalog was imported before the broker was killed ({before} of {}): nothing was tested",
        valid + 1
    );
    std::thread::sleep(Duration::from_secs(1));
    // Queries go on while the broker is away: the read model answers.
    let during = serve.graphql("{ entities(first: 1) { totalCount } }", json!({}));
    assert!(
        during.get("errors").is_none(),
        "a query failed while the broker was away: {during}"
    );
    broker.run();
    let restarted = Instant::now();

    let mut serve = serve;
    let total = serve.whole(valid, restarted, Duration::from_secs(30), "the broker restart");
    assert_eq!(
        total as usize,
        valid + 1,
        "every entity once (the catalog's and its location)"
    );
    let body = serve.graphql(
        r#"mutation($e: JSON!) { applyEntity(entity: $e, wait: true) { status projected } }"#,
        json!({"e": {"apiVersion": "backstage.io/v1alpha1", "kind": "Resource",
                     "metadata": {"name": "after-the-broker-restart"}, "spec": {"type": "database", "owner": "team-a"}}}),
    );
    assert_eq!(body["data"]["applyEntity"]["projected"], true, "{body}");
    let _ = register.join();
    let change = subscriber.next();
    assert_eq!(
        change["payload"]["data"]["entityChanged"]["ref"], "resource:default/after-the-broker-restart",
        "{change}"
    );
    assert!(
        restarted.elapsed() < Duration::from_secs(30),
        "recovered, but {:?} after the restart",
        restarted.elapsed()
    );
    assert_eq!(serve.total(), Some(total + 1));

    // The log: each entity upserted once, sequences contiguous, nothing doubled by the retries.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let log =
            callboard_kafka::KafkaLog::connect(callboard_kafka::KafkaConfig::new(broker.address())).expect("connect");
        let events =
            crate::common::read_events(&log, &callboard_events::topics::Topics::new(prefix.clone()).entities()).await;
        crate::common::assert_contiguous(&events);
        let subjects: std::collections::BTreeSet<&str> = events.iter().map(|e| e.subject.as_str()).collect();
        assert_eq!(subjects.len(), events.len(), "every entity was upserted exactly once");
        assert_eq!(events.len(), valid + 2, "every entity once, and the mutation");
        store.cleanup().await;
    });
    eprintln!(
        "killed the broker with {before} of {total} entities projected; ready with all, and a mutation applied, {:?} after it came back",
        restarted.elapsed()
    );
}

/// A `graphql-transport-ws` subscription over a blocking WebSocket.
struct Subscriber {
    socket: tokio_tungstenite::tungstenite::WebSocket<
        tokio_tungstenite::tungstenite::stream::MaybeTlsStream<std::net::TcpStream>,
    >,
}

impl Subscriber {
    fn open(addr: &str, query: &str) -> Self {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://{addr}/graphql").into_client_request().expect("request");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "graphql-transport-ws".parse().expect("header"),
        );
        let (socket, _) = tokio_tungstenite::tungstenite::connect(request).expect("connect");
        let mut subscriber = Subscriber { socket };
        subscriber.send(json!({"type": "connection_init"}));
        assert_eq!(subscriber.next()["type"], "connection_ack");
        subscriber.send(json!({"id": "1", "type": "subscribe", "payload": {"query": query}}));
        // Let the server start the subscription before anything it should see happens.
        std::thread::sleep(Duration::from_millis(300));
        subscriber
    }

    fn send(&mut self, message: Value) {
        self.socket
            .send(tokio_tungstenite::tungstenite::Message::Text(
                message.to_string().into(),
            ))
            .expect("send");
    }

    /// The next JSON message (pings are answered by the library); fails after 30 s.
    fn next(&mut self) -> Value {
        if let tokio_tungstenite::tungstenite::stream::MaybeTlsStream::Plain(stream) = self.socket.get_ref() {
            stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        }
        loop {
            match self.socket.read().expect("a message within 30 s") {
                tokio_tungstenite::tungstenite::Message::Text(text) => {
                    return serde_json::from_str(&text).expect("JSON");
                }
                tokio_tungstenite::tungstenite::Message::Close(frame) => panic!("the socket closed: {frame:?}"),
                _ => {}
            }
        }
    }
}
