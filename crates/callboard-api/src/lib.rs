//! The GraphQL transport: the schema ([`schema`], [`entity`]) and the HTTP routes ([`http`]) that
//! `callboard serve` mounts, over the service layer (`callboard-catalog`).
//!
//! Architecture invariant: this is a thin adapter. Resolvers translate arguments into calls on
//! the [`Catalog`] service and its answers into GraphQL types, on behalf of the request's
//! [`Principal`] (resolved once, in [`http`]); they hold no store, log, cache or command handle,
//! and this crate depends on no adapter. Every request passes the limits here (depth,
//! complexity, page size, body size, timeout) before any resolver runs.

pub mod cursor;
pub mod entity;
mod error;
pub mod http;
pub mod schema;
mod socket;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub use callboard_catalog::{Catalog, Principal};
pub use http::{PrincipalResolver, anonymous};
pub use schema::{CatalogSchema, build, sdl};

/// Safety limits, all configurable.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Maximum query depth.
    pub depth: usize,
    /// Maximum query complexity: each field costs 1, and a list field its page size (`first`,
    /// or its default) times its elements' cost, so nested lists multiply.
    pub complexity: usize,
    /// Maximum directives per field.
    pub directives: usize,
    /// Default page size of lists.
    pub default_page: usize,
    /// Maximum page size of lists.
    pub max_page: usize,
    /// Maximum graph walk depth.
    pub graph_depth: usize,
    /// Maximum request body, in bytes.
    pub body_bytes: usize,
    /// Time limit of one request.
    pub timeout: Duration,
    /// Whether introspection (and so the IDE's schema explorer) is on.
    pub introspection: bool,
    /// Subscriptions one WebSocket connection may hold.
    pub subscriptions_per_connection: usize,
    /// WebSocket connections one server holds at once.
    pub websockets: usize,
    /// How long a new WebSocket may take to send `connection_init` before it is closed.
    pub connection_init: Duration,
    /// Most operations in one batched POST; a longer batch is refused before any runs.
    pub batch: usize,
    /// Origins (`scheme://host[:port]`) whose pages may open a WebSocket, besides the server's
    /// own origin. Clients that send no `Origin` (tools, other servers) are not browsers' pages
    /// and are let in.
    pub allowed_origins: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            depth: 16,
            // A page of 100 entities with three relation lists each (about 31,000) passes; 100
            // entities × 100 relations × 100 relations (a million) does not.
            complexity: 50_000,
            directives: 8,
            default_page: schema::DEFAULT_PAGE as usize,
            max_page: 500,
            graph_depth: 10,
            body_bytes: 1 << 20,
            timeout: Duration::from_secs(30),
            introspection: true,
            subscriptions_per_connection: 100,
            websockets: 1_000,
            connection_init: Duration::from_secs(10),
            batch: 10,
            allowed_origins: Vec::new(),
        }
    }
}

/// The subscriptions one WebSocket connection holds, against its limit.
#[derive(Debug, Clone)]
pub struct ConnectionBudget {
    held: Arc<AtomicUsize>,
    max: usize,
}

/// One subscription's place in its connection's budget, given back when the stream is dropped.
#[derive(Debug)]
pub struct BudgetSlot(Arc<AtomicUsize>);

impl Drop for BudgetSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ConnectionBudget {
    /// A budget of `max` subscriptions.
    pub fn new(max: usize) -> Self {
        Self {
            held: Default::default(),
            max,
        }
    }

    /// Takes a slot, or `None` when the connection holds `max` subscriptions already.
    pub fn acquire(&self) -> Option<BudgetSlot> {
        let mut current = self.held.load(Ordering::SeqCst);
        loop {
            if current >= self.max {
                return None;
            }
            match self
                .held
                .compare_exchange(current, current + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return Some(BudgetSlot(self.held.clone())),
                Err(actual) => current = actual,
            }
        }
    }
}
