//! Changing a customer's rows, by key: deleting them (forget, `delete` tables),
//! nulling their personal columns (forget, `anonymize` tables; a pseudonym
//! where the column may not be null), or replacing their personal values by
//! pseudonyms (pseudonymization). One database's changes run in one
//! transaction, which the caller commits once it has confirmed its lease; every
//! change is idempotent (a deleted row is not there to delete again, NULL stays
//! NULL, a pseudonym is left as it is), so a retry, a takeover or a ledger
//! replay ends in the same state. Keys are compared in the column's own type
//! (PostgreSQL: a cast of the bound text; SQLite: the column's affinity), so the
//! key's index serves the statement.

use std::collections::HashMap;

use sqlx::{Postgres, Sqlite, Transaction};

use super::binds::{Bind, postgres_query, sqlite_query};
use super::rows::quoted;
use super::{Pool, TableColumns, TargetError, Targets, classify};
use crate::datamap::TableMap;
use crate::request::RowAction;

/// Keys per statement: PostgreSQL takes them as one array, SQLite one
/// parameter each (it allows 32,766).
const PG_BATCH: usize = 10_000;
const SQLITE_BATCH: usize = 500;

/// What to do to some of one table's rows.
#[derive(Debug)]
pub struct TableChange<'a> {
    /// The table's entry in the map.
    pub table: &'a TableMap,
    /// Its columns.
    pub columns: &'a TableColumns,
    /// What to do.
    pub action: RowAction,
    /// The rows, by their key values as text.
    pub keys: Vec<&'a [String]>,
}

/// Makes a pseudonym of a value for a column of at most so many characters.
pub type Pseudonyms<'a> = &'a (dyn Fn(&str, Option<usize>) -> Option<String> + Sync);

/// A transaction on a customer database.
enum Tx {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

impl Tx {
    async fn execute(&mut self, sql: &str, binds: &[Bind]) -> Result<u64, sqlx::Error> {
        let (sql, binds) = (sql.to_owned(), binds.iter().cloned());
        Ok(match self {
            Self::Postgres(tx) => postgres_query(sql, binds)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
            Self::Sqlite(tx) => sqlite_query(sql, binds)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
        })
    }

