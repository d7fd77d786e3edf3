//! What a client sees of the API on a small catalog: entities and their typed relations,
//! connections with cursors, filters, search, facets, graph walks, history, a mutation that waits
//! for the read model, lists as of an instant — and the limits that keep hostile requests out.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{first_error, spawn_app};

#[tokio::test(flavor = "multi_thread")]
async fn answers_graphql_in_process() {
    let catalog = tempfile::tempdir().expect("tempdir");
    callboard_testkit::small_catalog(catalog.path());
    let server = spawn_app(&[catalog.path()]).await;

    // One entity with its typed relations and the final entity as Backstage returns it.
    let d = server
        .data(
            r#"query($r: String!) { entity(ref: $r) { __typename ref kind name owner { __typename ref } tags raw
             ... on Component { type lifecycle system { ref } providesApis { ref } dependsOn { ref } } } }"#,
            json!({"r": "Component:default/WEB"}),
        )
        .await;
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
    ).await;
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
        server
            .data(r#"{ entity(ref: "component:default/nope") { ref } }"#, json!({}))
            .await["entity"],
        Value::Null
    );

    // A connection, a page at a time.
    let page = async |after: Value| {
        server
            .data(
                r#"query($after: String) { entities(filter: [{all: ["kind=component"]}], first: 1, after: $after) {
                 totalCount edges { cursor node { ref } } pageInfo { hasNextPage endCursor } } }"#,
                json!({"after": after}),
            )
            .await["entities"]
            .clone()
    };
    let first = page(Value::Null).await;
    assert_eq!(first["totalCount"], 2);
    assert_eq!(first["edges"][0]["node"]["ref"], "component:default/db-svc");
    assert_eq!(first["pageInfo"]["hasNextPage"], true);
    let second = page(first["pageInfo"]["endCursor"].clone()).await;
    assert_eq!(second["edges"][0]["node"]["ref"], "component:default/web");
    assert_eq!(second["pageInfo"]["hasNextPage"], false);

    // OR of ANDs, case-insensitive; full-text search; facets.
    let d = server.data(
        r#"{ entities(filter: [{all: ["kind=API"]}, {all: ["kind=component", "spec.type=WEBSITE"]}]) { totalCount nodes { ref } } }"#,
        json!({}),
    ).await;
    assert_eq!(d["entities"]["totalCount"], 2);
    let d = server
        .data(r#"{ entities(search: "storefront") { nodes { ref } } }"#, json!({}))
        .await;
    assert_eq!(d["entities"]["nodes"], json!([{"ref": "component:default/web"}]));
    let d = server
        .data(r#"{ facets(field: "kind") { value count } }"#, json!({}))
        .await;
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
    let d = server
        .data(
            r#"{ dependents(ref: "component:default/db-svc") { ref depth entity { name } }
             owned(ref: "group:default/team-a") { ref }
             path(from: "user:default/alice", to: "component:default/web") { from type to } }"#,
            json!({}),
        )
        .await;
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
    tokio::time::sleep(Duration::from_millis(20)).await;
    let before_mutation = callboard_events::cloudevent::now_rfc3339();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (status, body) = server.graphql(
        r#"mutation($e: JSON!) { applyEntity(entity: $e, wait: true) { status projected entityRefs positions { offset } } }"#,
        json!({"e": {"apiVersion": "backstage.io/v1alpha1", "kind": "Resource",
                      "metadata": {"name": "orders-db"}, "spec": {"type": "database", "owner": "team-a"}}}),
    ).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["applyEntity"]["status"], "OK", "{body}");
    assert_eq!(body["data"]["applyEntity"]["projected"], true, "{body}");
    let d = server.data(
        r#"{ entity(ref: "resource:default/orders-db") { ref owner { ref } history { sequence eventType actor } } }"#,
        json!({}),
    ).await;
    assert_eq!(d["entity"]["owner"]["ref"], "group:default/team-a");
    assert_eq!(d["entity"]["history"][0]["sequence"], 1);
    assert_eq!(d["entity"]["history"][0]["actor"], "user:default/guest");
    // Lists as of an instant: the catalog before the mutation, filtered on its documents.
    let list = r#"query($at: String) { entities(filter: [{all: ["kind=resource"]}], asOf: $at) {
        totalCount nodes { __typename ref asOf } } }"#;
    let then = server.data(list, json!({"at": before_mutation})).await;
    assert_eq!(then["entities"]["totalCount"], 0, "{then}");
    let now = server.data(list, json!({"at": null})).await;
    assert_eq!(
        now["entities"]["nodes"],
        json!([{"__typename": "Resource", "ref": "resource:default/orders-db", "asOf": null}])
    );
    let d = server.data(
        r#"query($at: String) { entities(filter: [{all: ["kind=component", "spec.type=WEBSITE"]}, {all: ["kind=api"]}], first: 1, asOf: $at) {
             totalCount nodes { ref asOf } pageInfo { hasNextPage } } }"#,
        json!({"at": before_mutation}),
    ).await;
    assert_eq!(d["entities"]["totalCount"], 2, "{d}");
    assert_eq!(d["entities"]["nodes"][0]["ref"], "api:default/orders-api");
    assert!(d["entities"]["nodes"][0]["asOf"].is_string());
    assert_eq!(d["entities"]["pageInfo"]["hasNextPage"], true);
    let (_, body) = server
        .graphql(
            r#"query($at: String) { entities(search: "orders", asOf: $at) { totalCount } }"#,
            json!({"at": before_mutation}),
        )
        .await;
    assert!(first_error(&body).contains("search"), "{body}");

    // An invalid entity is refused with the field and rule.
    let (_, body) = server
        .graphql(
            r#"mutation { applyEntity(entity: {kind: "Component", metadata: {name: "x"}}) { status problems } }"#,
            json!({}),
        )
        .await;
    assert_eq!(body["data"]["applyEntity"]["status"], "REJECTED", "{body}");

    // GET runs queries, never mutations.
    let (status, body) = server
        .http(
            "GET",
            "/graphql?query=%7Bentity(ref%3A%22component%3Aweb%22)%7Bref%7D%7D",
            &[],
            b"",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("component:default/web"), "{body}");
    let (status, _) = server
        .http(
            "GET",
            "/graphql?query=mutation%7BdeleteEntity(ref%3A%22resource%3Aorders-db%22)%7Bstatus%7D%7D",
            &[],
            b"",
        )
        .await;
    assert_eq!(status, 405);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_requests_are_refused_and_the_server_stays_healthy() {
    let catalog = tempfile::tempdir().expect("tempdir");
    callboard_testkit::small_catalog(catalog.path());
    let server = spawn_app(&[catalog.path()]).await;

    // Depth 1,000.
    let deep = format!(
        "{{ entity(ref: \"component:web\") {{ {}ref{} }} }}",
        "owner { ".repeat(1_000),
        " }".repeat(1_000)
    );
    let (status, body) = server.graphql(&deep, json!({})).await;
    assert_eq!(status, 200);
    assert!(body["data"].is_null(), "{body}");
    let message = first_error(&body).to_lowercase();
    assert!(
        message.len() < 500,
        "a short message, not the query echoed: {} bytes",
        message.len()
    );
    assert!(
        message.contains("depth") || message.contains("recursion") || message.contains("nested"),
        "{message}"
    );

    // 12,000 aliases (each costs 5: over the default limit of 50,000).
    let aliases: String = (0..12_000)
        .map(|i| format!("a{i}: entity(ref: \"component:web\") {{ ref title owner {{ ref }} }} "))
        .collect();
    let (status, body) = server.graphql(&format!("{{ {aliases} }}"), json!({})).await;
    assert_eq!(status, 200);
    assert!(body["data"].is_null(), "{:.300}", body.to_string());
    let message = first_error(&body).to_lowercase();
    assert!(message.contains("complex"), "{message}");

    // A 5 MB body.
    let big = json!({"query": format!("{{ entity(ref: \"{}\") {{ ref }} }}", "x".repeat(5 << 20))}).to_string();
    let (status, _) = server
        .http(
            "POST",
            "/graphql",
            &[("Content-Type", "application/json")],
            big.as_bytes(),
        )
        .await;
    assert_eq!(status, 413);

    // Malformed requests get a clear error, not a crash.
    let (status, body) = server
        .http(
            "POST",
            "/graphql",
            &[("Content-Type", "application/json")],
            b"{not json",
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.graphql("{ entity(ref: ", json!({})).await;
    assert_eq!(status, 200);
    assert!(body["errors"][0]["message"].is_string(), "{body}");
    let (_, body) = server
        .graphql(r#"{ entities(first: 100000) { totalCount } }"#, json!({}))
        .await;
    // Refused before it runs: a page that size costs more than the complexity limit allows.
    let message = first_error(&body).to_lowercase();
    assert!(message.contains("first") || message.contains("complex"), "{body}");
    let (_, body) = server
        .graphql(r#"{ entities(first: 1000) { nodes { ref } } }"#, json!({}))
        .await;
    assert!(first_error(&body).contains("first"), "over the page limit: {body}");

    // Still healthy, still answering.
    assert_eq!(server.http("GET", "/healthz", &[], b"").await.0, 200);
    let d = server
        .data(r#"{ entity(ref: "component:web") { ref } }"#, json!({}))
        .await;
    assert_eq!(d["entity"]["ref"], "component:default/web");
}
