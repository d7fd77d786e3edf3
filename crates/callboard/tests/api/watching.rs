//! Locations registered while the server runs are watched like those given at start: an edit to
//! a file such a location reads, or a new descriptor in a new subfolder of a discovery location,
//! reaches the catalog without a refresh.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{TestApp, spawn_app_in_folder};

fn component(name: &str, description: &str) -> String {
    format!(
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {{name: {name}, description: {description}}}\n\
         spec: {{type: service, lifecycle: production, owner: team-a}}\n"
    )
}

/// Waits (up to 10 s, far above the second it takes) until `name`'s description is `wanted`.
async fn described(app: &TestApp, name: &str, wanted: &str) -> Duration {
    let started = Instant::now();
    loop {
        let data = app
            .data(
                r#"query($r: String!) { entity(ref: $r) { description } }"#,
                json!({"r": format!("component:default/{name}")}),
            )
            .await;
        if data["entity"]["description"] == wanted {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{name} is not `{wanted}` 10 s later: {data}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn register(app: &TestApp, location_type: &str, target: &Path) {
    let data = app
        .data(
            r#"mutation($y: String!, $t: String!) { registerLocation(type: $y, target: $t, wait: true) { status projected } }"#,
            json!({"y": location_type, "t": target.display().to_string()}),
        )
        .await;
    assert_eq!(data["registerLocation"]["status"], "OK", "{data}");
}

#[tokio::test(flavor = "multi_thread")]
async fn locations_registered_later_are_watched() {
    let (folder, app) = spawn_app_in_folder().await;

    // A file location in a subfolder the start location's watch does not cover.
    std::fs::create_dir_all(folder.path().join("billing")).expect("mkdir");
    let file = folder.path().join("billing/catalog-info.yaml");
    std::fs::write(&file, component("billing", "first")).expect("write");
    register(&app, "file", &file).await;
    described(&app, "billing", "first").await;
    std::fs::write(&file, component("billing", "second")).expect("write");
    let latency = described(&app, "billing", "second").await;
    eprintln!("an edit in a location registered later reached the catalog in {latency:?}");

    // A discovery location: a descriptor in a subfolder created after the registration.
    std::fs::create_dir_all(folder.path().join("repos")).expect("mkdir");
    register(&app, "discovery", &folder.path().join("repos")).await;
    std::fs::create_dir_all(folder.path().join("repos/new-service/deep")).expect("mkdir");
    std::fs::write(
        folder.path().join("repos/new-service/deep/catalog-info.yaml"),
        component("newcomer", "found"),
    )
    .expect("write");
    let latency = described(&app, "newcomer", "found").await;
    eprintln!("a descriptor in a new subfolder reached the catalog in {latency:?}");
}
