//! The types of the store's lifecycle operations: what a registration, a
//! revocation and a status change ask for, and what was decided. The operations
//! themselves run per backend (`pg.rs`, `sqlite.rs`, `register/`); the
//! registration rules are in `rules.rs`.
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

use crate::crypto::Sealed;
use crate::request::{Flow, IdentifierType, RequestKind, RequestStatus};

/// Who a request is about, as stored.
#[derive(Debug, Clone, Copy)]
pub struct StoredIdentifier<'a> {
    /// Its type.
    pub kind: IdentifierType,
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
    /// The flow it came by.
    pub flow: Flow,
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
    Duplicate { id: i64, status: RequestStatus },
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
    NotRevocable { id: i64, status: RequestStatus },
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

/// What a status change found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Moved from this status.
    Moved(RequestStatus),
    /// Not moved: the request has this status, from which the lifecycle does
    /// not allow the change.
    NotAllowed(RequestStatus),
    /// No such request.
    NotFound,
}
