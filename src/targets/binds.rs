//! The values bound to the statements run on the customer databases: a text
//! (or NULL), or on PostgreSQL an array of them (`= ANY($1)`, `UNNEST`), which
//! SQLite has no type for. One place for both the selections and the erasure.

use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::sqlite::SqliteArguments;
use sqlx::{Postgres, Sqlite};

/// A bound value.
#[derive(Debug, Clone)]
pub(super) enum Bind {
    /// One text, or NULL.
    One(Option<String>),
    /// An array of texts (PostgreSQL only).
    Many(Vec<Option<String>>),
}

/// `sql` with `binds` bound, for PostgreSQL.
pub(super) fn postgres_query<'q>(
    sql: String,
    binds: impl IntoIterator<Item = Bind>,
) -> Query<'q, Postgres, PgArguments> {
    let query = sqlx::query(sqlx::AssertSqlSafe(sql));
    binds.into_iter().fold(query, |q, b| match b {
        Bind::One(v) => q.bind(v),
        Bind::Many(v) => q.bind(v),
    })
}

/// `sql` with `binds` bound, for SQLite (which never gets an array: arrays
/// are chosen for PostgreSQL tables only).
pub(super) fn sqlite_query<'q>(
    sql: String,
    binds: impl IntoIterator<Item = Bind>,
) -> Query<'q, Sqlite, SqliteArguments> {
    let query = sqlx::query(sqlx::AssertSqlSafe(sql));
    binds.into_iter().fold(query, |q, b| match b {
        Bind::One(v) => q.bind(v),
        Bind::Many(_) => unreachable!("arrays are bound on PostgreSQL only"),
    })
}
