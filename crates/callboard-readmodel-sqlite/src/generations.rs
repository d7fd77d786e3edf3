//! A projection's generations in SQLite: the registry row naming the active one, each
//! generation's tables (from its template, prefixed `<letter><n>_`), the layout they were built
//! with, and the positions stored with its rows. One implementation for every projection; each
//! names its [`Layout`].

use std::collections::BTreeMap;

use callboard_projection::{BatchPosition, Generation, StoreError, template_statements};
use callboard_readmodel::search;
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, Row, Sqlite, SqlitePool, Transaction};

use crate::db;

/// A projection's tables: its registry name, its prefix letter and its template.
#[derive(Debug)]
pub(crate) struct Layout {
    /// The registry row (`read_model.name`).
    pub name: &'static str,
    /// The first letter of its tables' prefix.
    pub letter: char,
    /// The template of one generation's tables.
    pub schema: &'static str,
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

    /// A statement for a generation: the prefix is a letter and an integer we format, never input.
    pub fn sql(&self, generation: Generation, template: &str) -> AssertSqlSafe<String> {
        AssertSqlSafe(template.replace("{p}", &self.prefix(generation)))
    }

    /// The identity of the template, kept in each generation's `meta`.
    fn hash(&self) -> i64 {
        search::key_hash64(self.schema)
    }
}

/// One projection's generations in one database.
#[derive(Debug, Clone)]
pub(crate) struct Tables {
    pub pool: SqlitePool,
    pub layout: &'static Layout,
}

impl Tables {
    /// Creates a generation's tables if missing (and, with `readers`, the indexes only readers
    /// need); tells whether they have the current layout.
    async fn create_tables(&self, generation: Generation, readers: bool) -> Result<bool, StoreError> {
        let layout = self.layout;
        let mut tx = self.pool.begin().await.map_err(db)?;
        let existed: bool = sqlx::query(layout.sql(
            generation,
            "select count(*) > 0 as existed from sqlite_master where name = '{p}meta'",
        ))
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?
        .get("existed");
        let (tables, indexes) = template_statements(layout.schema);
        let wanted = if readers { &indexes[..] } else { &[] };
        for statement in tables.iter().chain(wanted) {
            sqlx::query(layout.sql(generation, statement))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        // The layout these tables were built with (tables from before layouts were recorded have
        // none): a generation built from another version of the template is rebuilt rather than
        // written with statements that no longer fit it.
        if !existed {
            sqlx::query(layout.sql(generation, "insert into {p}meta (key, value) values ('layout', ?)"))
                .bind(layout.hash())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let built: Option<i64> = sqlx::query(layout.sql(generation, "select value from {p}meta where key = 'layout'"))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .map(|row| row.get("value"));
        tx.commit().await.map_err(db)?;
        Ok(built == Some(layout.hash()))
    }

    pub async fn prepare(&self) -> Result<Generation, StoreError> {
        crate::MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Database(Box::new(e)))?;
        let generation = self.active().await?;
        if self.create_tables(generation, true).await? {
            return Ok(generation);
        }
        // Built by a version of Callboard with other tables: start a fresh generation, which the
        // projector fills from the start of the log (positions live in the generation).
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

    pub async fn active(&self) -> Result<Generation, StoreError> {
        let row = sqlx::query("select active from read_model where name = ?")
            .bind(self.layout.name)
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        Ok(Generation(row.get("active")))
    }

    pub async fn create_generation(&self) -> Result<Generation, StoreError> {
        let row = sqlx::query("update read_model set next = next + 1 where name = ? returning next - 1 as created")
            .bind(self.layout.name)
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        let generation = Generation(row.get("created"));
        self.drop_generation(generation).await?;
        self.create_tables(generation, false).await?;
        Ok(generation)
    }

    pub async fn activate(&self, generation: Generation) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("begin immediate").await.map_err(db)?;
        for statement in template_statements(self.layout.schema).1 {
            sqlx::query(self.layout.sql(generation, &statement))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        sqlx::query("update read_model set active = ? where name = ?")
            .bind(generation.0)
            .bind(self.layout.name)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    pub async fn drop_generation(&self, generation: Generation) -> Result<(), StoreError> {
        for table in self.layout.tables {
            let statement = format!("drop table if exists {{p}}{table}");
            sqlx::query(self.layout.sql(generation, &statement))
                .execute(&self.pool)
                .await
                .map_err(db)?;
        }
        Ok(())
    }

    pub async fn position(
        &self,
        generation: Generation,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(self.layout.sql(
            generation,
            "select offset from {p}positions where grp = ? and topic = ? and partition = ?",
        ))
        .bind(group)
        .bind(topic)
        .bind(partition)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(row.map(|r| r.get("offset")))
    }

    pub async fn positions(
        &self,
        generation: Generation,
    ) -> Result<BTreeMap<(String, String, i32), (i64, String)>, StoreError> {
        let rows = sqlx::query(self.layout.sql(
            generation,
            "select grp, topic, partition, offset, event_time from {p}positions",
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    (r.get("grp"), r.get("topic"), r.get("partition")),
                    (r.get("offset"), r.get("event_time")),
                )
            })
            .collect())
    }

    /// Stores the positions a batch reached, in its transaction; they only move forward.
    pub async fn write_positions(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        generation: Generation,
        group: &str,
        positions: &[BatchPosition],
    ) -> Result<(), StoreError> {
        for position in positions {
            sqlx::query(self.layout.sql(
                generation,
                "insert into {p}positions (grp, topic, partition, offset, event_time) values (?, ?, ?, ?, ?)
                 on conflict (grp, topic, partition) do update set offset = max({p}positions.offset, excluded.offset),
                 event_time = case when excluded.event_time = '' or excluded.offset < {p}positions.offset
                   then {p}positions.event_time else excluded.event_time end",
            ))
            .bind(group)
            .bind(&position.topic)
            .bind(position.partition)
            .bind(position.offset)
            .bind(position.time.as_deref().unwrap_or(""))
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        }
        Ok(())
    }

    pub async fn checksums(&self, generation: Generation) -> Result<BTreeMap<String, String>, StoreError> {
        let mut out = BTreeMap::new();
        for (table, columns, order) in self.layout.checked {
            let statement = format!("select {columns} from {{p}}{table} order by {order}");
            let rows = sqlx::query(self.layout.sql(generation, &statement))
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
            let mut hasher = Sha256::new();
            for row in &rows {
                for i in 0..row.len() {
                    let text: Option<String> = row
                        .try_get::<Option<String>, _>(i)
                        .or_else(|_| row.try_get::<Option<i64>, _>(i).map(|v| v.map(|n| n.to_string())))
                        .map_err(db)?;
                    hasher.update(text.as_deref().unwrap_or("\u{0}NULL").as_bytes());
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