    async fn fetch(
        &mut self,
        sql: &str,
        binds: &[Bind],
        width: usize,
    ) -> Result<Vec<Vec<Option<String>>>, sqlx::Error> {
        use sqlx::Row;
        let (sql, binds) = (sql.to_owned(), binds.iter().cloned());
        let cells = |get: &dyn Fn(usize) -> Result<Option<String>, sqlx::Error>| {
            (0..width).map(get).collect::<Result<Vec<_>, _>>()
        };
        match self {
            Self::Postgres(tx) => {
                let query = postgres_query(sql, binds);
                let rows = query.fetch_all(&mut **tx).await?;
                rows.iter().map(|r| cells(&|i| r.try_get(i))).collect()
            }
            Self::Sqlite(tx) => {
                let query = sqlite_query(sql, binds);
                let rows = query.fetch_all(&mut **tx).await?;
                rows.iter().map(|r| cells(&|i| r.try_get(i))).collect()
            }
        }
    }
}

/// The SQL that compares a column with the bound text `$n`.
fn typed(mark: usize, columns: &TableColumns, column: &str, postgres: bool) -> String {
    match columns.column(column) {
        Some(c) if postgres => format!("CAST(${mark} AS {})", quoted(&c.sql_type)),
        _ => format!("${mark}"),
    }
}

/// `WHERE` for a batch of keys, with the binds, numbered from `$1`. On
/// PostgreSQL a one-column key is one array parameter (`= ANY`), else each row
/// is a term of its own.
fn keys_clause(
    change: &TableChange<'_>,
    batch: &[&[String]],
    postgres: bool,
) -> (String, Vec<Bind>) {
    let key = &change.table.key;
    if let ([column], true) = (key.as_slice(), postgres) {
        let sql_type = change
            .columns
            .column(column)
            .map_or("text", |c| &c.sql_type);
        let clause = format!(
            "{} = ANY(CAST($1 AS {}[]))",
            quoted(column),
            quoted(sql_type)
        );
        let values = batch.iter().map(|k| Some(k[0].clone())).collect();
        return (clause, vec![Bind::Many(values)]);
    }
    let mut binds = Vec::new();
    let mut rows = Vec::new();
    for values in batch {
        let mut terms = Vec::new();
        for (column, value) in key.iter().zip(values.iter()) {
            binds.push(Bind::One(Some(value.clone())));
            let mark = typed(binds.len(), change.columns, column, postgres);
            terms.push(format!("{} = {mark}", quoted(column)));
        }
        rows.push(format!("({})", terms.join(" AND ")));
    }
    (rows.join(" OR "), binds)
}

/// One database's changes, made in a transaction not committed yet: dropped,
/// they roll back. The caller commits once what must come first has (the
/// discovery saved, the lease confirmed).
pub struct Changed {
    tx: Tx,
    database: String,
    /// The rows each change affected.
    pub affected: Vec<u64>,
}

impl Changed {
    /// Commits the changes.
    pub async fn commit(self) -> Result<(), TargetError> {
        let started = std::time::Instant::now();
        match self.tx {
            Tx::Postgres(tx) => tx.commit().await,
            Tx::Sqlite(tx) => tx.commit().await,
        }
        .map_err(|e| classify(&self.database, e))?;
        tracing::debug!(took = ?started.elapsed(), "committed");
        Ok(())
    }
}

impl Targets {
    /// Makes `changes` to `database` in one transaction, left open for the
    /// caller to commit. `changes` come in the order to make them (tables
    /// reached by `via` before the tables they point at, for deletes).
    pub async fn change(
        &self,
        database: &str,
        changes: &[TableChange<'_>],
        pseudonym: Pseudonyms<'_>,
    ) -> Result<Changed, TargetError> {
        let fail = |e| classify(database, e);
        let (mut tx, postgres) = match self.pool(database)? {
            Pool::Postgres(pool) => (Tx::Postgres(pool.begin().await.map_err(fail)?), true),
            Pool::Sqlite(pool) => (Tx::Sqlite(pool.begin().await.map_err(fail)?), false),
        };
        let mut affected = Vec::with_capacity(changes.len());
        for change in changes {
            let started = std::time::Instant::now();
            let mut count = 0;
            let size = if postgres { PG_BATCH } else { SQLITE_BATCH };
            for batch in change.keys.chunks(size) {
                count += change_batch(&mut tx, change, batch, pseudonym, postgres)
                    .await
                    .map_err(|e| match e {
                        ChangeError::Db(e) => fail(e),
                        ChangeError::NoKey => TargetError::Mismatch(
                            "the key file has no pseudonym key (pseudonym_key)".into(),
                        ),
                    })?;
            }
            tracing::debug!(table = %change.table.table, rows = count, took = ?started.elapsed(), "rows changed");
            affected.push(count);
        }
        Ok(Changed {
            tx,
            database: database.to_owned(),
            affected,
        })
    }
}

enum ChangeError {
    Db(sqlx::Error),
    NoKey,
}

impl From<sqlx::Error> for ChangeError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e)
    }
}

