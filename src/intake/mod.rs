//! What happens to one delivery, from bytes to acknowledgement.
//!
//! Order of effects, which is what makes "nothing lost, nothing doubled" hold:
//! 1. parse and validate (no I/O);
//! 2. commit the request and its reply in one transaction (idempotent by key);
//! 3. publish the reply and wait for the broker's confirm;
//! 4. only then acknowledge the delivery.
//!
//! A crash between any two steps leaves the delivery unacknowledged; the broker
//! redelivers it and step 2 returns the stored reply instead of a new id.
//!
//! Every failure is classified once ([`Failure`]): invalid input is answered and
//! parked, never retried; a transient store failure during an outage waits at the
//! [`StoreGate`] without counting an attempt; a failure while the store answers
//! (this message's problem, or one we did not foresee) moves the message to the
//! retry queue of its delay tier, and to the dead queue when its attempts are
//! spent; a broker failure leaves the delivery to be redelivered after the worker
//! reconnects.

use std::sync::Arc;

use chrono::Utc;
use serde_json::value::RawValue;
use tracing::{info, warn};

use crate::amqp::{AmqpError, Incoming, Outgoing, Publisher};
use crate::handlers::{Answer, Delivery, Handlers};
use crate::protocol::{
    self, ErrorCode, LCM_CHANNEL, LCM_TOPIC, ParseContext, RcdpHeaders, Rejection, ReplyRoute,
    ReplyShape, SET_DATA_PRIVACY_STATUS, ValidRequest, failure_payload, reply_body,
};
use crate::settings::IntakeSettings;
use crate::store::StoreError;
use crate::store_gate::StoreGate;

mod batch;
pub mod consumer;
mod observe;
mod retry;

/// A failure, classified once.
#[derive(Debug)]
pub enum Failure {
    /// The database failed in a way that may pass: during an outage the delivery
    /// waits at the gate; otherwise it is retried through the retry queues.
    Transient(StoreError),
    /// The broker connection or channel failed: leave the delivery unacknowledged
    /// so the broker redelivers it once we have reconnected.
    Broker(AmqpError),
    /// Something we did not foresee: retried through the retry queues in case it
    /// passes, then parked in the dead queue.
    Unexpected(String),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        if error.is_transient() {
            Self::Transient(error)
        } else {
            Self::Unexpected(error.to_string())
        }
    }
}

impl From<AmqpError> for Failure {
    fn from(error: AmqpError) -> Self {
        if error.is_transient() {
            Self::Broker(error)
        } else {
            Self::Unexpected(error.to_string())
        }
    }
}

/// How long a delivery whose reply failed waits before it is handed back.
const HAND_BACK_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered.
    Answered {
        /// The request the reply is about, if any.
        request_id: Option<i64>,
        /// How it was answered.
        answer: Answer,
    },
    /// Answered with an error and parked in the invalid queue.
    Invalid(ErrorCode),
    /// Failed; waiting in a retry queue (the number of failures so far).
    Retrying(u32),
    /// Parked in the dead queue after its attempts were spent.
    Dead,
    /// Handed back to the broker (rejected with requeue) after a broker
    /// failure: it will be delivered again, and answered from the store.
    Requeued,
    /// Could not be settled: its channel is gone. The session ends, so the
    /// broker takes it back and redelivers it.
    Unsettled,
}

/// Handles deliveries; cheap to clone, one clone per in-flight delivery.
#[derive(Debug, Clone)]
pub struct Intake {
    handlers: Handlers,
    gate: StoreGate,
    publisher: Publisher,
    settings: Arc<IntakeSettings>,
}

impl Intake {
    /// An intake over the operation handlers, the store gate and a confirm-mode publisher.
    pub fn new(
        handlers: Handlers,
        gate: StoreGate,
        publisher: Publisher,
        settings: Arc<IntakeSettings>,
    ) -> Self {
        Self {
            handlers,
            gate,
            publisher,
            settings,
        }
    }

