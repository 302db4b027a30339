//! `privacy-worker dlq list | replay`: look at the messages parked in the dead
//! queue, and move them back to the work queue once the cause is fixed.
//!
//! `list` shows what an operator needs to decide (ids, reason, attempts, last
//! error, times), never the body: parked bodies hold personal data. `replay`
//! publishes each message to the work queue with publisher confirms before it
//! acknowledges it in the dead queue, so a crash in between duplicates rather
//! than loses it, and idempotency answers the duplicate with the same id.

use serde::Serialize;

use crate::amqp::{AmqpError, Broker, Incoming};

/// What `dlq list` shows of a parked message.
#[derive(Debug, Clone, Serialize)]
pub struct ParkedSummary {
    /// AMQP message_id.
    pub message_id: Option<String>,
    /// AMQP correlation_id.
    pub correlation_id: Option<String>,
    /// Routing key it was first published with.
    pub original_routing_key: Option<String>,
    /// Why it was parked: the worker's `x-privacy-reason`, or the broker's
    /// `x-first-death-reason` (e.g. `delivery_limit`).
    pub reason: Option<String>,
    /// Attempts the worker made.
    pub attempts: Option<String>,
    /// The last error (database or broker text; no request data).
    pub last_error: Option<String>,
    /// When it was parked.
    pub parked_at: Option<String>,
    /// Body size in bytes.
    pub body_bytes: usize,
}

impl ParkedSummary {
    fn of(message: &Incoming) -> Self {
        Self {
            message_id: message.message_id.clone(),
            correlation_id: message.correlation_id.clone(),
            original_routing_key: message
                .header("x-original-routing-key")
                .or_else(|| Some(message.routing_key.clone())),
            reason: message
                .header("x-privacy-reason")
                .or_else(|| message.header("x-first-death-reason")),
            attempts: message.header("x-privacy-attempts"),
            last_error: message.header("x-privacy-last-error"),
            parked_at: message
                .header("x-privacy-parked-at")
                .or_else(|| message.header("x-privacy-last-failure-at")),
            body_bytes: message.body.len(),
        }
    }
}

/// Up to `limit` parked messages of `queue`, left in place.
pub async fn list(
    broker: &Broker,
    queue: &str,
    limit: usize,
) -> Result<Vec<ParkedSummary>, AmqpError> {
    let reader = broker.reader(queue).await?;
    let mut listed = Vec::new();
    while listed.len() < limit {
        match reader.next().await? {
            Some(message) => listed.push(ParkedSummary::of(&message)),
            None => break,
        }
    }
    // Nothing was acknowledged: closing the reader puts every message back.
    reader.close().await;
    Ok(listed)
}

/// Moves up to `limit` messages from `from` to `to`; returns how many moved.
pub async fn replay(
    broker: &Broker,
    from: &str,
    to: &str,
    limit: usize,
) -> Result<usize, AmqpError> {
    let reader = broker.reader(from).await?;
    let publisher = broker.publisher().await?;
    let mut moved = 0;
    while moved < limit {
        let Some(message) = reader.next().await? else {
            break;
        };
        publisher.replay(&message, to).await?;
        message.ack().await?;
        moved += 1;
    }
    reader.close().await;
    Ok(moved)
}
