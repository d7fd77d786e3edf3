//! The two read models in SQL as stores: their generations and positions ([`Tables`]), loading
//! what a batch touches, and writing a batch's changes in one transaction with its positions.
//!
//! Every row but the catalog's entity rows is written by the statements built here
//! ([`Dialect::insert`]); the entity rows, which each database indexes its own way, by the
//! adapter ([`SqlDatabase::write_catalog`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use Arg::{Int, MaybeInt, MaybeText, Text};

use async_trait::async_trait;
use callboard_projection::{Batch, BatchPosition, Generation, ProjectionStore, StoreError};

use super::reader::{load_activity, load_catalog};
use super::{Arg, BOOKKEEPING, EntityWrites, Layout, Rows, SqlDatabase, Statement, TableRow, Tables};
use crate::activity::{ACTIVITY_COLUMNS, ActivityChanges, ActivityLoaded, ActivityRow, SubjectState};
use crate::catalog::{Changes, ENTITY_WRITE_COLUMNS, HistoryWrite, Loaded};
use crate::rows::{FacetDelta, LocationRow, RejectionRow};

/// The catalog's tables, from a database's own template
/// (`migrations/templates/<database>-generation.sql`) after the common bookkeeping. SQLite's
/// full-text index (`fts`) is among the tables to drop (PostgreSQL has none: a no-op). Checksums
/// compare the rows the fold writes; the filter keys and search text each database derives from
/// them are left out, so that both databases compare the same columns.
pub const fn catalog_layout(own: &'static str) -> Layout {
    Layout {
        name: "catalog",
        letter: 'g',
        templates: [BOOKKEEPING, own],
        tables: &[
            "entities",
            "fts",
            "history",
            "rejections",
            "facets",
            "locations",
            "positions",
            "meta",
        ],
        checked: &[
            ("entities", ENTITY_WRITE_COLUMNS, "entity_ref"),
            ("history", HistoryWrite::COLUMNS, "subject, sequence"),
            ("rejections", RejectionRow::COLUMNS, "subject"),
            ("facets", FacetDelta::COLUMNS, "key, value"),
            ("locations", LocationRow::COLUMNS, "key"),
        ],
    }
}

/// The catalog's read model in an SQL database.
#[derive(Debug, Clone)]
pub struct SqlCatalogStore {
    pub(super) tables: Tables,
    maintenance: Arc<Maintenance>,
}

impl SqlCatalogStore {
    /// The catalog of `layout` (the database's catalog templates) in `db`.
    pub fn new(db: Arc<dyn SqlDatabase>, layout: &'static Layout) -> Self {
        Self {
            tables: Tables::new(db, layout),
            maintenance: Arc::default(),
        }
    }
}

/// When to run the dialect's [maintenance](super::Dialect::maintenance) on the active
/// generation: after enough rows changed (a fifth of all written so far, at least
/// [`MAINTAIN_AFTER`]), once writes have paused for [`MAINTAIN_QUIET`] — a bulk load is not
/// slowed by vacuuming tables it is still filling — or at once after very many
/// ([`MAINTAIN_ANYWAY`]) so that a steady stream of writes still gets it.
#[derive(Debug, Default)]
struct Maintenance {
    /// Entity rows written or deleted since the last maintenance.
    since: AtomicU64,
    /// Entity rows written or deleted in all.
    total: AtomicU64,
    /// When the last batch was written.
    last_write: Mutex<Option<Instant>>,
    /// Whether the task that runs it is started.
    started: AtomicBool,
}

const MAINTAIN_AFTER: u64 = 1_000;
const MAINTAIN_QUIET: Duration = Duration::from_secs(2);
const MAINTAIN_ANYWAY: u64 = 200_000;

impl Maintenance {
    fn wrote(&self, rows: u64) {
        self.since.fetch_add(rows, Ordering::Relaxed);
        self.total.fetch_add(rows, Ordering::Relaxed);
        *self.last_write.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    fn due(&self) -> bool {
        let since = self.since.load(Ordering::Relaxed);
        let total = self.total.load(Ordering::Relaxed);
        if since < MAINTAIN_AFTER.max(total / 5) {
            return false;
        }
        let quiet = self
            .last_write
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none_or(|t| t.elapsed() >= MAINTAIN_QUIET);
        quiet || since >= MAINTAIN_ANYWAY
    }

    /// Starts the task (once per store), which ends when the store is dropped.
    fn start(self: &Arc<Self>, tables: &Tables) {
        // Checked on every batch: the cheap flag first.
        if self.started.load(Ordering::Relaxed)
            || tables.db().dialect().maintenance("").is_empty()
            || self.started.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let (state, tables) = (Arc::downgrade(self), tables.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Some(state) = state.upgrade() else { return };
                if !state.due() {
                    continue;
                }
                let since = state.since.swap(0, Ordering::Relaxed);
                let started = Instant::now();
                let result = async {
                    let (t, g) = tables.now().await?;
                    let p = t.prefix(g);
                    let statements = t
                        .db()
                        .dialect()
                        .maintenance(&p)
                        .into_iter()
                        .map(Statement::new)
                        .collect();
                    t.db().maintain(statements).await
                }
                .await;
                match result {
                    Ok(()) => tracing::debug!(
                        rows = since,
                        took_ms = started.elapsed().as_millis() as u64,
                        "read model maintained (vacuum, statistics)"
                    ),
                    Err(e) => {
                        // Try again later: the rows still count.
                        state.since.fetch_add(since, Ordering::Relaxed);
                        tracing::warn!(error = %e.chain(), "read model maintenance failed; will retry");
                    }
                }
            }
        });
    }
}

