//! A write transaction on either backend, and the statements the single-request
//! operations run in it. Each method is one statement, with the backend's
//! difference (if any) spelled out in its two arms: PostgreSQL locks a customer
//! with a transaction-scoped advisory lock, SQLite needs no lock because its
//! write transactions begin IMMEDIATE and so run one at a time. Nothing is
//! committed until [`WriteTx::commit`]; dropping the transaction rolls it back.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Sqlite, Transaction};

use super::lifecycle::NewMessage;
use super::statements;
use super::{Pools, Store, StoreError, decode};
use crate::request::{RequestKind, RequestStatus};

const LOCK_CUSTOMER: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1 || '|' || $2, 0))";

/// An open write transaction.
pub(super) enum WriteTx {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

impl Store {
    /// Begins a transaction that will write. SQLite's is IMMEDIATE: it takes the
    /// write lock first, so two processes' read-then-write transactions are
    /// serial instead of failing with BUSY_SNAPSHOT.
    pub(super) async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        Ok(match &self.pools {
            Pools::Postgres(pool) => WriteTx::Postgres(pool.begin().await?),
            Pools::Sqlite(pool) => WriteTx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
        })
    }
}

impl WriteTx {
    /// Serialises writers for one customer until the transaction ends.
    pub async fn lock_customer(&mut self, tenant: &str, index: &str) -> Result<(), StoreError> {
        match self {
            Self::Postgres(tx) => {
                let lock = sqlx::query(LOCK_CUSTOMER).bind(tenant).bind(index);
                lock.execute(&mut **tx).await?;
            }
            Self::Sqlite(_) => {} // the IMMEDIATE transaction is the lock
        }
        Ok(())
    }

    /// The request id and reply a message with this idempotency key was given.
    pub async fn answered(
        &mut self,
        key: &str,
    ) -> Result<Option<(Option<i64>, String)>, StoreError> {
        Ok(match self {
            Self::Postgres(tx) => statements::answered(key).fetch_optional(&mut **tx).await?,
            Self::Sqlite(tx) => statements::answered(key).fetch_optional(&mut **tx).await?,
        })
    }

    /// The newest request of `kind` for a customer, and its status.
    pub async fn latest(
        &mut self,
        tenant: &str,
        index: &str,
        kind: RequestKind,
    ) -> Result<Option<(i64, RequestStatus)>, StoreError> {
        let row = match self {
            Self::Postgres(tx) => {
                let query = statements::latest(tenant, index, kind);
                query.fetch_optional(&mut **tx).await?
            }
            Self::Sqlite(tx) => {
                let query = statements::latest(tenant, index, kind);
                query.fetch_optional(&mut **tx).await?
            }
        };
        row.map(|(id, status)| Ok((id, decode(&status, RequestStatus::parse, "status")?)))
            .transpose()
    }

    /// A request's status.
    pub async fn status(&mut self, id: i64) -> Result<Option<RequestStatus>, StoreError> {
        let status = match self {
            Self::Postgres(tx) => statements::status(id).fetch_optional(&mut **tx).await?,
            Self::Sqlite(tx) => statements::status(id).fetch_optional(&mut **tx).await?,
        };
        status
            .map(|s| decode(&s, RequestStatus::parse, "status"))
            .transpose()
    }

    /// Moves a request from `from` to `to` (which the lifecycle must allow);
    /// false when it no longer has status `from`.
    pub async fn set_status(
        &mut self,
        id: i64,
        from: RequestStatus,
        to: RequestStatus,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        debug_assert!(from.may_become(to), "{from} -> {to}");
        let done = match self {
            Self::Postgres(tx) => {
                let query = statements::set_status(id, from, to, now);
                query.execute(&mut **tx).await?.rows_affected()
            }
            Self::Sqlite(tx) => {
                let query = statements::set_status(id, from, to, now);
                query.execute(&mut **tx).await?.rows_affected()
            }
        };
        Ok(done == 1)
    }

    /// Records an audit event.
    pub async fn insert_event(
        &mut self,
        request_id: i64,
        now: DateTime<Utc>,
        actor: &str,
        (from, to): (Option<RequestStatus>, RequestStatus),
        reason: &str,
    ) -> Result<(), StoreError> {
        match self {
            Self::Postgres(tx) => {
                let query = statements::insert_event(request_id, now, actor, from, to, reason);
                query.execute(&mut **tx).await?;
            }
            Self::Sqlite(tx) => {
                let query = statements::insert_event(request_id, now, actor, from, to, reason);
                query.execute(&mut **tx).await?;
            }
        };
        Ok(())
    }

    /// Records a message with the reply it was given.
    pub async fn insert_message(
        &mut self,
        message: &NewMessage<'_>,
        request_id: Option<i64>,
        reply: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match self {
            Self::Postgres(tx) => {
                let query = statements::insert_message(message, request_id, reply, now);
                query.execute(&mut **tx).await?;
            }
            Self::Sqlite(tx) => {
                let query = statements::insert_message(message, request_id, reply, now);
                query.execute(&mut **tx).await?;
            }
        };
        Ok(())
    }

    /// Makes every write of the transaction durable at once.
    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Self::Postgres(tx) => tx.commit().await?,
            Self::Sqlite(tx) => tx.commit().await?,
        }
        Ok(())
    }
}
