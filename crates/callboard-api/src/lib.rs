//! The GraphQL API: the schema ([`schema`]), the change feed behind subscriptions ([`feed`]) and
//! the HTTP routes ([`http`]) that `callboard serve` mounts.
//!
//! Architecture invariant: resolvers reach the catalog only through the ports
//! (`CatalogReader`, `GraphService`, `CommandClient`); every request passes the limits here
//! (depth, complexity, page size, body size, timeout) before any resolver runs, and the acting
//! user is resolved in one place ([`Actor`]), where permissions will be enforced.

pub mod cache;
pub mod cursor;
pub mod entity;
pub mod feed;
pub mod http;
pub mod schema;

use std::time::Duration;

use callboard_events::types::PositionRecord;
use callboard_readmodel::store::ReadStore;

pub use schema::{CatalogSchema, Services, build, sdl};

/// Safety limits, all configurable.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Maximum query depth.
    pub depth: usize,
    /// Maximum query complexity (each field costs 1; lists multiply by their page size).
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
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            depth: 16,
            complexity: 5_000,
            directives: 8,
            default_page: 50,
            max_page: 500,
            graph_depth: 10,
            body_bytes: 1 << 20,
            timeout: Duration::from_secs(30),
            introspection: true,
            subscriptions_per_connection: 100,
        }
    }
}

/// The subscriptions one WebSocket connection holds, against its limit.
#[derive(Debug, Clone)]
pub struct ConnectionBudget {
    held: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    max: usize,
}

/// One subscription's place in its connection's budget, given back when the stream is dropped.
#[derive(Debug)]
pub struct BudgetSlot(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for BudgetSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
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
        use std::sync::atomic::Ordering;
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

/// The acting user of a request (`user:default/guest` until sign-in exists).
#[derive(Debug, Clone)]
pub struct Actor(pub String);

/// Waits until the projectors of `group` have applied every position; false on timeout.
pub async fn wait_projected(
    store: &dyn ReadStore,
    group: &str,
    positions: &[PositionRecord],
    timeout: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut done = true;
        if let Ok(generation) = store.active().await {
            for p in positions {
                match store.position(generation, group, &p.topic, p.partition).await {
                    Ok(Some(applied)) if applied >= p.offset => {}
                    _ => {
                        done = false;
                        break;
                    }
                }
            }
        } else {
            done = false;
        }
        if done {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
