//! No N+1: a page of components with their owners, systems, APIs and dependencies costs the same
//! number of read-model queries for 10 entities as for 100. Every call through the read port is
//! counted (each is one SQL statement on both adapters, plus the generation lookup). The service
//! loads a page's relations and their targets with the page, so this is deterministic; deeper
//! levels (a system's owner) are batched by the DataLoaders, which group the keys requested within
//! a millisecond — not asserted here, as that would make the test depend on timing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use callboard_api::Limits;
use callboard_catalog::{Catalog, Parts};
use callboard_events::topics::Topics;
use callboard_model::{EntityRef, Relation};
use callboard_readmodel::filter::Filter;
use callboard_readmodel::rows::{EntityRow, HistoryRow, LocationRow, RejectionRow, SpanRow};
use callboard_readmodel::store::{CatalogReader, EntityPage, EntityQuery, RejectionsBy, RelationView, StoreError};
use callboard_testkit::CatalogSpec;
use serde_json::Value;

use crate::common::{Backend, write_catalog};
use crate::projection::{import, project};
use crate::stores::Store;

/// A read port that counts the calls made through it.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn CatalogReader>,
    calls: AtomicUsize,
}

impl Counting {
    fn tick(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl CatalogReader for Counting {
    async fn entities(&self, refs: &[EntityRef]) -> Result<Vec<EntityRow>, StoreError> {
        self.tick();
        self.inner.entities(refs).await
    }
    async fn list(&self, query: &EntityQuery) -> Result<EntityPage, StoreError> {
        self.tick();
        self.inner.list(query).await
    }
    async fn count(&self, filter: Option<&Filter>, text: Option<&str>) -> Result<i64, StoreError> {
        self.tick();
        self.inner.count(filter, text).await
    }
    async fn facets(&self, key: &str, filter: Option<&Filter>) -> Result<Vec<(String, i64)>, StoreError> {
        self.tick();
        self.inner.facets(key, filter).await
    }
    async fn relations(&self, refs: &[EntityRef], incoming: bool) -> Result<Vec<RelationView>, StoreError> {
        self.tick();
        self.inner.relations(refs, incoming).await
    }
    async fn all_relations(&self) -> Result<Vec<Relation>, StoreError> {
        self.tick();
        self.inner.all_relations().await
    }
    async fn relations_at(&self, time: &str) -> Result<Vec<Relation>, StoreError> {
        self.tick();
        self.inner.relations_at(time).await
    }
    async fn spans(&self, origin: &EntityRef) -> Result<Vec<SpanRow>, StoreError> {
        self.tick();
        self.inner.spans(origin).await
    }
    async fn history(
        &self,
        subject: &str,
        limit: usize,
        before_sequence: Option<i64>,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        self.tick();
        self.inner.history(subject, limit, before_sequence).await
    }
    async fn entity_at(&self, entity_ref: &EntityRef, time: &str) -> Result<Option<Value>, StoreError> {
        self.tick();
        self.inner.entity_at(entity_ref, time).await
    }
    async fn rejections(&self, by: RejectionsBy<'_>) -> Result<Vec<RejectionRow>, StoreError> {
        self.tick();
        self.inner.rejections(by).await
    }
    async fn locations(&self) -> Result<Vec<LocationRow>, StoreError> {
        self.tick();
        self.inner.locations().await
    }
    async fn entities_at(
        &self,
        time: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Option<Value>)>, StoreError> {
        self.tick();
        self.inner.entities_at(time, after, limit).await
    }
    async fn graph_version(&self) -> Result<String, StoreError> {
        self.tick();
        self.inner.graph_version().await
    }
}

const PAGE: &str = r#"query($n: Int!) {
  entities(filter: [{all: ["kind=component"]}], first: $n) {
    nodes { ref owner { ref title } ... on Component { system { ref title } providesApis { ref } consumesApis { ref } dependsOn { ref } } }
  }
}"#;

/// A read-only service (no log: no change feed, no cache) over a projected catalog of 1,200
/// documents, with every call through its read port counted; and the backend and store, kept
/// until the test ends (dropping the backend removes the embedded files).
async fn counted_schema(postgres: bool) -> (callboard_api::CatalogSchema, Arc<Counting>, Store, Backend) {
    let backend = Backend::embedded();
    let Backend::Embedded(data) = &backend else {
        unreachable!()
    };
    let store = if postgres {
        Store::postgres()
    } else {
        Store::sqlite(data.path())
    };
    let catalog = tempfile::tempdir().expect("tempdir");
    write_catalog(catalog.path(), &CatalogSpec::valid(1_200));
    import(&backend, data.path(), catalog.path());
    project(&backend, &store, data.path(), &[]);
    let stores = store.open().await;
    let counting = Arc::new(Counting {
        inner: stores.reader.clone(),
        calls: AtomicUsize::new(0),
    });
    let catalog = Catalog::new(Parts {
        reader: counting.clone(),
        positions: stores.store.clone(),
        activity: stores.activity_reader.clone(),
        shared_cache: None,
        log: None,
        topics: Topics::default(),
        projector_group: None,
        cached_entities: 0,
        feed_capacity: 16,
    });
    (
        callboard_api::build(catalog, &Limits::default()),
        counting,
        store,
        backend,
    )
}

/// Runs a query that must succeed; its data and the read-port calls it made.
async fn run(
    schema: &callboard_api::CatalogSchema,
    counting: &Counting,
    query: &str,
    variables: Value,
) -> (Value, usize) {
    counting.calls.store(0, Ordering::Relaxed);
    let request = async_graphql::Request::new(query).variables(async_graphql::Variables::from_json(variables));
    let response = schema.execute(request).await;
    assert!(response.errors.is_empty(), "{query}: {:?}", response.errors);
    (
        response.data.into_json().expect("json"),
        counting.calls.load(Ordering::Relaxed),
    )
}

async fn queries_per_page(postgres: bool) {
    let (schema, counting, store, _backend) = counted_schema(postgres).await;
    let mut costs = Vec::new();
    for n in [10, 100] {
        let (data, calls) = run(&schema, &counting, PAGE, serde_json::json!({"n": n})).await;
        let nodes = data["entities"]["nodes"].as_array().expect("nodes");
        assert_eq!(nodes.len(), n, "a full page");
        let owned = nodes.iter().filter(|n| n["owner"]["ref"].is_string()).count();
        let in_system = nodes.iter().filter(|n| n["system"]["ref"].is_string()).count();
        let with_apis = nodes
            .iter()
            .filter(|n| n["providesApis"].as_array().is_some_and(|a| !a.is_empty()))
            .count();
        assert_eq!(owned, n, "every component's owner resolves");
        assert!(
            in_system > 0 && with_apis > 0,
            "the page exercises systems ({in_system}) and APIs ({with_apis})"
        );
        costs.push(calls);
    }
    println!("read-port calls for a page of 10: {}, of 100: {}", costs[0], costs[1]);
    assert_eq!(costs[0], costs[1], "the number of queries grows with the page size");
    // The list, the page's relations, the entities they point at.
    assert_eq!(costs[1], 3, "queries for one page");
    store.cleanup().await;
}

/// What a query reads follows what it asks for: a list of names reads the list alone, a total
/// adds the count, whole entities add their relations, related entities add those entities; an
/// entity asked for on its own is read at once with what its fields need.
async fn reads_follow_fields(postgres: bool) {
    let (schema, counting, store, _backend) = counted_schema(postgres).await;
    let (first, _) = run(
        &schema,
        &counting,
        r#"{ entities(filter: [{all: ["kind=component"]}], first: 1) { nodes { ref } } }"#,
        serde_json::json!({}),
    )
    .await;
    let component = first["entities"]["nodes"][0]["ref"].clone();
    let cases: [(&str, usize); 6] = [
        (r#"{ entities(first: 50) { nodes { ref title tags spec } } }"#, 1),
        (r#"{ entities(first: 50) { totalCount nodes { ref } } }"#, 2),
        (r#"{ entities(first: 50) { edges { node { raw } } } }"#, 2),
        (
            r#"{ entities(first: 50) { totalCount nodes { ref ... on Component { system { ref } } } } }"#,
            4,
        ),
        (r#"query($r: String!) { entity(ref: $r) { ref raw } }"#, 2),
        (r#"query($r: String!) { entity(ref: $r) { ref owner { ref } } }"#, 3),
    ];
    for (query, expected) in cases {
        let (data, calls) = run(&schema, &counting, query, serde_json::json!({"r": component})).await;
        assert!(data.to_string().len() > 40, "{query} answered: {data}");
        assert_eq!(calls, expected, "read-port calls of {query}");
    }
    let (data, _) = run(
        &schema,
        &counting,
        r#"query($r: String!) { entity(ref: $r) { raw owner { ref } } }"#,
        serde_json::json!({"r": component}),
    )
    .await;
    assert!(
        data["entity"]["raw"]["relations"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "{data}"
    );
    assert!(data["entity"]["owner"]["ref"].is_string(), "{data}");
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_follow_fields_sqlite() {
    reads_follow_fields(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_follow_fields_postgres() {
    reads_follow_fields(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_costs_the_same_queries_at_any_size_sqlite() {
    queries_per_page(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_costs_the_same_queries_at_any_size_postgres() {
    queries_per_page(true).await;
}
