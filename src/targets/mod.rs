//! The customer databases a data map names: connecting to them and checking
//! the map against what they hold. The only module that runs SQL on the
//! customer databases (the store runs it on the worker's own); it splices only
//! the data map's names, always quoted (a quote doubled), and binds every value.

mod binds;
mod catalog;
mod connect;
mod copy;
mod erase;
mod rewrite;
mod rows;
mod select;
mod tx;

pub use copy::CsvPiece;
pub use erase::{Changed, TableChange};
pub use rewrite::Pseudonyms;
pub use rows::{Cells, Read};
pub use select::{Probe, Selection};

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{PgPool, SqlitePool};
use thiserror::Error;

use crate::datamap::{DataMap, TableMap, TableRef};

/// Why a customer database cannot be used.
#[derive(Debug, Error)]
pub enum TargetError {
    /// The map names a database that cannot be reached as configured (no URL,
    /// an unknown scheme, a file that is not there).
    #[error("database {database}: {reason}")]
    Config {
        /// Which database of the map.
        database: String,
        /// What is wrong.
        reason: String,
    },
    /// The database does not answer now: worth retrying.
    #[error("database {database} unavailable: {source}")]
    Unavailable {
        /// Which database of the map.
        database: String,
        /// What the driver said.
        #[source]
        source: sqlx::Error,
    },
    /// The database refused a statement.
    #[error("database {database} refused: {source}")]
    Rejected {
        /// Which database of the map.
        database: String,
        /// What the driver said.
        #[source]
        source: sqlx::Error,
    },
    /// The map does not fit the database: a table or a column is not there.
    #[error("data map: {0}")]
    Mismatch(String),
}

impl TargetError {
    /// True when the same operation may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// A customer database's pool.
#[derive(Debug, Clone)]
enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// The customer databases of a data map, connected.
#[derive(Debug, Clone)]
pub struct Targets {
    pools: BTreeMap<String, Pool>,
    /// The PostgreSQL databases that have the ICU root collation.
    icu: BTreeSet<String>,
    /// The PostgreSQL type of each via column that has the type of the column
    /// it points at (in PostgreSQL too): those are compared in their own type,
    /// which lets their index serve; the others as text.
    via_types: BTreeMap<TableRef, String>,
    /// The PostgreSQL type of each one-column key (keys are compared in it).
    key_types: BTreeMap<TableRef, String>,
}

/// What a table of the map holds, as found in its database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableColumns {
    /// Which table.
    pub table: TableRef,
    /// Its columns, in the database's order: the header of its CSV file.
    pub columns: Vec<String>,
    /// The same columns, described.
    pub described: Vec<Column>,
}

impl TableColumns {
    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.described.iter().find(|c| c.name == name)
    }
}

/// A column as its database describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its type as the database names it (PostgreSQL's `udt_name`, SQLite's
    /// declared type).
    pub sql_type: String,
    /// Whether it holds text (a pseudonym can be written into it).
    pub text: bool,
    /// Whether it may be NULL.
    pub nullable: bool,
    /// The most characters it holds, when the database enforces a limit.
    pub max_len: Option<usize>,
}

impl Targets {
    /// Checks every table and column the map names against the databases;
    /// returns each table's columns, in visiting order.
    pub async fn check(&mut self, map: &DataMap) -> Result<Vec<TableColumns>, TargetError> {
        let mut found = Vec::with_capacity(map.tables.len());
        for table in &map.tables {
            let described = self.columns(&table.table).await?;
            let columns: Vec<String> = described.iter().map(|c| c.name.clone()).collect();
            if columns.is_empty() {
                return Err(TargetError::Mismatch(format!(
                    "table {}: not found in database {}",
                    table.table, table.table.database
                )));
            }
            for (what, column) in named_columns(table) {
                if !columns.iter().any(|c| c == column) {
                    return Err(TargetError::Mismatch(format!(
                        "table {}: {what} column {column} does not exist",
                        table.table
                    )));
                }
            }
            for name in &table.personal {
                let column = described.iter().find(|c| &c.name == name).expect("checked");
                rewritable(table, column)?;
            }
            self.key_is_unique(table, &described).await?;
            if let ([key], Some(Pool::Postgres(_))) =
                (table.key.as_slice(), self.pools.get(&table.table.database))
            {
                let column = described.iter().find(|c| &c.name == key).expect("checked");
                self.key_types
                    .insert(table.table.clone(), column.sql_type.clone());
            }
            found.push(TableColumns {
                table: table.table.clone(),
                columns,
                described,
            });
        }
        for table in &map.tables {
            if let Some(via) = &table.via {
                let target = found
                    .iter()
                    .find(|t| t.table == via.target)
                    .expect("checked");
                if !target.columns.contains(&via.target_column) {
                    return Err(TargetError::Mismatch(format!(
                        "table {}: via {} points at {}.{}, which does not exist",
                        table.table, via.column, via.target, via.target_column
                    )));
                }
                let own = found
                    .iter()
                    .find(|t| t.table == table.table)
                    .expect("checked");
                let postgres =
                    |t: &TableRef| matches!(self.pools.get(&t.database), Some(Pool::Postgres(_)));
                let (Some(from), Some(to)) =
                    (own.column(&via.column), target.column(&via.target_column))
                else {
                    continue;
                };
                if postgres(&table.table) && postgres(&via.target) && from.sql_type == to.sql_type {
                    self.via_types
                        .insert(table.table.clone(), from.sql_type.clone());
                }
            }
        }
        Ok(found)
    }

