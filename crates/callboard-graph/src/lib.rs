//! The relation graph: questions about how entities connect, answered on a petgraph built from
//! the relation rows of the read model — now, or as of any instant (from the rows' validity
//! intervals).
//!
//! * [`graph`]: the graph and its algorithms (pure);
//! * [`service`]: answers with caching — moka in the process (L1) and a [`SharedCache`] shared by
//!   API replicas (L2; Redis, in `callboard-cache-redis`). Every cache key carries the read
//!   model's graph version, which the projector bumps with each batch that changes relation rows,
//!   so an answer never outlives the rows it came from. When the shared cache is unavailable the
//!   service answers from the database and the L1 cache.

pub mod graph;
pub mod service;

pub use graph::{Graph, Hop, Reached};
pub use service::{GraphError, GraphService, Question, Served, SharedCache};
