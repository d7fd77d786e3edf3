//! Whole answers (a page, its total, facet counts) are kept until the catalog changes: a
//! mutation that waits for the read model is never answered, right after, from an answer read
//! before it — the wait covers the change feed's invalidation too, not only the projectors.

use serde_json::json;

use crate::helpers::spawn_app_in_folder;

const LIST: &str = r#"{ entities(filter: [{all: ["kind=resource"]}], first: 100) { totalCount nodes { ref raw } } }"#;
const FACETS: &str = r#"{ facets(field: "spec.type", filter: [{all: ["kind=resource"]}]) { value count } }"#;
const ONE: &str = r#"query($r: String!) { entity(ref: $r) { ref spec raw owner { ref } } }"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_waited_mutation_is_seen_by_the_next_question_however_often_it_was_asked() {
    let (_folder, server) = spawn_app_in_folder().await;
    server.wait_ready().await;
    let hits_before = answer_cache_hits(&server).await;
    for n in 0..20 {
        // Ask twice: the second answer may come from the cache.
        for _ in 0..2 {
            let d = server.data(LIST, json!({})).await;
            assert_eq!(d["entities"]["totalCount"], n, "{d}");
            let d = server.data(FACETS, json!({})).await;
            let counted = d["facets"].as_array().map_or(0, |f| f.len());
            assert_eq!(counted, usize::from(n > 0), "{d}");
        }
        let name = format!("db-{n}");
        let (status, body) = server
            .graphql(
                r#"mutation($e: JSON!) { applyEntity(entity: $e, wait: true) { status projected } }"#,
                json!({"e": {"apiVersion": "backstage.io/v1alpha1", "kind": "Resource",
                       "metadata": {"name": name}, "spec": {"type": "database", "owner": "team-a"}}}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["applyEntity"]["projected"], true, "{body}");
        let d = server.data(LIST, json!({})).await;
        assert_eq!(d["entities"]["totalCount"], n + 1, "the list after the mutation: {d}");
        let refs: Vec<&str> = d["entities"]["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .filter_map(|node| node["ref"].as_str())
            .collect();
        assert!(refs.contains(&format!("resource:default/{name}").as_str()), "{refs:?}");
        let d = server.data(FACETS, json!({})).await;
        assert_eq!(d["facets"], json!([{"value": "database", "count": n + 1}]), "{d}");
        // One entity read on its own: its row, relations and owner, read at once.
        let d = server.data(ONE, json!({"r": format!("resource:default/{name}")})).await;
        assert_eq!(d["entity"]["owner"]["ref"], "group:default/team-a", "{d}");
        assert_eq!(d["entity"]["raw"]["relations"][0]["type"], "ownedBy", "{d}");
    }
    // The second of each pair of questions was answered from the cache: the test exercises it.
    // (The counter is the process's, shared with tests running beside this one, which only add.)
    let hits = answer_cache_hits(&server).await - hits_before;
    assert!(hits >= 40, "answers served from the cache: {hits}");
}

async fn answer_cache_hits(server: &crate::helpers::TestApp) -> u64 {
    let (status, text) = server.http("GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|line| line.strip_prefix("callboard_api_answer_cache_hits_total "))
        .map_or(0, |n| n.trim().parse().expect("a count"))
}
