//! The projection runtime: everything about turning the log into read models that is not one
//! read model's fold.
//!
//! * [`projection`]: the [`Projection`] trait a read model implements — its topics and its fold
//!   (pure) — and the [`ProjectionStore`] its adapters implement: load the rows a batch touches,
//!   write the changes and the positions they reach in one transaction; and the events as the
//!   runtime hands them over ([`StoredEvent`]).
//! * [`run`]: the consume–fold–write loop, with positions stored next to the rows (the log's group
//!   commits are only a resume hint), following a replay's switch to a new generation;
//!   [`replay`]: rebuild into a fresh generation while the active one serves, then switch;
//!   [`lag`] and [`caught_up`]: how far behind a group is.
//! * [`tables`]: the ports every projection's store implements — [`Positions`] (what readers may
//!   know) and [`Generations`] (what projectors and replays manage).
//! * [`progress`]: the one mechanism that waits for a group to reach given log positions.
//! * [`precedence`]: which projection goes first when several run in one process.
//!
//! Architecture invariant: no database or broker crate here; a projection's store is a port its
//! adapters implement. Two projections run on it: the catalog and the activity feed
//! (`callboard-readmodel`).

mod pipeline;
pub mod precedence;
pub mod progress;
pub mod projection;
mod runner;
pub mod tables;

#[doc(hidden)]
pub use async_trait::async_trait as __async_trait;
pub use pipeline::{Pipeline, Written};
pub use precedence::Precedence;
pub use progress::{Progress, Target};
pub use projection::{
    Batch, BatchPosition, Folded, Projection, ProjectionStore, StoredEvent, batch_positions, subjects,
};
pub use runner::{Lag, ProjectorConfig, ProjectorError, caught_up, default_group, lag, projector_group, replay, run};
pub use tables::{BoxError, Generation, Generations, Positions, StoreError, template_statements};
