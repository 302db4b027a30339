//! The statements of the job runner's transactions ([`super::jobs`]): finding
//! the request due longest (PostgreSQL skips rows another instance has locked;
//! SQLite's one writer needs no such care), taking its lease, and the writes
//! only the lease's holder may make.

use chrono::{DateTime, Utc};
use sqlx::query::{Query, QueryAs};
use sqlx::{Database, FromRow};

use super::jobs::{Fenced, Lease};
use super::statements::Binds;
use super::tx::WriteTx;
use super::{StoreError, decode};
use crate::request::{RequestKind, RequestStatus};

const NEXT_DUE: &str = "SELECT id, status, lease_owner IS NOT NULL FROM privacy_requests \
    WHERE ((status = 'registered' AND due_at <= $2) OR (status = 'in_progress' AND lease_expires_at <= $1)) \
    ORDER BY due_at, id LIMIT 1";
const TAKE_LEASE: &str = "UPDATE privacy_requests SET status = 'in_progress', lease_owner = $2, \
    lease_expires_at = $3, attempts = attempts + 1, updated_at = $4 WHERE id = $1 \
    RETURNING CAST(attempts AS BIGINT), tenant, kind, flow, pseudonymize, identifier_type, \
    identifier_value, key_id, created_at";
const FENCE: &str =
    "WHERE id = $1 AND status = 'in_progress' AND lease_owner = $2 AND attempts = $3";
const TENANT_AND_KIND: &str = "SELECT tenant, kind FROM privacy_requests WHERE id = $1";
const INSERT_STATUS_CHANGE: &str = "INSERT INTO status_outbox \
    (request_id, tenant, kind, status, changed_at) VALUES ($1, $2, $3, $4, $5)";

/// attempts, tenant, kind, flow, pseudonymize, identifier_type, identifier_value, key_id, created_at
pub(super) type LeaseRow = (
    i64,
    String,
    String,
    String,
    bool,
    String,
    Vec<u8>,
    String,
    DateTime<Utc>,
);

fn take_lease<'q, DB: Database>(
    id: i64,
    owner: &'q str,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> QueryAs<'q, DB, LeaseRow, <DB as Database>::Arguments>
where
    i64: Binds<'q, DB>,
    &'q str: Binds<'q, DB>,
    DateTime<Utc>: Binds<'q, DB>,
    LeaseRow: for<'r> FromRow<'r, DB::Row>,
{
    sqlx::query_as(TAKE_LEASE)
        .bind(id)
        .bind(owner)
        .bind(until)
        .bind(now)
}

fn status_change<'q, DB: Database>(
    id: i64,
    tenant: &'q str,
    kind: RequestKind,
    status: RequestStatus,
    at: DateTime<Utc>,
) -> Query<'q, DB, <DB as Database>::Arguments>
where
    i64: Binds<'q, DB>,
    &'q str: Binds<'q, DB>,
    DateTime<Utc>: Binds<'q, DB>,
{
    sqlx::query(INSERT_STATUS_CHANGE)
        .bind(id)
        .bind(tenant)
        .bind(kind.as_str())
        .bind(status.as_str())
        .bind(at)
}

fn fenced<'q, DB: Database>(
    sql: &'q str,
    lease: &'q Lease,
    how: Fenced<'q>,
    now: DateTime<Utc>,
) -> Query<'q, DB, <DB as Database>::Arguments>
where
    i64: Binds<'q, DB>,
    &'q str: Binds<'q, DB>,
    DateTime<Utc>: Binds<'q, DB>,
{
    let query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(lease.request_id)
        .bind(lease.owner.as_str())
        .bind(lease.attempt);
    match how {
        Fenced::Extend(until) => query.bind(until),
        Fenced::Complete(result) => query.bind(result).bind(now),
        Fenced::Release { retry_at, error } => query.bind(retry_at).bind(error).bind(now),
        Fenced::Fail(error) => query.bind(error).bind(now),
    }
}

