//! The request store: one interface, two backends (SQLite embedded, PostgreSQL in
//! production), each with its own migrations, applied at start.
//!
//! This is the only module that runs SQL. Both backends run the same SQL text (sqlx
//! accepts `$1` placeholders for SQLite too); [`on_pool!`] expands a body once per
//! backend so the statements are written once. Every write that answers a message
//! happens in one transaction with the reply it produces, so a reply is never sent
//! for a request that was not recorded.

mod connect;
mod error;
mod keys;
mod lifecycle;
mod queries;
mod register;
mod rules;

use sqlx::{PgPool, SqlitePool};

pub use connect::StoreSettings;
pub use error::StoreError;
pub use keys::SampleIdentifier;
pub use lifecycle::{
    Answered, Decision, NewMessage, NewRegistration, NewRevocation, RevokeDecision,
    StoredIdentifier,
};
pub use queries::{RequestEvent, RequestSummary, SealedDetail};

/// The request store. Cheap to clone: it holds a connection pool.
#[derive(Debug, Clone)]
pub struct Store {
    pools: Pools,
}

#[derive(Debug, Clone)]
enum Pools {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the backend's pool; the body is compiled once
/// per backend, so the same SQL and code serve both.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pools {
            $crate::store::Pools::Sqlite($pool) => $body,
            $crate::store::Pools::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

impl Store {
    /// Which backend this store uses: `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.pools {
            Pools::Sqlite(_) => "sqlite",
            Pools::Postgres(_) => "postgres",
        }
    }

    /// The statement that opens a transaction that will write: SQLite's must be
    /// IMMEDIATE (take the write lock first, so two processes' read-then-write
    /// transactions are serial instead of failing with BUSY_SNAPSHOT).
    fn begin_write(&self) -> &'static str {
        match self.pools {
            Pools::Sqlite(_) => "BEGIN IMMEDIATE",
            Pools::Postgres(_) => "BEGIN",
        }
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}
