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

use super::binds::Bind;
use super::rewrite::{Pseudonyms, Rewrite};
use super::select::quoted;
use super::tx::{ChangeError, Tx};
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
    affected: Vec<u64>,
}

impl Changed {
    /// Commits the changes; returns the rows each change affected.
    pub async fn commit(self) -> Result<Vec<u64>, TargetError> {
        let started = std::time::Instant::now();
        match self.tx {
            Tx::Postgres(tx) => tx.commit().await,
            Tx::Sqlite(tx) => tx.commit().await,
        }
        .map_err(|e| classify(&self.database, e))?;
        tracing::debug!(took = ?started.elapsed(), "committed");
        Ok(self.affected)
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

/// Changes one batch of a table's rows; returns how many.
async fn change_batch(
    tx: &mut Tx,
    change: &TableChange<'_>,
    batch: &[&[String]],
    pseudonym: Pseudonyms<'_>,
    postgres: bool,
) -> Result<u64, ChangeError> {
    let (clause, binds) = keys_clause(change, batch, postgres);
    if change.action == RowAction::Delete {
        let table = quoted(&change.table.table.table);
        return Ok(tx
            .execute(&format!("DELETE FROM {table} WHERE {clause}"), &binds)
            .await?);
    }
    let rewrite = Rewrite::new(change.table, change.columns, change.action, pseudonym);
    rewrite.run(tx, &clause, binds, postgres).await
}
