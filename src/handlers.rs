//! What each operation does with a valid message: the LCM agent request, and the
//! RCDP register, revoke and status operations. It seals personal data, computes
//! blind indexes, asks the store to decide under the lifecycle rules, and builds
//! the reply body the documents prescribe for each decision.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::crypto::{IDENTIFIER_CONTEXT, Keys, PERSONAL_CONTEXT, Sealed};
use crate::protocol::{
    GET_DATA_PRIVACY_STATUS, Operation, PrivacyRequest, REGISTER_GDPR_REQUEST, REVOKE_GDPR_ACTIONS,
    RcdpRequest, StatusQuery, ValidRequest, lcm_error, rcdp_error, success_payload,
};
use crate::request::{FailureCode, Flow, IdentifierType, RequestKind, RequestStatus};
use crate::store::{
    Decision, NewMessage, NewRegistration, NewRevocation, RevokeDecision, Store, StoreError,
    StoredIdentifier,
};

/// The delivery facts recorded with a message.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// AMQP message_id.
    pub message_id: Option<&'a str>,
    /// AMQP correlation_id.
    pub correlation_id: Option<&'a str>,
    /// AMQP reply_to.
    pub reply_to: Option<&'a str>,
    /// Its routing key.
    pub routing_key: &'a str,
    /// When it was taken.
    pub received_at: DateTime<Utc>,
}

/// How an operation was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// The request the reply is about, if any.
    pub request_id: Option<i64>,
    /// The reply payload, JSON text.
    pub reply_payload: String,
    /// How the message was answered.
    pub answer: Answer,
}

/// How an operation was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A new request was recorded.
    Recorded,
    /// The pending request of the customer was answered (LCM join).
    Joined,
    /// Refused by the lifecycle rules (a duplicate, a pending forget, not revocable).
    Refused,
    /// A request was revoked.
    Revoked,
    /// A status query was answered.
    Status,
    /// Answered before: the stored reply was sent again.
    Replayed,
}

impl Answer {
    /// For logs (and metrics' labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recorded => "recorded",
            Self::Joined => "joined",
            Self::Refused => "refused",
            Self::Revoked => "revoked",
            Self::Status => "status",
            Self::Replayed => "replayed",
        }
    }
}

/// Runs operations against the store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Handlers {
    store: Store,
    keys: Arc<Keys>,
    lcm_tenant: String,
    /// `PRIVACY_RESPONSE_DEADLINE`, for the status reply's `dueBy`.
    deadline: Duration,
}

impl Handlers {
    /// Handlers over a store, with the keys for personal data, the LCM tenant and deadline.
    pub fn new(store: Store, keys: Arc<Keys>, lcm_tenant: String, deadline: Duration) -> Self {
        Self {
            store,
            keys,
            lcm_tenant,
            deadline,
        }
    }

    /// Handles one valid message.
    pub async fn handle(
        &self,
        valid: &ValidRequest,
        delivery: Delivery<'_>,
    ) -> Result<Handled, StoreError> {
        let source = valid.source.as_deref();
        match &valid.operation {
            Operation::Lcm(request) => self.lcm(request, source, delivery).await,
            Operation::Register(request) => self.register(request, source, delivery).await,
            Operation::Revoke(request) => self.revoke(request, source, delivery).await,
            Operation::Status(query) => self.status(query).await,
        }
    }

    async fn lcm(
        &self,
        r: &PrivacyRequest,
        source: Option<&str>,
        delivery: Delivery<'_>,
    ) -> Result<Handled, StoreError> {
        let mut handled = self.lcm_batch(&[(r, source, delivery)]).await?;
        Ok(handled.remove(0))
    }

