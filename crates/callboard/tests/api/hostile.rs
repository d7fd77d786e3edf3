//! Hostile clients: what a page on another site, or an oversized request, can make a server on
//! a developer's machine do — nothing.

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{first_error, spawn_app};

/// A WebSocket upgrade on `/graphql` as a browser sends it (with `origin`, if any); returns the
/// status and, for a refusal, the body.
async fn upgrade(addr: &str, origin: Option<&str>) -> (u16, String) {
    let (addr, origin) = (addr.to_owned(), origin.map(str::to_owned));
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut head = format!(
            "GET /graphql HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Protocol: graphql-transport-ws\r\n"
        );
        if let Some(origin) = origin {
            head.push_str(&format!("Origin: {origin}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).expect("request");
        // Read the head, then the body if one is announced (a 101 has none and stays open).
        let mut response = Vec::new();
        let mut byte = [0u8; 1];
        while !response.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => response.push(byte[0]),
                _ => break,
            }
        }
        let head = String::from_utf8_lossy(&response).into_owned();
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let length = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().to_owned())
            })
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).ok();
        (status, String::from_utf8_lossy(&body).into_owned())
    })
    .await
    .expect("upgrade")
}

#[tokio::test(flavor = "multi_thread")]
async fn websockets_from_pages_of_other_origins_are_refused() {
    let app = spawn_app(&[]).await;
    let (status, body) = upgrade(&app.addr, Some("https://evil.example")).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("https://evil.example") && body.contains("--allow-origin"),
        "{body}"
    );
    // A look-alike of the server's own origin is another origin.
    let (status, _) = upgrade(&app.addr, Some(&format!("http://{}.evil.example", app.addr))).await;
    assert_eq!(status, 403);

    // The server's own pages, and tools that send no Origin, connect.
    assert_eq!(upgrade(&app.addr, Some(&format!("http://{}", app.addr))).await.0, 101);
    assert_eq!(upgrade(&app.addr, None).await.0, 101);
}

#[tokio::test(flavor = "multi_thread")]
async fn long_batches_are_refused_before_any_operation_runs() {
    let app = spawn_app(&[]).await;
    let apply = |name: String| {
        json!({"query": "mutation($e: JSON!) { applyEntity(entity: $e) { status } }",
               "variables": {"e": {"apiVersion": "backstage.io/v1alpha1", "kind": "Resource",
                                   "metadata": {"name": name}, "spec": {"type": "database", "owner": "team-a"}}}})
    };
    let post = |batch: Vec<Value>| {
        let body = Value::Array(batch).to_string();
        let app = &app;
        async move {
            app.http(
                "POST",
                "/graphql",
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            )
            .await
        }
    };
    let (status, body) = post((0..500).map(|i| apply(format!("batched-{i}"))).collect()).await;
    assert_eq!(status, 400, "{body}");
    let body: Value = serde_json::from_str(&body).expect("json");
    assert!(first_error(&body).contains("500 operations"), "{body}");

    // Nothing of it ran: a batch within the limit (10) goes through, and it is the only one seen.
    let (status, body) = post((0..10).map(|i| apply(format!("allowed-{i}"))).collect()).await;
    assert_eq!(status, 200, "{body}");
    let answers: Vec<Value> = serde_json::from_str(&body).expect("json");
    assert_eq!(answers.len(), 10);
    assert!(
        answers.iter().all(|a| a["data"]["applyEntity"]["status"] == "OK"),
        "{body}"
    );
    app.wait_ready().await;
    let d = app
        .data(
            r#"{ entities(filter: {all: ["kind=resource"]}) { totalCount } }"#,
            json!({}),
        )
        .await;
    assert_eq!(d["entities"]["totalCount"], 10, "{d}");
}

pub(crate) type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A `graphql-transport-ws` connection to `/graphql`, not yet initialised.
pub(crate) async fn socket(addr: &str) -> Socket {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{addr}/graphql").into_client_request().expect("request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    tokio_tungstenite::connect_async(request).await.expect("connect").0
}

