//! The glue every sqlx adapter needs, written once: a macro, because this crate does not depend
//! on sqlx (it knows statements and rows, not drivers).

/// Makes an adapter's database type (`$db`, with a `pool` field) a
/// [`SqlDatabase`](crate::sql::SqlDatabase), and defines beside it:
///
/// * `db(sqlx::Error) -> StoreError`: connection trouble is "unavailable" (worth retrying), the
///   rest a database failure; the driver's error is kept as the source either way;
/// * `Named`: a driver row ([`Columns`](crate::rows::Columns)), read by column name.
///
/// * `query(Statement)`: the statement as sqlx takes it, its text through `$sql` (which makes
///   `?` placeholders what the database takes) and each list argument bound as `$list` makes it
///   (PostgreSQL binds arrays; SQLite has none, and reads JSON).
///
/// The adapter provides `$db::begin()` (a write transaction), its dialect, its migrator, and the
/// function writing a catalog batch's entity rows inside the transaction
/// (`$entities(&mut tx, prefix, writes)`).
#[macro_export]
macro_rules! sqlx_database {
    (
        $db:ty,
        database: $database:ty,
        row: $row:ty,
        arguments: $arguments:ty,
        sql: $sql:expr,
        list: |$items:ident| $list:expr,
        dialect: $dialect:expr,
        migrator: $migrator:expr,
        entities: $entities:path $(,)?
    ) => {
        /// A statement as sqlx takes it: the SQL text and its arguments bound in order.
        pub(crate) fn query(statement: $crate::sql::Statement) -> ::sqlx::query::Query<'static, $database, $arguments> {
            use $crate::sql::Arg;
            let mut query = ::sqlx::query($sql(statement.text)).persistent(!statement.one_off);
            for arg in statement.args {
                query = match arg {
                    Arg::Text(text) => query.bind(text),
                    Arg::MaybeText(text) => query.bind(text),
                    Arg::Int(n) => query.bind(n),
                    Arg::MaybeInt(n) => query.bind(n),
                    Arg::Texts($items) => query.bind($list),
                    Arg::Ints($items) => query.bind($list),
                    Arg::TextColumn($items) => query.bind($list),
                    Arg::IntColumn($items) => query.bind($list),
                };
            }
            query
        }

        /// A driver error as a store error: connection trouble is "unavailable" (worth
        /// retrying), the rest a database failure; the driver's error is kept as the source.
        pub(crate) fn db(e: ::sqlx::Error) -> $crate::store::StoreError {
            let transient = match &e {
                ::sqlx::Error::PoolTimedOut
                | ::sqlx::Error::PoolClosed
                | ::sqlx::Error::Io(_)
                | ::sqlx::Error::Tls(_)
                | ::sqlx::Error::Protocol(_)
                | ::sqlx::Error::WorkerCrashed => true,
                ::sqlx::Error::Database(db) => db.code().is_some_and(|code| $crate::sql::transient_code(&code)),
                _ => false,
            };
            if transient {
                $crate::store::StoreError::Unavailable(Box::new(e))
            } else {
                $crate::store::StoreError::Database(Box::new(e))
            }
        }

        /// A row read by column name.
        pub(crate) struct Named(pub $row);

        impl Named {
            /// A number: `bigint`, or `integer` (positions' partitions).
            fn number(&self, column: impl ::sqlx::ColumnIndex<$row> + Copy) -> Result<Option<i64>, ::sqlx::Error> {
                ::sqlx::Row::try_get::<Option<i64>, _>(&self.0, column)
                    .or_else(|_| ::sqlx::Row::try_get::<Option<i32>, _>(&self.0, column).map(|n| n.map(i64::from)))
            }
        }

        impl $crate::rows::Columns for Named {
            fn text(&self, column: &str) -> Result<String, $crate::store::StoreError> {
                ::sqlx::Row::try_get(&self.0, column).map_err(db)
            }

            fn text_or_null(&self, column: &str) -> Result<Option<String>, $crate::store::StoreError> {
                ::sqlx::Row::try_get(&self.0, column).map_err(db)
            }

            fn int(&self, column: &str) -> Result<i64, $crate::store::StoreError> {
                self.number(column)
                    .map_err(db)?
                    .ok_or_else(|| $crate::store::StoreError::Other(format!("{column} is null")))
            }

            fn int_or_null(&self, column: &str) -> Result<Option<i64>, $crate::store::StoreError> {
                self.number(column).map_err(db)
            }

            fn width(&self) -> usize {
                ::sqlx::Row::len(&self.0)
            }

            fn cell(&self, index: usize) -> Result<Option<String>, $crate::store::StoreError> {
                ::sqlx::Row::try_get::<Option<String>, _>(&self.0, index)
                    .or_else(|_| self.number(index).map(|n| n.map(|n| n.to_string())))
                    .map_err(db)
            }
        }

        #[$crate::sql::__async_trait]
        impl $crate::sql::SqlDatabase for $db {
            fn dialect(&self) -> &dyn $crate::sql::Dialect {
                &$dialect
            }

            async fn migrate(&self) -> Result<(), $crate::store::StoreError> {
                $migrator
                    .run(&self.pool)
                    .await
                    .map_err(|e| $crate::store::StoreError::Database(Box::new(e)))
            }

            async fn fetch(
                &self,
                statement: $crate::sql::Statement,
            ) -> Result<Vec<$crate::sql::Row>, $crate::store::StoreError> {
                let rows = query(statement).fetch_all(&self.pool).await.map_err(db)?;
                Ok(rows
                    .into_iter()
                    .map(|row| Box::new(Named(row)) as $crate::sql::Row)
                    .collect())
            }

            async fn execute(&self, statements: Vec<$crate::sql::Statement>) -> Result<(), $crate::store::StoreError> {
                let mut tx = self.begin().await?;
                for statement in statements {
                    query(statement).execute(&mut *tx).await.map_err(db)?;
                }
                tx.commit().await.map_err(db)
            }

            async fn maintain(&self, statements: Vec<$crate::sql::Statement>) -> Result<(), $crate::store::StoreError> {
                for statement in statements {
                    query(statement).execute(&self.pool).await.map_err(db)?;
                }
                Ok(())
            }

            async fn write_catalog(
                &self,
                p: &str,
                statements: Vec<$crate::sql::Statement>,
                entities: $crate::sql::EntityWrites,
            ) -> Result<(), $crate::store::StoreError> {
                let mut tx = self.begin().await?;
                for statement in statements {
                    query(statement).execute(&mut *tx).await.map_err(db)?;
                }
                $entities(&mut tx, p, entities).await?;
                tx.commit().await.map_err(db)
            }
        }
    };
}
