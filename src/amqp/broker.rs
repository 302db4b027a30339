//! The AMQP connection, its channels, and the classification of broker errors.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{FieldTable, LongString};
use lapin::{Channel, Connection, ConnectionProperties, Consumer, ErrorKind};
use thiserror::Error;

use super::{Incoming, Publisher, Topology};

/// Why a broker operation failed. lapin's own error is kept as the source.
#[derive(Debug, Error)]
pub enum AmqpError {
    /// Connection or channel lost, broker restarting: worth retrying after reconnecting.
    #[error("broker unavailable: {0}")]
    Unavailable(#[source] lapin::Error),
    /// The connection or channel is gone without an error to show for it (an
    /// attempt timed out, an ack on a closed channel): retry after reconnecting.
    #[error("broker unavailable: {0}")]
    Gone(String),
    /// The broker did not confirm a publish: retry.
    #[error("publish not confirmed: {0}")]
    NotConfirmed(String),
    /// The broker refused: wrong credentials, a queue declared with other
    /// arguments. Retrying will not help; configuration must change.
    #[error("broker refused: {0}")]
    Refused(#[source] lapin::Error),
    /// Refused before anything was sent: a URL that is not AMQP, a name or
    /// property longer than AMQP allows.
    #[error("{0}")]
    Invalid(String),
}

impl AmqpError {
    /// True when the operation may succeed later or after a reconnect.
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::Refused(_) | Self::Invalid(_))
    }
}

impl From<lapin::Error> for AmqpError {
    fn from(error: lapin::Error) -> Self {
        let refused = match error.kind() {
            ErrorKind::ProtocolError(e) => matches!(
                e.kind(),
                AMQPErrorKind::Soft(
                    AMQPSoftError::ACCESSREFUSED
                        | AMQPSoftError::PRECONDITIONFAILED
                        | AMQPSoftError::NOTFOUND
                )
            ),
            _ => false,
        };
        if refused {
            Self::Refused(error)
        } else {
            Self::Unavailable(error)
        }
    }
}

/// How long opening a connection may take, TCP and AMQP handshake together. A
/// peer that accepts the socket and never speaks (a hung node, a half-open load
/// balancer) would otherwise hold the worker forever instead of letting it retry.
/// lapin cannot abandon an attempt: a timed-out attempt's IO thread and socket
/// stay until the peer closes or TCP gives up (one thread and one descriptor per
/// attempt against a peer that holds sockets open). That is bounded by the
/// outage; hanging is not.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One connection to the broker, named so the management UI shows who it is.
#[derive(Debug)]
pub struct Broker {
    connection: Connection,
    name: String,
}

impl Broker {
    /// Checks that `url` is an AMQP URL, so a typo fails at start-up instead of
    /// being retried as if the broker were down.
    pub fn check_url(url: &str) -> Result<(), AmqpError> {
        url.parse::<lapin::uri::AMQPUri>()
            .map(drop)
            .map_err(|e| AmqpError::Invalid(format!("AMQP_URL is not an AMQP URL: {e}")))
    }

