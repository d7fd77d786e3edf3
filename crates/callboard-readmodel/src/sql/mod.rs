//! The SQL both databases share, written once: statements built here with `?` placeholders and
//! run through an adapter's [`SqlDatabase`] (SQLite or PostgreSQL, on sqlx), which binds the
//! arguments and hands rows back to be read by column name ([`Columns`]). What the two databases
//! do differently — list parameters, filters (an FTS5 index against GIN-indexed arrays), finding
//! each subject's latest version, building indexes — is a [`Dialect`].
//!
//! * [`tables`]: a projection's generations, positions and checksums;
//! * [`reader`]: the catalog's read port ([`crate::store::CatalogReader`]), the activity feed's
//!   ([`crate::activity::ActivityReader`]), and loading what a batch touches.
//!
//! What stays in the adapters is what is worth doing differently: writing a batch's rows (many
//! rows per statement in SQLite, one array per column in PostgreSQL).

pub mod reader;
pub mod tables;

use async_trait::async_trait;

use crate::filter::Resolved;
use crate::rows::Columns;
use crate::store::StoreError;

pub use reader::{SqlActivity, SqlCatalog};
pub use tables::{Layout, Tables};

/// A value bound to a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// Text.
    Text(String),
    /// Text or null.
    MaybeText(Option<String>),
    /// An integer.
    Int(i64),
    /// A list of texts (PostgreSQL's `text[]`).
    Texts(Vec<String>),
    /// A list of integers (PostgreSQL's `bigint[]`).
    Ints(Vec<i64>),
}

/// A statement: SQL text with `?` placeholders, and the arguments in their order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Statement {
    /// The SQL text. Only generation prefixes (a letter and a number) are ever formatted into it;
    /// every value is an argument.
    pub text: String,
    /// The arguments.
    pub args: Vec<Arg>,
}

impl Statement {
    /// A statement from SQL text.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            args: Vec::new(),
        }
    }

    /// Appends SQL text.
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder for `arg`.
    pub fn bind(&mut self, arg: Arg) -> &mut Self {
        self.text.push('?');
        self.args.push(arg);
        self
    }

    /// Appends a text argument.
    pub fn text(&mut self, value: impl Into<String>) -> &mut Self {
        self.bind(Arg::Text(value.into()))
    }

    /// Appends an integer argument.
    pub fn int(&mut self, value: i64) -> &mut Self {
        self.bind(Arg::Int(value))
    }

    /// With an argument added (for statements whose placeholders are in their text already).
    #[must_use]
    pub fn arg(mut self, arg: Arg) -> Self {
        self.args.push(arg);
        self
    }
}

/// A row of any database, read by column name.
pub type Row = Box<dyn Columns + Send + Sync>;

/// A database the shared SQL runs on: an adapter's connection pool.
#[async_trait]
pub trait SqlDatabase: Send + Sync + std::fmt::Debug {
    /// How this database says what differs.
    fn dialect(&self) -> &dyn Dialect;

    /// Applies the registry's migrations (`migrations/<database>`), once per process is enough.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Runs a query; its rows.
    async fn fetch(&self, statement: Statement) -> Result<Vec<Row>, StoreError>;

    /// Runs statements in one transaction.
    async fn execute(&self, statements: Vec<Statement>) -> Result<(), StoreError>;
}

/// What the two databases do differently.
pub trait Dialect: Send + Sync + std::fmt::Debug {
    /// Appends `column in <items>`, the items as one argument.
    fn in_list(&self, column: &str, items: &[String], out: &mut Statement);

    /// Appends the condition of a resolved filter on entities `e` of the generation prefixed `p`.
    fn filter(&self, filter: &Resolved, p: &str, out: &mut Statement);

    /// Appends ` and <condition>` for a full-text search of `text` (nothing when it has no terms).
    fn search(&self, text: &str, p: &str, out: &mut Statement);

    /// The `(entity_ref, relations)` of entities named in `refs` or holding a relation row with an
    /// end in `refs` (found through the filter key each relation end contributes).
    fn relation_candidates(&self, p: &str, refs: &[String]) -> Vec<Statement>;

    /// Each subject's latest version (upsert or deletion) at or before `time` (the first
    /// argument), with `columns` of its history row; subjects after `after` in order, at most
    /// `limit`, when given.
    fn latest_versions(&self, p: &str, columns: &str, after: Option<&str>, limit: Option<usize>) -> String;

    /// Runs first in the transaction that creates a generation's tables (PostgreSQL: an advisory
    /// lock, so that concurrent projector processes do not race).
    fn schema_lock(&self) -> Option<&'static str>;

    /// How many of a generation's readers' indexes to build at once when it is activated, each in
    /// its own transaction (PostgreSQL: 2, a backend each); 1 builds them with the switch, in one
    /// transaction.
    fn parallel_index_builds(&self) -> usize;

    /// Runs before each index build of a parallel activation (PostgreSQL: more sort memory).
    fn index_build_setup(&self) -> Option<&'static str>;

    /// The scalar function of the greater of two values (`max` in SQLite, `greatest` in
    /// PostgreSQL).
    fn greatest(&self) -> &'static str;
}
