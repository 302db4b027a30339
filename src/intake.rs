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
//! (this message's problem) is retried with backoff and, when attempts run out,
//! parked in the dead queue; a broker failure leaves the delivery to be
//! redelivered after the worker reconnects.

use std::sync::Arc;

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::value::RawValue;
use tracing::{info, warn};

use crate::amqp::{AmqpError, Incoming, Outgoing, Publisher};
use crate::protocol::{
    self, LCM_CHANNEL, LCM_TOPIC, Rejection, ReplyRoute, SET_DATA_PRIVACY_STATUS, failure_payload,
    reply_body,
};
use crate::store::{NewLcmRequest, Store, StoreError};
use crate::store_gate::StoreGate;
use crate::worker::WorkerSettings;

/// A failure, classified once.
#[derive(Debug)]
pub enum Failure {
    /// The database may come back: retry with backoff.
    Transient(StoreError),
    /// The broker connection or channel failed: leave the delivery unacknowledged
    /// so the broker redelivers it once we have reconnected.
    Broker(AmqpError),
    /// Something we did not foresee that retrying will not fix: park the message.
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

/// Why a delivery stopped being attempted.
#[derive(Debug)]
enum Exhausted {
    /// The broker failed: leave the delivery unacknowledged.
    Broker(AmqpError),
    /// Every configured attempt failed.
    Attempts {
        failure: Failure,
        attempts: u32,
        first_failure: DateTime<Utc>,
    },
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Recorded as a new request and answered.
    Recorded(i64),
    /// Recorded before; answered again with the same id.
    Duplicate(i64),
    /// Answered with an error and parked in the invalid queue.
    Invalid(&'static str),
    /// Parked in the dead queue after transient failures or an unexpected error.
    Dead,
    /// Not acknowledged: the broker will redeliver it.
    Unacknowledged,
}

/// Handles deliveries; cheap to clone, one clone per in-flight delivery.
#[derive(Debug, Clone)]
pub struct Intake {
    store: Store,
    gate: StoreGate,
    publisher: Publisher,
    settings: Arc<WorkerSettings>,
}

impl Intake {
    /// An intake over a store and a confirm-mode publisher.
    pub fn new(
        store: Store,
        gate: StoreGate,
        publisher: Publisher,
        settings: Arc<WorkerSettings>,
    ) -> Self {
        Self {
            store,
            gate,
            publisher,
            settings,
        }
    }

    /// Handles one delivery to its end and logs one line about it.
    pub async fn handle(&self, incoming: Incoming) -> Outcome {
        let correlation_id = incoming
            .correlation_id
            .as_deref()
            .or(incoming.message_id.as_deref())
            .unwrap_or("")
            .to_owned();
        let outcome = match self.attempt_until_done(&incoming, &correlation_id).await {
            Ok(outcome) => outcome,
            Err(Exhausted::Broker(error)) => {
                warn!(%correlation_id, %error, "broker failure; leaving the delivery to be redelivered");
                return Outcome::Unacknowledged;
            }
            Err(Exhausted::Attempts {
                failure,
                attempts,
                first_failure,
            }) => {
                let reason = match failure {
                    Failure::Transient(_) => "transient-failures-exhausted",
                    _ => "unexpected-error",
                };
                let last_error = describe(&failure);
                let headers = dead_headers(reason, &last_error, attempts, first_failure);
                if let Err(error) = self
                    .publisher
                    .park(&incoming, &self.settings.topology.dead_queue, &headers)
                    .await
                {
                    warn!(%correlation_id, %error, "could not park the message; it will be redelivered");
                    return Outcome::Unacknowledged;
                }
                warn!(%correlation_id, reason, error = %last_error, attempts, "message parked in the dead queue");
                Outcome::Dead
            }
        };
        if let Err(error) = incoming.ack().await {
            warn!(%correlation_id, %error, "ack failed; the broker will redeliver and the stored reply will be sent again");
            return Outcome::Unacknowledged;
        }
        match &outcome {
            Outcome::Recorded(id) | Outcome::Duplicate(id) => info!(
                request_id = id,
                %correlation_id,
                outcome = if matches!(outcome, Outcome::Recorded(_)) { "recorded" } else { "duplicate" },
                "request answered"
            ),
            Outcome::Invalid(code) => {
                info!(%correlation_id, outcome = "invalid", code, "request refused and parked")
            }
            Outcome::Dead | Outcome::Unacknowledged => {}
        }
        outcome
    }

