//! One delivery from the work queue, with what the worker needs to know about it.

use lapin::Acker;
use lapin::BasicProperties;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::AMQPValue;

use super::AmqpError;

/// A delivery. It must end acknowledged, or the broker redelivers it.
#[derive(Debug)]
pub struct Incoming {
    /// The message body, unparsed.
    pub body: Vec<u8>,
    /// The exchange it was published to.
    pub exchange: String,
    /// Its routing key.
    pub routing_key: String,
    /// Whether the broker delivered it before (to us or another consumer).
    pub redelivered: bool,
    /// AMQP message_id.
    pub message_id: Option<String>,
    /// AMQP correlation_id.
    pub correlation_id: Option<String>,
    /// AMQP reply_to.
    pub reply_to: Option<String>,
    /// When the worker received it (for the handling latency).
    pub received: std::time::Instant,
    pub(super) properties: BasicProperties,
    acker: Acker,
}

impl Incoming {
    pub(super) fn new(delivery: Delivery) -> Self {
        let text = |s: &Option<lapin::types::ShortString>| {
            s.as_ref()
                .map(|s| s.as_str().to_owned())
                .filter(|s| !s.is_empty())
        };
        Self {
            message_id: text(delivery.properties.message_id()),
            correlation_id: text(delivery.properties.correlation_id()),
            reply_to: text(delivery.properties.reply_to()),
            exchange: delivery.exchange.as_str().to_owned(),
            routing_key: delivery.routing_key.as_str().to_owned(),
            redelivered: delivery.redelivered,
            received: std::time::Instant::now(),
            body: delivery.data,
            properties: delivery.properties,
            acker: delivery.acker,
        }
    }

    /// The id a reply to this delivery carries: its correlation_id, else its
    /// message_id.
    pub fn correlation(&self) -> Option<&str> {
        self.correlation_id
            .as_deref()
            .or(self.message_id.as_deref())
    }

    /// A header's value as text (numbers shown in decimal), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        let value = self.properties.headers().as_ref()?.inner().get(name)?;
        Some(match value {
            AMQPValue::LongString(s) => s.to_string(),
            AMQPValue::ShortString(s) => s.to_string(),
            AMQPValue::LongLongInt(n) => n.to_string(),
            AMQPValue::LongInt(n) => n.to_string(),
            AMQPValue::LongUInt(n) => n.to_string(),
            AMQPValue::ShortInt(n) => n.to_string(),
            AMQPValue::Boolean(b) => b.to_string(),
            other => format!("{other:?}"),
        })
    }

    /// Acknowledges the delivery.
    ///
    /// Fails when the channel it came on is gone: the broker will then redeliver
    /// the message, and idempotency answers it again with the same id.
    pub async fn ack(&self) -> Result<(), AmqpError> {
        match self.acker.ack(BasicAckOptions::default()).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(AmqpError::Gone(
                "channel closed before the ack; the broker will redeliver".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the delivery back to the broker for another attempt.
    pub async fn requeue(&self) -> Result<(), AmqpError> {
        let options = BasicNackOptions {
            multiple: false,
            requeue: true,
        };
        match self.acker.nack(options).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(AmqpError::Gone(
                "channel closed before the requeue; the broker will redeliver".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }
}
