//! Subscriptions resume: every change carries a cursor, and a subscription started `after` one
//! is sent every change since — missed while disconnected, or across a server restart — then the
//! live ones, each once.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_in};
use crate::hostile::{Socket, initialise, receive, send, socket};

const SUBSCRIPTION: &str =
    "subscription($after: String) { entityChanged(kinds: [\"resource\"], after: $after) { ref sequence cursor } }";

async fn apply(app: &TestApp, name: &str, version: u32) {
    let data = app
        .data(
            "mutation($e: JSON!) { applyEntity(entity: $e, wait: true) { status projected } }",
            json!({"e": {"apiVersion": "backstage.io/v1alpha1", "kind": "Resource",
                   "metadata": {"name": name, "description": format!("version {version}")},
                   "spec": {"type": "database", "owner": "team-a"}}}),
        )
        .await;
    assert_eq!(data["applyEntity"]["projected"], true, "{data}");
}

async fn subscribe(app: &TestApp, after: Option<&str>) -> Socket {
    let mut ws = socket(&app.addr).await;
    initialise(&mut ws).await;
    send(
        &mut ws,
        json!({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIPTION, "variables": {"after": after}}}),
    )
    .await;
    ws
}

/// The next change (`ref`, `cursor`), failing on anything else.
async fn next_change(ws: &mut Socket) -> (String, String) {
    let message = receive(ws, Duration::from_secs(10)).await.expect("a message");
    assert_eq!(message["type"], "next", "{message}");
    let change = &message["payload"]["data"]["entityChanged"];
    (
        change["ref"].as_str().expect("ref").to_owned(),
        change["cursor"].as_str().expect("cursor").to_owned(),
    )
}

/// Nothing more arrives for a moment.
async fn quiet(ws: &mut Socket) {
    use futures::StreamExt;
    let next = tokio::time::timeout(Duration::from_millis(500), ws.next()).await;
    assert!(next.is_err(), "nothing else was expected: {next:?}");
}

fn refs(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| format!("resource:default/{n}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_resume_after_a_cursor_across_a_restart() {
    let app = spawn_app(&[]).await;
    let mut first = subscribe(&app, None).await;
    // Let the subscription start before the change.
    tokio::time::sleep(Duration::from_millis(200)).await;
    apply(&app, "one", 1).await;
    let (one, cursor) = next_change(&mut first).await;
    assert_eq!(one, "resource:default/one");
    drop(first);

    // Changes while no one listens, then a subscription after the cursor: those, then live.
    apply(&app, "two", 1).await;
    apply(&app, "three", 1).await;
    let mut resumed = subscribe(&app, Some(&cursor)).await;
    let mut got = vec![next_change(&mut resumed).await, next_change(&mut resumed).await];
    apply(&app, "four", 1).await;
    got.push(next_change(&mut resumed).await);
    assert_eq!(
        got.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>(),
        refs(&["two", "three", "four"])
    );
    quiet(&mut resumed).await;
    let last = got.last().expect("changes").1.clone();
    drop(resumed);

    // A restart: the cursor still resumes, with what happened since.
    let data = app.stop().await;
    let app = spawn_app_in(data, &[], |_| {}).await;
    apply(&app, "five", 1).await;
    apply(&app, "one", 2).await;
    let mut after_restart = subscribe(&app, Some(&last)).await;
    let got = vec![
        next_change(&mut after_restart).await.0,
        next_change(&mut after_restart).await.0,
    ];
    assert_eq!(got, refs(&["five", "one"]));
    quiet(&mut after_restart).await;

    // Not a cursor, or one from another log: refused, saying why.
    for (bad, code) in [
        ("nonsense", "BAD_USER_INPUT"),
        ("0", "BAD_USER_INPUT"),
        ("999.999.999.999.999.999", "BAD_USER_INPUT"),
    ] {
        let mut ws = subscribe(&app, Some(bad)).await;
        let message: Value = receive(&mut ws, Duration::from_secs(10)).await.expect("an answer");
        // A resolver's error comes as the one result of the subscription, which then completes.
        assert_eq!(message["type"], "next", "{bad}: {message}");
        assert_eq!(
            message["payload"]["errors"][0]["extensions"]["code"], code,
            "{bad}: {message}"
        );
        let complete = receive(&mut ws, Duration::from_secs(10)).await.expect("completed");
        assert_eq!(complete["type"], "complete", "{bad}: {complete}");
    }
}