    /// Handles several agent requests in one transaction (group commit); the
    /// answers come back in order.
    pub async fn lcm_batch(
        &self,
        items: &[(&PrivacyRequest, Option<&str>, Delivery<'_>)],
    ) -> Result<Vec<Handled>, StoreError> {
        let prepared: Vec<PreparedLcm> = items
            .iter()
            .map(|(r, _, delivery)| self.prepare_lcm(r, *delivery))
            .collect();
        let news: Vec<NewRegistration<'_>> = items
            .iter()
            .zip(&prepared)
            .map(|((r, source, delivery), p)| NewRegistration {
                tenant: &self.lcm_tenant,
                flow: Flow::Lcm,
                kind: RequestKind::Access,
                pseudonymize: r.is_pseudonymize,
                identifier: StoredIdentifier { kind: IdentifierType::Account, index: &p.index, sealed: &p.account },
                source: *source,
                actor: &p.actor,
                join_pending: true,
                message: message(
                    GET_DATA_PRIVACY_STATUS,
                    Some(p.idempotency_key.clone()),
                    *source,
                    *delivery,
                    json!({"CallId": r.call_id, "AgentID": r.agent_id, "RequestType": r.request_type,
                           "IsPseudonymize": r.is_pseudonymize}),
                    Some(&p.personal),
                ),
            })
            .collect();
        let answers = self.store.register_batch(&news, |decision| match decision {
            Decision::Registered(id) | Decision::Joined(id) | Decision::Duplicate { id, .. } => {
                success_payload(&id.to_string()).to_string()
            }
            Decision::ForgetPending(id) => lcm_error(
                "forget_pending",
                &format!("a forget request for this customer is pending (tracking id {id}); it must be revoked before a new request"),
                &[],
            )
            .to_string(),
        }).await?;
        Ok(answers
            .into_iter()
            .map(|answered| {
                let answer = match answered.decision {
                    None => Answer::Replayed,
                    Some(Decision::Registered(_)) => Answer::Recorded,
                    Some(Decision::Joined(_) | Decision::Duplicate { .. }) => Answer::Joined,
                    Some(Decision::ForgetPending(_)) => Answer::Refused,
                };
                Handled {
                    request_id: answered.request_id,
                    reply_payload: answered.reply_payload,
                    answer,
                }
            })
            .collect())
    }

    /// Seals an agent request's personal data and derives its keys.
    fn prepare_lcm(&self, r: &PrivacyRequest, delivery: Delivery<'_>) -> PreparedLcm {
        let account = r.account_number.trim();
        let personal = json!({
            "CustomerName": r.customer_name, "PhoneNumber": r.phone_number,
            "OtherPhoneNumber": r.other_phone_number, "EmailID": r.email_id,
            "OtherEmailID": r.other_email_id, "AgentComments": r.agent_comments,
            "AccountNumber": r.account_number, "CustomerID": r.customer_id,
        });
        let message_id = delivery.message_id.filter(|m| !m.is_empty());
        let idempotency_key = match message_id {
            Some(id) => scoped_key("mid", GET_DATA_PRIVACY_STATUS, &self.lcm_tenant, id),
            None => {
                let natural = format!("{}|{}", self.lcm_tenant, r.natural_key());
                format!("nk:{:x}", Sha256::digest(natural.as_bytes()))
            }
        };
        PreparedLcm {
            index: self
                .keys
                .blind_index(IdentifierType::Account.as_str(), account),
            account: self.keys.seal(IDENTIFIER_CONTEXT, account.as_bytes()),
            personal: self
                .keys
                .seal(PERSONAL_CONTEXT, personal.to_string().as_bytes()),
            idempotency_key,
            actor: format!("agent:{}", r.agent_id.trim()),
        }
    }

    async fn register(
        &self,
        r: &RcdpRequest,
        source: Option<&str>,
        delivery: Delivery<'_>,
    ) -> Result<Handled, StoreError> {
        let kind = r.identifier.kind;
        let index = self.keys.blind_index(kind.as_str(), &r.identifier.value);
        let sealed = self
            .keys
            .seal(IDENTIFIER_CONTEXT, r.identifier.value.as_bytes());
        let actor = format!("source:{}", r.source);
        let new = NewRegistration {
            tenant: &r.tenant,
            flow: Flow::Rcdp,
            kind: r.kind,
            pseudonymize: false,
            identifier: StoredIdentifier {
                kind,
                index: &index,
                sealed: &sealed,
            },
            source: Some(&r.source),
            actor: &actor,
            join_pending: false,
            message: message(
                REGISTER_GDPR_REQUEST,
                rcdp_key(REGISTER_GDPR_REQUEST, &r.tenant, delivery),
                source,
                delivery,
                r.details(),
                None,
            ),
        };
        let answered = self.store.register(&new, |decision| match decision {
            Decision::Registered(id) | Decision::Joined(id) => json!({
                "status": "OK",
                "data": {"message": "Request submitted successfully.", "trackingId": id}
            }).to_string(),
            Decision::Duplicate { id, status } => rcdp_error(&format!(
                "Request already exist with tracking id:[{id}] and request status : [{status}]"
            )).to_string(),
            Decision::ForgetPending(id) => rcdp_error(&format!(
                "Request already exist for [forget] with tracking id:{id}, revoke the existing request before raising any new request."
            )).to_string(),
        }).await?;
        let answer = match answered.decision {
            None => Answer::Replayed,
            Some(Decision::Registered(_) | Decision::Joined(_)) => Answer::Recorded,
            Some(_) => Answer::Refused,
        };
        Ok(Handled {
            request_id: answered.request_id,
            reply_payload: answered.reply_payload,
            answer,
        })
    }

    async fn revoke(
        &self,
        r: &RcdpRequest,
        source: Option<&str>,
        delivery: Delivery<'_>,
    ) -> Result<Handled, StoreError> {
        let index = self
            .keys
            .blind_index(r.identifier.kind.as_str(), &r.identifier.value);
        let actor = format!("source:{}", r.source);
        let new = NewRevocation {
            tenant: &r.tenant,
            kind: r.kind,
            identifier_index: &index,
            actor: &actor,
            message: message(
                REVOKE_GDPR_ACTIONS,
                rcdp_key(REVOKE_GDPR_ACTIONS, &r.tenant, delivery),
                source,
                delivery,
                r.details(),
                None,
            ),
        };
        let answered = self.store.revoke(&new, |decision| match decision {
            RevokeDecision::Revoked(_) => {
                let text = format!("{} request successfully revoked.", r.kind.title());
                json!({"status": "OK", "message": text, "data": text}).to_string()
            }
            RevokeDecision::NotRevocable { id, status } => rcdp_error(&format!(
                "Request with tracking id:[{id}] has request status : [{status}]; only requests in status [registered] can be revoked."
            )).to_string(),
            RevokeDecision::NotFound => rcdp_error(&format!(
                "No {} request found to revoke.", r.kind.as_str()
            )).to_string(),
        }).await?;
        let answer = match answered.decision {
            None => Answer::Replayed,
            Some(RevokeDecision::Revoked(_)) => Answer::Revoked,
            Some(_) => Answer::Refused,
        };
        Ok(Handled {
            request_id: answered.request_id,
            reply_payload: answered.reply_payload,
            answer,
        })
    }

    async fn status(&self, query: &StatusQuery) -> Result<Handled, StoreError> {
        let summary = self.store.request_summary(query.tracking_id).await?;
        let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        let reply = match summary.filter(|s| s.tenant == query.tenant) {
            Some(s) => {
                let mut data = json!({
                    "trackingId": s.id, "reqType": s.kind, "requestStatus": s.status,
                    "createdAt": stamp(s.created_at), "updatedAt": stamp(s.updated_at),
                    "dueBy": stamp(crate::deadline::due_by(s.created_at, self.deadline)),
                });
                match s.status {
                    // What fulfilment produced (a download link, row counts), or
                    // why it failed: never personal data.
                    RequestStatus::Completed => {
                        let result = s
                            .result
                            .as_deref()
                            .and_then(|r| serde_json::from_str(r).ok());
                        data["result"] = result.unwrap_or(Value::Null);
                    }
                    RequestStatus::Failed => {
                        data["errorCode"] = json!(FailureCode::code_of(s.last_error.as_deref()));
                        data["error"] = json!(s.last_error);
                    }
                    _ => {}
                }
                json!({"status": "OK", "data": data})
            }
            // Another tenant's request is reported exactly like a missing one.
            None => rcdp_error(&format!(
                "No request found with tracking id:[{}].",
                query.tracking_id
            )),
        };
        Ok(Handled {
            request_id: Some(query.tracking_id),
            reply_payload: reply.to_string(),
            answer: Answer::Status,
        })
    }
}

/// What an agent request needs sealed and derived before the store sees it.
struct PreparedLcm {
    index: String,
    account: Sealed,
    personal: Sealed,
    idempotency_key: String,
    actor: String,
}

/// RCDP messages are idempotent by message_id, else correlation_id; a message
/// with neither is handled afresh each time it arrives (the lifecycle rules then
/// refuse a duplicate registration).
fn rcdp_key(operation: &str, tenant: &str, delivery: Delivery<'_>) -> Option<String> {
    let message_id = delivery.message_id.filter(|s| !s.is_empty());
    let correlation_id = delivery.correlation_id.filter(|s| !s.is_empty());
    message_id
        .map(|id| scoped_key("mid", operation, tenant, id))
        .or_else(|| correlation_id.map(|id| scoped_key("cid", operation, tenant, id)))
}

/// An idempotency key scoped by operation and tenant: `<mid|cid>:<operation>:<tenant>:<id>`.
/// The same message_id sent by two tenants, or a correlation_id reused by a register
/// and its later revoke, are different messages. The tenant has `%` and `:`
/// percent-encoded so the parts cannot run into each other; the id comes last and
/// needs no encoding. Migration 0002 rewrote keys recorded before scoping, in SQL.
fn scoped_key(by: &str, operation: &str, tenant: &str, id: &str) -> String {
    let tenant = tenant.replace('%', "%25").replace(':', "%3A");
    format!("{by}:{operation}:{tenant}:{id}")
}

fn message<'a>(
    operation: &'a str,
    idempotency_key: Option<String>,
    source: Option<&'a str>,
    delivery: Delivery<'a>,
    details: Value,
    personal: Option<&'a Sealed>,
) -> NewMessage<'a> {
    NewMessage {
        idempotency_key,
        operation,
        source,
        message_id: delivery.message_id,
        correlation_id: delivery.correlation_id,
        reply_to: delivery.reply_to,
        routing_key: delivery.routing_key,
        details: details.to_string(),
        personal,
        received_at: delivery.received_at,
    }
}