    /// Attempts the delivery until it succeeds, the broker fails, or the
    /// configured attempts are spent. Attempts that fail while the store is down
    /// for everyone are not counted: the delivery waits at the gate instead.
    async fn attempt_until_done(
        &self,
        incoming: &Incoming,
        correlation_id: &str,
    ) -> Result<Outcome, Exhausted> {
        let retry = &self.settings.retry;
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(retry.min_delay)
            .with_max_delay(retry.max_delay)
            .with_jitter()
            .without_max_times()
            .build();
        let mut attempts = 0;
        let mut first_failure = None;
        loop {
            self.gate.wait_open().await;
            let failure = match self.process(incoming).await {
                Ok(outcome) => return Ok(outcome),
                Err(Failure::Broker(error)) => return Err(Exhausted::Broker(error)),
                Err(failure) => failure,
            };
            let first = *first_failure.get_or_insert_with(Utc::now);
            if matches!(failure, Failure::Transient(_)) && !self.gate.store_answers().await {
                continue;
            }
            attempts += 1;
            if attempts >= retry.attempts {
                return Err(Exhausted::Attempts {
                    failure,
                    attempts,
                    first_failure: first,
                });
            }
            let delay = delays.next().unwrap_or(retry.max_delay);
            warn!(%correlation_id, error = %describe(&failure), attempts, ?delay, "attempt failed, retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt: parse, record, reply.
    async fn process(&self, incoming: &Incoming) -> Result<Outcome, Failure> {
        let valid = match protocol::parse_request(
            &incoming.body,
            &incoming.routing_key,
            self.settings.limits,
        ) {
            Ok(valid) => valid,
            Err(rejection) => return self.refuse(incoming, &rejection).await,
        };
        let new = NewLcmRequest {
            tenant: &self.settings.tenant,
            request: &valid.request,
            source: valid.source.as_deref(),
            message_id: incoming.message_id.as_deref(),
            correlation_id: incoming.correlation_id.as_deref(),
            reply_to: incoming.reply_to.as_deref(),
            routing_key: &incoming.routing_key,
            received_at: Utc::now(),
        };
        let recorded = self.store.record_lcm_request(&new).await?;
        let payload = RawValue::from_string(recorded.reply_payload)
            .map_err(|e| Failure::Unexpected(format!("stored reply is not JSON: {e}")))?;
        self.reply(incoming, Some(&valid.route), &payload).await?;
        Ok(if recorded.duplicate {
            Outcome::Duplicate(recorded.request_id)
        } else {
            Outcome::Recorded(recorded.request_id)
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
        let payload = failure_payload(rejection);
        tokio::try_join!(
            self.reply(incoming, rejection.route.as_deref(), &payload),
            self.publisher.park(incoming, invalid_queue, &headers),
        )?;
        Ok(Outcome::Invalid(rejection.code.as_str()))
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
        };
        let body = reply_body(
            route.unwrap_or(&default_route),
            &self.settings.reply_source,
            payload,
        );
        let correlation_id = incoming
            .correlation_id
            .as_deref()
            .or(incoming.message_id.as_deref());
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

fn describe(failure: &Failure) -> String {
    match failure {
        Failure::Transient(e) => e.to_string(),
        Failure::Broker(e) => e.to_string(),
        Failure::Unexpected(e) => e.clone(),
    }
}

fn dead_headers(
    reason: &str,
    last_error: &str,
    attempts: u32,
    first_failure: DateTime<Utc>,
) -> [(&'static str, String); 5] {
    let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
    [
        ("x-privacy-reason", reason.to_owned()),
        ("x-privacy-last-error", last_error.to_owned()),
        ("x-privacy-attempts", attempts.to_string()),
        ("x-privacy-first-failure-at", stamp(first_failure)),
        ("x-privacy-last-failure-at", stamp(Utc::now())),
    ]
}
