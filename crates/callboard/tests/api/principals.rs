//! Every command runs on behalf of the request's principal, and that principal is the actor of
//! every event the command causes — the ones the writer appends directly and the ones from the
//! scans it triggers — in the log, in history, and in the activity feed.

use std::collections::BTreeSet;

use callboard_events::CloudEvent;
use callboard_events::log::{EventLog, read_range};
use callboard_log_sqlite::SqliteLog;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_in_folder};

const JANE: &str = "user:default/jane";
const JOE: &str = "user:default/joe";
const BOB: &str = "user:default/bob";
const CAROL: &str = "user:default/carol";
const DAVE: &str = "user:default/dave";

/// A command's result must be OK and projected.
fn ok(data: &Value, mutation: &str) {
    assert_eq!(data[mutation]["status"], "OK", "{data}");
    assert_eq!(data[mutation]["projected"], true, "{data}");
}

/// Every event in the log: (topic, subject, type, actor).
async fn log_events(app: &TestApp) -> Vec<(String, String, String, String)> {
    let log = SqliteLog::open(&app.data_dir().join("events.db")).await.expect("log");
    let mut out = Vec::new();
    for topic in ["callboard.entities", "callboard.locations"] {
        for (partition, end) in log.end_offsets(topic).await.expect("ends").into_iter().enumerate() {
            read_range(&log, topic, partition as i32, 0, end, |m| {
                let event = CloudEvent::from_bytes(&m.value).expect("an event");
                out.push((topic.to_owned(), event.subject, event.event_type, event.actor));
            })
            .await
            .expect("read");
        }
    }
    out
}