/// The activity feed's read model in an SQL database.
#[derive(Debug, Clone)]
pub struct SqlActivityStore {
    pub(super) tables: Tables,
}

impl SqlActivityStore {
    /// The activity feed in `db`.
    pub fn new(db: Arc<dyn SqlDatabase>) -> Self {
        Self {
            tables: Tables::new(db, &crate::activity::LAYOUT),
        }
    }
}

callboard_projection::generations_through!(SqlCatalogStore, tables);
callboard_projection::generations_through!(SqlActivityStore, tables);

/// The statements of a batch's transaction.
struct Writes<'a> {
    tables: &'a Tables,
    generation: Generation,
    group: &'a str,
    positions: &'a [BatchPosition],
    p: String,
    statements: Vec<Statement>,
}

impl<'a> Writes<'a> {
    /// The statements of `batch`, and its changes to write.
    fn new<C>(tables: &'a Tables, batch: Batch<'a, C>) -> (Self, C) {
        let writes = Self {
            tables,
            generation: batch.generation,
            group: batch.group,
            positions: batch.positions,
            p: tables.prefix(batch.generation),
            statements: tables
                .db()
                .dialect()
                .relaxed_commit()
                .map(Statement::new)
                .into_iter()
                .collect(),
        };
        (writes, batch.changes)
    }

    /// Inserts rows into a table of the generation, each statement ending with `tail` (in which
    /// `{p}` is the prefix).
    fn insert<T: TableRow>(&mut self, table: &str, rows: Vec<T>, tail: &str) {
        if rows.is_empty() {
            return;
        }
        let statements = self.tables.db().dialect().insert(
            &format!("{}{table}", self.p),
            Rows::of(rows),
            &tail.replace("{p}", &self.p),
        );
        self.statements.extend(statements);
    }

    /// Deletes the rows of a table of the generation whose `column` is one of `keys`.
    fn delete(&mut self, table: &str, column: &str, keys: &[String]) {
        if keys.is_empty() {
            return;
        }
        let mut statement = Statement::new(format!("delete from {}{table} where ", self.p));
        self.tables.db().dialect().in_list(column, keys, &mut statement);
        self.statements.push(statement);
    }

    /// A statement of the generation.
    fn push(&mut self, template: &str) {
        self.statements.push(Statement::new(template.replace("{p}", &self.p)));
    }

    /// With the positions the batch reaches: the prefix and the statements.
    fn finish(mut self) -> (String, Vec<Statement>) {
        let positions = self
            .tables
            .position_statements(self.generation, self.group, self.positions);
        self.statements.extend(positions);
        (self.p, self.statements)
    }
}

#[async_trait]
impl ProjectionStore<Loaded, Changes> for SqlCatalogStore {
    async fn load(&self, generation: Generation, subjects: &[String]) -> Result<Loaded, StoreError> {
        load_catalog(&self.tables, generation, subjects).await
    }

