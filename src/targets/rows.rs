//! Reading a customer's rows (a [`Selection`]): their distinct values, their
//! keys, and the rows themselves as a stream of text cells. Names are the data
//! map's (checked), quoted; every value is bound.

use futures_util::stream::{BoxStream, StreamExt, TryStreamExt};
use sqlx::Row;

use super::binds::{Bind, postgres_query, sqlite_query};
use super::select::{Mark, Selection, quoted, where_clause};
use super::{Pool, TargetError, Targets, classify};
use crate::datamap::TableMap;

/// A row as text cells, `None` for NULL.
pub type Cells = Vec<Option<String>>;

/// How selected rows are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Each distinct combination of the columns once, in no order.
    Distinct,
    /// Every row, in key order.
    InKeyOrder,
    /// Every row, in no order (the key columns, which are distinct already).
    Unordered,
}

impl Targets {
    /// The distinct values (as text) of `columns` in the selected rows.
    pub async fn values(
        &self,
        table: &TableMap,
        selection: &Selection,
        columns: &[&str],
    ) -> Result<Vec<Cells>, TargetError> {
        self.rows(table, selection, columns, Read::Distinct)
            .try_collect()
            .await
    }

    /// The keys (as text, in the order of the map's `key`) of the selected
    /// rows, each once.
    pub async fn keys(
        &self,
        table: &TableMap,
        selection: &Selection,
    ) -> Result<Vec<Vec<String>>, TargetError> {
        let key: Vec<&str> = table.key.iter().map(String::as_str).collect();
        let mut keys: Vec<Vec<String>> = Vec::new();
        // On PostgreSQL as one array per key column: a customer's rows can be
        // many, and one value of 100,000 elements costs a fraction of 100,000
        // rows decoded one by one. A key column is NOT NULL where it is a
        // primary key; NULL is kept as the empty text it compares with.
        let target = self.pool(&table.table.database)?;
        if let Pool::Postgres(pool) = target {
            let typed = self.typed(&table.table)?;
            let (clause, values) = where_clause(table, selection, typed, Mark::Bind)?;
            let aggregates: Vec<String> = key
                .iter()
                .map(|c| format!("array_agg(CAST({} AS TEXT))", quoted(c)))
                .collect();
            let sql = format!(
                "SELECT {} FROM {} WHERE {clause}",
                aggregates.join(", "),
                quoted(&table.table.table)
            );
            let fail = |e| classify(&table.table.database, e);
            let row = postgres_query(sql, values)
                .fetch_one(pool)
                .await
                .map_err(fail)?;
            let mut columns = Vec::with_capacity(key.len());
            for i in 0..key.len() {
                let values: Option<Vec<Option<String>>> = row.try_get(i).map_err(fail)?;
                columns.push(values.unwrap_or_default().into_iter());
            }
            let rows = columns.first().map_or(0, ExactSizeIterator::len);
            for _ in 0..rows {
                keys.push(
                    columns
                        .iter_mut()
                        .map(|c| c.next().flatten().unwrap_or_default())
                        .collect(),
                );
            }
        } else {
            let mut rows = self.rows(table, selection, &key, Read::Unordered);
            while let Some(row) = rows.try_next().await? {
                keys.push(row.into_iter().map(Option::unwrap_or_default).collect());
            }
        }
        // Each once, should the key not be unique; sorting is cheaper than
        // hashing copies of every key.
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    /// The selected rows' `columns`, as text, in key order; streamed.
    pub fn rows<'a>(
        &'a self,
        table: &'a TableMap,
        selection: &Selection,
        columns: &[&str],
        read: Read,
    ) -> BoxStream<'a, Result<Cells, TargetError>> {
        let database = table.table.database.clone();
        let pool = match self.pool(&database) {
            Ok(pool) => pool,
            Err(e) => return futures_util::stream::once(async move { Err(e) }).boxed(),
        };
        let clause = self
            .typed(&table.table)
            .and_then(|typed| where_clause(table, selection, typed, Mark::Bind));
        let (clause, values) = match clause {
            Ok(clause) => clause,
            Err(e) => return futures_util::stream::once(async move { Err(e) }).boxed(),
        };
        let selected: Vec<String> = columns
            .iter()
            .map(|c| format!("CAST({} AS TEXT)", quoted(c)))
            .collect();
        let order = if read == Read::InKeyOrder {
            let keys: Vec<String> = table.key.iter().map(|k| quoted(k)).collect();
            format!(" ORDER BY {}", keys.join(", "))
        } else {
            String::new()
        };
        let sql = format!(
            "SELECT {}{} FROM {} WHERE {clause}{order}",
            if read == Read::Distinct {
                "DISTINCT "
            } else {
                ""
            },
            selected.join(", "),
            quoted(&table.table.table),
        );
        let width = columns.len();
        match pool {
            Pool::Postgres(pool) => stream_pg(pool, sql, values)
                .map(move |row| cells(row, width, &database))
                .boxed(),
            Pool::Sqlite(pool) => stream_sqlite(pool, sql, values)
                .map(move |row| cells(row, width, &database))
                .boxed(),
        }
    }
}

/// A row's `width` cells as text.
fn cells<R: Row>(
    row: Result<R, sqlx::Error>,
    width: usize,
    database: &str,
) -> Result<Cells, TargetError>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let row = row.map_err(|e| classify(database, e))?;
    (0..width)
        .map(|i| {
            row.try_get::<Option<String>, _>(i)
                .map_err(|e| classify(database, e))
        })
        .collect()
}

fn stream_pg<'a>(
    pool: &'a sqlx::PgPool,
    sql: String,
    values: Vec<Bind>,
) -> BoxStream<'a, Result<sqlx::postgres::PgRow, sqlx::Error>> {
    postgres_query(sql, values).fetch(pool)
}

fn stream_sqlite<'a>(
    pool: &'a sqlx::SqlitePool,
    sql: String,
    values: Vec<Bind>,
) -> BoxStream<'a, Result<sqlx::sqlite::SqliteRow, sqlx::Error>> {
    sqlite_query(sql, values).fetch(pool)
}
