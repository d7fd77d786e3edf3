//! The service layer: one application layer that every transport calls, on behalf of a
//! [`Principal`].
//!
//! * [`Catalog`] ([`service`]): entities now and as of any instant, lists with filters, search,
//!   order and paging, counts, facets, graph questions, history, rejections, locations, the
//!   activity feed, live changes, and the commands that change the catalog (with
//!   read-your-writes).
//! * [`cache`]: hot entities in memory, in front of the read side ([`cache::CachedReader`]), kept
//!   fresh by the change feed ([`feed`]).
//! * [`error`]: the one table of error codes clients see.
//! * [`principal`]: who asks, and the actor recorded for what they change.
//!
//! Architecture invariants: transports reach the catalog only through this crate — they hold a
//! [`Catalog`], never a store, a log, a cache or the command channel — and every operation
//! carries the principal it runs for, which is where permissions will be enforced, once, for
//! every transport. This crate talks to ports only (`callboard-readmodel`, `callboard-events`,
//! `callboard-projection`, `callboard-graph`), never to an adapter.

pub mod cache;
mod commands;
pub mod error;
pub mod feed;
pub mod principal;
pub mod service;

pub use cache::{CurrentPage, Include, Outgoing, Single};
pub use commands::{LOCATION_TYPES, LocationCommand, Outcome};
pub use error::{CatalogError, ErrorCode};
pub use feed::{Change, Missed};
pub use principal::{GUEST, Principal};
pub use service::{Catalog, Instant, Parts, PastPage};

/// The vocabulary transports speak with the service, re-exported so that they depend on this
/// crate alone.
pub mod vocabulary {
    pub use callboard_events::types::{CommandStatus, LocationRecord, PositionRecord};
    pub use callboard_graph::{Hop, Question, Reached};
    pub use callboard_model::{EntityRef, Relation, RelationType};
    pub use callboard_readmodel::activity::{ActivityKey, ActivityRow};
    pub use callboard_readmodel::filter::Filter;
    pub use callboard_readmodel::rows::{EntityRow, HistoryRow, LocationRow, RejectionRow};
    pub use callboard_readmodel::store::{
        EntityQuery, Order, RejectionsBy, RelationView, attach_relations, final_entity, final_entity_json,
        relation_pairs,
    };
}