/// Changes one batch of a table's rows; returns how many.
async fn change_batch(
    tx: &mut Tx,
    change: &TableChange<'_>,
    batch: &[&[String]],
    pseudonym: Pseudonyms<'_>,
    postgres: bool,
) -> Result<u64, ChangeError> {
    let table = quoted(&change.table.table.table);
    let personal = &change.table.personal;
    let (clause, binds) = keys_clause(change, batch, postgres);
    if change.action == RowAction::Delete {
        return Ok(tx
            .execute(&format!("DELETE FROM {table} WHERE {clause}"), &binds)
            .await?);
    }
    // Which columns get a pseudonym (the others are nulled): every text column
    // when pseudonymizing; when anonymizing, those that may not be NULL.
    let pseudonymized: Vec<&String> = personal
        .iter()
        .filter(|c| {
            let column = change.columns.column(c).expect("checked");
            column.text && (change.action == RowAction::Pseudonymize || !column.nullable)
        })
        .collect();
    let nulled: Vec<String> = personal
        .iter()
        .filter(|c| !pseudonymized.contains(c))
        .map(|c| format!("{} = NULL", quoted(c)))
        .collect();
    if pseudonymized.is_empty() {
        if nulled.is_empty() {
            return Ok(0);
        }
        let sql = format!("UPDATE {table} SET {} WHERE {clause}", nulled.join(", "));
        return Ok(tx.execute(&sql, &binds).await?);
    }
    // Pseudonyms are made from the values: read them, then write them back
    // with one UPDATE for the batch.
    let read: Vec<String> = pseudonymized
        .iter()
        .map(|c| format!("CAST({} AS TEXT)", quoted(c)))
        .collect();
    let keys: Vec<String> = change
        .table
        .key
        .iter()
        .map(|c| format!("CAST({} AS TEXT)", quoted(c)))
        .collect();
    let sql = format!(
        "SELECT {}, {} FROM {table} WHERE {clause}",
        keys.join(", "),
        read.join(", ")
    );
    let width = keys.len() + read.len();
    let rows = tx.fetch(&sql, &binds, width).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    // The new values, column by column (keys first), then one UPDATE for the
    // batch joined to them.
    // A customer's rows repeat their values (a name on every invoice): each
    // distinct value of a column is made a pseudonym of once.
    let mut new: Vec<Vec<Option<String>>> = vec![Vec::with_capacity(rows.len()); width];
    let mut made: Vec<HashMap<&str, String>> = vec![HashMap::new(); pseudonymized.len()];
    for row in &rows {
        let (key, values) = row.split_at(keys.len());
        for (i, cell) in key.iter().enumerate() {
            new[i].push(cell.clone());
        }
        for (i, (column, value)) in pseudonymized.iter().zip(values).enumerate() {
            let value = match value.as_deref() {
                Some(v) => Some(match made[i].get(v) {
                    Some(p) => p.clone(),
                    None => {
                        let max_len = change.columns.column(column).and_then(|c| c.max_len);
                        let p = pseudonym(v, max_len).ok_or(ChangeError::NoKey)?;
                        made[i].insert(v, p.clone());
                        p
                    }
                }),
                None => None,
            };
            new[keys.len() + i].push(value);
        }
    }
    let sql = update_from(change, &table, &pseudonymized, &nulled, &new, postgres);
    let binds: Vec<Bind> = if postgres {
        new.into_iter().map(Bind::Many).collect()
    } else {
        // Row by row, as VALUES wants them.
        (0..rows.len())
            .flat_map(|r| new.iter().map(move |column| Bind::One(column[r].clone())))
            .collect()
    };
    let count = tx.execute(&sql, &binds).await?;
    Ok(count)
}

/// The UPDATE that writes `new` (key columns first, then the pseudonymized
/// ones) over the batch's rows: on PostgreSQL joined to `UNNEST` of one array
/// per column, on SQLite to `VALUES` (whose columns are column1, column2, ...).
fn update_from(
    change: &TableChange<'_>,
    table: &str,
    pseudonymized: &[&String],
    nulled: &[String],
    new: &[Vec<Option<String>>],
    postgres: bool,
) -> String {
    let key = &change.table.key;
    let name = |i: usize| format!("v.column{}", i + 1);
    let source = if postgres {
        let arrays: Vec<String> = (1..=new.len())
            .map(|i| format!("CAST(${i} AS text[])"))
            .collect();
        let names: Vec<String> = (1..=new.len()).map(|i| format!("column{i}")).collect();
        format!("UNNEST({}) AS v({})", arrays.join(", "), names.join(", "))
    } else {
        let rows = new.first().map_or(0, Vec::len);
        let tuples: Vec<String> = (0..rows)
            .map(|r| {
                let marks: Vec<String> = (0..new.len())
                    .map(|c| format!("${}", r * new.len() + c + 1))
                    .collect();
                format!("({})", marks.join(", "))
            })
            .collect();
        format!("(VALUES {}) AS v", tuples.join(", "))
    };
    let mut sets = nulled.to_vec();
    for (i, column) in pseudonymized.iter().enumerate() {
        sets.push(format!("{} = {}", quoted(column), name(key.len() + i)));
    }
    let joined: Vec<String> = key
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let value = match change.columns.column(column) {
                Some(c) if postgres => format!("CAST({} AS {})", name(i), quoted(&c.sql_type)),
                _ => name(i),
            };
            format!("{table}.{} = {value}", quoted(column))
        })
        .collect();
    format!(
        "UPDATE {table} SET {} FROM {source} WHERE {}",
        sets.join(", "),
        joined.join(" AND ")
    )
}
