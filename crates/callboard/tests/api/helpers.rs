//! Starting a server in-process for a test, and talking GraphQL to it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callboard::backend::Stores;
use callboard::server::{Backend, Config, Server};
use callboard_catalog::Principal;
use callboard_events::topics::Topics;
use callboard_log_sqlite::SqliteLog;
use callboard_testkit::http;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// The header through which these tests say who is asking. Only the tests' principal resolver
/// reads it: the server itself knows no such header (sign-in is not built yet), which is the
/// point of the resolver — a transport's one place to decide who asks.
pub const TEST_USER: &str = "x-callboard-test-user";

/// A server running in this process, stopped (gracefully) when dropped.
pub struct TestApp {
    pub addr: String,
    stop: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// The data directory (log, read models), removed after the server stops.
    _data: tempfile::TempDir,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            served.abort();
        }
    }
}

/// Asserts, when `CALLBOARD_ASSERT_NO_BROKER` is set (scripts/test sets it while running these
/// tests with its broker stopped), that nothing listens where a broker would: these tests need
/// none.
fn no_broker() {
    if std::env::var_os("CALLBOARD_ASSERT_NO_BROKER").is_none() {
        return;
    }
    let address = std::env::var("CALLBOARD_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let first = address.split(',').next().unwrap_or_default();
    let listening = first
        .parse()
        .ok()
        .is_some_and(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok());
    assert!(
        !listening,
        "a broker listens on {first}, but these tests must run without one"
    );
}

/// The message of a GraphQL answer's first error ("" when there is none).
pub fn first_error(body: &Value) -> &str {
    body["errors"][0]["message"].as_str().unwrap_or_default()
}

/// Starts every role over a fresh embedded data directory, registering `locations` (folders or
/// files) at start; requests name their principal in [`TEST_USER`], or are anonymous.
pub async fn spawn_app(locations: &[&Path]) -> TestApp {
    spawn_app_with(locations, |_| {}).await
}

/// [`spawn_app`] with a folder whose files locations registered later may read: files are read
/// only below the folders of the locations given at start (the reader's allowlist), so the
/// server starts with a seed there (group `team-a`).
pub async fn spawn_app_in_folder() -> (tempfile::TempDir, TestApp) {
    let folder = tempfile::tempdir().expect("tempdir");
    let seed = folder.path().join("seed.yaml");
    std::fs::write(
        &seed,
        "apiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata: {name: team-a}\nspec: {type: team, children: []}\n",
    )
    .expect("write the seed");
    let app = spawn_app(&[seed.as_path()]).await;
    (folder, app)
}

/// [`spawn_app`], with the configuration changed by `configure` first (limits, say).
pub async fn spawn_app_with(locations: &[&Path], configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_in(tempfile::tempdir().expect("tempdir"), locations, configure).await
}

/// [`spawn_app_with`] over an existing data directory (one a stopped server left: a restart).
pub async fn spawn_app_in(
    data: tempfile::TempDir,
    locations: &[&Path],
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    no_broker();
    let log = SqliteLog::open(&data.path().join("events.db"))
        .await
        .expect("embedded log");
    let backend = Backend {
        log: Arc::new(log),
        topics: Topics::default(),
        partitions: 6,
        replication: 1,
        stores: Stores::embedded(data.path()).await.expect("embedded read models"),
        shared_cache: None,
    };
    let mut config = Config {
        locations: locations
            .iter()
            .map(|l| callboard::locations::location_of(&l.display().to_string()).expect("a location"))
            .collect(),
        principal: Arc::new(|headers| {
            match headers
                .get(TEST_USER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
            {
                Some(user) => Principal::User(user),
                None => Principal::Anonymous,
            }
        }),
        ..Config::default()
    };
    configure(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server = Server::start(listener, backend, config)
        .await
        .expect("start the server");
    let addr = server.local_addr().expect("address").to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    let app = TestApp {
        addr,
        stop: Some(stop),
        served: Some(served),
        _data: data,
    };
    app.wait_ready().await;
    app
}

impl TestApp {
    /// Stops the server gracefully and hands back its data directory, for a restart.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            let _ = served.await;
        }
        let placeholder = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self._data, placeholder)
    }

    /// The data directory: the embedded log (`events.db`) and read models.
    pub fn data_dir(&self) -> &Path {
        self._data.path()
    }

    /// A request, off the async threads (the client blocks).
    pub async fn http(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
        let (addr, method, path, body) = (self.addr.clone(), method.to_owned(), path.to_owned(), body.to_vec());
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        tokio::task::spawn_blocking(move || {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            http::request(&addr, &method, &path, &headers, &body)
        })
        .await
        .expect("request")
    }

    /// Waits until every projection has caught up with the log.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.http("GET", "/readyz", &[], b"").await.0 != 200 {
            assert!(Instant::now() < deadline, "the server did not become ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// POSTs a GraphQL request as `user` (anonymous when `None`); the status and the JSON body.
    pub async fn graphql_as(&self, user: Option<&str>, query: &str, variables: Value) -> (u16, Value) {
        let body = json!({"query": query, "variables": variables}).to_string();
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(user) = user {
            headers.push((TEST_USER, user));
        }
        let (status, text) = self.http("POST", "/graphql", &headers, body.as_bytes()).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// An anonymous GraphQL request.
    pub async fn graphql(&self, query: &str, variables: Value) -> (u16, Value) {
        self.graphql_as(None, query, variables).await
    }

    /// The `data` of a request that must succeed, as `user`.
    pub async fn data_as(&self, user: Option<&str>, query: &str, variables: Value) -> Value {
        let (status, body) = self.graphql_as(user, query, variables).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("errors").is_none(), "errors: {body}");
        body["data"].clone()
    }

    /// The `data` of an anonymous request that must succeed.
    pub async fn data(&self, query: &str, variables: Value) -> Value {
        self.data_as(None, query, variables).await
    }
}
