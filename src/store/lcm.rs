//! Recording a GetDataPrivacyStatusRequest and the reply it gets, idempotently.
//!
//! One transaction: create the request (its id comes from the sequence), record the
//! message under its idempotency key with the reply payload, and open the audit
//! trail. If the key is already taken (a redelivery, a re-publish, or another
//! instance racing us) the transaction is rolled back and the stored reply is
//! returned instead, so the same request always gets the same id.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::{Store, StoreError, on_pool};
use crate::protocol::{GET_DATA_PRIVACY_STATUS, PrivacyRequest, success_payload};

/// A validated request and the delivery facts to record with it.
#[derive(Debug, Clone)]
pub struct NewLcmRequest<'a> {
    /// The tenant LCM requests belong to.
    pub tenant: &'a str,
    /// The validated payload.
    pub request: &'a PrivacyRequest,
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
    /// When the delivery was taken.
    pub received_at: DateTime<Utc>,
}

impl NewLcmRequest<'_> {
    /// `mid:<message_id>` when the message has one, else `nk:<sha256 of the natural key>`
    /// (so the key column holds no request data).
    pub fn idempotency_key(&self) -> String {
        match self.message_id.filter(|m| !m.is_empty()) {
            Some(message_id) => format!("mid:{message_id}"),
            None => {
                let natural = format!("{}|{}", self.tenant, self.request.natural_key());
                format!("nk:{:x}", Sha256::digest(natural.as_bytes()))
            }
        }
    }
}

/// The outcome of recording a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The request id (a decimal string on the wire).
    pub request_id: i64,
    /// The reply payload committed with it (the envelope's `message`), as JSON text.
    pub reply_payload: String,
    /// True when this message had been recorded before and nothing new was written.
    pub duplicate: bool,
}

const INSERT_REQUEST: &str = "INSERT INTO privacy_requests \
    (tenant, flow, kind, pseudonymize, customer_key, status, created_at, updated_at, due_at) \
    VALUES ($1, 'lcm', 'access', $2, $3, 'registered', $4, $4, $4) RETURNING id";

const INSERT_MESSAGE: &str = "INSERT INTO inbound_messages \
    (idempotency_key, request_id, operation, source, message_id, correlation_id, reply_to, \
     routing_key, customer_name, phone_number, other_phone_number, email_id, other_email_id, \
     agent_comments, account_number, call_id, agent_id, request_type, is_pseudonymize, \
     customer_id, reply_payload, received_at, answered_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
            $19, $20, $21, $22, $23) \
    ON CONFLICT (idempotency_key) DO NOTHING RETURNING id";

const INSERT_EVENT: &str = "INSERT INTO request_events \
    (request_id, at, actor, from_status, to_status, reason) \
    VALUES ($1, $2, $3, NULL, 'registered', $4)";

const SELECT_RECORDED: &str =
    "SELECT request_id, reply_payload FROM inbound_messages WHERE idempotency_key = $1";

impl Store {
    /// Records a request and its reply, or returns the reply recorded before for
    /// the same idempotency key.
    pub async fn record_lcm_request(
        &self,
        new: &NewLcmRequest<'_>,
    ) -> Result<Recorded, StoreError> {
        let key = new.idempotency_key();
        let r = new.request;
        let now = Utc::now();
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let request_id: i64 = sqlx::query_scalar(INSERT_REQUEST)
                .bind(new.tenant)
                .bind(r.is_pseudonymize)
                .bind(r.account_number.trim())
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
            let reply_payload = success_payload(&request_id.to_string()).to_string();
            let inserted: Option<i64> = sqlx::query_scalar(INSERT_MESSAGE)
                .bind(&key)
                .bind(request_id)
                .bind(GET_DATA_PRIVACY_STATUS)
                .bind(new.source)
                .bind(new.message_id)
                .bind(new.correlation_id)
                .bind(new.reply_to)
                .bind(new.routing_key)
                .bind(&r.customer_name)
                .bind(&r.phone_number)
                .bind(&r.other_phone_number)
                .bind(&r.email_id)
                .bind(&r.other_email_id)
                .bind(&r.agent_comments)
                .bind(&r.account_number)
                .bind(&r.call_id)
                .bind(&r.agent_id)
                .bind(&r.request_type)
                .bind(r.is_pseudonymize)
                .bind(r.customer_id.as_deref())
                .bind(&reply_payload)
                .bind(new.received_at)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            if inserted.is_none() {
                tx.rollback().await?;
                let existing: Option<(i64, String)> = sqlx::query_as(SELECT_RECORDED)
                    .bind(&key)
                    .fetch_optional(pool)
                    .await?;
                let (request_id, reply_payload) = existing.ok_or_else(|| {
                    StoreError::Unavailable("idempotency key taken but not yet visible".into())
                })?;
                return Ok(Recorded { request_id, reply_payload, duplicate: true });
            }
            sqlx::query(INSERT_EVENT)
                .bind(request_id)
                .bind(now)
                .bind(format!("agent:{}", r.agent_id.trim()))
                .bind("GetDataPrivacyStatusRequest received")
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Recorded { request_id, reply_payload, duplicate: false })
        })
    }
}
