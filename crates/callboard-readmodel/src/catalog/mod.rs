//! The catalog projection: the entity and location topics folded into what the catalog is now
//! and was at any instant — entity rows (with their relations packed), history, rejections,
//! counted facets and registered locations.
//!
//! * [`changes`]: what a batch loads and writes, the store port's data;
//! * [`fold`]: the fold itself (pure and deterministic);
//! * [`facets`]: the facet counts kept up to date.

mod changes;
mod facets;
mod fold;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use callboard_events::topics::Topics;
use callboard_projection::{BatchPosition, Folded, Generation, Generations, Projection, StoreError, StoredEvent};

pub use changes::{Changes, Current, EntityWrite, HistoryWrite, Loaded};
pub use facets::{COUNTED_FACETS, counted_facet_key};
pub use fold::{fold, stored_document, with_uid};

use crate::store::ReadStore;

/// The catalog projection on a store.
#[derive(Clone)]
pub struct CatalogProjection {
    store: Arc<dyn ReadStore>,
}

impl std::fmt::Debug for CatalogProjection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogProjection").finish_non_exhaustive()
    }
}

impl CatalogProjection {
    /// The projection writing through `store`.
    pub fn new(store: Arc<dyn ReadStore>) -> Self {
        Self { store }
    }

    /// Its name, `catalog`.
    pub const NAME: &'static str = "catalog";
}

#[async_trait]
impl Projection for CatalogProjection {
    type Loaded = Loaded;
    type Changes = Changes;

    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn topics(&self, topics: &Topics) -> Vec<String> {
        vec![topics.entities(), topics.locations()]
    }

    fn tables(&self) -> &dyn Generations {
        self.store.as_ref()
    }

    async fn load(&self, generation: Generation, subjects: &[String]) -> Result<Loaded, StoreError> {
        self.store.load(generation, subjects).await
    }

    fn fold(&self, batch: &[StoredEvent], loaded: Loaded) -> Folded<Changes> {
        fold(batch, loaded)
    }

    async fn write(
        &self,
        generation: Generation,
        group: &str,
        changes: Changes,
        positions: &[BatchPosition],
    ) -> Result<(), StoreError> {
        self.store.write(generation, group, changes, positions).await
    }

    fn parallel_writes(&self) -> usize {
        self.store.parallel_writes()
    }
}
