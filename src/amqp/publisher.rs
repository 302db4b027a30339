//! Publishing with publisher confirms: a publish returns only once the broker has
//! taken responsibility for the message (persistent, so it survives a restart).

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, LongString, ShortString};
use lapin::{BasicProperties, Channel};

use super::{AmqpError, Incoming};

/// How long to wait for a confirm, by default, before calling the publish failed
/// (the broker may be blocked by a resource alarm); the caller then hands the
/// delivery back instead of acknowledging it, so nothing is lost.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// A message to publish.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// Exchange; `""` is the default exchange, routing straight to a queue by name.
    pub exchange: &'a str,
    /// Routing key (or queue name on the default exchange).
    pub routing_key: &'a str,
    /// JSON body.
    pub body: &'a [u8],
    /// correlation_id property.
    pub correlation_id: Option<&'a str>,
    /// message_id property.
    pub message_id: Option<&'a str>,
    /// reply_to property.
    pub reply_to: Option<&'a str>,
}

/// A channel in confirm mode. Cheap to clone; clones share the channel.
#[derive(Debug, Clone)]
pub struct Publisher {
    channel: Channel,
    app_id: String,
    confirm_timeout: Duration,
}

impl Publisher {
    pub(super) fn new(channel: Channel, app_id: &str) -> Self {
        Self {
            channel,
            app_id: app_id.to_owned(),
            confirm_timeout: CONFIRM_TIMEOUT,
        }
    }

    /// The same channel, waiting at most `timeout` for each confirm.
    pub fn with_confirm_timeout(self, timeout: Duration) -> Self {
        Self {
            confirm_timeout: timeout,
            ..self
        }
    }

    /// True while the channel can publish. A channel the broker closed (a
    /// publish to a missing exchange, say) fails every later publish, so its
    /// session must end and start anew.
    pub fn is_open(&self) -> bool {
        self.channel.status().connected()
    }

    /// Publishes a persistent JSON message and waits for the broker's confirm.
    pub async fn publish(&self, message: Outgoing<'_>) -> Result<(), AmqpError> {
        let mut properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_timestamp(Utc::now().timestamp().try_into().unwrap_or_default())
            .with_app_id(short(&self.app_id)?);
        if let Some(id) = message.correlation_id {
            properties = properties.with_correlation_id(short(id)?);
        }
        if let Some(id) = message.message_id {
            properties = properties.with_message_id(short(id)?);
        }
        if let Some(queue) = message.reply_to {
            properties = properties.with_reply_to(short(queue)?);
        }
        self.send(
            message.exchange,
            message.routing_key,
            message.body,
            properties,
        )
        .await
    }

    /// Copies a delivery, body and properties unchanged, to `queue` (a parking or
    /// retry queue) with extra headers saying why it is there. A copy parked for
    /// an operator (`expires_after`) carries a per-message expiration, so the
    /// plain-text body does not stay on the broker forever and the queue needs no
    /// arguments of its own.
    pub async fn park(
        &self,
        incoming: &Incoming,
        queue: &str,
        headers: &[(&str, String)],
        expires_after: Option<Duration>,
    ) -> Result<(), AmqpError> {
        let mut table = incoming.properties.headers().clone().unwrap_or_default();
        for (name, value) in headers {
            table.insert((*name).into(), AMQPValue::LongString(value.as_str().into()));
        }
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        table.insert(
            "x-privacy-parked-at".into(),
            AMQPValue::LongString(now.into()),
        );
        // A message back from a retry queue keeps the route it was first published with.
        let original = [
            ("x-original-exchange", &incoming.exchange),
            ("x-original-routing-key", &incoming.routing_key),
        ];
        for (name, value) in original {
            if !table.contains_key(name) {
                table.insert(
                    name.into(),
                    AMQPValue::LongString(LongString::from(value.as_str())),
                );
            }
        }
        let mut properties = incoming
            .properties
            .clone()
            .with_headers(table)
            .with_delivery_mode(2);
        if let Some(ttl) = expires_after {
            properties = properties.with_expiration(ttl.as_millis().to_string().into());
        }
        self.send("", queue, &incoming.body, properties).await
    }

    /// Moves a parked message back to `queue`: body and properties unchanged but
    /// for the parking's expiration, the parking headers (`x-privacy-*`) replaced
    /// by `x-privacy-replayed-at`.
    pub async fn replay(&self, incoming: &Incoming, queue: &str) -> Result<(), AmqpError> {
        let mut table = lapin::types::FieldTable::default();
        if let Some(headers) = incoming.properties.headers() {
            for (name, value) in headers.inner() {
                if !name.as_str().starts_with("x-privacy-") {
                    table.insert(name.clone(), value.clone());
                }
            }
        }
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        table.insert(
            "x-privacy-replayed-at".into(),
            AMQPValue::LongString(now.into()),
        );
        let properties = without_expiration(&incoming.properties).with_headers(table);
        self.send("", queue, &incoming.body, properties).await
    }

    async fn send(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), AmqpError> {
        let (exchange, routing_key) = (short(exchange)?, short(routing_key)?);
        // The bound covers the send too: a connection blocked by a resource
        // alarm may hold the frames as well as the confirm.
        let published = async {
            let confirm = self
                .channel
                .basic_publish(
                    exchange,
                    routing_key,
                    BasicPublishOptions::default(),
                    body,
                    properties,
                )
                .await?;
            confirm.await
        };
        let timeout = self.confirm_timeout;
        let confirmation = tokio::time::timeout(timeout, published)
            .await
            .map_err(|_| AmqpError::NotConfirmed(format!("no confirm within {timeout:?}")))??;
        if confirmation.is_nack() {
            return Err(AmqpError::NotConfirmed(
                "the broker nacked the publish".into(),
            ));
        }
        Ok(())
    }
}

fn short(text: &str) -> Result<ShortString, AmqpError> {
    ShortString::try_new(text)
        .map_err(|_| AmqpError::Invalid("an AMQP name or property exceeds 255 bytes".into()))
}

/// `properties` without an expiration (lapin has no way to unset one).
fn without_expiration(properties: &BasicProperties) -> BasicProperties {
    let mut out = BasicProperties::default();
    let p = properties;
    if let Some(v) = p.content_type() {
        out = out.with_content_type(v.clone());
    }
    if let Some(v) = p.content_encoding() {
        out = out.with_content_encoding(v.clone());
    }
    if let Some(v) = p.headers() {
        out = out.with_headers(v.clone());
    }
    if let Some(v) = p.delivery_mode() {
        out = out.with_delivery_mode(*v);
    }
    if let Some(v) = p.priority() {
        out = out.with_priority(*v);
    }
    if let Some(v) = p.correlation_id() {
        out = out.with_correlation_id(v.clone());
    }
    if let Some(v) = p.reply_to() {
        out = out.with_reply_to(v.clone());
    }
    if let Some(v) = p.message_id() {
        out = out.with_message_id(v.clone());
    }
    if let Some(v) = p.timestamp() {
        out = out.with_timestamp(*v);
    }
    if let Some(v) = p.kind() {
        out = out.with_type(v.clone());
    }
    if let Some(v) = p.user_id() {
        out = out.with_user_id(v.clone());
    }
    if let Some(v) = p.app_id() {
        out = out.with_app_id(v.clone());
    }
    if let Some(v) = p.cluster_id() {
        out = out.with_cluster_id(v.clone());
    }
    out
}
