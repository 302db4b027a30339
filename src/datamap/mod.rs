//! The data map (`PRIVACY_DATAMAP`, YAML): which customer databases hold a
//! customer's personal data, in which tables, found by which columns.
//!
//! This module reads and checks the map as data: every reference resolves, no
//! `via` cycle, every table reachable from an identifier, and the order in which
//! tables are visited (a table reached by `via` after the table it points at).
//! It does no I/O beyond taking the text; checking the map against the live
//! databases (tables and columns exist) is the fulfilment targets' job. Every
//! error names the table and the column it is about.

mod graph;
mod parse;

use std::collections::{BTreeMap, BTreeSet};

pub use parse::parse;

use crate::request::IdentifierType;

/// A table of a customer database, as `<database>.<table>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableRef {
    /// The database's name in the map.
    pub database: String,
    /// The table's name in that database.
    pub table: String,
}

impl std::fmt::Display for TableRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.database, self.table)
    }
}

/// Where a customer database is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// Written in the map.
    Inline(String),
    /// In this environment variable.
    FromEnv(String),
}

/// What forget does to a table's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Forget {
    /// The rows are deleted.
    #[default]
    Delete,
    /// The rows stay, their `personal` columns rewritten.
    Anonymize,
}

/// A row is the customer's when its `column` equals a value of `target` in one
/// of the customer's rows of the target table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// The column of this table.
    pub column: String,
    /// The table it points at.
    pub target: TableRef,
    /// The column of the target table.
    pub target_column: String,
}

/// One table of the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMap {
    /// Which table.
    pub table: TableRef,
    /// One row per customer: the rows that say who the customer is
    /// (`subject: true`). Identifiers are expanded only through these.
    pub subject: bool,
    /// Its primary key columns.
    pub key: Vec<String>,
    /// Identifier type → the column holding it.
    pub matches: BTreeMap<IdentifierType, String>,
    /// Or found through another table.
    pub via: Option<Via>,
    /// The columns pseudonymization and anonymization rewrite.
    pub personal: Vec<String>,
    /// What forget does.
    pub forget: Forget,
}

/// A checked data map: every reference resolves, no cycle, every table reachable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataMap {
    /// The customer databases, by name.
    pub databases: BTreeMap<String, DatabaseUrl>,
    /// The databases only some tenants' requests reach (`tenants: [...]`);
    /// a database not listed here is shared by every tenant.
    pub tenants: BTreeMap<String, BTreeSet<String>>,
    /// The tables, in the order they are visited.
    pub tables: Vec<TableMap>,
}

impl DataMap {
    /// The table `table` of the map.
    pub fn table(&self, table: &TableRef) -> Option<&TableMap> {
        self.tables.iter().find(|t| &t.table == table)
    }

    /// Whether requests of `tenant` may read and change `database`.
    pub fn reaches(&self, tenant: &str, database: &str) -> bool {
        self.tenants
            .get(database)
            .is_none_or(|allowed| allowed.contains(tenant))
    }
}

/// What is wrong with a data map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("data map: {0}")]
pub struct DataMapError(pub String);
