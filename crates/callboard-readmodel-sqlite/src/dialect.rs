//! What SQLite does its own way: lists as JSON read with `json_each`, filter keys and text in one
//! FTS5 index, each subject's latest version through a bare column of an aggregate.

use callboard_readmodel::filter::Resolved;
use callboard_readmodel::search::{self, KeyPlan};
use callboard_readmodel::sql::{Arg, Dialect, Statement};

/// SQLite's dialect.
#[derive(Debug)]
pub(crate) struct Sqlite;

/// The dialect, shared.
pub(crate) static SQLITE: Sqlite = Sqlite;

/// A list argument: JSON text, read with `json_each`.
fn json(items: &[String]) -> Arg {
    Arg::Text(serde_json::to_string(items).unwrap_or_else(|_| "[]".into()))
}

/// An FTS5 query matching every term as a prefix.
fn fts_query(text: &str) -> Option<String> {
    let terms: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(|t| format!("\"{}\"*", t.replace('"', "")))
        .collect();
    (!terms.is_empty()).then(|| format!("text : ({})", terms.join(" AND ")))
}

/// `e.id in (<rows of the FTS5 index matching>)`.
fn fts(p: &str, query: String, out: &mut Statement) {
    out.push(&format!("e.id in (select rowid from {p}fts where {p}fts match "));
    out.text(query).push(")");
}

impl Dialect for Sqlite {
    fn in_list(&self, column: &str, items: &[String], out: &mut Statement) {
        out.push(column).push(" in (select value from json_each(");
        out.bind(json(items)).push("))");
    }

    fn filter(&self, filter: &Resolved, p: &str, out: &mut Statement) {
        match filter {
            Resolved::All(items) | Resolved::Any(items) if items.is_empty() => {
                out.push(if matches!(filter, Resolved::All(_)) {
                    "1 = 1"
                } else {
                    "1 = 0"
                });
            }
            Resolved::All(items) | Resolved::Any(items) => {
                let joiner = if matches!(filter, Resolved::All(_)) {
                    " and "
                } else {
                    " or "
                };
                out.push("(");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(joiner);
                    }
                    self.filter(item, p, out);
                }
                out.push(")");
            }
            Resolved::Not(inner) => {
                out.push("not (");
                self.filter(inner, p, out);
                out.push(")");
            }
            Resolved::Refs(refs) => self.in_list("e.entity_ref", refs, out),
            Resolved::Field { key, values } => match search::plan(key, values) {
                KeyPlan::Always => {
                    out.push("1 = 1");
                }
                KeyPlan::Column(column, values) => self.in_list(&format!("e.{column}"), &values, out),
                KeyPlan::Hashes(hashes) => {
                    let words: Vec<String> = hashes.into_iter().map(search::hash_token).collect();
                    fts(p, format!("keys : ({})", words.join(" OR ")), out);
                }
            },
        }
    }

    fn search(&self, text: &str, p: &str, out: &mut Statement) {
        if let Some(query) = fts_query(text) {
            out.push(" and ");
            fts(p, query, out);
        }
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

    fn latest_versions(&self, p: &str, columns: &str, after: Option<&str>, limit: Option<usize>) -> String {
        // SQLite takes the bare columns of an aggregate query from the row holding the max.
        let mut text = format!(
            "select {columns}, max(sequence) from {p}history where time <= ?
             and event_type in ('entity.upserted.v1', 'entity.deleted.v1')"
        );
        if after.is_some() {
            text.push_str(" and subject > ?");
        }
        text.push_str(" group by subject order by subject");
        if limit.is_some() {
            text.push_str(" limit ?");
        }
        text
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

    fn greatest(&self) -> &'static str {
        "max"
    }
}
