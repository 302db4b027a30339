//! Reading a customer's rows: which rows of a table are the customer's (by the
//! identifiers its match columns hold, or by the values its via column points
//! at), the identifiers those rows hold, and the rows themselves as a stream of
//! text cells. Names are the data map's (checked plain identifiers), quoted;
//! every value is bound.

use futures_util::stream::{BoxStream, StreamExt, TryStreamExt};
use sqlx::Row;

use super::binds::{Bind, postgres_query, sqlite_query};
use super::{Pool, TargetError, Targets, classify};
use crate::datamap::TableMap;
use crate::request::IdentifierType;

/// Which rows of a table are the customer's.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Rows whose match columns hold one of these identifiers (normalized).
    Matching(Vec<(IdentifierType, String)>),
    /// Rows whose via column holds one of these values (as text).
    Via(Vec<String>),
}

/// A row as text cells, `None` for NULL.
pub type Cells = Vec<Option<String>>;

pub(super) fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

/// The SQL expression that compares a column holding an identifier of `kind`
/// the way the request's identifiers are normalized: e-mail in lower case, a
/// mobile number by its digits.
fn normalized(kind: IdentifierType, column: &str, pool: &Pool) -> String {
    let column = quoted(column);
    match kind {
        IdentifierType::Email => format!("lower(CAST({column} AS TEXT))"),
        IdentifierType::Mobile => match pool {
            Pool::Postgres(_) => {
                format!("regexp_replace(CAST({column} AS TEXT), '[^0-9]', '', 'g')")
            }
            Pool::Sqlite(_) => {
                let mut expr = format!("CAST({column} AS TEXT)");
                for c in [" ", "+", "-", ".", "(", ")", "/"] {
                    expr = format!("replace({expr}, '{c}', '')");
                }
                expr
            }
        },
        _ => format!("trim(CAST({column} AS TEXT))"),
    }
}

/// How a WHERE clause carries its values.
pub(super) enum Mark<'a> {
    /// As bind parameters, numbered from `$1` (every statement but `COPY`).
    Bind,
    /// Written as literals by this function (`COPY`, which takes no parameters).
    Literal(&'a dyn Fn(&str) -> Result<String, TargetError>),
}

/// The WHERE clause of a selection and the values to bind to it.
pub(super) fn where_clause(
    table: &TableMap,
    selection: &Selection,
    (pool, via_type): (&Pool, Option<&str>),
    mark: Mark<'_>,
) -> Result<(String, Vec<Bind>), TargetError> {
    let mut values = Vec::new();
    let mut placeholders = |items: &mut dyn Iterator<Item = &String>| {
        let marks = items
            .map(|v| match &mark {
                Mark::Bind => {
                    values.push(Bind::One(Some(v.clone())));
                    Ok(format!("${}", values.len()))
                }
                Mark::Literal(literal) => literal(v),
            })
            .collect::<Result<Vec<String>, TargetError>>()?;
        Ok::<_, TargetError>(marks.join(", "))
    };
    let mut clauses = Vec::new();
    match selection {
        Selection::Matching(identifiers) => {
            for (kind, column) in &table.matches {
                let mut of_kind = identifiers
                    .iter()
                    .filter(|(k, _)| k == kind)
                    .map(|(_, v)| v)
                    .peekable();
                if of_kind.peek().is_none() {
                    continue;
                }
                let marks = placeholders(&mut of_kind)?;
                clauses.push(format!("{} IN ({marks})", normalized(*kind, column, pool)));
            }
        }
        Selection::Via(targets) if !targets.is_empty() => {
            let via = table
                .via
                .as_ref()
                .expect("a via selection is for a via table");
            let column = quoted(&via.column);
            match (via_type, &mark) {
                // In its own type, as one array: the index serves, and there
                // is no limit on how many values.
                (Some(sql_type), Mark::Bind) => {
                    values.push(Bind::Many(targets.iter().cloned().map(Some).collect()));
                    let n = values.len();
                    clauses.push(format!(
                        "{column} = ANY(CAST(${n} AS {}[]))",
                        quoted(sql_type)
                    ));
                }
                (Some(sql_type), Mark::Literal(literal)) => {
                    let items = targets
                        .iter()
                        .map(|v| literal(v))
                        .collect::<Result<Vec<_>, _>>()?;
                    clauses.push(format!(
                        "{column} = ANY(CAST(ARRAY[{}] AS {}[]))",
                        items.join(", "),
                        quoted(sql_type)
                    ));
                }
                (None, _) => {
                    let marks = placeholders(&mut targets.iter())?;
                    clauses.push(format!("CAST({column} AS TEXT) IN ({marks})"));
                }
            }
        }
        Selection::Via(_) => {}
    }
    let clause = if clauses.is_empty() {
        "1 = 0".to_owned()
    } else {
        clauses.join(" OR ")
    };
    Ok((clause, values))
}

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
            let via_type = self.via_types.get(&table.table).map(String::as_str);
            let (clause, values) = where_clause(table, selection, (target, via_type), Mark::Bind)?;
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
        let via_type = self.via_types.get(&table.table).map(String::as_str);
        let (clause, values) = match where_clause(table, selection, (pool, via_type), Mark::Bind) {
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
