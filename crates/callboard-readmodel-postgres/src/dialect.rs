//! What PostgreSQL does its own way: lists as arrays (`= any`), filter keys in a GIN-indexed
//! `bigint[]` and text in a `tsvector`, each subject's latest version through `distinct on`,
//! indexes built two at a time.

use callboard_readmodel::search;
use callboard_readmodel::sql::{Arg, Dialect, Rows, Statement};

/// PostgreSQL's dialect.
#[derive(Debug)]
pub(crate) struct Postgres;

/// The dialect, shared.
pub(crate) static POSTGRES: Postgres = Postgres;

impl Dialect for Postgres {
    fn insert(&self, table: &str, rows: Rows, tail: &str) -> Vec<Statement> {
        // One array per column through `unnest`: one small statement that the connection
        // prepares once, instead of a statement with thousands of parameters that PostgreSQL
        // parses and plans anew for every batch.
        let width = rows.width();
        // Each column's type is its first row's (a null travels typed: `MaybeInt(None)`).
        let mut columns: Vec<Arg> = rows.values[..width]
            .iter()
            .map(|first| match first {
                Arg::Int(_) | Arg::MaybeInt(_) => Arg::IntColumn(Vec::new()),
                _ => Arg::TextColumn(Vec::new()),
            })
            .collect();
        for (i, value) in rows.values.into_iter().enumerate() {
            match (&mut columns[i % width], value) {
                (Arg::IntColumn(column), Arg::Int(n)) => column.push(Some(n)),
                (Arg::IntColumn(column), Arg::MaybeInt(n)) => column.push(n),
                (Arg::TextColumn(column), Arg::Text(text)) => column.push(Some(text)),
                (Arg::TextColumn(column), Arg::MaybeText(text)) => column.push(text),
                (column, value) => unreachable!("a {value:?} in a column of {column:?}"),
            }
        }
        let mut statement = Statement::new(format!("insert into {table} ({}) select * from unnest(", rows.columns));
        for (i, column) in columns.into_iter().enumerate() {
            let cast = if matches!(column, Arg::IntColumn(_)) {
                "::int8[]"
            } else {
                "::text[]"
            };
            statement.push(if i > 0 { ", " } else { "" }).bind(column).push(cast);
        }
        statement.push(") ").push(tail);
        vec![statement]
    }

    fn without_rowid(&self) -> &'static str {
        ""
    }

    fn relaxed_commit(&self) -> Option<&'static str> {
        // Not waiting for the commit's WAL flush is safe for a batch: its positions commit with
        // its rows, so a commit lost in a database crash is lost whole, and the projector applies
        // those events again from the stored positions. It takes a disk flush off every batch.
        Some("set local synchronous_commit = off")
    }

    fn parallel_writes(&self) -> usize {
        // Each connection is one PostgreSQL backend, one core: a second write in flight keeps
        // the database busy while the first commits and the next batch is projected.
        2
    }

    fn in_set(&self, column: &str, items: &[String], out: &mut Statement) {
        out.push(column).push(" = any(");
        out.bind(Arg::Texts(items.to_vec())).push(")");
    }

    // The prefix is not needed: filters read the entity row's own columns.
    fn keys(&self, hashes: Vec<u64>, _p: &str, out: &mut Statement) {
        // GIN-indexed: `&&` (any of these keys) on the entity's filter keys.
        out.push("e.search_keys && ");
        out.bind(Arg::Ints(hashes.into_iter().map(|h| h as i64).collect()));
    }

    fn search(&self, terms: &[&str], _p: &str, out: &mut Statement) {
        // A `tsquery` matching every term as a prefix (`pay & serv` → `pay:* & serv:*`).
        let query: Vec<String> = terms.iter().map(|t| format!("{}:*", t.to_lowercase())).collect();
        out.push("e.search_vector @@ to_tsquery('simple', ")
            .text(query.join(" & "))
            .push(")");
    }

    fn relation_candidates(&self, p: &str, refs: &[String]) -> Vec<Statement> {
        let ends: Vec<i64> = refs
            .iter()
            .map(|r| search::key_hash64(&search::endpoint_key(r)))
            .collect();
        // Two branches, not one `or`: each walks its own index whatever the planner knows, where
        // an `or` of the two is read as a scan of the whole table unless statistics are fresh.
        // (Duplicates are removed by the caller.)
        let mut statement = Statement::new(format!("select entity_ref, relations from {p}entities where "));
        self.in_list("entity_ref", refs, &mut statement);
        statement.push(&format!(
            " union all select entity_ref, relations from {p}entities where search_keys && "
        ));
        statement.bind(Arg::Ints(ends));
        vec![statement]
    }

    fn latest_versions(&self, p: &str, columns: &str) -> String {
        // The primary key (subject, sequence) walks subjects in order, newest version first.
        format!(
            "select distinct on (subject) {columns} from {p}history where time <= ? and subject > ?
             and event_type in ('entity.upserted.v1', 'entity.deleted.v1') order by subject, sequence desc"
        )
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

    fn maintenance(&self, p: &str) -> Vec<String> {
        // Rows inserted into a GIN index wait in its pending list, which every search reads
        // through in full until a vacuum merges it (autovacuum may be off): at 10,000 entities
        // loaded through `serve`, 300 pending pages made a one-owner filter take 15 ms instead
        // of 0.3. And without statistics the planner misjudges the filters' selectivity.
        vec![format!("vacuum (analyze) {p}entities"), format!("analyze {p}history")]
    }

    fn facet_values(&self) -> (&'static str, &'static str) {
        // The array derived from the JSON when the row was written (see `callboard_texts`).
        (" cross join lateral unnest(e.facet_array) as f(v)", "f.v")
    }

    fn greatest(&self) -> &'static str {
        "greatest"
    }
}
