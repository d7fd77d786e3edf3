//! A projection's generations in SQL, for both databases: the registry row naming the active
//! one (`read_model`), each generation's tables (from its templates, prefixed `<letter><n>_`),
//! the layout they were built with, and the positions stored with its rows.

use std::collections::BTreeMap;
use std::sync::Arc;

use callboard_projection::{BatchPosition, Generation, StoreError, template_statements};
use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::{Arg, Dialect, SqlDatabase, Statement};
use crate::rows::Columns;
use crate::search;

/// What every projection's generation has: its positions and its meta (`layout`, …).
pub const BOOKKEEPING: &str = include_str!("../../../../migrations/templates/common-bookkeeping.sql");

/// A projection's tables: its registry name, its prefix letter and its templates.
#[derive(Debug)]
pub struct Layout {
    /// The registry row (`read_model.name`).
    pub name: &'static str,
    /// The first letter of its tables' prefix.
    pub letter: char,
    /// The templates of one generation's tables, in order: the bookkeeping every projection has
    /// (`positions`, `meta`), then its own.
    pub templates: [&'static str; 2],
    /// Every table of a generation, for dropping one.
    pub tables: &'static [&'static str],
    /// Tables compared by checksums: (table, columns, ordering).
    pub checked: &'static [(&'static str, &'static str, &'static str)],
}

impl Layout {
    /// The prefix of a generation's tables.
    pub fn prefix(&self, generation: Generation) -> String {
        format!("{}{}_", self.letter, generation.0)
    }

    /// A statement's text for a generation: the prefix is a letter and an integer we format,
    /// never input.
    pub fn sql(&self, generation: Generation, template: &str) -> String {
        template.replace("{p}", &self.prefix(generation))
    }

    /// The identity of the templates, kept in each generation's `meta`.
    fn hash(&self) -> i64 {
        search::key_hash64(&self.templates.concat())
    }

    /// Every statement of the templates, in `dialect`: those that make the tables (and the
    /// indexes writers need), and the indexes only readers need.
    fn statements(&self, dialect: &dyn Dialect) -> (Vec<String>, Vec<String>) {
        let (mut tables, mut indexes) = (Vec::new(), Vec::new());
        for template in self.templates {
            let (t, i) = template_statements(&template.replace("{without rowid}", dialect.without_rowid()));
            tables.extend(t);
            indexes.extend(i);
        }
        (tables, indexes)
    }
}

/// How long readers trust the active generation they last read before asking the registry
/// again. A switch made by this process is seen at once ([`Tables::activate`] records it); one
/// made by another process (a projector rebuilding the read model) is seen within this, which is
/// well inside the grace the projector gives readers before dropping the old generation.
pub const ACTIVE_TTL: std::time::Duration = std::time::Duration::from_millis(250);

/// One projection's generations in one database.
#[derive(Debug, Clone)]
pub struct Tables {
    db: Arc<dyn SqlDatabase>,
    layout: &'static Layout,
    /// The active generation and when it was read: every read asks which generation to read,
    /// and a round trip to the registry for each was a fifth of a first read's statements.
    active: Arc<std::sync::Mutex<Option<(Generation, std::time::Instant)>>>,
}

impl Tables {
    /// The generations of `layout` in `db`.
    pub fn new(db: Arc<dyn SqlDatabase>, layout: &'static Layout) -> Self {
        Self {
            db,
            layout,
            active: Arc::default(),
        }
    }

    /// The database.
    pub fn db(&self) -> &dyn SqlDatabase {
        self.db.as_ref()
    }

