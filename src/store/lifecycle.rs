//! The lifecycle's types and its single-request operations: revoking a request
//! and moving it between statuses, each with its audit event, in one transaction.
//! Registration, which comes in batches, is in `register.rs`; its rules in
//! `rules.rs`.
//!
//! The rules (per tenant and customer identifier, compared by blind index):
//! a pending forget request refuses every new request; a pending access request
//! refuses a new access request (or, for the LCM flow, is joined: the agent gets
//! the pending id); only `registered` requests can be revoked.
//!
//! Two instances racing on one customer must not both register. PostgreSQL takes a
//! transaction-scoped advisory lock on the customer before reading; SQLite begins
//! the transaction IMMEDIATE (it has one writer, so transactions are serial). A
//! partial unique index on pending requests backs both. Inside the lock the
//! message's idempotency key is checked first, so a redelivery is answered with the
//! reply it got the first time.

use chrono::{DateTime, Utc};

use super::{Store, StoreError, on_pool};
use crate::crypto::Sealed;
use crate::protocol::RequestKind;

/// Who a request is about, as stored.
#[derive(Debug, Clone, Copy)]
pub struct StoredIdentifier<'a> {
    /// `account`, `gcrid`, `email`, `mobile` or `customer`.
    pub kind: &'a str,
    /// Blind index of the normalized value.
    pub index: &'a str,
    /// The value, encrypted.
    pub sealed: &'a Sealed,
}

/// The bus message behind an operation, as recorded.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    /// `mid:…`, `cid:…` or `nk:…`; `None` records no key.
    pub idempotency_key: Option<String>,
    /// The subtopic.
    pub operation: &'a str,
    /// The envelope's source.
    pub source: Option<&'a str>,
    /// AMQP message_id.
    pub message_id: Option<&'a str>,
    /// AMQP correlation_id.
    pub correlation_id: Option<&'a str>,
    /// AMQP reply_to.
    pub reply_to: Option<&'a str>,
    /// The delivery's routing key.
    pub routing_key: &'a str,
    /// What it carried that is not personal data, as JSON.
    pub details: String,
    /// What it carried that is personal data, encrypted JSON.
    pub personal: Option<&'a Sealed>,
    /// When the delivery was taken.
    pub received_at: DateTime<Utc>,
}

/// A request to register.
#[derive(Debug, Clone)]
pub struct NewRegistration<'a> {
    /// Owning tenant.
    pub tenant: &'a str,
    /// `lcm` or `rcdp`.
    pub flow: &'a str,
    /// access or forget.
    pub kind: RequestKind,
    /// LCM IsPseudonymize (false for RCDP).
    pub pseudonymize: bool,
    /// Who it is about.
    pub identifier: StoredIdentifier<'a>,
    /// reqSource or the envelope's source.
    pub source: Option<&'a str>,
    /// Who asks, for the audit trail: `agent:<id>` or `source:<reqSource>`.
    pub actor: &'a str,
    /// Join a pending access request instead of refusing (the LCM flow).
    pub join_pending: bool,
    /// The message that asks.
    pub message: NewMessage<'a>,
}

/// What a registration decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A new request with this id.
    Registered(i64),
    /// Joined the pending access request with this id.
    Joined(i64),
    /// Refused: an access request is pending.
    Duplicate { id: i64, status: String },
    /// Refused: a forget request is pending.
    ForgetPending(i64),
}

/// A request to revoke.
#[derive(Debug, Clone)]
pub struct NewRevocation<'a> {
    /// Owning tenant.
    pub tenant: &'a str,
    /// access or forget.
    pub kind: RequestKind,
    /// Blind index of the identifier.
    pub identifier_index: &'a str,
    /// Who asks.
    pub actor: &'a str,
    /// The message that asks.
    pub message: NewMessage<'a>,
}

/// What a revocation decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeDecision {
    /// Revoked the request with this id.
    Revoked(i64),
    /// The latest request of that kind is past `registered`.
    NotRevocable { id: i64, status: String },
    /// No request of that kind for that customer.
    NotFound,
}

/// The reply a message got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered<D> {
    /// The request it is about, if any.
    pub request_id: Option<i64>,
    /// The reply payload (the envelope's `message`), as JSON text.
    pub reply_payload: String,
    /// What was decided now; `None` when the message had been answered before and
    /// its stored reply is returned.
    pub decision: Option<D>,
}

const LOCK_CUSTOMER: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1 || '|' || $2, 0))";
pub(super) const SELECT_ANSWERED: &str =
    "SELECT request_id, reply_payload FROM inbound_messages WHERE idempotency_key = $1";
pub(super) const SELECT_PENDING: &str = "SELECT id, kind, pseudonymize, status FROM privacy_requests \
    WHERE tenant = $1 AND identifier_index = $2 AND status IN ('registered', 'in_progress') ORDER BY id";
pub(super) const INSERT_REQUEST: &str = "INSERT INTO privacy_requests \
    (tenant, flow, kind, pseudonymize, identifier_type, identifier_index, identifier_value, \
     key_id, source, status, created_at, updated_at, due_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'registered', $10, $10, $10) RETURNING id";
pub(super) const INSERT_MESSAGE: &str = "INSERT INTO inbound_messages \
    (idempotency_key, request_id, operation, source, message_id, correlation_id, reply_to, \
     routing_key, details, personal_data, personal_key_id, reply_payload, received_at, answered_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";
pub(super) const INSERT_EVENT: &str = "INSERT INTO request_events \
    (request_id, at, actor, from_status, to_status, reason) VALUES ($1, $2, $3, $4, $5, $6)";