    /// Connects to `url`, naming the connection `name`.
    pub async fn connect(url: &str, name: &str) -> Result<Self, AmqpError> {
        let properties =
            ConnectionProperties::default().with_connection_name(LongString::from(name));
        let connection =
            tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(url, properties))
                .await
                .map_err(|_| {
                    AmqpError::Gone(format!("no AMQP handshake within {CONNECT_TIMEOUT:?}"))
                })??;
        Ok(Self {
            connection,
            name: name.to_owned(),
        })
    }

    /// Declares the exchange, queues and bindings (idempotent).
    pub async fn declare(&self, topology: &Topology) -> Result<(), AmqpError> {
        let channel = self.connection.create_channel().await?;
        topology.declare(&channel).await?;
        channel.close(200, "topology declared".into()).await?;
        Ok(())
    }

    /// A fresh channel in confirm mode.
    pub async fn publisher(&self) -> Result<Publisher, AmqpError> {
        let channel = self.connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Publisher::new(channel, &self.name))
    }

    /// Starts consuming `queue` on a fresh channel with at most `prefetch`
    /// unacknowledged deliveries.
    pub async fn consume(&self, queue: &str, prefetch: u16) -> Result<Deliveries, AmqpError> {
        let channel = self.connection.create_channel().await?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Deliveries { channel, consumer })
    }

    /// Declares a server-named, exclusive queue for a client waiting for replies,
    /// bound to `(exchange, routing_key)` when given. Returns its name.
    pub async fn reply_queue(&self, binding: Option<(&str, &str)>) -> Result<String, AmqpError> {
        let channel = self.connection.create_channel().await?;
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        if let Some((exchange, routing_key)) = binding {
            channel
                .queue_bind(
                    queue.name().clone(),
                    exchange.into(),
                    routing_key.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(queue.name().as_str().to_owned())
    }

    /// Reads `queue` one message at a time without acknowledging (`basic.get`), on
    /// a channel of its own: messages not acknowledged go back to the queue when
    /// the reader is closed.
    pub async fn reader(&self, queue: &str) -> Result<QueueReader, AmqpError> {
        Ok(QueueReader {
            channel: self.connection.create_channel().await?,
            queue: queue.to_owned(),
        })
    }

    /// How many consumers `queue` has.
    pub async fn consumer_count(&self, queue: &str) -> Result<u32, AmqpError> {
        let channel = self.connection.create_channel().await?;
        let options = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let queue = channel
            .queue_declare(queue.into(), options, FieldTable::default())
            .await?;
        let _ = channel.close(200, "counted".into()).await;
        Ok(queue.consumer_count())
    }

    /// Deletes a topology's queues and exchange (the bench's fresh names).
    pub async fn delete_topology(&self, topology: &Topology) {
        let Ok(channel) = self.connection.create_channel().await else {
            return;
        };
        let retry = topology.retry_queues().into_iter().map(|(name, _)| name);
        let queues = [
            &topology.work_queue,
            &topology.invalid_queue,
            &topology.dead_queue,
        ];
        for queue in queues.into_iter().cloned().chain(retry) {
            let _ = channel
                .queue_delete(queue.as_str().into(), Default::default())
                .await;
        }
        let _ = channel
            .exchange_delete(topology.exchange.as_str().into(), Default::default())
            .await;
        let _ = channel.close(200, "deleted".into()).await;
    }

    /// True while the connection is up.
    pub fn is_connected(&self) -> bool {
        self.connection.status().connected()
    }

    /// Closes the connection; unacknowledged deliveries go back to their queues.
    pub async fn close(&self) {
        if self.is_connected() {
            let _ = self.connection.close(200, "shutting down".into()).await;
        }
    }
}

/// The deliveries of one consumer.
#[derive(Debug)]
pub struct Deliveries {
    channel: Channel,
    consumer: Consumer,
}

impl Deliveries {
    /// The next delivery; `None` when the consumer was cancelled or its channel closed.
    pub async fn next(&mut self) -> Option<Result<Incoming, AmqpError>> {
        let delivery = self.consumer.next().await?;
        Some(delivery.map(Incoming::new).map_err(AmqpError::from))
    }

    /// Asks the broker to stop sending deliveries; those already received can
    /// still be acknowledged.
    pub async fn cancel(&self) -> Result<(), AmqpError> {
        self.channel
            .basic_cancel(self.consumer.tag(), BasicCancelOptions::default())
            .await?;
        Ok(())
    }
}

/// Pulls messages from one queue; see [`Broker::reader`].
#[derive(Debug)]
pub struct QueueReader {
    channel: Channel,
    queue: String,
}

impl QueueReader {
    /// The next message, or `None` when the queue has no ready message.
    pub async fn next(&self) -> Result<Option<Incoming>, AmqpError> {
        let message = self
            .channel
            .basic_get(
                self.queue.as_str().into(),
                BasicGetOptions { no_ack: false },
            )
            .await?;
        Ok(message.map(|m| Incoming::new(m.delivery)))
    }

    /// Closes the channel: unacknowledged messages return to the queue.
    pub async fn close(self) {
        let _ = self.channel.close(200, "done reading".into()).await;
    }
}
