//! Where a projection's rows live: numbered *generations* of its tables, one of them active, and
//! in each generation the log positions its rows reflect. A replay builds a new generation beside
//! the active one and switches readers over atomically ([`Generations::activate`]); the old one
//! keeps serving until then.

use std::collections::BTreeMap;

use async_trait::async_trait;

/// An error from a driver, kept whole so that logs and callers can see what really happened.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A generation of a projection's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Generation(pub i64);

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached right now; retrying later may work.
    #[error("the read model is unavailable")]
    Unavailable(#[source] BoxError),
    /// A query was invalid (a bad cursor, a bad filter).
    #[error("invalid query: {0}")]
    Invalid(String),
    /// The query would cost more than the read model allows (counting facets over too many
    /// documents): the caller must narrow it.
    #[error("{0}")]
    TooCostly(String),
    /// The database refused or failed a statement.
    #[error("the read model's database failed")]
    Database(#[source] BoxError),
    /// Anything else.
    #[error("read model error: {0}")]
    Other(String),
}

impl StoreError {
    /// The whole chain of causes on one line, for logs (`Display` shows only the outermost).
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            out.push_str(": ");
            out.push_str(&cause.to_string());
            source = cause.source();
        }
        out
    }
}

/// What readers may know of a projection's progress: the active generation and the positions
/// stored with its rows. Read-only: services that answer clients hold this, never the write side.
#[async_trait]
pub trait Positions: Send + Sync + std::fmt::Debug {
    /// The generation readers use now.
    async fn active(&self) -> Result<Generation, StoreError>;

    /// The last applied offset of a partition for `group`.
    async fn position(
        &self,
        generation: Generation,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, StoreError>;

    /// Every stored position and the time of its last event, for lag: (group, topic, partition)
    /// → (offset, event time).
    async fn positions(
        &self,
        generation: Generation,
    ) -> Result<BTreeMap<(String, String, i32), (i64, String)>, StoreError>;
}

/// Managing a projection's generations: what projectors and replays need besides writing rows.
#[async_trait]
pub trait Generations: Positions {
    /// Creates the registry tables if needed; returns the active generation (creating the
    /// first one when there is none, and a fresh one when the active one was built with another
    /// table layout: the projector then fills it from the start of the log).
    async fn prepare(&self) -> Result<Generation, StoreError>;

    /// Creates a new, empty generation (for a replay), without the indexes only readers need.
    async fn create_generation(&self) -> Result<Generation, StoreError>;

    /// Builds the readers' indexes of `generation` if it lacks them, then makes it the one
    /// readers use, atomically.
    async fn activate(&self, generation: Generation) -> Result<(), StoreError>;

    /// Drops a generation's tables.
    async fn drop_generation(&self, generation: Generation) -> Result<(), StoreError>;

    /// A checksum per table of a generation's projected rows (positions excluded), to compare
    /// read models built in different ways.
    async fn checksums(&self, generation: Generation) -> Result<BTreeMap<String, String>, StoreError>;
}

/// Implements [`Positions`] and [`Generations`] for an adapter's store by delegating every method
/// to one of its fields, which has inherent methods of the same names and signatures (an adapter
/// keeps one such helper per database and uses it for every projection it stores).
#[macro_export]
macro_rules! generations_through {
    ($store:ty, $field:tt) => {
        #[$crate::__async_trait]
        impl $crate::Positions for $store {
            async fn active(&self) -> Result<$crate::Generation, $crate::StoreError> {
                self.$field.active().await
            }

            async fn position(
                &self,
                generation: $crate::Generation,
                group: &str,
                topic: &str,
                partition: i32,
            ) -> Result<Option<i64>, $crate::StoreError> {
                self.$field.position(generation, group, topic, partition).await
            }

            async fn positions(
                &self,
                generation: $crate::Generation,
            ) -> Result<::std::collections::BTreeMap<(String, String, i32), (i64, String)>, $crate::StoreError> {
                self.$field.positions(generation).await
            }
        }

        #[$crate::__async_trait]
        impl $crate::Generations for $store {
            async fn prepare(&self) -> Result<$crate::Generation, $crate::StoreError> {
                self.$field.prepare().await
            }

            async fn create_generation(&self) -> Result<$crate::Generation, $crate::StoreError> {
                self.$field.create_generation().await
            }

            async fn activate(&self, generation: $crate::Generation) -> Result<(), $crate::StoreError> {
                self.$field.activate(generation).await
            }

            async fn drop_generation(&self, generation: $crate::Generation) -> Result<(), $crate::StoreError> {
                self.$field.drop_generation(generation).await
            }

            async fn checksums(
                &self,
                generation: $crate::Generation,
            ) -> Result<::std::collections::BTreeMap<String, String>, $crate::StoreError> {
                self.$field.checksums(generation).await
            }
        }
    };
}

/// The statements of a generation's table template (`migrations/templates`): those that make
/// its tables and the indexes writers need, then — after the `-- @readers` line — the indexes only
/// readers need, which a replay builds just before readers switch over
/// ([`Generations::activate`]). Comment lines are dropped; statements end at `;`.
pub fn template_statements(template: &str) -> (Vec<String>, Vec<String>) {
    match template.split_once("-- @readers") {
        // The marker's line is a comment: the readers' part starts after it.
        Some((writers, rest)) => (
            statements(writers),
            statements(rest.split_once('\n').map_or("", |(_, after)| after)),
        ),
        None => (statements(template), Vec::new()),
    }
}

fn statements(text: &str) -> Vec<String> {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    code.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_split_at_the_readers_marker() {
        let template = "-- a table\ncreate table t (a int);\ninsert into t values (1);\n-- @readers: only readers need these\n-- more words\ncreate index i on t (a);\n";
        let (tables, indexes) = template_statements(template);
        assert_eq!(tables, ["create table t (a int)", "insert into t values (1)"]);
        assert_eq!(indexes, ["create index i on t (a)"]);
        assert_eq!(template_statements("create table t (a int);").1, Vec::<String>::new());
    }

    #[test]
    fn chains_name_every_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let error = StoreError::Unavailable(Box::new(io));
        assert_eq!(error.to_string(), "the read model is unavailable");
        assert_eq!(error.chain(), "the read model is unavailable: connection refused");
        assert!(std::error::Error::source(&error).is_some(), "the cause is kept");
    }
}