    async fn write(&self, batch: Batch<'_, Changes>) -> Result<(), StoreError> {
        let (mut writes, changes) = Writes::new(&self.tables, batch);
        writes.insert("history", changes.history, "on conflict (subject, sequence) do nothing");
        writes.delete("rejections", "subject", &changes.rejection_deletes);
        writes.insert(
            "rejections",
            changes.rejection_upserts,
            "on conflict (subject) do update set entity_ref = excluded.entity_ref, location = excluded.location,
             origin = excluded.origin, document_index = excluded.document_index, problems = excluded.problems,
             conflicts_with = excluded.conflicts_with, time = excluded.time, sequence = excluded.sequence",
        );
        let facets_changed = !changes.facet_deltas.is_empty();
        writes.insert(
            "facets",
            changes.facet_deltas,
            "on conflict (key, value) do update set count = {p}facets.count + excluded.count",
        );
        if facets_changed {
            writes.push("delete from {p}facets where count <= 0");
        }
        writes.delete("locations", "key", &changes.location_deletes);
        writes.insert(
            "locations",
            changes.location_upserts,
            "on conflict (key) do update set location_type = excluded.location_type, target = excluded.target,
             id = excluded.id, entity_ref = excluded.entity_ref, registered_at = excluded.registered_at",
        );
        if changes.relations_changed {
            writes.push("update {p}meta set value = value + 1 where key = 'graph_version'");
        }
        let (p, statements) = writes.finish();
        let entities = EntityWrites {
            upserts: changes.entity_upserts,
            deletes: changes.entity_deletes,
        };
        let rows = (entities.upserts.len() + entities.deletes.len()) as u64;
        self.tables.db().write_catalog(&p, statements, entities).await?;
        if rows > 0 {
            self.maintenance.wrote(rows);
            self.maintenance.start(&self.tables);
        }
        Ok(())
    }

    fn parallel_writes(&self) -> usize {
        self.tables.db().dialect().parallel_writes()
    }
}

#[async_trait]
impl ProjectionStore<ActivityLoaded, ActivityChanges> for SqlActivityStore {
    async fn load(&self, generation: Generation, subjects: &[String]) -> Result<ActivityLoaded, StoreError> {
        load_activity(&self.tables, generation, subjects).await
    }

    async fn write(&self, batch: Batch<'_, ActivityChanges>) -> Result<(), StoreError> {
        let (mut writes, changes) = Writes::new(&self.tables, batch);
        writes.insert("activity", changes.rows, "on conflict do nothing");
        writes.insert(
            "subjects",
            changes.subjects,
            "on conflict (subject, stream) do update set sequence = excluded.sequence, owner = excluded.owner
             where excluded.sequence > {p}subjects.sequence",
        );
        let (_, statements) = writes.finish();
        self.tables.db().execute(statements).await
    }
}

impl TableRow for HistoryWrite {
    const COLUMNS: &'static str =
        "subject, sequence, event_id, event_type, time, source, actor, causation, uid, entity, relations, diff, detail";

    fn values(self, out: &mut Vec<Arg>) {
        out.extend([
            Text(self.subject),
            Int(self.sequence),
            Text(self.event_id),
            Text(self.event_type),
        ]);
        out.extend([
            Text(self.time),
            Text(self.source),
            Text(self.actor),
            MaybeText(self.causation),
        ]);
        out.extend([MaybeText(self.uid), MaybeText(self.entity), MaybeText(self.relations)]);
        out.extend([MaybeText(self.diff), MaybeText(self.detail)]);
    }
}

impl TableRow for RejectionRow {
    const COLUMNS: &'static str =
        "subject, entity_ref, location, origin, document_index, problems, conflicts_with, time, sequence";

    fn values(self, out: &mut Vec<Arg>) {
        out.extend([Text(self.subject), MaybeText(self.entity_ref), Text(self.location)]);
        out.extend([
            Text(self.origin),
            MaybeInt(self.document_index),
            Text(self.problems.to_string()),
        ]);
        out.extend([MaybeText(self.conflicts_with), Text(self.time), Int(self.sequence)]);
    }
}

impl TableRow for FacetDelta {
    const COLUMNS: &'static str = "key, value, count";

    fn values(self, out: &mut Vec<Arg>) {
        out.extend([Text(self.key), Text(self.value), Int(self.delta)]);
    }
}

impl TableRow for LocationRow {
    const COLUMNS: &'static str = "key, location_type, target, id, entity_ref, registered_at";

    fn values(self, out: &mut Vec<Arg>) {
        out.extend([Text(self.key), Text(self.location_type), Text(self.target)]);
        out.extend([Text(self.id), Text(self.entity_ref), Text(self.registered_at)]);
    }
}

impl TableRow for ActivityRow {
    const COLUMNS: &'static str = ACTIVITY_COLUMNS;

    fn values(self, out: &mut Vec<Arg>) {
        out.extend([
            Text(self.time),
            Text(self.stream),
            Text(self.subject),
            Int(self.sequence),
        ]);
        out.extend([
            Text(self.event_id),
            Text(self.event_type),
            Text(self.actor),
            Text(self.source),
        ]);
        out.extend([
            MaybeText(self.entity_ref),
            MaybeText(self.owner),
            MaybeText(self.causation),
        ]);
    }
}

impl TableRow for ((String, String), SubjectState) {
    const COLUMNS: &'static str = "stream, subject, sequence, owner";

    fn values(self, out: &mut Vec<Arg>) {
        let ((stream, subject), state) = self;
        out.extend([Text(stream), Text(subject), Int(state.sequence), MaybeText(state.owner)]);
    }
}
