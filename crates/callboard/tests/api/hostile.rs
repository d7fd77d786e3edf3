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