/// The activity feed of `actor` (every page), as (type, subject, entityRef, owner).
async fn activity_of(app: &TestApp, actor: Option<&str>, owner: Option<&str>) -> Vec<(String, String, Value, Value)> {
    app.wait_ready().await;
    let mut out = Vec::new();
    let mut after = Value::Null;
    loop {
        let d = app
            .data(
                r#"query($actor: String, $owner: String, $after: String) {
                     activity(actor: $actor, owner: $owner, first: 3, after: $after) {
                       nodes { eventType subject entityRef owner actor time }
                       pageInfo { hasNextPage endCursor } } }"#,
                json!({"actor": actor, "owner": owner, "after": after}),
            )
            .await;
        let page = &d["activity"];
        let mut times = Vec::new();
        for node in page["nodes"].as_array().expect("nodes") {
            if let Some(actor) = actor {
                assert_eq!(node["actor"], actor, "{node}");
            }
            times.push(node["time"].as_str().expect("time").to_owned());
            out.push((
                node["eventType"].as_str().expect("type").to_owned(),
                node["subject"].as_str().expect("subject").to_owned(),
                node["entityRef"].clone(),
                node["owner"].clone(),
            ));
        }
        let mut newest_first = times.clone();
        newest_first.sort_by(|a, b| b.cmp(a));
        assert_eq!(times, newest_first, "the feed is newest first");
        if page["pageInfo"]["hasNextPage"] != true {
            return out;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
}

fn component(name: &str, owner: &str) -> Value {
    json!({"apiVersion": "backstage.io/v1alpha1", "kind": "Component",
           "metadata": {"name": name}, "spec": {"type": "service", "lifecycle": "production", "owner": owner}})
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_records_its_principal() {
    let (folder, app) = spawn_app_in_folder().await;
    let apply = r#"mutation($e: JSON!) { applyEntity(entity: $e, wait: true) { status projected } }"#;
    let delete = r#"mutation($r: String!) { deleteEntity(ref: $r, wait: true) { status projected } }"#;

    // A user applies an entity; another deletes it; an anonymous caller applies one.
    ok(
        &app.data_as(Some(JANE), apply, json!({"e": component("pay", "team-a")}))
            .await,
        "applyEntity",
    );
    ok(
        &app.data_as(Some(JOE), delete, json!({"r": "component:pay"})).await,
        "deleteEntity",
    );
    ok(
        &app.data(apply, json!({"e": component("anon", "team-b")})).await,
        "applyEntity",
    );

    // A user registers a file location: the registration and the entities its first read finds
    // are that user's doing, as are those of a refresh by another, and the deletions of an
    // unregistration by a third.
    // The edit that the refresh must read is in a file the descriptor pulls in through a
    // placeholder, in a folder no scan reads a descriptor from: the file watcher (which watches
    // the folders of descriptors read) leaves it alone, so the refresh below, not the watcher,
    // reads it.
    std::fs::create_dir_all(folder.path().join("billing")).expect("mkdir");
    std::fs::create_dir_all(folder.path().join("notes")).expect("mkdir");
    let notes = folder.path().join("notes/billing.txt");
    std::fs::write(&notes, "the billing service").expect("write");
    let file = folder.path().join("billing/catalog-info.yaml");
    std::fs::write(
        &file,
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {name: billing, description: {$text: ../notes/billing.txt}}\nspec: {type: service, lifecycle: production, owner: team-a}\n",
    )
    .expect("write");
    let target = file.display().to_string();
    let location = |name: &str| {
        format!(r#"mutation($t: String!) {{ {name}(type: "file", target: $t, wait: true) {{ status projected }} }}"#)
    };
    ok(
        &app.data_as(Some(BOB), &location("registerLocation"), json!({"t": target}))
            .await,
        "registerLocation",
    );
    std::fs::write(&notes, "the billing service, now described").expect("write");
    ok(
        &app.data_as(Some(CAROL), &location("refreshLocation"), json!({"t": target}))
            .await,
        "refreshLocation",
    );
    ok(
        &app.data_as(Some(DAVE), &location("unregisterLocation"), json!({"t": target}))
            .await,
        "unregisterLocation",
    );

    // In the log: every event these commands caused names its principal.
    let events = log_events(&app).await;
    let by = |actor: &str| -> BTreeSet<(String, String)> {
        events
            .iter()
            .filter(|(_, _, _, a)| a == actor)
            .map(|(_, subject, kind, _)| (kind.trim_start_matches("dev.callboard.").to_owned(), subject.clone()))
            .collect()
    };
    let pay = "component:default/pay".to_owned();
    let billing = "component:default/billing".to_owned();
    assert_eq!(by(JANE), [("entity.upserted.v1".to_owned(), pay.clone())].into());
    assert_eq!(by(JOE), [("entity.deleted.v1".to_owned(), pay.clone())].into());
    assert!(
        by(callboard_catalog::GUEST).contains(&("entity.upserted.v1".to_owned(), "component:default/anon".to_owned())),
        "anonymous callers act as the guest: {events:?}"
    );
    let bob = by(BOB);
    assert!(
        bob.contains(&("entity.upserted.v1".to_owned(), billing.clone())),
        "{bob:?}"
    );
    assert!(bob.iter().any(|(kind, _)| kind == "location.registered.v1"), "{bob:?}");
    assert_eq!(by(CAROL), [("entity.upserted.v1".to_owned(), billing.clone())].into());
    let dave = by(DAVE);
    assert!(
        dave.contains(&("entity.deleted.v1".to_owned(), billing.clone())),
        "{dave:?}"
    );
    assert!(
        dave.iter().any(|(kind, _)| kind == "location.unregistered.v1"),
        "{dave:?}"
    );

    // In history.
    let d = app
        .data(
            r#"{ entity(ref: "component:anon") { history { actor eventType } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(d["entity"]["history"][0]["actor"], callboard_catalog::GUEST);

    // In the activity feed: per actor, with the entity and its owner at the time.
    let jane = activity_of(&app, Some(JANE), None).await;
    assert_eq!(
        jane,
        [(
            "entity.upserted.v1".to_owned(),
            pay.clone(),
            json!(pay),
            json!("group:default/team-a")
        )]
    );
    // A deletion happened to whoever owned the entity then.
    let joe = activity_of(&app, Some(JOE), None).await;
    assert_eq!(
        joe,
        [(
            "entity.deleted.v1".to_owned(),
            pay.clone(),
            json!(pay),
            json!("group:default/team-a")
        )]
    );
    let carol = activity_of(&app, Some(CAROL), None).await;
    assert_eq!(carol.len(), 1, "{carol:?}");
    assert_eq!(carol[0].2, json!(billing));
    let dave = activity_of(&app, Some(DAVE), None).await;
    assert!(
        dave.iter()
            .any(|(kind, _, entity, _)| kind == "entity.deleted.v1" && *entity == json!(billing))
    );
    // Per owner: everything that happened to team-a's entities, whoever did it.
    let team_a = activity_of(&app, None, Some("group:default/team-a")).await;
    let kinds: Vec<(&str, &str)> = team_a.iter().map(|(k, s, _, _)| (k.as_str(), s.as_str())).collect();
    for expected in [
        ("entity.upserted.v1", pay.as_str()),
        ("entity.deleted.v1", pay.as_str()),
        ("entity.upserted.v1", billing.as_str()),
        ("entity.deleted.v1", billing.as_str()),
    ] {
        assert!(kinds.contains(&expected), "{expected:?} in {kinds:?}");
    }
    assert!(
        !kinds.iter().any(|(_, s)| *s == "component:default/anon"),
        "team-b's entity is not team-a's activity"
    );
    // Everything, newest first: Dave's unregistering is the newest — its three events (the
    // location unregistered, the billing component and the location's generated Location entity
    // deleted) in whichever order their clocks put them (one command's events may share a
    // millisecond, or not) — and none has an entity any more.
    let d = app
        .data(
            r#"{ activity(first: 3) { nodes { time eventType actor entity { ref } } } }"#,
            json!({}),
        )
        .await;
    let nodes = d["activity"]["nodes"].as_array().expect("nodes");
    let newest: BTreeSet<&str> = nodes[..3].iter().filter_map(|n| n["eventType"].as_str()).collect();
    assert_eq!(newest, ["entity.deleted.v1", "location.unregistered.v1"].into(), "{d}");
    assert!(
        nodes[..3].iter().all(|n| n["actor"] == DAVE && n["entity"].is_null()),
        "{d}"
    );
    let times: Vec<&str> = nodes.iter().filter_map(|n| n["time"].as_str()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
    let (_, body) = app
        .graphql(r#"{ activity(after: "nonsense") { nodes { time } } }"#, json!({}))
        .await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{body}");
}
