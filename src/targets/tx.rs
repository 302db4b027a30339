//! A transaction on a customer database, on either backend, with the two
//! things the erasure does in it: run a statement, and read some text cells.

use sqlx::{Postgres, Sqlite, Transaction};

use super::binds::{Bind, postgres_query, sqlite_query};

/// A transaction on a customer database.
pub(super) enum Tx {
    /// On PostgreSQL.
    Postgres(Transaction<'static, Postgres>),
    /// On SQLite.
    Sqlite(Transaction<'static, Sqlite>),
}

impl Tx {
    pub(super) async fn execute(&mut self, sql: &str, binds: &[Bind]) -> Result<u64, sqlx::Error> {
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

    pub(super) async fn fetch(
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

/// Why a change failed: the database, or no key to make pseudonyms with.
pub(super) enum ChangeError {
    /// The database's error.
    Db(sqlx::Error),
    /// The key file has no pseudonym key.
    NoKey,
}

impl From<sqlx::Error> for ChangeError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e)
    }
}
