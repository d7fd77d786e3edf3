//! The SQL both databases share, written once: statements built here with `?` placeholders and
//! run through an adapter's [`SqlDatabase`] (SQLite or PostgreSQL, on sqlx), which binds the
//! arguments and hands rows back to be read by column name ([`Columns`]). What the two databases
//! do differently — list parameters, filters (an FTS5 index against GIN-indexed arrays), finding
//! each subject's latest version, building indexes — is a [`Dialect`].
//!
//! * [`tables`]: a projection's generations, positions and checksums;
//! * [`reader`]: the catalog's read port ([`crate::store::CatalogReader`]), the activity feed's
//!   ([`crate::activity::ActivityReader`]), and loading what a batch touches;
//! * [`store`]: the two read models as stores ([`SqlCatalogStore`], [`SqlActivityStore`]) and
//!   writing a batch's rows ([`Dialect::insert`]: many rows per statement in SQLite, one array
//!   per column in PostgreSQL).
//!
//! What stays in the adapters is what is worth doing differently: connecting, binding, and
//! writing the catalog's entity rows with their filter keys and search text
//! ([`SqlDatabase::write_catalog`]: an FTS5 index keyed by row id against GIN-indexed columns).
//! The adapters' sqlx glue is [`sqlx_database!`](crate::sqlx_database), written once.

mod glue;
pub mod reader;
pub mod store;
pub mod tables;

use async_trait::async_trait;

use crate::filter::Resolved;
use crate::rows::Columns;
use crate::search::{self, KeyPlan};
use crate::store::StoreError;

pub use store::{SqlActivityStore, SqlCatalogStore};

/// Whether a database error code means "try again later" rather than "this statement is wrong":
/// PostgreSQL's connection exceptions (class 08), an administrator's shutdown or a server
/// starting up or going down (57P01–57P03), too many connections (53300), serialization
/// failures and deadlocks (40001, 40P01); SQLite's busy and locked (5, 6).
#[doc(hidden)]
pub fn transient_code(code: &str) -> bool {
    code.starts_with("08")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01" | "5" | "6"
        )
}
pub use tables::{BOOKKEEPING, Layout, Tables};

#[doc(hidden)]
pub use async_trait::async_trait as __async_trait;

/// A value bound to a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// Text.
    Text(String),
    /// Text or null.
    MaybeText(Option<String>),
    /// An integer.
    Int(i64),
    /// An integer or null.
    MaybeInt(Option<i64>),
    /// A list of texts (PostgreSQL's `text[]`).
    Texts(Vec<String>),
    /// A list of integers (PostgreSQL's `bigint[]`).
    Ints(Vec<i64>),
    /// A column of texts, some null (PostgreSQL's `text[]`, for `unnest`).
    TextColumn(Vec<Option<String>>),
    /// A column of integers, some null (PostgreSQL's `bigint[]`, for `unnest`).
    IntColumn(Vec<Option<i64>>),
}

/// Rows for one table: the columns, and each row's values in their order, row after row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    /// The columns, separated by commas.
    pub columns: &'static str,
    /// The values, one per column a row.
    pub values: Vec<Arg>,
}

impl Rows {
    /// Rows as written.
    pub fn of<T: TableRow>(rows: impl IntoIterator<Item = T>) -> Self {
        let mut values = Vec::new();
        for row in rows {
            row.values(&mut values);
        }
        Self {
            columns: T::COLUMNS,
            values,
        }
    }

    /// How many columns a row has.
    pub fn width(&self) -> usize {
        self.columns.split(',').count()
    }
}

/// A row as its table stores it.
pub trait TableRow {
    /// The columns written, separated by commas.
    const COLUMNS: &'static str;

    /// Appends the row's values, in the order of [`Self::COLUMNS`], moved (a bound `String` is
    /// not copied again).
    fn values(self, out: &mut Vec<Arg>);
}

/// A statement: SQL text with `?` placeholders, and the arguments in their order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Statement {
    /// The SQL text. Only generation prefixes (a letter and a number) are ever formatted into it;
    /// every value is an argument.
    pub text: String,
    /// The arguments.
    pub args: Vec<Arg>,
    /// Prepared for this one execution and not kept in the connection's statement cache: a
    /// multi-row insert's text changes with its row count, and each cached one held a program of
    /// thousands of instructions (SQLite: tens of MiB per connection at 100,000 entities).
    pub one_off: bool,
}

impl Statement {
    /// A statement from SQL text.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            args: Vec::new(),
            one_off: false,
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

    /// Runs maintenance statements, each on its own outside any transaction (`vacuum` cannot run
    /// inside one).
    async fn maintain(&self, statements: Vec<Statement>) -> Result<(), StoreError>;

    /// Writes a catalog batch in one transaction: `statements` (every row the databases write
    /// alike, and the positions), then the entity rows of the generation prefixed `p`, which
    /// each database indexes its own way.
    async fn write_catalog(
        &self,
        p: &str,
        statements: Vec<Statement>,
        entities: EntityWrites,
    ) -> Result<(), StoreError>;
}

