//! A plain AMQP client, as another service on the bus would use it: publish with
//! confirms, listen for replies, look into queues. The tests' side of the bus.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use privacy_worker::amqp::{Broker, Topology};
use serde_json::Value;

use crate::helpers::amqp_url;

/// A reply as a client sees it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub routing_key: String,
    pub correlation_id: Option<String>,
    pub body: Value,
}

impl Reply {
    fn of(delivery: &lapin::message::Delivery) -> Self {
        Self {
            routing_key: delivery.routing_key.to_string(),
            correlation_id: delivery
                .properties
                .correlation_id()
                .as_ref()
                .map(|c| c.to_string()),
            body: serde_json::from_slice(&delivery.data).expect("reply is JSON"),
        }
    }

    /// `message.response` of a success reply.
    pub fn response(&self) -> Option<&str> {
        self.body["message"]["response"].as_str()
    }
}

/// What each request was answered with, by correlation id.
#[derive(Debug, Default)]
pub struct Answers {
    pub by_correlation: HashMap<String, String>,
    /// Replies seen, repeats included (a redelivered request is answered again).
    pub replies: usize,
    /// Error replies, kept aside.
    pub errors: Vec<Reply>,
}

impl Answers {
    fn record(&mut self, reply: &Reply) {
        let correlation = reply
            .correlation_id
            .clone()
            .expect("reply has a correlation id");
        let id = reply
            .response()
            .unwrap_or_else(|| panic!("error reply {}", reply.body))
            .to_owned();
        self.replies += 1;
        if let Some(before) = self.by_correlation.insert(correlation.clone(), id.clone()) {
            assert_eq!(before, id, "{correlation} answered with two different ids");
        }
    }
}

/// Replies arriving on a private queue.
pub struct Replies {
    consumer: lapin::Consumer,
}

impl Replies {
    /// The next `n` replies, failing the test if they do not come within `timeout`.
    pub async fn take(&mut self, n: usize, timeout: Duration) -> Vec<Reply> {
        let mut replies = Vec::with_capacity(n);
        let collect = async {
            while replies.len() < n {
                let delivery = self
                    .consumer
                    .next()
                    .await
                    .expect("reply consumer open")
                    .expect("reply delivery");
                replies.push(Reply::of(&delivery));
            }
        };
        if tokio::time::timeout(timeout, collect).await.is_err() {
            panic!(
                "expected {n} replies within {timeout:?}, got {}",
                replies.len()
            );
        }
        replies
    }

    /// The next reply, or `None` if none comes within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Reply> {
        match tokio::time::timeout(wait, self.consumer.next()).await {
            Ok(Some(Ok(delivery))) => Some(Reply::of(&delivery)),
            _ => None,
        }
    }

    /// Reads replies into `answers` until `until` distinct requests are answered.
    pub async fn collect(&mut self, answers: &mut Answers, until: usize, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while answers.by_correlation.len() < until {
            let next = tokio::time::timeout_at(deadline, self.consumer.next()).await;
            let Ok(Some(Ok(delivery))) = next else {
                panic!(
                    "expected {until} requests answered within {timeout:?}, got {}",
                    answers.by_correlation.len()
                );
            };
            answers.record(&Reply::of(&delivery));
        }
    }

    /// Asserts nothing more arrives within `wait`.
    pub async fn assert_quiet(&mut self, wait: Duration) {
        if let Some(extra) = self.next_within(wait).await {
            panic!("unexpected extra reply: {}", extra.body);
        }
    }
}

/// A plain AMQP client, as another service on the bus would use.
pub struct Bus {
    connection: Connection,
    channel: Channel,
}

impl Bus {
    pub async fn connect() -> Self {
        let url = amqp_url();
        let connection = Connection::connect(&url, ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| {
                panic!("RabbitMQ is not reachable at {url} ({e}); start it (see README) or set AMQP_URL")
            });
        let channel = connection.create_channel().await.expect("channel");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm mode");
        Self {
            connection,
            channel,
        }
    }

