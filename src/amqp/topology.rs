//! Exchange, queues and bindings, declared idempotently at every (re)connection.
//!
//! The work queue is a quorum queue (replicated, and it counts deliveries so a
//! message that keeps crashing consumers cannot loop forever): after
//! `delivery_limit` redeliveries the broker dead-letters it to the dead queue,
//! at-least-once. Declaring with other arguments than an existing queue has is a
//! PRECONDITION_FAILED error, which the worker treats as fatal configuration.
//!
//! Retries that are about one message (not an outage) wait in retry queues, one per
//! delay tier: a message published there expires after the tier's delay and the
//! broker dead-letters it back to the work queue. Retries are therefore visible in
//! the management UI as the depth of `<work queue>.retry.<delay>ms`, they survive a
//! crash, and they never hold a consumer slot while waiting.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

/// The names the worker declares and uses.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Topic exchange requests arrive on and replies leave by.
    pub exchange: String,
    /// Quorum work queue.
    pub work_queue: String,
    /// Where invalid input is parked.
    pub invalid_queue: String,
    /// Where messages go after all retries for infrastructure failures.
    pub dead_queue: String,
    /// Routing keys bound to the work queue.
    pub bindings: Vec<String>,
    /// Redeliveries after which the broker dead-letters a message itself.
    pub delivery_limit: u32,
    /// Delay tiers of the retry queues: the n-th retry of a message waits in the
    /// n-th tier (the last tier for every later retry).
    pub retry_delays: Vec<Duration>,
}

impl Topology {
    /// Names of their own under `prefix` (`{prefix}.lcm`, `{prefix}.requests`,
    /// `{prefix}.invalid`, `{prefix}.dead`), with the default bindings, limit and
    /// delays: for the bench's runs and the tests, which share one broker.
    pub fn scratch(prefix: &str) -> Self {
        Self {
            exchange: format!("{prefix}.lcm"),
            work_queue: format!("{prefix}.requests"),
            invalid_queue: format!("{prefix}.invalid"),
            dead_queue: format!("{prefix}.dead"),
            bindings: Self::default_bindings(),
            delivery_limit: 20,
            retry_delays: Self::default_retry_delays(),
        }
    }

    /// Every request subtopic, under both topic spellings the documents use.
    pub fn default_bindings() -> Vec<String> {
        let subtopics = [
            "GetDataPrivacyStatusRequest",
            "RegisterGdprRequest",
            "RevokeGdprActions",
            "GetGdprRequestStatus",
        ];
        subtopics
            .iter()
            .flat_map(|s| [format!("LCM.Webservice.{s}"), format!("LCM.WebService.{s}")])
            .collect()
    }

    /// Delay tiers used when none are configured: 1 s, 5 s, 30 s.
    pub fn default_retry_delays() -> Vec<Duration> {
        vec![
            Duration::from_secs(1),
            Duration::from_secs(5),
            Duration::from_secs(30),
        ]
    }

    /// The retry queue of each delay tier, named by its delay
    /// (`lcm.privacy.requests.retry.5000ms`), so changing a delay declares a new
    /// queue instead of clashing with the old one's arguments.
    pub fn retry_queues(&self) -> Vec<(String, Duration)> {
        self.retry_delays
            .iter()
            .map(|delay| {
                let name = format!("{}.retry.{}ms", self.work_queue, delay.as_millis());
                (name, *delay)
            })
            .collect()
    }

    /// The retry queue for a message that has failed `failures` times (1 or more).
    pub fn retry_queue_for(&self, failures: u32) -> Option<String> {
        let tiers = self.retry_queues();
        let index = (failures.max(1) as usize - 1).min(tiers.len().checked_sub(1)?);
        Some(tiers[index].0.clone())
    }

    pub(super) async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        channel
            .exchange_declare(
                self.exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let mut work = quorum();
        work.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(self.delivery_limit.into()),
        );
        work.insert("x-dead-letter-exchange".into(), text(""));
        work.insert("x-dead-letter-routing-key".into(), text(&self.dead_queue));
        work.insert("x-dead-letter-strategy".into(), text("at-least-once"));
        work.insert("x-overflow".into(), text("reject-publish"));
        let mut queues = vec![
            (self.dead_queue.clone(), quorum()),
            (self.invalid_queue.clone(), quorum()),
            (self.work_queue.clone(), work),
        ];
        for (name, delay) in self.retry_queues() {
            // A message waits here for `delay`, then the broker dead-letters it
            // back to the work queue (at-least-once, so it cannot be dropped).
            let mut arguments = quorum();
            let ttl = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
            arguments.insert("x-dead-letter-exchange".into(), text(""));
            arguments.insert("x-dead-letter-routing-key".into(), text(&self.work_queue));
            arguments.insert("x-dead-letter-strategy".into(), text("at-least-once"));
            arguments.insert("x-overflow".into(), text("reject-publish"));
            queues.push((name, arguments));
        }
        for (queue, arguments) in queues {
            channel
                .queue_declare(queue.as_str().into(), durable(), arguments)
                .await?;
        }
        for key in &self.bindings {
            channel
                .queue_bind(
                    self.work_queue.as_str().into(),
                    self.exchange.as_str().into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

fn quorum() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), text("quorum"));
    arguments
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}
