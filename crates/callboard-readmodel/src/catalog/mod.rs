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

use callboard_events::topics::Topics;
use callboard_projection::{Folded, Projection, ProjectionStore, StoredEvent};

pub use changes::{Changes, Current, ENTITY_WRITE_COLUMNS, EntityWrite, HistoryWrite, Loaded};
pub use facets::{COUNTED_FACETS, counted_facet_key, facet_values};
pub use fold::{fold, stored_document, with_uid};

use crate::store::ReadStore;

/// The catalog projection on a store.
#[derive(Debug, Clone)]
pub struct CatalogProjection {
    store: Arc<dyn ReadStore>,
}

impl CatalogProjection {
    /// The projection writing through `store`.
    pub fn new(store: Arc<dyn ReadStore>) -> Self {
        Self { store }
    }

    /// Its name, `catalog`.
    pub const NAME: &'static str = "catalog";
}

impl Projection for CatalogProjection {
    type Loaded = Loaded;
    type Changes = Changes;

    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn topics(&self, topics: &Topics) -> Vec<String> {
        vec![topics.entities(), topics.locations()]
    }

    fn store(&self) -> &dyn ProjectionStore<Loaded, Changes> {
        self.store.as_ref()
    }

    fn fold(&self, batch: &[StoredEvent], loaded: Loaded) -> Folded<Changes> {
        fold(batch, loaded)
    }
}