    /// Handles one delivery to its end and logs one line about it.
    pub async fn handle(&self, incoming: Incoming) -> Outcome {
        let result = self.attempt(&incoming).await;
        self.settle(&incoming, result).await
    }

    /// Ends a delivery after an attempt (see [`Intake::end`]) and counts how.
    async fn settle(&self, incoming: &Incoming, result: Result<Outcome, Failure>) -> Outcome {
        let outcome = self.end(incoming, result).await;
        observe::ended(incoming, &outcome);
        outcome
    }

    /// Ends a delivery after an attempt, the one place where every failure is
    /// acted on: an answered delivery is acknowledged; a failure while the store
    /// answers goes to a retry queue (or the dead queue) and is then
    /// acknowledged; a broker failure hands the delivery back to the broker.
    /// Whatever happens, the delivery does not keep its prefetch slot: what
    /// cannot be settled on its channel is [`Outcome::Unsettled`], and the
    /// session that sees it ends, so the broker takes the delivery back.
    async fn end(&self, incoming: &Incoming, result: Result<Outcome, Failure>) -> Outcome {
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(Failure::Broker(error)) => return self.hand_back(incoming, &error).await,
            Err(failure) => match self.retry_later(incoming, &failure).await {
                Ok(outcome) => outcome,
                Err(error) => return self.hand_back(incoming, &error).await,
            },
        };
        let correlation_id = incoming.correlation().unwrap_or("");
        if let Err(error) = incoming.ack().await {
            warn!(%correlation_id, %error, "ack failed; the broker will redeliver and the stored reply will be sent again");
            return Outcome::Unsettled;
        }
        log_outcome(&outcome, correlation_id);
        outcome
    }

    /// After a broker failure (a reply or a parking copy not confirmed, nacked,
    /// or its channel gone): the delivery goes back to the broker for another
    /// attempt. The pause first keeps a broker that keeps refusing (a full
    /// queue) from being asked again at once; the quorum queue's delivery limit
    /// bounds the attempts. On a channel that is gone nothing can be handed
    /// back, so the delivery is left for its session to end.
    async fn hand_back(&self, incoming: &Incoming, error: &AmqpError) -> Outcome {
        let correlation_id = incoming.correlation().unwrap_or("");
        if !self.publisher.is_open() {
            warn!(%correlation_id, %error, "broker failure and the publishing channel is gone; the session ends and the broker redelivers");
            return Outcome::Unsettled;
        }
        warn!(%correlation_id, %error, "broker failure; handing the delivery back for another attempt");
        tokio::time::sleep(HAND_BACK_PAUSE).await;
        match incoming.requeue().await {
            Ok(()) => Outcome::Requeued,
            Err(error) => {
                warn!(%correlation_id, %error, "could not hand the delivery back; the session ends and the broker redelivers");
                Outcome::Unsettled
            }
        }
    }

    /// Whether the publishing channel still works; when it does not, every
    /// reply would fail, so the session must end and start anew.
    pub fn can_publish(&self) -> bool {
        self.publisher.is_open()
    }

    /// One attempt, waiting at the store gate for as long as the store is down for
    /// everyone: a failure during an outage is not this message's fault.
    async fn attempt(&self, incoming: &Incoming) -> Result<Outcome, Failure> {
        loop {
            self.gate.wait_open().await;
            match self.process(incoming).await {
                Err(Failure::Transient(_)) if !self.gate.store_answers().await => continue,
                result => return result,
            }
        }
    }

    /// Parses a delivery with its headers and the configured tenants.
    fn parse(&self, incoming: &Incoming) -> Result<ValidRequest, Rejection> {
        let req_param_value = incoming.header("reqParamValue");
        let tenant_hash = incoming.header("tenant_hash");
        let context = ParseContext {
            limits: self.settings.limits,
            headers: RcdpHeaders {
                req_param_value: req_param_value.as_deref(),
                tenant_hash: tenant_hash.as_deref(),
            },
            tenants: &self.settings.tenants,
        };
        protocol::parse_request(&incoming.body, &incoming.routing_key, context)
    }

    /// One attempt: parse, decide and record, reply.
    async fn process(&self, incoming: &Incoming) -> Result<Outcome, Failure> {
        let valid = match self.parse(incoming) {
            Ok(valid) => valid,
            Err(rejection) => return self.refuse(incoming, &rejection).await,
        };
        let delivery = Delivery {
            message_id: incoming.message_id.as_deref(),
            correlation_id: incoming.correlation_id.as_deref(),
            reply_to: incoming.reply_to.as_deref(),
            routing_key: &incoming.routing_key,
            received_at: Utc::now(),
        };
        let handled = self.handlers.handle(&valid, delivery).await?;
        let payload = stored_reply(handled.reply_payload)?;
        self.reply(incoming, Some(&valid.route), &payload).await?;
        Ok(Outcome::Answered {
            request_id: handled.request_id,
            answer: handled.answer,
        })
    }

    /// Answers invalid input with an error (when a reply can be addressed) and
    /// parks it, body unchanged, with headers saying why.
    async fn refuse(&self, incoming: &Incoming, rejection: &Rejection) -> Result<Outcome, Failure> {
        let headers = [
            ("x-privacy-error-code", rejection.code.as_str().to_owned()),
            ("x-privacy-error-message", rejection.message.clone()),
            ("x-privacy-error-fields", rejection.field_names()),
        ];
        let invalid_queue = &self.settings.topology.invalid_queue;
        let ttl = self.settings.parked_ttl;
        let payload = failure_payload(rejection);
        tokio::try_join!(
            self.reply(incoming, rejection.route.as_deref(), &payload),
            self.publisher
                .park(incoming, invalid_queue, &headers, Some(ttl)),
        )?;
        Ok(Outcome::Invalid(rejection.code))
    }

    /// Publishes the reply on the topic exchange (when routable) and to the
    /// request's `reply_to` queue (when it has one), waiting for both confirms.
    async fn reply(
        &self,
        incoming: &Incoming,
        route: Option<&ReplyRoute>,
        payload: &(impl serde::Serialize + ?Sized),
    ) -> Result<(), AmqpError> {
        let default_route = ReplyRoute {
            channel: LCM_CHANNEL.into(),
            topic: LCM_TOPIC.into(),
            subtopic: SET_DATA_PRIVACY_STATUS.into(),
            shape: ReplyShape::Lcm,
        };
        let body = reply_body(
            route.unwrap_or(&default_route),
            &self.settings.reply_source,
            payload,
        );
        let correlation_id = incoming.correlation();
        let message = |exchange, routing_key| Outgoing {
            exchange,
            routing_key,
            body: &body,
            correlation_id,
            message_id: None,
            reply_to: None,
        };
        let topic_key = route.map(ReplyRoute::routing_key);
        let on_topic = async {
            match &topic_key {
                Some(key) => {
                    self.publisher
                        .publish(message(&self.settings.topology.exchange, key))
                        .await
                }
                None => Ok(()),
            }
        };
        let direct = async {
            match incoming.reply_to.as_deref() {
                Some(queue) => self.publisher.publish(message("", queue)).await,
                None => Ok(()),
            }
        };
        tokio::try_join!(on_topic, direct)?;
        Ok(())
    }
}

/// A reply read back from the store; one that is not JSON is this message's
/// problem, not the broker's.
fn stored_reply(payload: String) -> Result<Box<RawValue>, Failure> {
    RawValue::from_string(payload)
        .map_err(|e| Failure::Unexpected(format!("stored reply is not JSON: {e}")))
}

fn log_outcome(outcome: &Outcome, correlation_id: &str) {
    let (request_id, label) = match outcome {
        Outcome::Answered { request_id, answer } => (request_id, answer.as_str()),
        Outcome::Invalid(code) => {
            info!(
                correlation_id,
                outcome = "invalid",
                code = code.as_str(),
                "request refused and parked"
            );
            return;
        }
        Outcome::Retrying(_) | Outcome::Dead | Outcome::Requeued | Outcome::Unsettled => return,
    };
    info!(
        request_id,
        correlation_id,
        outcome = label,
        "request answered"
    );
}
