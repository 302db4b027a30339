//! What a customer database's catalog says of a mapped table: its columns
//! (type, nullability, width), and whether the map's `key` is a key there
//! (unique, not null): a forget deletes by key, so a key two rows share would
//! delete another customer's row.

use sqlx::Row;

use super::{Column, Pool, TargetError, Targets, classify};
use crate::datamap::{TableMap, TableRef};

/// Row of the column queries: name, type, nullable, maximum length.
type ColumnRow = (String, String, bool, Option<i32>);

impl Targets {
    /// A table's columns, in order; empty when there is no such table.
    pub(super) async fn columns(&self, table: &TableRef) -> Result<Vec<Column>, TargetError> {
        const PG: &str = "SELECT column_name::text, udt_name::text, is_nullable = 'YES', \
            CAST(character_maximum_length AS INTEGER) FROM information_schema.columns \
            WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position";
        const SQLITE: &str = "SELECT name, type, \"notnull\" = 0, CAST(NULL AS INTEGER) \
            FROM pragma_table_info($1) ORDER BY cid";
        let database = &table.database;
        let fail = |source| classify(database, source);
        let (rows, text): (Vec<ColumnRow>, fn(&str) -> bool) = match self.pool(database)? {
            Pool::Postgres(pool) => {
                let rows = sqlx::query_as(PG).bind(&table.table).fetch_all(pool).await;
                (rows.map_err(fail)?, |t| {
                    matches!(t, "text" | "varchar" | "bpchar" | "citext" | "name")
                })
            }
            Pool::Sqlite(pool) => {
                let rows = sqlx::query_as(SQLITE)
                    .bind(&table.table)
                    .fetch_all(pool)
                    .await;
                // SQLite's affinity rules: TEXT for a type naming CHAR, CLOB or
                // TEXT; none at all holds text as well.
                (rows.map_err(fail)?, |t| {
                    let t = t.to_ascii_uppercase();
                    t.is_empty() || ["CHAR", "CLOB", "TEXT"].iter().any(|w| t.contains(w))
                })
            }
        };
        Ok(rows
            .into_iter()
            .map(|(name, sql_type, nullable, max_len)| Column {
                text: text(&sql_type),
                name,
                sql_type,
                nullable,
                max_len: max_len.and_then(|n| usize::try_from(n).ok()),
            })
            .collect())
    }

    /// Refuses a table whose `key` is not unique and not null in its
    /// database: no primary key or unique index (without a predicate) on
    /// those columns or some of them, or a key column that may be NULL
    /// (SQLite's `INTEGER PRIMARY KEY` is the rowid, never NULL).
    pub(super) async fn key_is_unique(
        &self,
        table: &TableMap,
        described: &[Column],
    ) -> Result<(), TargetError> {
        const PG: &str = "SELECT i.indisprimary, ARRAY(SELECT a.attname::text FROM pg_attribute a \
            WHERE a.attrelid = c.oid AND a.attnum = ANY(i.indkey)) FROM pg_index i \
            JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
            WHERE n.nspname = current_schema() AND c.relname = $1 AND i.indisunique \
            AND i.indpred IS NULL AND i.indexprs IS NULL";
        const SQLITE_INDEXES: &str = "SELECT name, origin = 'pk' FROM pragma_index_list($1) \
            WHERE \"unique\" = 1 AND partial = 0";
        const SQLITE_INDEX: &str = "SELECT name FROM pragma_index_info($1)";
        const SQLITE_ROWID: &str = "SELECT name, upper(type) = 'INTEGER' \
            FROM pragma_table_info($1) WHERE pk > 0";
        let database = &table.table.database;
        let fail = |e| classify(database, e);
        let name = &table.table.table;
        // Each unique index's columns; the rowid alias, if the key is one.
        let (indexes, rowid): (Vec<Vec<String>>, Option<String>) = match self.pool(database)? {
            Pool::Postgres(pool) => {
                let rows = sqlx::query(PG)
                    .bind(name)
                    .fetch_all(pool)
                    .await
                    .map_err(fail)?;
                let indexes = rows
                    .iter()
                    .map(|r| r.try_get::<Vec<String>, _>(1))
                    .collect::<Result<_, _>>()
                    .map_err(fail)?;
                (indexes, None)
            }
            Pool::Sqlite(pool) => {
                let listed: Vec<(String, bool)> = sqlx::query_as(SQLITE_INDEXES)
                    .bind(name)
                    .fetch_all(pool)
                    .await
                    .map_err(fail)?;
                let mut indexes = Vec::new();
                for (index, _) in listed {
                    let columns: Vec<String> = sqlx::query_scalar(SQLITE_INDEX)
                        .bind(&index)
                        .fetch_all(pool)
                        .await
                        .map_err(fail)?;
                    indexes.push(columns);
                }
                let pk: Vec<(String, bool)> = sqlx::query_as(SQLITE_ROWID)
                    .bind(name)
                    .fetch_all(pool)
                    .await
                    .map_err(fail)?;
                let rowid = match pk.as_slice() {
                    [(column, true)] => Some(column.clone()),
                    _ => None,
                };
                if let Some(column) = &rowid {
                    indexes.push(vec![column.clone()]);
                }
                (indexes, rowid)
            }
        };
        let covered = indexes
            .iter()
            .any(|index| !index.is_empty() && index.iter().all(|c| table.key.contains(c)));
        if !covered {
            return Err(TargetError::Mismatch(format!(
                "table {}: key {} is not unique in database {database} (no primary key or \
                 unique index on those columns): a forget deletes by key",
                table.table,
                table.key.join(", ")
            )));
        }
        for key in &table.key {
            let column = described.iter().find(|c| &c.name == key).expect("checked");
            if column.nullable && rowid.as_ref() != Some(key) {
                return Err(TargetError::Mismatch(format!(
                    "table {}: key column {key} may be NULL in database {database}",
                    table.table
                )));
            }
        }
        Ok(())
    }
}
