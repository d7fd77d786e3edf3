//! Faults of the services Callboard runs on, injected for real: a PostgreSQL server of the
//! test's own (started from the distribution's binaries, so restarting it disturbs no other
//! test) is restarted while `serve` projects a 10,000-entity catalog into it.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use callboard_testkit::CatalogSpec;
use serde_json::{Value, json};

use crate::common::{succeed, write_catalog};
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
        pg.ctl("start", "fast");
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
    fn ctl(&self, action: &str, mode: &str) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        succeed(
            self.command("pg_ctl")
                .args(["-w", "-m", mode, "-D"])
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

/// `callboard serve` started as a user starts it, not waiting for readiness, its log read.
struct Serve {
    server: Server,
    /// Times the server logged that a projector lost a dependency and starts again.
    retries: Arc<AtomicUsize>,
}

impl Serve {
    fn start(data: &Path, catalog: &Path, database_url: &str) -> Self {
        let (data, catalog) = (data.display().to_string(), catalog.display().to_string());
        let mut server = Server::launch(
            &["--data-dir", &data, "--location", &catalog],
            &[("CALLBOARD_DATABASE_URL", database_url), ("NO_COLOR", "1")],
            Stdio::piped(),
        );
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
}

/// The scenario of issue 17: PostgreSQL restarted about a second into the projection of a
/// 10,000-entity catalog. Every entity arrives, `/readyz` says ready again, and a mutation made
/// after the restart is queryable — within 30 s of the restart.
#[test]
fn postgres_restart_while_projecting_recovers() {
    let pg = PrivatePostgres::start();
    let catalog = tempfile::tempdir().expect("tempdir");
    let valid: usize = write_catalog(catalog.path(), &CatalogSpec::valid(10_000).seed(17))
        .iter()
        .map(|(_, valid, _)| valid)
        .sum();
    let data = tempfile::tempdir().expect("tempdir");
    let mut serve = Serve::start(data.path(), catalog.path(), &pg.url());

    // Restart while the projector is busy: some entities projected, not all.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "nothing was projected");
        if serve.total().is_some_and(|n| n > 0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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
    // Immediate, not fast: a fast shutdown terminates the lock holder and the waiting projector
    // in no set order, and a projector whose backend outlives the holder's by a moment commits
    // before it dies (CI saw this once) — so the restart would cut nothing off. An immediate
    // shutdown drops every backend without releasing a lock, as a crash of the server does.
    pg.ctl("restart", "immediate");
    let restarted = Instant::now();
    let _ = locker.kill();
    let _ = locker.wait();
    assert!(
        (before as usize) < valid,
        "the catalog was projected before the restart ({before} of {valid}): nothing was tested"
    );

    // Ready again, with every entity (the catalog's and its location's).
    let deadline = restarted + Duration::from_secs(30);
    let total = loop {
        assert!(serve.running(), "serve exited after the restart");
        let (status, reason) = serve.ready();
        if status == 200
            && let Some(total) = serve.total()
        {
            break total;
        }
        assert!(
            Instant::now() < deadline,
            "not ready 30 s after the restart: {status} {reason}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
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