fn fenced_sql(how: &Fenced<'_>) -> String {
    let set = match how {
        Fenced::Extend(_) => "lease_expires_at = $4",
        Fenced::Complete(_) => {
            "status = 'completed', result = $4, updated_at = $5, completed_at = $5, \
             lease_owner = NULL, lease_expires_at = NULL, last_error = NULL"
        }
        Fenced::Release { .. } => {
            "lease_owner = NULL, lease_expires_at = $4, last_error = $5, updated_at = $6"
        }
        Fenced::Fail(_) => {
            "status = 'failed', last_error = $4, updated_at = $5, completed_at = $5, \
             lease_owner = NULL, lease_expires_at = NULL"
        }
    };
    format!("UPDATE privacy_requests SET {set} {FENCE}")
}

impl WriteTx {
    /// The request due longest, locked for this transaction: its id, its
    /// status, and whether a lease on it ran out (rather than was let go).
    pub async fn next_due(
        &mut self,
        now: DateTime<Utc>,
        due_before: DateTime<Utc>,
    ) -> Result<Option<(i64, RequestStatus, bool)>, StoreError> {
        let row: Option<(i64, String, bool)> = match self {
            // Another instance's claim holds its row: skip it, take the next.
            Self::Postgres(tx) => {
                let sql = format!("{NEXT_DUE} FOR UPDATE SKIP LOCKED");
                let query = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(now)
                    .bind(due_before);
                query.fetch_optional(&mut **tx).await?
            }
            // The IMMEDIATE transaction already excludes every other writer.
            Self::Sqlite(tx) => {
                let query = sqlx::query_as(NEXT_DUE).bind(now).bind(due_before);
                query.fetch_optional(&mut **tx).await?
            }
        };
        row.map(|(id, status, held)| {
            Ok((id, decode(&status, RequestStatus::parse, "status")?, held))
        })
        .transpose()
    }

    /// Takes the lease on a request (in progress, next attempt).
    pub async fn take_lease(
        &mut self,
        id: i64,
        owner: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<LeaseRow, StoreError> {
        Ok(match self {
            Self::Postgres(tx) => {
                take_lease(id, owner, until, now)
                    .fetch_one(&mut **tx)
                    .await?
            }
            Self::Sqlite(tx) => {
                take_lease(id, owner, until, now)
                    .fetch_one(&mut **tx)
                    .await?
            }
        })
    }

    /// Makes a write only the lease's holder may make; false when it does not
    /// hold the lease any more.
    pub async fn fenced(
        &mut self,
        lease: &Lease,
        how: Fenced<'_>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let sql = fenced_sql(&how);
        let done = match self {
            Self::Postgres(tx) => fenced(&sql, lease, how, now)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
            Self::Sqlite(tx) => fenced(&sql, lease, how, now)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
        };
        Ok(done == 1)
    }

    /// Counts a request's attempts afresh (an operator's retry).
    pub async fn reset_attempts(&mut self, id: i64) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE privacy_requests SET attempts = 0, last_error = NULL, \
            lease_owner = NULL, lease_expires_at = NULL, completed_at = NULL WHERE id = $1";
        match self {
            Self::Postgres(tx) => sqlx::query(SQL)
                .bind(id)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
            Self::Sqlite(tx) => sqlx::query(SQL)
                .bind(id)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
        };
        Ok(())
    }

    /// A request's tenant and kind.
    pub async fn tenant_and_kind(&mut self, id: i64) -> Result<(String, RequestKind), StoreError> {
        let (tenant, kind): (String, String) = match self {
            Self::Postgres(tx) => {
                sqlx::query_as(TENANT_AND_KIND)
                    .bind(id)
                    .fetch_one(&mut **tx)
                    .await?
            }
            Self::Sqlite(tx) => {
                sqlx::query_as(TENANT_AND_KIND)
                    .bind(id)
                    .fetch_one(&mut **tx)
                    .await?
            }
        };
        Ok((tenant, decode(&kind, RequestKind::parse, "kind")?))
    }

    /// Writes an announced status change to the outbox.
    pub async fn insert_status_change(
        &mut self,
        id: i64,
        tenant: &str,
        kind: RequestKind,
        status: RequestStatus,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match self {
            Self::Postgres(tx) => {
                let query = status_change(id, tenant, kind, status, at);
                query.execute(&mut **tx).await?;
            }
            Self::Sqlite(tx) => {
                let query = status_change(id, tenant, kind, status, at);
                query.execute(&mut **tx).await?;
            }
        }
        Ok(())
    }
}
