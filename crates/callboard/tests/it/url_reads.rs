//! URL locations: read over HTTP from allow-listed hosts only (a local server stands in for a
//! Git host), with relative targets and placeholders resolved against the URL.

use std::collections::HashMap;
use std::sync::Arc;

use callboard_events::types::LocationRecord;
use callboard_ingest::{Scanner, Writer, WriterConfig};
use callboard_reader::Reader;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::{Backend, read_events};

/// Serves `files` (path → body) over HTTP/1.1; anything else is a 404.
async fn serve(files: HashMap<String, String>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let files = Arc::new(files);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let files = files.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 8192];
                let n = stream.read(&mut buffer).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buffer[..n]);
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let response = match files.get(&path) {
                    Some(body) => format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    ),
                    None => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
                };
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn url_locations_read_only_allowed_hosts() {
    let root = "apiVersion: backstage.io/v1alpha1\nkind: Location\nmetadata:\n  name: root\nspec:\n  targets:\n    - ./services/api.yaml\n    - http://localhost:PORT/elsewhere.yaml\n";
    let api = "apiVersion: backstage.io/v1alpha1\nkind: API\nmetadata:\n  name: orders-api\nspec:\n  type: openapi\n  lifecycle: production\n  owner: team-a\n  definition:\n    $text: ./openapi.yaml\n";
    let files = HashMap::from([
        ("/catalog/catalog-info.yaml".to_owned(), root.to_owned()),
        ("/catalog/services/api.yaml".to_owned(), api.to_owned()),
        (
            "/catalog/services/openapi.yaml".to_owned(),
            "openapi: 3.0.0\n".to_owned(),
        ),
        ("/elsewhere.yaml".to_owned(), api.replace("orders-api", "sneaky-api")),
    ]);
    let port = serve(files.clone()).await;
    // Serve the root with its own port filled in.
    let mut files = files;
    files.insert(
        "/catalog/catalog-info.yaml".into(),
        root.replace("PORT", &port.to_string()),
    );
    let port = serve(files).await;
    // Only 127.0.0.1 is allowed, so the `localhost` target is refused.
    let reader = Reader::default().with_hosts(["127.0.0.1".to_owned()]);
    let backend = Backend::embedded();
    let log = backend.open().await;
    let mut writer = Writer::start(log.clone(), Scanner::new(Arc::new(reader)), WriterConfig::default())
        .await
        .expect("writer");
    let location = LocationRecord {
        location_type: "url".into(),
        target: format!("http://127.0.0.1:{port}/catalog/catalog-info.yaml"),
    };
    writer.register(&location, "provider:test").await.expect("register");
    let report = writer.sync(&location).await.expect("sync");
    assert!(!report.complete, "a refused target makes the scan incomplete");

    let events = read_events(log.as_ref(), &backend.topics().entities()).await;
    let api = events
        .iter()
        .find(|e| e.subject == "api:default/orders-api")
        .expect("the API from the allowed host");
    assert_eq!(
        api.data["entity"]["spec"]["definition"], "openapi: 3.0.0\n",
        "the placeholder was read relative to the URL"
    );
    assert_eq!(
        api.data["entity"]["metadata"]["annotations"]["backstage.io/managed-by-location"],
        format!("url:http://127.0.0.1:{port}/catalog/services/api.yaml")
    );
    assert!(
        events.iter().all(|e| e.subject != "api:default/sneaky-api"),
        "nothing is read from a host off the allowlist"
    );
    let refused = events
        .iter()
        .find(|e| e.event_type == "dev.callboard.entity.rejected.v1")
        .expect("a rejection");
    assert_eq!(refused.subject, "location:default/root");
    let message = refused.data["problems"][0]["message"].as_str().expect("message");
    assert!(message.contains("not allowed"), "{message}");
}
