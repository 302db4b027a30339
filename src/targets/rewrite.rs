//! Writing pseudonyms over a batch of a customer's rows (pseudonymization, and
//! anonymization where a column may not be null). A pseudonym is made from the
//! value it replaces, so the values are read first. On PostgreSQL only each
//! column's distinct values are read, and one UPDATE looks every row's value
//! up in a map from value to pseudonym (a `jsonb` object, parsed once per
//! statement): the rows never leave the database, and a value on many rows
//! (a name on every invoice) is one entry. On SQLite each row's key and values
//! are read and written back joined to `VALUES`. On PostgreSQL a value the map
//! does not hold (changed by someone else meanwhile) becomes NULL, or on a NOT
//! NULL column fails the statement and the request with it (`requests retry`
//! runs it again): it never stays as it was.

use std::collections::HashMap;

use super::TableColumns;
use super::binds::Bind;
use super::select::quoted;
use super::tx::{ChangeError, Tx};
use crate::datamap::TableMap;
use crate::request::{IdentifierType, RowAction};

/// Makes a pseudonym of a value of a column holding identifiers of this type
/// (normalized first), or of another personal column (as it is).
pub type Pseudonyms<'a> = &'a (dyn Fn(Option<IdentifierType>, &str) -> Option<String> + Sync);

/// What an anonymization or a pseudonymization writes over a table's rows.
pub(super) struct Rewrite<'a> {
    table: &'a TableMap,
    /// The personal columns given a pseudonym: every text column when
    /// pseudonymizing; when anonymizing, those that may not be NULL.
    pseudonymized: Vec<&'a String>,
    /// `column = NULL` for the other personal columns.
    nulled: Vec<String>,
    pseudonym: Pseudonyms<'a>,
}

impl<'a> Rewrite<'a> {
    pub(super) fn new(
        table: &'a TableMap,
        columns: &'a TableColumns,
        action: RowAction,
        pseudonym: Pseudonyms<'a>,
    ) -> Self {
        let pseudonymized: Vec<&String> = table
            .personal
            .iter()
            .filter(|c| {
                let column = columns.column(c).expect("checked");
                column.text && (action == RowAction::Pseudonymize || !column.nullable)
            })
            .collect();
        let nulled = table
            .personal
            .iter()
            .filter(|c| !pseudonymized.contains(c))
            .map(|c| format!("{} = NULL", quoted(c)))
            .collect();
        Self {
            table,
            pseudonymized,
            nulled,
            pseudonym,
        }
    }

    /// Rewrites the rows `clause` (with `binds`, from `$1`) selects; returns
    /// how many.
    pub(super) async fn run(
        &self,
        tx: &mut Tx,
        clause: &str,
        binds: Vec<Bind>,
        postgres: bool,
    ) -> Result<u64, ChangeError> {
        let table = quoted(&self.table.table.table);
        match (self.pseudonymized.is_empty(), postgres) {
            (true, _) if self.nulled.is_empty() => Ok(0),
            (true, _) => {
                let sql = format!(
                    "UPDATE {table} SET {} WHERE {clause}",
                    self.nulled.join(", ")
                );
                Ok(tx.execute(&sql, &binds).await?)
            }
            (false, true) => self.by_value(tx, &table, clause, binds).await,
            (false, false) => self.row_by_row(tx, &table, clause, &binds).await,
        }
    }

    /// The type of identifier `column` holds, when it is a match column.
    fn kind(&self, column: &str) -> Option<IdentifierType> {
        let matches = &self.table.matches;
        matches.iter().find(|(_, c)| *c == column).map(|(k, _)| *k)
    }

    /// PostgreSQL: by a map from each distinct value to its pseudonym.
    async fn by_value(
        &self,
        tx: &mut Tx,
        table: &str,
        clause: &str,
        mut binds: Vec<Bind>,
    ) -> Result<u64, ChangeError> {
        let mut sets = self.nulled.clone();
        for column in &self.pseudonymized {
            let name = quoted(column);
            let sql = format!("SELECT DISTINCT CAST({name} AS TEXT) FROM {table} WHERE {clause}");
            let mut map = serde_json::Map::new();
            for value in tx
                .fetch(&sql, &binds, 1)
                .await?
                .into_iter()
                .flatten()
                .flatten()
            {
                let made = (self.pseudonym)(self.kind(column), &value).ok_or(ChangeError::NoKey)?;
                map.insert(value, serde_json::Value::String(made));
            }
            binds.push(Bind::One(Some(serde_json::Value::Object(map).to_string())));
            // A scalar subquery without correlation is evaluated once (an InitPlan).
            sets.push(format!(
                "{name} = (SELECT CAST(${} AS jsonb)) ->> CAST({name} AS TEXT)",
                binds.len()
            ));
        }
        let sql = format!("UPDATE {table} SET {} WHERE {clause}", sets.join(", "));
        Ok(tx.execute(&sql, &binds).await?)
    }

    /// SQLite: by reading each row and writing it back.
    async fn row_by_row(
        &self,
        tx: &mut Tx,
        table: &str,
        clause: &str,
        binds: &[Bind],
    ) -> Result<u64, ChangeError> {
        let read: Vec<String> = self
            .pseudonymized
            .iter()
            .map(|c| format!("CAST({} AS TEXT)", quoted(c)))
            .collect();
        let keys: Vec<String> = self
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
        let rows = tx.fetch(&sql, binds, width).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        // Each distinct value of a column is made a pseudonym of once.
        let mut made: Vec<HashMap<&str, String>> = vec![HashMap::new(); read.len()];
        let mut values = Vec::with_capacity(rows.len() * width);
        for row in &rows {
            let (key, cells) = row.split_at(keys.len());
            values.extend(key.iter().cloned().map(Bind::One));
            for (i, (column, cell)) in self.pseudonymized.iter().zip(cells).enumerate() {
                let new = match cell.as_deref() {
                    Some(v) => Some(match made[i].get(v) {
                        Some(p) => p.clone(),
                        None => {
                            let p =
                                (self.pseudonym)(self.kind(column), v).ok_or(ChangeError::NoKey)?;
                            made[i].insert(v, p.clone());
                            p
                        }
                    }),
                    None => None,
                };
                values.push(Bind::One(new));
            }
        }
        let sql = self.update_from(table, rows.len(), width);
        Ok(tx.execute(&sql, &values).await?)
    }

    /// The UPDATE that writes `rows` rows of `width` values each (key columns
    /// first, then the pseudonymized ones) over the batch's rows, joined to
    /// `VALUES` (whose columns are column1, column2, ...).
    fn update_from(&self, table: &str, rows: usize, width: usize) -> String {
        let key = &self.table.key;
        let name = |i: usize| format!("v.column{}", i + 1);
        let tuples: Vec<String> = (0..rows)
            .map(|r| {
                let marks: Vec<String> = (0..width)
                    .map(|c| format!("${}", r * width + c + 1))
                    .collect();
                format!("({})", marks.join(", "))
            })
            .collect();
        let mut sets = self.nulled.clone();
        for (i, column) in self.pseudonymized.iter().enumerate() {
            sets.push(format!("{} = {}", quoted(column), name(key.len() + i)));
        }
        let joined: Vec<String> = key
            .iter()
            .enumerate()
            .map(|(i, column)| format!("{table}.{} = {}", quoted(column), name(i)))
            .collect();
        format!(
            "UPDATE {table} SET {} FROM (VALUES {}) AS v WHERE {}",
            sets.join(", "),
            tuples.join(", "),
            joined.join(" AND ")
        )
    }
}