/// The next JSON message of a socket, or `None` when it closed; fails when nothing came within
/// `wait`.
pub(crate) async fn receive(socket: &mut Socket, wait: Duration) -> Option<Value> {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let next = tokio::time::timeout(wait, socket.next())
            .await
            .unwrap_or_else(|_| panic!("the socket neither answered nor closed within {wait:?}"));
        match next? {
            Ok(Message::Text(text)) => return serde_json::from_str(&text).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

pub(crate) async fn send(socket: &mut Socket, message: Value) {
    use futures::SinkExt;
    socket
        .send(tokio_tungstenite::tungstenite::Message::Text(
            message.to_string().into(),
        ))
        .await
        .expect("send");
}

/// `connection_init`, answered by `connection_ack`.
pub(crate) async fn initialise(socket: &mut Socket) {
    send(socket, json!({"type": "connection_init"})).await;
    let ack = receive(socket, Duration::from_secs(10)).await;
    assert_eq!(
        ack.as_ref().map(|a| a["type"].clone()),
        Some(json!("connection_ack")),
        "{ack:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn operations_over_a_websocket_get_the_request_timeout() {
    // A limit nothing that waits can meet, and an operation that always waits: a mutation
    // answered once the writer and the projector have seen it.
    let app = crate::helpers::spawn_app_with(&[], |c| c.limits.timeout = Duration::from_nanos(1)).await;
    let query = r#"mutation { applyEntity(entity: {apiVersion: "backstage.io/v1alpha1", kind: "Resource",
        metadata: {name: "slow"}, spec: {type: "database", owner: "team-a"}}, wait: true) { status } }"#;
    let (_, body) = app.graphql(query, json!({})).await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "TIMEOUT", "over HTTP: {body}");

    let mut ws = socket(&app.addr).await;
    initialise(&mut ws).await;
    send(
        &mut ws,
        json!({"id": "1", "type": "subscribe", "payload": {"query": query}}),
    )
    .await;
    let answer = receive(&mut ws, Duration::from_secs(10)).await.expect("an answer");
    assert_eq!(answer["type"], "next", "{answer}");
    assert_eq!(
        answer["payload"]["errors"][0]["extensions"]["code"], "TIMEOUT",
        "over a WebSocket: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn websockets_that_never_initialise_are_closed() {
    let app = crate::helpers::spawn_app_with(&[], |c| c.limits.connection_init = Duration::from_millis(300)).await;
    let mut silent = socket(&app.addr).await;
    assert_eq!(receive(&mut silent, Duration::from_secs(5)).await, None, "closed");

    // One that initialised stays open past the deadline, and answers.
    let mut ws = socket(&app.addr).await;
    initialise(&mut ws).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    send(
        &mut ws,
        json!({"id": "1", "type": "subscribe", "payload": {"query": "{ entities { totalCount } }"}}),
    )
    .await;
    let answer = receive(&mut ws, Duration::from_secs(10)).await.expect("an answer");
    assert_eq!(answer["payload"]["data"]["entities"]["totalCount"], 0, "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_holds_a_bounded_number_of_websockets() {
    let app = crate::helpers::spawn_app_with(&[], |c| c.limits.websockets = 2).await;
    let first = socket(&app.addr).await;
    let _second = socket(&app.addr).await;
    let (status, body) = upgrade(&app.addr, None).await;
    assert_eq!(status, 503, "{body}");
    // A closed one frees its place.
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while upgrade(&app.addr, None).await.0 != 101 {
        assert!(
            std::time::Instant::now() < deadline,
            "the closed socket's place was not freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nested_lists_multiply_their_cost() {
    let app = spawn_app(&[]).await;
    // 100 entities × 100 relations × 100 relations: a million elements, refused before anything
    // runs — with the page sizes written out, and with the relation lists' default (100).
    for query in [
        "{ entities(first: 100) { nodes { ... on Component { dependsOn(first: 100) { ... on Component { dependsOn(first: 100) { ref } } } } } } }",
        "{ entities(first: 100) { nodes { ... on Group { owns { ... on Group { owns { ref } } } } } } }",
    ] {
        let (status, body) = app.graphql(query, json!({})).await;
        assert_eq!(status, 200);
        assert!(body["data"].is_null(), "{body}");
        assert!(first_error(&body).to_lowercase().contains("complex"), "{body}");
    }
    // A page of the default size with a relation list each is an everyday query: it runs.
    let d = app
        .data(
            "{ entities { totalCount nodes { ref owner { ref } ... on Component { dependsOn { ref } providesApis { ref } } } } }",
            json!({}),
        )
        .await;
    assert!(d["entities"]["totalCount"].is_number(), "{d}");
    // A relation list's page is bounded like any other.
    let (_, body) = app
        .graphql(
            "{ entities { nodes { ... on Component { dependsOn(first: 100000) { ref } } } } }",
            json!({}),
        )
        .await;
    assert!(body["errors"].is_array(), "{body}");
}