/// The entity rows a catalog batch writes.
#[derive(Debug, Clone, Default)]
pub struct EntityWrites {
    /// Rows to insert or replace.
    pub upserts: Vec<crate::catalog::EntityWrite>,
    /// Refs of rows to delete.
    pub deletes: Vec<String>,
}

/// Appends the condition of a resolved filter on entities `e` of the generation prefixed `p`.
pub fn filter(dialect: &dyn Dialect, filter: &Resolved, p: &str, out: &mut Statement) {
    match filter {
        Resolved::All(items) | Resolved::Any(items) => {
            let all = matches!(filter, Resolved::All(_));
            if items.is_empty() {
                out.push(if all { "1 = 1" } else { "1 = 0" });
                return;
            }
            out.push("(");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(if all { " and " } else { " or " });
                }
                self::filter(dialect, item, p, out);
            }
            out.push(")");
        }
        Resolved::Not(inner) => {
            out.push("not (");
            self::filter(dialect, inner, p, out);
            out.push(")");
        }
        Resolved::Refs(refs) => dialect.in_list("e.entity_ref", refs, out),
        Resolved::Field { key, values } => match search::plan(key, values) {
            KeyPlan::Always => {
                out.push("1 = 1");
            }
            KeyPlan::Column(column, values) => dialect.in_list(&format!("e.{column}"), &values, out),
            KeyPlan::Hashes(hashes) => dialect.keys(hashes, p, out),
        },
    }
}

/// What the two databases do differently.
pub trait Dialect: Send + Sync + std::fmt::Debug {
    /// Statements inserting `rows` into `table`, each followed by `tail` (an `on conflict`
    /// clause).
    fn insert(&self, table: &str, rows: Rows, tail: &str) -> Vec<Statement>;

    /// What a table's definition ends with in templates where they write `{without rowid}`
    /// (SQLite: a table clustered on its primary key; PostgreSQL: nothing).
    fn without_rowid(&self) -> &'static str;

    /// Runs first in a batch's transaction: what makes its commit cheaper (PostgreSQL: not
    /// waiting for the WAL flush).
    fn relaxed_commit(&self) -> Option<&'static str>;

    /// How many catalog batches to write at once while a generation is filled (see
    /// `ProjectionStore::parallel_writes`).
    fn parallel_writes(&self) -> usize;

    /// Appends `column in <items>`. One item is written `column = ?`: the planners then walk an
    /// index on (column, entity_ref) in order for a page of one kind, where a list (whose length
    /// they cannot see) made SQLite scan the ref index and look every row up (a page of
    /// components, uncached, 100,000 entities: 70 ms against 1.2 ms).
    fn in_list(&self, column: &str, items: &[String], out: &mut Statement) {
        match items {
            [item] => {
                out.push(column).push(" = ").text(item.clone());
            }
            _ => self.in_set(column, items, out),
        }
    }

    /// Appends `column in <items>`, the items as one argument, as the database spells it.
    fn in_set(&self, column: &str, items: &[String], out: &mut Statement);

    /// Appends the condition "has any of these filter keys" (by hash, see
    /// [`search::plan`](crate::search::plan)) on entities `e` of the generation prefixed `p`.
    fn keys(&self, hashes: Vec<u64>, p: &str, out: &mut Statement);

    /// Appends the condition of a full-text search on entities `e`: every one of `terms` (at
    /// least one, see [`search::terms`]) as a prefix of a word of the entity's text.
    fn search(&self, terms: &[&str], p: &str, out: &mut Statement);

    /// The `(entity_ref, relations)` of entities named in `refs` or holding a relation row with an
    /// end in `refs` (found through the filter key each relation end contributes).
    fn relation_candidates(&self, p: &str, refs: &[String]) -> Vec<Statement>;

    /// Each subject's latest version (upsert or deletion) at or before `time` (the first
    /// argument), with `columns` of its history row, for subjects after the second argument, in
    /// order.
    fn latest_versions(&self, p: &str, columns: &str) -> String;

    /// Runs first in the transaction that creates a generation's tables (PostgreSQL: an advisory
    /// lock, so that concurrent projector processes do not race).
    fn schema_lock(&self) -> Option<&'static str>;

    /// How many of a generation's readers' indexes to build at once when it is activated, each in
    /// its own transaction (PostgreSQL: 2, a backend each); 1 builds them with the switch, in one
    /// transaction.
    fn parallel_index_builds(&self) -> usize;

    /// Runs before each index build of a parallel activation (PostgreSQL: more sort memory).
    fn index_build_setup(&self) -> Option<&'static str>;

    /// What keeps a generation's catalog tables quick to read after many rows changed, in the
    /// generation prefixed `p` (PostgreSQL: vacuum, which also merges the GIN indexes' pending
    /// lists, and statistics for the planner; run by the projector when writes pause, since
    /// servers may run without autovacuum).
    fn maintenance(&self, p: &str) -> Vec<String>;

    /// How to read an entity row's `facet_values` (a JSON array of texts) as rows: what to join
    /// to entities `e`, and the expression of each value.
    fn facet_values(&self) -> (&'static str, &'static str);

    /// The scalar function of the greater of two values (`max` in SQLite, `greatest` in
    /// PostgreSQL).
    fn greatest(&self) -> &'static str;
}
