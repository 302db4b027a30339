//! The request store: one interface, two backends (SQLite embedded, PostgreSQL in
//! production), each with its own migrations, applied at start.
//!
//! This is the only module that runs SQL on the worker's own database. Both
//! backends run the same SQL text where they can (sqlx accepts `$1` placeholders
//! for SQLite too, `statements.rs`). A single statement runs on either pool with
//! [`on_pool!`], which only binds the pool (the body, its `?` included, is the
//! caller's). A transaction is a [`tx::WriteTx`], whose methods show each
//! backend's difference in two match arms; the set-based batch of PostgreSQL and
//! the per-row batch of SQLite are `register/pg.rs` and `register/sqlite.rs`.
//! Every write that answers a message happens in one transaction with the reply
//! it produces, so a reply is never sent for a request that was not recorded.

mod connect;
mod erasure;
mod error;
mod gauges;
mod jobs;
mod keys;
mod lease;
mod lifecycle;
mod queries;
mod register;
mod rules;
mod statements;
mod status;
mod tx;

use sqlx::{PgPool, SqlitePool};

pub use connect::StoreSettings;
pub use erasure::{Discovery, FoundRows, LedgerEntry, RelatedRequest};
pub use error::{StoreError, is_transient_sqlx};
pub use gauges::StoreGauges;
pub use jobs::{Claimed, Lease, StatusChange, Timing};
pub use keys::SampleIdentifier;
pub use lifecycle::{
    Answered, Decision, NewMessage, NewRegistration, NewRevocation, RevokeDecision,
    StoredIdentifier, Transition,
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
/// per backend, so the same SQL and code serve both. It binds the pool and
/// nothing else: the statements, their `?` and any transaction are the body's.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pools {
            $crate::store::Pools::Sqlite($pool) => $body,
            $crate::store::Pools::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Backend {
    /// For logs: `sqlite` or `postgres`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// A stored text read back as its type; text the store did not write is an error.
fn decode<T>(text: &str, parse: fn(&str) -> Option<T>, what: &str) -> Result<T, StoreError> {
    parse(text).ok_or_else(|| StoreError::Corrupt(format!("unknown {what} {text:?}")))
}

impl Store {
    /// Which backend this store uses.
    pub fn backend(&self) -> Backend {
        match self.pools {
            Pools::Sqlite(_) => Backend::Sqlite,
            Pools::Postgres(_) => Backend::Postgres,
        }
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}