const SELECT_LATEST: &str = "SELECT id, status FROM privacy_requests \
    WHERE tenant = $1 AND identifier_index = $2 AND kind = $3 ORDER BY id DESC LIMIT 1";
const REVOKE: &str = "UPDATE privacy_requests SET status = 'revoked', updated_at = $2 \
    WHERE id = $1 AND status = 'registered'";

/// Inserts the message row inside the open transaction `$tx`.
macro_rules! insert_message {
    ($tx:ident, $message:expr, $request_id:expr, $reply:expr, $now:expr) => {{
        let m: &$crate::store::NewMessage<'_> = $message;
        sqlx::query($crate::store::lifecycle::INSERT_MESSAGE)
            .bind(m.idempotency_key.as_deref())
            .bind($request_id)
            .bind(m.operation)
            .bind(m.source)
            .bind(m.message_id)
            .bind(m.correlation_id)
            .bind(m.reply_to)
            .bind(m.routing_key)
            .bind(&m.details)
            .bind(m.personal.map(|s| s.bytes.as_slice()))
            .bind(m.personal.map(|s| s.key_id.as_str()))
            .bind($reply)
            .bind(m.received_at)
            .bind($now)
            .execute(&mut *$tx)
            .await?;
    }};
}
pub(super) use insert_message;

impl Store {
    /// Revokes the pending request of a kind for a customer if it is still
    /// `registered`, records the message with its reply, and returns that reply.
    pub async fn revoke(
        &self,
        new: &NewRevocation<'_>,
        reply: impl Fn(&RevokeDecision) -> String,
    ) -> Result<Answered<RevokeDecision>, StoreError> {
        let now = Utc::now();
        let postgres = self.backend() == "postgres";
        let begin = self.begin_write();
        on_pool!(self, pool => {
            let mut tx = pool.begin_with(begin).await?;
            if postgres {
                sqlx::query(LOCK_CUSTOMER).bind(new.tenant).bind(new.identifier_index)
                    .execute(&mut *tx).await?;
            }
            if let Some(key) = &new.message.idempotency_key {
                let answered: Option<(Option<i64>, String)> =
                    sqlx::query_as(SELECT_ANSWERED).bind(key).fetch_optional(&mut *tx).await?;
                if let Some((request_id, reply_payload)) = answered {
                    tx.rollback().await?;
                    return Ok(Answered { request_id, reply_payload, decision: None });
                }
            }
            let latest: Option<(i64, String)> = sqlx::query_as(SELECT_LATEST)
                .bind(new.tenant).bind(new.identifier_index).bind(new.kind.as_str())
                .fetch_optional(&mut *tx).await?;
            let decision = match latest {
                Some((id, status)) if status == "registered" => {
                    sqlx::query(REVOKE).bind(id).bind(now).execute(&mut *tx).await?;
                    sqlx::query(INSERT_EVENT).bind(id).bind(now).bind(new.actor)
                        .bind("registered").bind("revoked")
                        .bind(format!("{} received", new.message.operation))
                        .execute(&mut *tx).await?;
                    RevokeDecision::Revoked(id)
                }
                Some((id, status)) => RevokeDecision::NotRevocable { id, status },
                None => RevokeDecision::NotFound,
            };
            let request_id = match &decision {
                RevokeDecision::Revoked(id) | RevokeDecision::NotRevocable { id, .. } => Some(*id),
                RevokeDecision::NotFound => None,
            };
            let reply_payload = reply(&decision);
            insert_message!(tx, &new.message, request_id, &reply_payload, now);
            tx.commit().await?;
            Ok(Answered { request_id, reply_payload, decision: Some(decision) })
        })
    }

    /// Moves a request from one of `from` to `to`, with an audit event; returns the
    /// status it had, or `None` if it does not exist. A status not in `from` is
    /// returned unchanged as `Err(status)` inside the `Ok`, so the caller can say why.
    pub async fn transition(
        &self,
        id: i64,
        from: &[&str],
        to: &str,
        actor: &str,
        reason: &str,
    ) -> Result<Option<Result<String, String>>, StoreError> {
        let now = Utc::now();
        let begin = self.begin_write();
        on_pool!(self, pool => {
            let mut tx = pool.begin_with(begin).await?;
            let status: Option<String> = sqlx::query_scalar(
                "SELECT status FROM privacy_requests WHERE id = $1",
            ).bind(id).fetch_optional(&mut *tx).await?;
            let Some(status) = status else { return Ok(None) };
            if !from.contains(&status.as_str()) {
                return Ok(Some(Err(status)));
            }
            let completed = matches!(to, "completed" | "failed" | "revoked").then_some(now);
            sqlx::query("UPDATE privacy_requests SET status = $2, updated_at = $3, \
                         completed_at = COALESCE($4, completed_at) WHERE id = $1")
                .bind(id).bind(to).bind(now).bind(completed).execute(&mut *tx).await?;
            sqlx::query(INSERT_EVENT).bind(id).bind(now).bind(actor).bind(&status).bind(to)
                .bind(reason).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(Some(Ok(status)))
        })
    }

    /// Records an audit event that changes nothing (e.g. personal data revealed).
    pub async fn note(&self, id: i64, actor: &str, reason: &str) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("INSERT INTO request_events (request_id, at, actor, from_status, to_status, reason) \
                         SELECT id, $2, $3, status, status, $4 FROM privacy_requests WHERE id = $1")
                .bind(id).bind(Utc::now()).bind(actor).bind(reason).execute(pool).await?;
            Ok(())
        })
    }
}