    /// What a WHERE clause on `table` needs to know of its database.
    fn typed(&self, table: &TableRef) -> Result<select::Typed<'_>, TargetError> {
        let dialect = match self.pool(&table.database)? {
            Pool::Postgres(_) => select::Dialect::Postgres {
                icu: self.icu.contains(&table.database),
            },
            Pool::Sqlite(_) => select::Dialect::Sqlite,
        };
        Ok(select::Typed {
            dialect,
            via: self.via_types.get(table).map(String::as_str),
            key: self.key_types.get(table).map(String::as_str),
        })
    }

    fn pool(&self, database: &str) -> Result<&Pool, TargetError> {
        self.pools.get(database).ok_or_else(|| TargetError::Config {
            database: database.to_owned(),
            reason: "not connected".into(),
        })
    }

    /// Closes every pool.
    pub async fn close(&self) {
        for pool in self.pools.values() {
            match pool {
                Pool::Postgres(p) => p.close().await,
                Pool::Sqlite(p) => p.close().await,
            }
        }
    }
}

/// The columns a table's entry names, with what each is for.
fn named_columns(table: &TableMap) -> Vec<(&'static str, &String)> {
    let mut named: Vec<(&'static str, &String)> = Vec::new();
    named.extend(table.key.iter().map(|c| ("key", c)));
    named.extend(table.matches.values().map(|c| ("match", c)));
    named.extend(table.via.iter().map(|v| ("via", &v.column)));
    named.extend(table.personal.iter().map(|c| ("personal", c)));
    named
}

/// A personal column must be one pseudonymization and anonymization can
/// rewrite: text that holds a pseudonym, or a column that may be NULL.
fn rewritable(table: &TableMap, column: &Column) -> Result<(), TargetError> {
    use crate::crypto::pseudonym::MIN_LEN;
    let name = &column.name;
    if !column.text && !column.nullable {
        return Err(TargetError::Mismatch(format!(
            "table {}: personal column {name} is {} NOT NULL: a pseudonym is text and \
             NULL is not allowed, so it cannot be rewritten",
            table.table, column.sql_type
        )));
    }
    match column.max_len {
        Some(len) if column.text && len < MIN_LEN => Err(TargetError::Mismatch(format!(
            "table {}: personal column {name} holds at most {len} characters; \
             a pseudonym needs {MIN_LEN}",
            table.table
        ))),
        _ => Ok(()),
    }
}

/// A driver error, classified once, the way the worker's store classifies
/// its own (`store::is_transient_sqlx`): unreachable, restarting, busy,
/// locked, a deadlock or a timeout is transient; anything else a refusal.
fn classify(database: &str, source: sqlx::Error) -> TargetError {
    let database = database.to_owned();
    if crate::store::is_transient_sqlx(&source) {
        TargetError::Unavailable { database, source }
    } else {
        TargetError::Rejected { database, source }
    }
}

impl TargetError {
    /// For an operator's log: the database's code and message (never its
    /// detail, which can quote values; a message names constraints, columns
    /// and relations, but a data exception's quotes its value: left out).
    pub fn diagnosis(&self) -> String {
        match self {
            Self::Unavailable { database, source } | Self::Rejected { database, source } => {
                match source {
                    sqlx::Error::Database(db) => {
                        let code = db.code().unwrap_or_default();
                        // A data exception's message (class 22: `invalid input
                        // syntax for type integer: "…"`) quotes the value.
                        let message = match code.starts_with("22") {
                            true => "(a data exception; its message may quote a value)",
                            false => db.message(),
                        };
                        format!("database {database}: code {code}: {message}")
                    }
                    other => format!("database {database}: {other}"),
                }
            }
            other => other.to_string(),
        }
    }
}
