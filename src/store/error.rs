//! Store failures, classified once: the worker retries [`StoreError::Unavailable`]
//! and nothing else.
//!
//! Messages carry database error texts, which name constraints and columns but not
//! values (PostgreSQL keeps values in the error's detail, which is never read here).

use thiserror::Error;

/// Why a store operation failed. The database's own error is kept as the
/// source, so a caller can ask it what it was ([`StoreError::is_unique_violation`])
/// instead of reading its text.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Unreachable, busy, locked, read-only or shutting down: worth retrying.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The database refused the operation for a reason retrying will not fix.
    #[error("database refused the operation: {0}")]
    Rejected(#[source] sqlx::Error),
    /// The store holds something it did not write (a status it does not know, a
    /// row missing a column): a bug or a hand edit, not worth retrying.
    #[error("the store holds what it did not write: {0}")]
    Corrupt(String),
    /// The DATABASE_URL or store settings cannot work.
    #[error("store configuration: {0}")]
    Config(String),
    /// The database driver refused the configuration.
    #[error("store configuration: {0}")]
    Configuration(#[source] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("migrations failed: {0}")]
    Migration(#[source] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// True when the same operation may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// True when a unique constraint refused the write (another writer got
    /// there first).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Self::Rejected(sqlx::Error::Database(db)) => db.is_unique_violation(),
            _ => false,
        }
    }
}

/// PostgreSQL SQLSTATEs that mean "try again": connection exceptions (08),
/// serialization failure and deadlock (40001, 40P01), insufficient resources (53),
/// lock not available (55P03), a statement cancelled or timed out (57014),
/// shutdown and start-up (57P01..57P03), read-only during a failover (25006).
fn postgres_transient(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(
            code,
            "40001" | "40P01" | "55P03" | "57014" | "57P01" | "57P02" | "57P03" | "25006"
        )
}

/// SQLite result codes (primary code in the low byte) that mean "try again":
/// BUSY (5), LOCKED (6), IOERR (10), FULL (13), CANTOPEN (14), READONLY (8).
fn sqlite_transient(code: &str) -> bool {
    code.parse::<i32>()
        .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 8 | 10 | 13 | 14))
}

/// Whether a database error means "try again": the database unreachable,
/// restarting, busy, locked, out of resources, a deadlock, a serialization
/// failure or a timeout. The one classification, for the worker's store and
/// the customer databases alike (`targets` asks it too).
pub fn is_transient_sqlx(error: &sqlx::Error) -> bool {
    use sqlx::Error as E;
    match error {
        E::Io(_)
        | E::Tls(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed
        | E::Protocol(_) => true,
        E::Database(db) => {
            let code = db.code().unwrap_or_default();
            // The code spaces overlap (PostgreSQL's 22021 reads as SQLite's 5
            // once masked), so ask which backend raised it.
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                sqlite_transient(&code)
            } else {
                postgres_transient(&code)
            }
        }
        _ => false,
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if is_transient_sqlx(&error) {
            return Self::Unavailable(error);
        }
        match &error {
            sqlx::Error::Configuration(_) => Self::Configuration(error),
            _ => Self::Rejected(error),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        use sqlx::migrate::MigrateError;
        match error {
            // A migration that could not run because the database went away is
            // an outage like any other; anything else about it is not.
            MigrateError::Execute(e) => match Self::from(e) {
                Self::Unavailable(e) => Self::Unavailable(e),
                Self::Rejected(e) | Self::Configuration(e) => {
                    Self::Migration(MigrateError::Execute(e))
                }
                other => other,
            },
            other => Self::Migration(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_and_locked_sqlite_codes_are_transient_and_constraints_are_not() {
        assert!(sqlite_transient("5"));
        assert!(sqlite_transient("517")); // SQLITE_BUSY_SNAPSHOT
        assert!(sqlite_transient("6"));
        assert!(!sqlite_transient("2067")); // SQLITE_CONSTRAINT_UNIQUE
        assert!(!sqlite_transient("1"));
    }

    #[test]
    fn connection_and_shutdown_postgres_codes_are_transient() {
        assert!(postgres_transient("08006"));
        assert!(postgres_transient("57P01"));
        assert!(postgres_transient("40001"));
        assert!(!postgres_transient("23505"));
        assert!(!postgres_transient("42P01"));
    }
}
