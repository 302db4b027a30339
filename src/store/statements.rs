//! The SQL both backends run, written once: statement texts (sqlx takes `$1`
//! placeholders for SQLite too) and, for the statements with many parameters,
//! builders generic over the backend, so each bind list exists in one place.
//! What differs between the backends (locks, set-based batches, claiming) is in
//! `pg.rs`, `sqlite.rs` and `register/`.

use chrono::{DateTime, Utc};
use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::{Database, Encode, FromRow, Type};

use super::lifecycle::NewMessage;
use crate::request::{RequestKind, RequestStatus};

pub const SELECT_ANSWERED: &str =
    "SELECT request_id, reply_payload FROM inbound_messages WHERE idempotency_key = $1";
pub const SELECT_PENDING: &str = "SELECT id, kind, pseudonymize, status FROM privacy_requests \
    WHERE tenant = $1 AND identifier_index = $2 AND status IN ('registered', 'in_progress') ORDER BY id";
pub const INSERT_REQUEST: &str = "INSERT INTO privacy_requests \
    (tenant, flow, kind, pseudonymize, identifier_type, identifier_index, identifier_value, \
     key_id, source, status, created_at, updated_at, due_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'registered', $10, $10, $10) RETURNING id";
const SELECT_LATEST: &str = "SELECT id, status FROM privacy_requests \
    WHERE tenant = $1 AND identifier_index = $2 AND kind = $3 ORDER BY id DESC LIMIT 1";
const SELECT_STATUS: &str = "SELECT status FROM privacy_requests WHERE id = $1";
/// Moves a request from `$4` to `$2`; `completed_at` is set when `$5` is given.
const SET_STATUS: &str = "UPDATE privacy_requests SET status = $2, updated_at = $3, \
    completed_at = COALESCE($5, completed_at) WHERE id = $1 AND status = $4";
const INSERT_MESSAGE: &str = "INSERT INTO inbound_messages \
    (idempotency_key, request_id, operation, source, message_id, correlation_id, reply_to, \
     routing_key, details, personal_data, personal_key_id, reply_payload, received_at, answered_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";
const INSERT_EVENT: &str = "INSERT INTO request_events \
    (request_id, at, actor, from_status, to_status, reason) VALUES ($1, $2, $3, $4, $5, $6)";

/// A parameter type the builders bind, for a backend `DB`.
pub trait Binds<'q, DB: Database>: Encode<'q, DB> + Type<DB> {}
impl<'q, DB: Database, T: Encode<'q, DB> + Type<DB>> Binds<'q, DB> for T {}

/// Records a message with the reply it was given.
pub fn insert_message<'q, DB: Database>(
    m: &'q NewMessage<'q>,
    request_id: Option<i64>,
    reply: &'q str,
    now: DateTime<Utc>,
) -> Query<'q, DB, <DB as Database>::Arguments>
where
    Option<&'q str>: Binds<'q, DB>,
    Option<i64>: Binds<'q, DB>,
    &'q str: Binds<'q, DB>,
    Option<&'q [u8]>: Binds<'q, DB>,
    DateTime<Utc>: Binds<'q, DB>,
{
    sqlx::query(INSERT_MESSAGE)
        .bind(m.idempotency_key.as_deref())
        .bind(request_id)
        .bind(m.operation)
        .bind(m.source)
        .bind(m.message_id)
        .bind(m.correlation_id)
        .bind(m.reply_to)
        .bind(m.routing_key)
        .bind(m.details.as_str())
        .bind(m.personal.map(|s| s.bytes.as_slice()))
        .bind(m.personal.map(|s| s.key_id.as_str()))
        .bind(reply)
        .bind(m.received_at)
        .bind(now)
}

/// Records an audit event: who moved a request from one status to another (or
/// left it where it was), and why.
pub fn insert_event<'q, DB: Database>(
    request_id: i64,
    now: DateTime<Utc>,
    actor: &'q str,
    from: Option<RequestStatus>,
    to: RequestStatus,
    reason: &'q str,
) -> Query<'q, DB, <DB as Database>::Arguments>
where
    i64: Binds<'q, DB>,
    DateTime<Utc>: Binds<'q, DB>,
    &'q str: Binds<'q, DB>,
    Option<&'q str>: Binds<'q, DB>,
{
    sqlx::query(INSERT_EVENT)
        .bind(request_id)
        .bind(now)
        .bind(actor)
        .bind(from.map(RequestStatus::as_str))
        .bind(to.as_str())
        .bind(reason)
}

/// The reply a message with idempotency key `key` was given, if any.
pub fn answered<'q, DB: Database>(
    key: &'q str,
) -> QueryAs<'q, DB, (Option<i64>, String), <DB as Database>::Arguments>
where
    &'q str: Binds<'q, DB>,
    (Option<i64>, String): for<'r> FromRow<'r, DB::Row>,
{
    sqlx::query_as(SELECT_ANSWERED).bind(key)
}

/// The newest request of `kind` for a customer: its id and status.
pub fn latest<'q, DB: Database>(
    tenant: &'q str,
    index: &'q str,
    kind: RequestKind,
) -> QueryAs<'q, DB, (i64, String), <DB as Database>::Arguments>
where
    &'q str: Binds<'q, DB>,
    (i64, String): for<'r> FromRow<'r, DB::Row>,
{
    sqlx::query_as(SELECT_LATEST)
        .bind(tenant)
        .bind(index)
        .bind(kind.as_str())
}

/// A request's status.
pub fn status<'q, DB: Database>(id: i64) -> QueryScalar<'q, DB, String, <DB as Database>::Arguments>
where
    i64: Binds<'q, DB>,
    (String,): for<'r> FromRow<'r, DB::Row>,
{
    sqlx::query_scalar(SELECT_STATUS).bind(id)
}

/// Moves a request from `from` to `to` as of `now`; `completed_at` is set when
/// `to` is final.
pub fn set_status<'q, DB: Database>(
    id: i64,
    from: RequestStatus,
    to: RequestStatus,
    now: DateTime<Utc>,
) -> Query<'q, DB, <DB as Database>::Arguments>
where
    i64: Binds<'q, DB>,
    &'q str: Binds<'q, DB>,
    DateTime<Utc>: Binds<'q, DB>,
    Option<DateTime<Utc>>: Binds<'q, DB>,
{
    sqlx::query(SET_STATUS)
        .bind(id)
        .bind(to.as_str())
        .bind(now)
        .bind(from.as_str())
        .bind(to.is_final().then_some(now))
}
