//! What SQLite does its own way: lists as JSON read with `json_each`, filter keys and text in one
//! FTS5 index, each subject's latest version through a bare column of an aggregate.

use callboard_readmodel::search;
use callboard_readmodel::sql::{Arg, Dialect, Rows, Statement};

/// SQLite's dialect.
#[derive(Debug)]
pub(crate) struct Sqlite;

/// The dialect, shared.
pub(crate) static SQLITE: Sqlite = Sqlite;

/// `e.id in (<rows of the FTS5 index matching>)`.
fn fts(p: &str, query: String, out: &mut Statement) {
    out.push(&format!("e.id in (select rowid from {p}fts where {p}fts match "));
    out.text(query).push(")");
}

impl Dialect for Sqlite {
    fn insert(&self, table: &str, rows: Rows, tail: &str) -> Vec<Statement> {
        // Many rows a statement, under SQLite's limit of 32,766 parameters.
        let width = rows.width();
        let per_statement = (32_000 / width).min(5_000);
        let row = format!("({})", vec!["?"; width].join(", "));
        let mut out = Vec::new();
        let mut values = rows.values.into_iter().peekable();
        while values.peek().is_some() {
            let mut statement = Statement::new(format!("insert into {table} ({}) values ", rows.columns));
            statement.one_off = true;
            statement.args.extend(values.by_ref().take(per_statement * width));
            let count = statement.args.len() / width;
            statement.text.reserve(count * (row.len() + 2) + tail.len() + 1);
            for i in 0..count {
                statement.push(if i > 0 { ", " } else { "" }).push(&row);
            }
            statement.push(" ").push(tail);
            out.push(statement);
        }
        out
    }

    fn without_rowid(&self) -> &'static str {
        "without rowid"
    }

    fn relaxed_commit(&self) -> Option<&'static str> {
        // `synchronous = NORMAL` for the whole file already (see `SqliteDb::open`).
        None
    }

    fn parallel_writes(&self) -> usize {
        // One writer per file.
        1
    }

    fn in_set(&self, column: &str, items: &[String], out: &mut Statement) {
        out.push(column).push(" in (select value from json_each(");
        // A list binds as JSON text (see `query`).
        out.bind(Arg::Texts(items.to_vec())).push("))");
    }

    fn keys(&self, hashes: Vec<u64>, p: &str, out: &mut Statement) {
        let words: Vec<String> = hashes.into_iter().map(search::hash_token).collect();
        fts(p, format!("keys : ({})", words.join(" OR ")), out);
    }

    fn search(&self, terms: &[&str], p: &str, out: &mut Statement) {
        // An FTS5 query matching every term as a prefix, in the text column.
        let query: Vec<String> = terms.iter().map(|t| format!("\"{}\"*", t.replace('"', ""))).collect();
        fts(p, format!("text : ({})", query.join(" AND ")), out);
    }

    fn relation_candidates(&self, p: &str, refs: &[String]) -> Vec<Statement> {
        let mut out = Vec::new();
        for chunk in refs.chunks(500) {
            let mut own = Statement::new(format!("select entity_ref, relations from {p}entities where "));
            self.in_list("entity_ref", chunk, &mut own);
            let words: Vec<String> = chunk
                .iter()
                .map(|r| search::key_token(&search::endpoint_key(r)))
                .collect();
            let mut others = Statement::new(format!("select entity_ref, relations from {p}entities e where "));
            fts(p, format!("keys : ({})", words.join(" OR ")), &mut others);
            out.extend([own, others]);
        }
        out
    }

    fn latest_versions(&self, p: &str, columns: &str) -> String {
        // SQLite takes the bare columns of an aggregate query from the row holding the max.
        format!(
            "select {columns}, max(sequence) from {p}history where time <= ? and subject > ?
             and event_type in ('entity.upserted.v1', 'entity.deleted.v1') group by subject order by subject"
        )
    }

    fn schema_lock(&self) -> Option<&'static str> {
        // One writer per file: `begin immediate` serialises schema changes already.
        None
    }

    fn parallel_index_builds(&self) -> usize {
        1
    }

    fn index_build_setup(&self) -> Option<&'static str> {
        None
    }

    fn maintenance(&self, p: &str) -> Vec<String> {
        // Rows written a batch at a time leave the full-text index (which also holds the filter
        // keys) in many segments, each searched on every query until merged; and the planner
        // picks between the index and the row scan by statistics it otherwise lacks.
        vec![
            format!("insert into {p}fts ({p}fts) values ('optimize')"),
            format!("analyze {p}entities"),
        ]
    }

    fn facet_values(&self) -> (&'static str, &'static str) {
        (", json_each(e.facet_values) as f", "f.value")
    }

    fn greatest(&self) -> &'static str {
        "max"
    }
}
