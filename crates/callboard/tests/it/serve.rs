//! `callboard serve` end to end, as a client sees it: GraphQL over HTTP on a small catalog —
//! entities, typed relations, connections with cursors, facets, search, graph walks, history,
//! mutations that wait for the read model — and the limits that keep hostile requests out.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::callboard;

/// A running `callboard serve`, killed on drop.
pub(crate) struct Server {
    child: Child,
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
        let mut child = callboard()
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("CALLBOARD_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
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
        let server = Server { child, addr };
        let deadline = Instant::now() + Duration::from_secs(60);
        while http(&server.addr, "GET", "/readyz", &[], b"").0 != 200 {
            assert!(Instant::now() < deadline, "the server did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
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
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    stream.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    if stream.write_all(head.as_bytes()).is_err() {
        return (0, String::new());
    }
    // The server may answer (413) and close before reading a large body: that is fine.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (headers, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let body = if headers.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// A small catalog: a group with a member, a system, two components (one depending on the
/// other), an API, in three `catalog-info.yaml` files (what folder discovery looks for).
pub(crate) fn small_catalog(dir: &Path) {
    for sub in ["org", "apis"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
    }
    std::fs::write(
        dir.join("org/catalog-info.yaml"),
        "apiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata:\n  name: team-a\nspec:\n  type: team\n  children: []\n  members: [alice]\n---\n\
         apiVersion: backstage.io/v1alpha1\nkind: User\nmetadata:\n  name: alice\nspec:\n  memberOf: [team-a]\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("catalog-info.yaml"),
        "apiVersion: backstage.io/v1alpha1\nkind: System\nmetadata:\n  name: shop\nspec:\n  owner: team-a\n---\n\
         apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: web\n  description: The storefront web app\n  tags: [typescript]\nspec:\n  type: website\n  lifecycle: production\n  owner: team-a\n  system: shop\n  providesApis: [orders-api]\n  dependsOn: [component:db-svc]\n---\n\
         apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: db-svc\n  description: Stores orders\nspec:\n  type: service\n  lifecycle: production\n  owner: team-a\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("apis/catalog-info.yaml"),
        "apiVersion: backstage.io/v1alpha1\nkind: API\nmetadata:\n  name: orders-api\nspec:\n  type: openapi\n  lifecycle: production\n  owner: team-a\n  definition: 'openapi: 3.0.0'\n",
    )
    .expect("write");
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

/// `callboard serve` with [`small_catalog`] registered as a discovery location.
fn serve_small_catalog() -> (Server, tempfile::TempDir, tempfile::TempDir) {
    let catalog = tempfile::tempdir().expect("tempdir");
    small_catalog(catalog.path());
    let location = catalog.path().display().to_string();
    let (server, data) = serve_empty(&["--location", &location]);
    (server, data, catalog)
}

#[test]
fn serve_answers_graphql_embedded() {
    let (server, _data, _catalog) = serve_small_catalog();

    // One entity with its typed relations and the final entity as Backstage returns it.
    let d = server.data(
        r#"query($r: String!) { entity(ref: $r) { __typename ref kind name owner { __typename ref } tags raw
             ... on Component { type lifecycle system { ref } providesApis { ref } dependsOn { ref } } } }"#,
        json!({"r": "Component:default/WEB"}),
    );
    let web = &d["entity"];
    assert_eq!(web["__typename"], "Component");
    assert_eq!(web["type"], "website");
    assert_eq!(web["owner"]["__typename"], "Group");
    assert_eq!(web["ref"], "component:default/web");
    assert_eq!(web["owner"]["ref"], "group:default/team-a");
    assert_eq!(web["system"]["ref"], "system:default/shop");
    assert_eq!(web["providesApis"][0]["ref"], "api:default/orders-api");
    assert_eq!(web["dependsOn"][0]["ref"], "component:default/db-svc");
    assert_eq!(web["tags"], json!(["typescript"]));
    let relations = web["raw"]["relations"].as_array().expect("relations");
    assert!(relations.contains(&json!({"type": "ownedBy", "targetRef": "group:default/team-a"})));
    assert!(web["raw"]["metadata"]["etag"].is_string() && web["raw"]["metadata"]["uid"].is_string());

    // Every kind has its type, with the relation fields of that kind.
    let d = server.data(
        r#"{ group: entity(ref: "group:team-a") { __typename ... on Group { type members { name memberOf { ref } } owns { ref } } }
             api: entity(ref: "api:orders-api") { __typename ... on Api { definition providers { ref } system { ref } } }
             system: entity(ref: "system:shop") { __typename ... on System { components { ref } apis { ref } } } }"#,
        json!({}),
    );
    assert_eq!(d["group"]["__typename"], "Group");
    assert_eq!(d["group"]["type"], "team");
    assert_eq!(
        d["group"]["members"],
        json!([{"name": "alice", "memberOf": [{"ref": "group:default/team-a"}]}])
    );
    assert_eq!(d["group"]["owns"].as_array().map(Vec::len), Some(4), "{d}");
    assert_eq!(d["api"]["__typename"], "Api");
    assert_eq!(d["api"]["definition"], "openapi: 3.0.0");
    assert_eq!(d["api"]["providers"], json!([{"ref": "component:default/web"}]));
    assert_eq!(d["api"]["system"], Value::Null, "the API declares no system");
    assert_eq!(d["system"]["__typename"], "System");
    assert_eq!(d["system"]["components"], json!([{"ref": "component:default/web"}]));
    assert_eq!(
        server.data(r#"{ entity(ref: "component:default/nope") { ref } }"#, json!({}))["entity"],
        Value::Null
    );

    // A connection, a page at a time.
    let page = |after: Value| {
        server.data(
            r#"query($after: String) { entities(filter: [{all: ["kind=component"]}], first: 1, after: $after) {
                 totalCount edges { cursor node { ref } } pageInfo { hasNextPage endCursor } } }"#,
            json!({"after": after}),
        )["entities"]
            .clone()
    };
    let first = page(Value::Null);
    assert_eq!(first["totalCount"], 2);
    assert_eq!(first["edges"][0]["node"]["ref"], "component:default/db-svc");
    assert_eq!(first["pageInfo"]["hasNextPage"], true);
    let second = page(first["pageInfo"]["endCursor"].clone());
    assert_eq!(second["edges"][0]["node"]["ref"], "component:default/web");
    assert_eq!(second["pageInfo"]["hasNextPage"], false);

    // OR of ANDs, case-insensitive; full-text search; facets.
    let d = server.data(
        r#"{ entities(filter: [{all: ["kind=API"]}, {all: ["kind=component", "spec.type=WEBSITE"]}]) { totalCount nodes { ref } } }"#,
        json!({}),
    );
    assert_eq!(d["entities"]["totalCount"], 2);
    let d = server.data(r#"{ entities(search: "storefront") { nodes { ref } } }"#, json!({}));
    assert_eq!(d["entities"]["nodes"], json!([{"ref": "component:default/web"}]));
    let d = server.data(r#"{ facets(field: "kind") { value count } }"#, json!({}));
    let facets: Vec<(String, i64)> = d["facets"]
        .as_array()
        .expect("facets")
        .iter()
        .map(|f| {
            (
                f["value"].as_str().unwrap().to_lowercase(),
                f["count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(facets.contains(&("component".into(), 2)), "{facets:?}");
    assert!(facets.contains(&("group".into(), 1)), "{facets:?}");

    // The graph: dependents, ownership roll-up, a path.
    let d = server.data(
        r#"{ dependents(ref: "component:default/db-svc") { ref depth entity { name } }
             owned(ref: "group:default/team-a") { ref }
             path(from: "user:default/alice", to: "component:default/web") { from type to } }"#,
        json!({}),
    );
    assert_eq!(
        d["dependents"],
        json!([{"ref": "component:default/web", "depth": 1, "entity": {"name": "web"}}])
    );
    let owned: Vec<&str> = d["owned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["ref"].as_str().unwrap())
        .collect();
    for expected in [
        "component:default/web",
        "component:default/db-svc",
        "api:default/orders-api",
        "system:default/shop",
    ] {
        assert!(owned.contains(&expected), "{owned:?}");
    }
    assert!(d["path"].as_array().is_some_and(|p| !p.is_empty()), "{d}");

    // A mutation through the push provider, answered once the read model shows it.
    std::thread::sleep(Duration::from_millis(20));
    let before_mutation = callboard_events::cloudevent::now_rfc3339();
    std::thread::sleep(Duration::from_millis(20));
    let (status, body) = server.graphql(
        r#"mutation($e: JSON!) { applyEntity(entity: $e, wait: true) { status projected entityRefs positions { offset } } }"#,
        json!({"e": {"apiVersion": "backstage.io/v1alpha1", "kind": "Resource",
                      "metadata": {"name": "orders-db"}, "spec": {"type": "database", "owner": "team-a"}}}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["applyEntity"]["status"], "OK", "{body}");
    assert_eq!(body["data"]["applyEntity"]["projected"], true, "{body}");
    let d = server.data(
        r#"{ entity(ref: "resource:default/orders-db") { ref owner { ref } history { sequence eventType actor } } }"#,
        json!({}),
    );
    assert_eq!(d["entity"]["owner"]["ref"], "group:default/team-a");
    assert_eq!(d["entity"]["history"][0]["sequence"], 1);
    assert_eq!(d["entity"]["history"][0]["actor"], "user:default/guest");
    // Lists as of an instant: the catalog before the mutation, filtered on its documents.
    let list = r#"query($at: String) { entities(filter: [{all: ["kind=resource"]}], asOf: $at) {
        totalCount nodes { __typename ref asOf } } }"#;
    let then = server.data(list, json!({"at": before_mutation}));
    assert_eq!(then["entities"]["totalCount"], 0, "{then}");
    let now = server.data(list, json!({"at": null}));
    assert_eq!(
        now["entities"]["nodes"],
        json!([{"__typename": "Resource", "ref": "resource:default/orders-db", "asOf": null}])
    );
    let d = server.data(
        r#"query($at: String) { entities(filter: [{all: ["kind=component", "spec.type=WEBSITE"]}, {all: ["kind=api"]}], first: 1, asOf: $at) {
             totalCount nodes { ref asOf } pageInfo { hasNextPage } } }"#,
        json!({"at": before_mutation}),
    );
    assert_eq!(d["entities"]["totalCount"], 2, "{d}");
    assert_eq!(d["entities"]["nodes"][0]["ref"], "api:default/orders-api");
    assert!(d["entities"]["nodes"][0]["asOf"].is_string());
    assert_eq!(d["entities"]["pageInfo"]["hasNextPage"], true);
    let (_, body) = server.graphql(
        r#"query($at: String) { entities(search: "orders", asOf: $at) { totalCount } }"#,
        json!({"at": before_mutation}),
    );
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("search"),
        "{body}"
    );

    // An invalid entity is refused with the field and rule.
    let (_, body) = server.graphql(
        r#"mutation { applyEntity(entity: {kind: "Component", metadata: {name: "x"}}) { status problems } }"#,
        json!({}),
    );
    assert_eq!(body["data"]["applyEntity"]["status"], "REJECTED", "{body}");

    // GET runs queries, never mutations.
    let (status, body) = http(
        &server.addr,
        "GET",
        "/graphql?query=%7Bentity(ref%3A%22component%3Aweb%22)%7Bref%7D%7D",
        &[],
        b"",
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("component:default/web"), "{body}");
    let (status, _) = http(
        &server.addr,
        "GET",
        "/graphql?query=mutation%7BdeleteEntity(ref%3A%22resource%3Aorders-db%22)%7Bstatus%7D%7D",
        &[],
        b"",
    );
    assert_eq!(status, 405);
}

#[test]
fn hostile_requests_are_refused_and_the_server_stays_healthy() {
    let (server, _data, _catalog) = serve_small_catalog();

    // Depth 1,000.
    let deep = format!(
        "{{ entity(ref: \"component:web\") {{ {}ref{} }} }}",
        "owner { ".repeat(1_000),
        " }".repeat(1_000)
    );
    let (status, body) = server.graphql(&deep, json!({}));
    assert_eq!(status, 200);
    assert!(body["data"].is_null(), "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default().to_lowercase();
    assert!(
        message.len() < 500,
        "a short message, not the query echoed: {} bytes",
        message.len()
    );
    assert!(
        message.contains("depth") || message.contains("recursion") || message.contains("nested"),
        "{message}"
    );

    // 10,000 aliases.
    let aliases: String = (0..10_000)
        .map(|i| format!("a{i}: entity(ref: \"component:web\") {{ ref }} "))
        .collect();
    let (status, body) = server.graphql(&format!("{{ {aliases} }}"), json!({}));
    assert_eq!(status, 200);
    assert!(body["data"].is_null(), "{:.300}", body.to_string());
    let message = body["errors"][0]["message"].as_str().unwrap_or_default().to_lowercase();
    assert!(message.contains("complex"), "{message}");

    // A 5 MB body.
    let big = json!({"query": format!("{{ entity(ref: \"{}\") {{ ref }} }}", "x".repeat(5 << 20))}).to_string();
    let (status, _) = http(
        &server.addr,
        "POST",
        "/graphql",
        &[("Content-Type", "application/json")],
        big.as_bytes(),
    );
    assert_eq!(status, 413);

    // Malformed requests get a clear error, not a crash.
    let (status, body) = http(
        &server.addr,
        "POST",
        "/graphql",
        &[("Content-Type", "application/json")],
        b"{not json",
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.graphql("{ entity(ref: ", json!({}));
    assert_eq!(status, 200);
    assert!(body["errors"][0]["message"].is_string(), "{body}");
    let (_, body) = server.graphql(r#"{ entities(first: 100000) { totalCount } }"#, json!({}));
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("first"),
        "{body}"
    );

    // Still healthy, still answering.
    assert_eq!(http(&server.addr, "GET", "/healthz", &[], b"").0, 200);
    let d = server.data(r#"{ entity(ref: "component:web") { ref } }"#, json!({}));
    assert_eq!(d["entity"]["ref"], "component:default/web");
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