    pub async fn declare(&self, topology: &Topology) {
        let broker = Broker::connect(&amqp_url(), "privacy-worker test setup")
            .await
            .expect("broker");
        broker.declare(topology).await.expect("declare topology");
        broker.close().await;
    }

    /// Publishes with publisher confirms.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) {
        let confirm = self
            .publish_pipelined(exchange, routing_key, body, properties)
            .await;
        assert!(confirm.await.expect("confirm").is_ack(), "publish nacked");
    }

    /// Publishes without waiting for the confirm (returned, or awaited all at
    /// once by `wait_for_confirms`).
    pub async fn publish_pipelined(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> lapin::PublisherConfirm {
        self.channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                properties.with_delivery_mode(2),
            )
            .await
            .expect("publish")
    }

    pub async fn wait_for_confirms(&self) {
        self.channel
            .wait_for_confirms()
            .await
            .expect("all publishes confirmed");
    }

    /// A private queue bound to `binding` on `exchange`, consumed without acks.
    pub async fn listen(&self, exchange: &str, binding: &str) -> Replies {
        let queue = self.private_queue().await;
        self.channel
            .queue_bind(
                queue.as_str().into(),
                exchange.into(),
                binding.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind reply queue");
        self.consume(&queue).await
    }

    /// A server-named exclusive queue.
    pub async fn private_queue(&self) -> String {
        let queue = self
            .channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare private queue");
        queue.name().to_string()
    }

    /// Consumes `queue` without acks.
    pub async fn consume(&self, queue: &str) -> Replies {
        let channel = self.connection.create_channel().await.expect("channel");
        let consumer = channel
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consume");
        Replies { consumer }
    }

    /// Ready messages in `queue`.
    pub async fn depth(&self, queue: &str) -> u32 {
        let channel = self.connection.create_channel().await.expect("channel");
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("queue exists");
        let _ = channel.close(200, "done".into()).await;
        declared.message_count()
    }

    /// Polls the depth of `queue` until it is `expected` (quorum queues return
    /// requeued messages asynchronously), or 10 s pass; returns the last depth.
    pub async fn depth_becomes(&self, queue: &str, expected: u32) -> u32 {
        let mut depth = self.depth(queue).await;
        for _ in 0..50 {
            if depth == expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            depth = self.depth(queue).await;
        }
        depth
    }

    /// Takes one message from `queue`: its body and headers (string values).
    pub async fn get(&self, queue: &str) -> Option<(Vec<u8>, HashMap<String, String>)> {
        let message = self
            .channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")?;
        let mut headers = HashMap::new();
        if let Some(table) = message.delivery.properties.headers() {
            for (key, value) in table.inner() {
                headers.insert(key.to_string(), header_text(value));
            }
        }
        Some((message.delivery.data, headers))
    }

    /// A durable classic queue (not what the worker declares).
    pub async fn declare_classic(&self, queue: &str) {
        self.channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare classic queue");
    }

    pub async fn delete_queue(&self, queue: &str) {
        let channel = self.connection.create_channel().await.expect("channel");
        let _ = channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await;
    }

    /// Removes a test's queues and exchange.
    pub async fn delete(&self, topology: &Topology) {
        let retry_queues = topology.retry_queues().into_iter().map(|(name, _)| name);
        let queues = [
            topology.work_queue.clone(),
            topology.invalid_queue.clone(),
            topology.dead_queue.clone(),
        ];
        for queue in queues.into_iter().chain(retry_queues) {
            let _ = self
                .channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = self
            .channel
            .exchange_delete(
                topology.exchange.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await;
    }
}

/// A header value as text; `x-death` (an array of tables) as the queues it names.
fn header_text(value: &AMQPValue) -> String {
    match value {
        AMQPValue::LongString(s) => s.to_string(),
        AMQPValue::ShortString(s) => s.to_string(),
        AMQPValue::FieldArray(items) => items
            .as_slice()
            .iter()
            .map(header_text)
            .collect::<Vec<_>>()
            .join(","),
        AMQPValue::FieldTable(table) => table
            .inner()
            .get("queue")
            .map_or_else(|| format!("{table:?}"), header_text),
        other => format!("{other:?}"),
    }
}
