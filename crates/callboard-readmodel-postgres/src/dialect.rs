//! What PostgreSQL does its own way: lists as arrays (`= any`), filter keys in a GIN-indexed
//! `bigint[]` and text in a `tsvector`, each subject's latest version through `distinct on`,
//! indexes built two at a time.

use callboard_readmodel::filter::Resolved;
use callboard_readmodel::search::{self, KeyPlan};
use callboard_readmodel::sql::{Arg, Dialect, Statement};

/// PostgreSQL's dialect.
#[derive(Debug)]
pub(crate) struct Postgres;

/// The dialect, shared.
pub(crate) static POSTGRES: Postgres = Postgres;

/// A `tsquery` matching every term as a prefix (`pay & serv` → `pay:* & serv:*`).
fn ts_query(text: &str) -> Option<String> {
    let terms: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(|t| format!("{}:*", t.to_lowercase()))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" & "))
}

impl Dialect for Postgres {
    fn in_list(&self, column: &str, items: &[String], out: &mut Statement) {
        out.push(column).push(" = any(");
        out.bind(Arg::Texts(items.to_vec())).push(")");
    }

    // The prefix is not needed: filters read the entity row's own columns.
    fn filter(&self, filter: &Resolved, _p: &str, out: &mut Statement) {
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
                    self.filter(item, _p, out);
                }
                out.push(")");
            }
            Resolved::Not(inner) => {
                out.push("not (");
                self.filter(inner, _p, out);
                out.push(")");
            }
            Resolved::Refs(refs) => self.in_list("e.entity_ref", refs, out),
            Resolved::Field { key, values } => match search::plan(key, values) {
                KeyPlan::Always => {
                    out.push("true");
                }
                KeyPlan::Column(column, values) => self.in_list(&format!("e.{column}"), &values, out),
                KeyPlan::Hashes(hashes) => {
                    // GIN-indexed: `&&` (any of these keys) on the entity's filter keys.
                    out.push("e.search_keys && ");
                    out.bind(Arg::Ints(hashes.into_iter().map(|h| h as i64).collect()));
                }
            },
        }
    }

    fn search(&self, text: &str, _p: &str, out: &mut Statement) {
        if let Some(query) = ts_query(text) {
            out.push(" and e.search_vector @@ to_tsquery('simple', ")
                .text(query)
                .push(")");
        }
    }

    fn relation_candidates(&self, p: &str, refs: &[String]) -> Vec<Statement> {
        let ends: Vec<i64> = refs
            .iter()
            .map(|r| search::key_hash64(&search::endpoint_key(r)))
            .collect();
        let mut statement = Statement::new(format!("select entity_ref, relations from {p}entities where "));
        self.in_list("entity_ref", refs, &mut statement);
        statement.push(" or search_keys && ").bind(Arg::Ints(ends));
        vec![statement]
    }

    fn latest_versions(&self, p: &str, columns: &str, after: Option<&str>, limit: Option<usize>) -> String {
        // The primary key (subject, sequence) walks subjects in order, newest version first.
        let mut text = format!(
            "select distinct on (subject) {columns} from {p}history where time <= ?
             and event_type in ('entity.upserted.v1', 'entity.deleted.v1')"
        );
        if after.is_some() {
            text.push_str(" and subject > ?");
        }
        text.push_str(" order by subject, sequence desc");
        if limit.is_some() {
            text.push_str(" limit ?");
        }
        text
    }

    fn schema_lock(&self) -> Option<&'static str> {
        // Concurrent projector processes may prepare at once: serialise schema changes.
        Some("select pg_advisory_xact_lock(8147001)")
    }

    fn parallel_index_builds(&self) -> usize {
        2
    }

    fn index_build_setup(&self) -> Option<&'static str> {
        // Index builds sort in memory up to this much (the server's default is 64 MB), for this
        // transaction only.
        Some("set local maintenance_work_mem = '256MB'")
    }

    fn greatest(&self) -> &'static str {
        "greatest"
    }
}
