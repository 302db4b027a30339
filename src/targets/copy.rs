//! A PostgreSQL table's selected rows as CSV, written by the database itself:
//! `COPY (SELECT …) TO STDOUT (FORMAT csv)`. The export's hot path: PostgreSQL
//! formats the cells in its own process, and the worker only moves bytes, which
//! is what makes a million-row export about as fast as `psql \copy` by hand.
//!
//! `COPY` takes no bind parameters, so this is the one place that writes values
//! into SQL: each as an escape-string literal (`E'…'` with `\` and `'` doubled,
//! the same whatever `standard_conforming_strings` says), after refusing NUL,
//! which no PostgreSQL text can hold. Names are the data map's checked plain
//! identifiers, quoted, as everywhere else.

use futures_util::stream::{BoxStream, StreamExt};

use super::select::{Mark, quoted, where_clause};
use super::{Pool, TargetError, Targets, classify};
use crate::datamap::TableMap;
use crate::targets::Selection;

/// CSV bytes handed on at a time: many rows per piece, not one.
const PIECE: usize = 64 * 1024;

/// A piece of CSV: whole records, CRLF line breaks, and how many records.
#[derive(Debug)]
pub struct CsvPiece {
    /// The records, RFC 4180.
    pub bytes: Vec<u8>,
    /// How many.
    pub records: u64,
}

/// `value` as a PostgreSQL escape-string literal.
fn literal(value: &str) -> Result<String, TargetError> {
    if value.contains('\0') {
        return Err(TargetError::Mismatch(
            "a value to select by holds a NUL character".into(),
        ));
    }
    Ok(format!(
        "E'{}'",
        value.replace('\\', "\\\\").replace('\'', "''")
    ))
}

impl Targets {
    /// The selected rows' `columns` as CSV records (no header), in key order,
    /// streamed in pieces; `None` when the table's database is not PostgreSQL.
    pub fn csv_rows<'a>(
        &'a self,
        table: &'a TableMap,
        selection: &Selection,
        columns: &[&str],
    ) -> Option<BoxStream<'a, Result<CsvPiece, TargetError>>> {
        let target = self.pool(&table.table.database).ok()?;
        let Pool::Postgres(pool) = target else {
            return None;
        };
        let database = table.table.database.as_str();
        let statement = (|| {
            let typed = self.typed(&table.table)?;
            let clause = where_clause(table, selection, typed, Mark::Literal(&literal))?;
            let selected: Vec<String> = columns.iter().map(|c| quoted(c)).collect();
            let keys: Vec<String> = table.key.iter().map(|k| quoted(k)).collect();
            Ok::<_, TargetError>(format!(
                "COPY (SELECT {} FROM {} WHERE {} ORDER BY {}) TO STDOUT (FORMAT csv)",
                selected.join(", "),
                quoted(&table.table.table),
                clause.0,
                keys.join(", ")
            ))
        })();
        let stream = async_stream(pool, statement, database);
        Some(stream)
    }
}

/// Runs the `COPY` and gathers its rows (one CopyData message each, LF-ended)
/// into pieces of whole records ending in CRLF. A line break inside a quoted
/// cell is the cell's own and stays as it is, as the `csv` crate leaves it.
fn async_stream<'a>(
    pool: &'a sqlx::PgPool,
    statement: Result<String, TargetError>,
    database: &'a str,
) -> BoxStream<'a, Result<CsvPiece, TargetError>> {
    use sqlx::postgres::PgPoolCopyExt;
    let start = async move {
        let statement = statement?;
        pool.copy_out_raw(&statement)
            .await
            .map_err(|e| classify(database, e))
    };
    futures_util::stream::once(start)
        .map(move |copy| match copy {
            Err(e) => futures_util::stream::once(async { Err(e) }).boxed(),
            Ok(rows) => pieces(rows, database).boxed(),
        })
        .flatten()
        .boxed()
}

fn pieces<'a, B: AsRef<[u8]> + Send + 'a>(
    rows: BoxStream<'a, Result<B, sqlx::Error>>,
    database: &'a str,
) -> impl futures_util::Stream<Item = Result<CsvPiece, TargetError>> + Send + 'a {
    let fresh = || CsvPiece {
        bytes: Vec::with_capacity(PIECE + 4096),
        records: 0,
    };
    futures_util::stream::unfold(
        (rows, Some(fresh())),
        move |(mut rows, mut piece)| async move {
            let current = piece.as_mut()?;
            loop {
                match rows.next().await {
                    Some(Ok(row)) => {
                        let row = row.as_ref();
                        let line = row.strip_suffix(b"\n").unwrap_or(row);
                        current.bytes.extend_from_slice(line);
                        current.bytes.extend_from_slice(b"\r\n");
                        current.records += 1;
                        if current.bytes.len() >= PIECE {
                            let full = std::mem::replace(current, fresh());
                            return Some((Ok(full), (rows, piece)));
                        }
                    }
                    Some(Err(e)) => return Some((Err(classify(database, e)), (rows, None))),
                    None => {
                        let last = piece.take().filter(|p| p.records > 0)?;
                        return Some((Ok(last), (rows, None)));
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::literal;

    #[test]
    fn a_literal_doubles_quotes_and_backslashes_and_refuses_nul() {
        assert_eq!(literal("O'Brien").unwrap(), "E'O''Brien'");
        assert_eq!(literal(r"a\'b").unwrap(), r"E'a\\''b'");
        assert_eq!(literal("").unwrap(), "E''");
        assert!(literal("a\0b").is_err());
    }
}