    /// The layout.
    pub fn layout(&self) -> &'static Layout {
        self.layout
    }

    /// The prefix of a generation's tables.
    pub fn prefix(&self, generation: Generation) -> String {
        self.layout.prefix(generation)
    }

    /// A statement for a generation.
    pub fn statement(&self, generation: Generation, template: &str) -> Statement {
        Statement::new(self.layout.sql(generation, template))
    }

    /// Creates a generation's tables if missing (and, with `readers`, the indexes only readers
    /// need); tells whether they have the current layout.
    async fn create_tables(&self, generation: Generation, readers: bool) -> Result<bool, StoreError> {
        let (tables, indexes) = self.layout.statements(self.db.dialect());
        let mut statements: Vec<Statement> = self
            .db
            .dialect()
            .schema_lock()
            .map(Statement::new)
            .into_iter()
            .collect();
        let (bookkeeping, own) = tables.split_at(template_statements(self.layout.templates[0]).0.len());
        statements.extend(bookkeeping.iter().map(|t| self.statement(generation, t)));
        // The layout the tables are built with, recorded only in a new generation (tables from
        // before layouts were recorded have none): a generation built from another version of
        // the templates is rebuilt rather than written with statements that no longer fit it.
        statements.push(
            self.statement(
                generation,
                "insert into {p}meta (key, value) select 'layout', ? where not exists (select 1 from {p}meta)",
            )
            .arg(Arg::Int(self.layout.hash())),
        );
        statements.extend(own.iter().map(|t| self.statement(generation, t)));
        if readers {
            statements.extend(indexes.iter().map(|t| self.statement(generation, t)));
        }
        self.db.execute(statements).await?;
        let built = self
            .db
            .fetch(self.statement(generation, "select value from {p}meta where key = 'layout'"))
            .await?;
        Ok(match built.first() {
            Some(row) => row.int("value")? == self.layout.hash(),
            None => false,
        })
    }

    /// The registry (migrated), the active generation's tables, and a fresh generation instead
    /// of one built with another layout (the projector fills it from the start of the log).
    pub async fn prepare(&self) -> Result<Generation, StoreError> {
        self.db.migrate().await?;
        let generation = self.active().await?;
        if self.create_tables(generation, true).await? {
            return Ok(generation);
        }
        tracing::warn!(
            projection = self.layout.name,
            generation = generation.0,
            "the read model was built with another table layout; rebuilding it from the log"
        );
        let fresh = self.create_generation().await?;
        self.activate(fresh).await?;
        self.drop_generation(generation).await?;
        Ok(fresh)
    }

    /// Runs a query, each row read by `read`.
    pub async fn read<T>(
        &self,
        statement: Statement,
        read: impl Fn(&dyn Columns) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.db
            .fetch(statement)
            .await?
            .iter()
            .map(|r| read(r.as_ref()))
            .collect()
    }

    /// Runs a query for a page of at most `limit` rows (asking for one more, appending the
    /// `limit`): the rows, and whether more follow.
    pub async fn page<T>(
        &self,
        mut statement: Statement,
        limit: usize,
        read: impl Fn(&dyn Columns) -> Result<T, StoreError>,
    ) -> Result<(Vec<T>, bool), StoreError> {
        statement.push(" limit ").int(limit as i64 + 1);
        let mut rows = self.read(statement, read).await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        Ok((rows, more))
    }

    /// These tables and the generation readers use now (as read at most [`ACTIVE_TTL`] ago).
    pub async fn now(&self) -> Result<(&Self, Generation), StoreError> {
        let known = *self.active.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((generation, read)) = known
            && read.elapsed() < ACTIVE_TTL
        {
            return Ok((self, generation));
        }
        Ok((self, self.active().await?))
    }

    fn remember(&self, generation: Generation) {
        *self.active.lock().unwrap_or_else(|e| e.into_inner()) = Some((generation, std::time::Instant::now()));
    }

    /// The generation readers use now, from the registry.
    pub async fn active(&self) -> Result<Generation, StoreError> {
        let started = std::time::Instant::now();
        let rows = self
            .db
            .fetch(
                Statement::new("select active from read_model where name = ?").arg(Arg::Text(self.layout.name.into())),
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::Other(format!("no registry row for {}", self.layout.name)))?;
        let generation = Generation(row.int("active")?);
        // Stamped with when the question was asked: an answer that took long is no fresher.
        *self.active.lock().unwrap_or_else(|e| e.into_inner()) = Some((generation, started));
        Ok(generation)
    }

    /// A new, empty generation without the readers' indexes.
    pub async fn create_generation(&self) -> Result<Generation, StoreError> {
        let rows = self
            .db
            .fetch(
                Statement::new("update read_model set next = next + 1 where name = ? returning next - 1 as created")
                    .arg(Arg::Text(self.layout.name.into())),
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::Other(format!("no registry row for {}", self.layout.name)))?;
        let generation = Generation(row.int("created")?);
        self.drop_generation(generation).await?;
        self.create_tables(generation, false).await?;
        Ok(generation)
    }

    /// Builds the readers' indexes of `generation`, then makes it the one readers use.
    pub async fn activate(&self, generation: Generation) -> Result<(), StoreError> {
        let indexes: Vec<Statement> = self
            .layout
            .statements(self.db.dialect())
            .1
            .iter()
            .map(|t| self.statement(generation, t))
            .collect();
        let switch = Statement::new("update read_model set active = ? where name = ?").arg(Arg::Int(generation.0));
        let switch = switch.arg(Arg::Text(self.layout.name.into()));
        let dialect = self.db.dialect();
        let parallel = dialect.parallel_index_builds();
        if parallel <= 1 {
            self.db.execute(indexes.into_iter().chain([switch]).collect()).await?;
            self.remember(generation);
            return Ok(());
        }
        // Each build on its own connection: one backend (one core) each, and builds of indexes
        // of one table do not block each other.
        let setup = dialect.index_build_setup();
        futures::stream::iter(indexes.into_iter().map(|index| async move {
            let started = std::time::Instant::now();
            let text = index.text.clone();
            self.db
                .execute(setup.map(Statement::new).into_iter().chain([index]).collect())
                .await?;
            tracing::debug!(statement = %text, took_ms = started.elapsed().as_millis() as u64, "readers' index built");
            Ok::<(), StoreError>(())
        }))
        .buffer_unordered(parallel)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<()>, StoreError>>()?;
        self.db.execute(vec![switch]).await?;
        self.remember(generation);
        Ok(())
    }

    /// Drops a generation's tables.
    pub async fn drop_generation(&self, generation: Generation) -> Result<(), StoreError> {
        let statements = self
            .layout
            .tables
            .iter()
            .map(|table| self.statement(generation, &format!("drop table if exists {{p}}{table}")))
            .collect();
        self.db.execute(statements).await
    }

    /// The last applied offset of a partition for `group`.
    pub async fn position(
        &self,
        generation: Generation,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, StoreError> {
        let mut statement = self.statement(generation, "select \"offset\" from {p}positions where grp = ");
        statement.text(group).push(" and topic = ").text(topic);
        statement.push(" and partition = ").int(i64::from(partition));
        let rows = self.db.fetch(statement).await?;
        rows.first().map(|row| row.int("offset")).transpose()
    }

    /// Every stored position and the time of its last event.
    pub async fn positions(
        &self,
        generation: Generation,
    ) -> Result<BTreeMap<(String, String, i32), (i64, String)>, StoreError> {
        let rows = self
            .db
            .fetch(self.statement(
                generation,
                "select grp, topic, partition, \"offset\", event_time from {p}positions",
            ))
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    (r.text("grp")?, r.text("topic")?, r.int("partition")? as i32),
                    (r.int("offset")?, r.text("event_time")?),
                ))
            })
            .collect()
    }

    /// The statements that store the positions a batch reached, for its transaction; positions
    /// only move forward.
    pub fn position_statements(
        &self,
        generation: Generation,
        group: &str,
        positions: &[BatchPosition],
    ) -> Vec<Statement> {
        let greatest = self.db.dialect().greatest();
        positions
            .iter()
            .map(|position| {
                let text = format!(
                    "insert into {{p}}positions (grp, topic, partition, \"offset\", event_time) values (?, ?, ?, ?, ?)
                     on conflict (grp, topic, partition) do update set \"offset\" = {greatest}({{p}}positions.\"offset\", excluded.\"offset\"),
                     event_time = case when excluded.event_time = '' or excluded.\"offset\" < {{p}}positions.\"offset\"
                       then {{p}}positions.event_time else excluded.event_time end"
                );
                let statement = self.statement(generation, &text);
                statement
                    .arg(Arg::Text(group.to_owned()))
                    .arg(Arg::Text(position.topic.clone()))
                    .arg(Arg::Int(i64::from(position.partition)))
                    .arg(Arg::Int(position.offset))
                    .arg(Arg::Text(position.time.clone().unwrap_or_default()))
            })
            .collect()
    }

    /// A checksum per table of a generation's projected rows (positions excluded).
    pub async fn checksums(&self, generation: Generation) -> Result<BTreeMap<String, String>, StoreError> {
        let mut out = BTreeMap::new();
        for (table, columns, order) in self.layout.checked {
            let statement = format!("select {columns} from {{p}}{table} order by {order}");
            let rows = self.db.fetch(self.statement(generation, &statement)).await?;
            let mut hasher = Sha256::new();
            for row in &rows {
                for i in 0..row.width() {
                    hasher.update(row.cell(i)?.as_deref().unwrap_or("\u{0}NULL").as_bytes());
                    hasher.update(b"\x01");
                }
                hasher.update(b"\n");
            }
            out.insert(
                (*table).to_owned(),
                format!("{} rows {}", rows.len(), hex::encode(hasher.finalize())),
            );
        }
        Ok(out)
    }
}
