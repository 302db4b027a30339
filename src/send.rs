//! `privacy-worker send`: publish a sample request and print the reply, so a
//! newcomer sees the whole loop in a minute.
//!
//! It behaves like an RPC client of the bus: a private reply queue as `reply_to`,
//! a fresh `message_id` and `correlation_id`, and it waits for the reply that
//! carries its correlation id.

use std::time::Duration;

use anyhow::{Context, bail};
use uuid::Uuid;

use crate::amqp::{Broker, Outgoing};
use crate::config::{SampleForm, SendArgs};

/// The seed document's sample request, verbatim.
pub const SAMPLE_REQUEST: &str = include_str!("../schemas/examples/lcm-sample-request.json");
/// The same request in the documentation table's spelling.
pub const TABLE_REQUEST: &str = include_str!("../schemas/examples/lcm-table-request.json");

/// Publishes the request and returns the reply body.
pub async fn send(args: &SendArgs) -> anyhow::Result<String> {
    let body = match (&args.file, args.form) {
        (Some(path), _) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        (None, SampleForm::Sample) => SAMPLE_REQUEST.to_owned(),
        (None, SampleForm::Table) => TABLE_REQUEST.to_owned(),
    };
    let broker = Broker::connect(&args.broker.amqp_url, "privacy-worker send")
        .await
        .context("connecting to the broker (is RabbitMQ running? see docker-compose.yml)")?;
    let reply_queue = broker.reply_queue(None).await?;
    let mut replies = broker.consume(&reply_queue, 1).await?;
    let publisher = broker.publisher().await?;
    let id = Uuid::new_v4().to_string();
    publisher
        .publish(Outgoing {
            exchange: &args.broker.exchange,
            routing_key: &args.routing_key,
            body: body.as_bytes(),
            correlation_id: Some(&id),
            message_id: Some(&id),
            reply_to: Some(&reply_queue),
        })
        .await
        .context("publishing the request (has the worker declared the exchange? start it first)")?;

    let wait = async {
        while let Some(reply) = replies.next().await {
            let reply = reply?;
            reply.ack().await?;
            if reply.correlation_id.as_deref() == Some(id.as_str()) {
                return Ok(String::from_utf8_lossy(&reply.body).into_owned());
            }
        }
        bail!("the reply queue was closed")
    };
    let reply = tokio::time::timeout(Duration::from_secs(args.timeout_secs), wait)
        .await
        .with_context(|| {
            format!(
                "no reply within {} s: is `privacy-worker run` running against the same broker?",
                args.timeout_secs
            )
        })??;
    broker.close().await;
    Ok(reply)
}
