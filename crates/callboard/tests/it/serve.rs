//! `callboard serve` as a process, end to end: the binary started as users start it, stock
//! JavaScript clients (the graphql-http audit, graphql-ws subscriptions) against it, a saved file
//! reaching a subscriber, the subscription limit. (What the API answers is tested in-process, in
//! `tests/api`.)

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::callboard;

/// A running `callboard serve`, killed on drop.
pub(crate) struct Server {
    pub child: Child,
    pub addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `callboard serve` with `args` on a free port and waits until it is ready.
    pub fn start(args: &[&str]) -> Server {
        Self::start_with_env(args, &[])
    }

    /// [`Server::start`] with environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let server = Self::launch(args, env, Stdio::inherit());
        let deadline = Instant::now() + Duration::from_secs(60);
        while http(&server.addr, "GET", "/readyz", &[], b"").0 != 200 {
            assert!(Instant::now() < deadline, "the server did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Starts `callboard serve` with `args` and `env` on a free port, its log to `stderr`; returns
    /// once it listens, without waiting for readiness.
    pub fn launch(args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Server {
        let mut child = callboard()
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("CALLBOARD_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start callboard serve");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let line = lines.next().expect("a line").expect("stdout");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        std::thread::spawn(move || for _ in lines {});
        Server { child, addr }
    }

    /// POSTs a GraphQL request; returns the status and the JSON body.
    pub fn graphql(&self, query: &str, variables: Value) -> (u16, Value) {
        let body = json!({"query": query, "variables": variables}).to_string();
        let (status, text) = http(
            &self.addr,
            "POST",
            "/graphql",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        let value = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text));
        (status, value)
    }

    /// The `data` of a query that must succeed.
    pub fn data(&self, query: &str, variables: Value) -> Value {
        let (status, body) = self.graphql(query, variables);
        assert_eq!(status, 200, "{body}");
        assert!(body.get("errors").is_none(), "errors: {body}");
        body["data"].clone()
    }
}

/// One HTTP/1.1 request; returns the status and the body.
pub(crate) fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    callboard_testkit::http::request(addr, method, path, headers, body)
}

/// `callboard serve` on a fresh embedded data directory with `extra` arguments. The server comes
/// first in the tuple, so it is stopped before its folder is removed.
fn serve_empty(extra: &[&str]) -> (Server, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path().display().to_string();
    let mut args = vec!["--data-dir", data_dir.as_str()];
    args.extend_from_slice(extra);
    (Server::start(&args), data)
}

/// `callboard serve` with the testkit's small catalog registered as a discovery location.
fn serve_small_catalog() -> (Server, tempfile::TempDir, tempfile::TempDir) {
    let catalog = tempfile::tempdir().expect("tempdir");
    callboard_testkit::small_catalog(catalog.path());
    let location = catalog.path().display().to_string();
    let (server, data) = serve_empty(&["--location", &location]);
    (server, data, catalog)
}

/// A stock JavaScript client from `tests/js` (installed by scripts/test with `npm ci`).
fn node(script: &str) -> std::process::Command {
    let dir = callboard_testkit::workspace_root().join("crates/callboard/tests/js");
    assert!(
        dir.join("node_modules").is_dir(),
        "the JavaScript clients are not installed: run `npm ci --prefix {}` (scripts/test does)",
        dir.display()
    );
    let mut command = std::process::Command::new("node");
    command.current_dir(&dir).arg(script);
    command
}

#[test]
fn graphql_http_audit_passes_every_must() {
    let (server, _data) = serve_empty(&[]);
    let output = node("audit.mjs")
        .arg(format!("http://{}/graphql", server.addr))
        .output()
        .expect("run the graphql-http audit");
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    assert!(output.status.success(), "MUST audits failed:\n{report}");
    assert!(report.contains("MUST audits pass"), "{report}");
}

/// A child process killed and reaped when dropped, also when an assertion fails.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn graphql_ws_client_receives_a_saved_edit() {
    let (server, _data, catalog) = serve_small_catalog();
    let mut client = Reaped(node("subscribe.mjs")
        .arg(format!("ws://{}/graphql", server.addr))
        .arg(
            r#"subscription { entityChanged(refs: ["component:default/web"]) { ref eventType sequence entity { description } } }"#,
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the graphql-ws client"));
    let (lines_tx, lines) = std::sync::mpsc::channel::<Value>();
    let stdout = client.0.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str(&line) {
                let _ = lines_tx.send(value);
            }
        }
    });
    let connected = lines.recv_timeout(Duration::from_secs(30)).expect("connected");
    assert_eq!(connected["event"], "connected");
    // The subscribe message follows the connection acknowledgement; give it a moment to land.
    std::thread::sleep(Duration::from_millis(500));

    // Read what the edit will change, twice, so the entity cache holds it: web's description,
    // and db-svc's relations (web depends on it; the edit removes that).
    let before = r#"{ web: entity(ref: "component:web") { description }
                      db: entity(ref: "component:db-svc") { ... on Component { dependencyOf { ref } } } }"#;
    for _ in 0..2 {
        let d = server.data(before, json!({}));
        assert_eq!(d["web"]["description"], "The storefront web app");
        assert_eq!(d["db"]["dependencyOf"], json!([{"ref": "component:default/web"}]));
    }
    let (_, metrics) = http(&server.addr, "GET", "/metrics", &[], b"");
    let hits = metrics
        .lines()
        .find_map(|l| l.strip_prefix("callboard_api_entity_cache_hits_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(hits >= 2.0, "the second read came from the cache: {hits}");

    // Save an edit the way editors do: a new file renamed over the old one.
    let file = catalog.path().join("catalog-info.yaml");
    let edited = std::fs::read_to_string(&file)
        .expect("read")
        .replace("The storefront web app", "The storefront, edited")
        .replace("  dependsOn: [component:db-svc]\n", "");
    let temporary = catalog.path().join(".catalog-info.yaml.tmp");
    std::fs::write(&temporary, edited).expect("write");
    let saved = Instant::now();
    std::fs::rename(&temporary, &file).expect("rename");
    let message = lines.recv_timeout(Duration::from_secs(10)).expect("the change arrives");
    let latency = saved.elapsed();
    drop(client);
    assert_eq!(message["event"], "next", "{message}");
    let change = &message["data"]["entityChanged"];
    assert_eq!(change["ref"], "component:default/web");
    assert_eq!(change["sequence"], 2);
    assert_eq!(
        change["entity"]["description"], "The storefront, edited",
        "delivered after the read model has it"
    );
    // Nothing stale is served from the cache: neither the entity nor its former dependency.
    let d = server.data(before, json!({}));
    assert_eq!(d["web"]["description"], "The storefront, edited");
    assert_eq!(d["db"]["dependencyOf"], json!([]), "the inverse relation is gone");
    println!("saved edit to subscriber: {} ms", latency.as_millis());
    assert!(latency < Duration::from_secs(5), "took {latency:?}");
}

#[test]
fn subscriptions_per_connection_are_limited() {
    let (server, _data) = serve_empty(&["--max-subscriptions", "3"]);
    let output = node("many.mjs")
        .arg(format!("ws://{}/graphql", server.addr))
        .arg("5")
        .output()
        .expect("run the graphql-ws client");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "no report: {} {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert_eq!(report["accepted"], 3, "{report}");
    assert_eq!(report["refused"], 2, "{report}");
    assert!(
        report["errors"][0]
            .as_str()
            .unwrap_or_default()
            .contains("subscriptions"),
        "{report}"
    );
    // The server is unaffected.
    assert_eq!(http(&server.addr, "GET", "/healthz", &[], b"").0, 200);
}

/// `--help` shows which variable sets a flag, never a value that may hold a password.
#[test]
fn help_never_prints_secrets_from_the_environment() {
    for command in ["serve", "project", "replay"] {
        let output = callboard()
            .args([command, "--help"])
            .env(
                "CALLBOARD_DATABASE_URL",
                "postgres://callboard:s3cret-pg@db.internal/catalog",
            )
            .env("CALLBOARD_REDIS_URL", "redis://:s3cret-redis@cache.internal:6379")
            .output()
            .expect("callboard --help");
        assert!(output.status.success(), "{command} --help failed");
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(help.contains("CALLBOARD_DATABASE_URL"), "{command}: {help}");
        assert!(!help.contains("s3cret"), "{command} --help prints a secret:\n{help}");
    }
}
