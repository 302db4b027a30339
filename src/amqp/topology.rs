//! Exchange, queues and bindings, declared idempotently at every (re)connection.
//!
//! The work queue is a quorum queue (replicated, and it counts deliveries so a
//! message that keeps crashing consumers cannot loop forever): after
//! `delivery_limit` redeliveries the broker dead-letters it to the dead queue,
//! at-least-once. Declaring with other arguments than an existing queue has is a
//! PRECONDITION_FAILED error, which the worker treats as fatal configuration.

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
}

impl Topology {
    /// Both spellings the documents use for the request routing key.
    pub fn default_bindings() -> Vec<String> {
        vec![
            "LCM.Webservice.GetDataPrivacyStatusRequest".into(),
            "LCM.WebService.GetDataPrivacyStatusRequest".into(),
        ]
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
        for (queue, arguments) in [
            (&self.dead_queue, quorum()),
            (&self.invalid_queue, quorum()),
            (&self.work_queue, work),
        ] {
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
