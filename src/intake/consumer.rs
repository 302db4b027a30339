//! The intake subsystem: consume the work queue in broker sessions, pipeline the
//! deliveries into batches, and drain on shutdown.
//!
//! Deliveries are gathered into batches and each batch is handled in its own
//! task: agent requests are recorded in one transaction (group commit), then
//! answered and acknowledged. A few batches run at once; while they are busy the
//! next one grows (up to its maximum), so the batch size follows the load and
//! throughput is bound neither by one commit per message nor by one publisher
//! confirm at a time. Losing the broker ends the session; [`session`] reconnects
//! and calls [`consume`] again (unacknowledged deliveries come back and
//! idempotency absorbs them). A cancellation stops consuming, lets in-flight
//! deliveries finish within the drain deadline, and closes cleanly.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{Intake, Outcome};
use crate::amqp::{AmqpError, Broker, Incoming};
use crate::handlers::Handlers;
use crate::health::SessionHealth;
use crate::session::{self, SessionEnd};
use crate::settings::{BrokerSettings, IntakeSettings};
use crate::store_gate::StoreGate;

/// How the intake consumes: its settings beyond a delivery's.
#[derive(Debug, Clone)]
pub struct Consumer {
    /// The broker.
    pub broker: BrokerSettings,
    /// What a delivery needs.
    pub intake: Arc<IntakeSettings>,
    /// Deliveries in flight at once (AMQP prefetch).
    pub prefetch: u16,
    /// Deliveries recorded in one transaction at most.
    pub batch_max: usize,
    /// Batches handled at once.
    pub batches_in_flight: usize,
    /// Time allowed to finish in-flight deliveries on shutdown.
    pub drain_timeout: Duration,
    /// Where the session's state is reported (readiness).
    pub session: SessionHealth,
}

/// Runs the intake until `token` is cancelled; an error only when the broker
/// refuses us as configured.
pub async fn run(
    consumer: &Consumer,
    handlers: &Handlers,
    gate: &StoreGate,
    token: &CancellationToken,
) -> Result<(), AmqpError> {
    let topology = &consumer.intake.topology;
    session::reconnecting(
        &consumer.broker,
        topology,
        token,
        &consumer.session,
        |broker| consume(consumer, broker, handlers, gate, token),
    )
    .await
}

/// One broker session's consumption.
async fn consume(
    consumer: &Consumer,
    broker: Broker,
    handlers: &Handlers,
    gate: &StoreGate,
    token: &CancellationToken,
) -> Result<SessionEnd, AmqpError> {
    let queue = &consumer.intake.topology.work_queue;
    let opened = async {
        let publisher = broker.publisher().await?;
        let deliveries = broker.consume(queue, consumer.prefetch).await?;
        Ok::<_, AmqpError>((publisher, deliveries))
    };
    let (publisher, mut deliveries) = tokio::select! {
        opened = opened => opened?,
        () = token.cancelled() => {
            broker.close().await;
            return Ok(SessionEnd::Shutdown);
        }
    };
    let publisher = publisher.with_confirm_timeout(consumer.broker.confirm_timeout);
    info!(queue = %queue, prefetch = consumer.prefetch, "consuming");

    let intake = Intake::new(
        handlers.clone(),
        gate.clone(),
        publisher,
        consumer.intake.clone(),
    );
    let mut in_flight = JoinSet::new();
    // Deliveries gathered for the next group commit.
    let mut batch = Vec::new();
    let flush = |batch: &mut Vec<Incoming>, in_flight: &mut JoinSet<Vec<Outcome>>| {
        let intake = intake.clone();
        let taken = std::mem::take(batch);
        in_flight.spawn(async move { intake.handle_batch(taken).await });
    };
    let end = loop {
        tokio::select! {
            () = token.cancelled() => break SessionEnd::Shutdown,
            delivery = deliveries.next() => match delivery {
                Some(Ok(incoming)) => {
                    batch.push(incoming);
                    if batch.len() >= consumer.batch_max {
                        flush(&mut batch, &mut in_flight);
                    }
                }
                Some(Err(e)) => break SessionEnd::Lost(e.to_string()),
                None => break SessionEnd::Lost("consumer cancelled or channel closed".into()),
            },
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => match done {
                Ok(outcomes) => {
                    // A delivery that could not be settled holds its prefetch
                    // slot until its channel closes, and a closed publishing
                    // channel fails every later reply: either way, end the
                    // session (the broker takes unsettled deliveries back) and
                    // start a new one.
                    if outcomes.contains(&Outcome::Unsettled) || !intake.can_publish() {
                        break SessionEnd::Lost("a channel is closed or a delivery could not be settled".into());
                    }
                }
                Err(e) => error!(error = %e, "delivery task panicked; the broker will redeliver"),
            },
        }
        // A free slot takes the batch at once, so an idle worker adds no latency;
        // while every slot is busy the batch grows, so load makes batches bigger
        // and commits fewer (self-clocking group commit).
        if !batch.is_empty() && in_flight.len() < consumer.batches_in_flight {
            flush(&mut batch, &mut in_flight);
        }
    };
    // Deliveries already taken are handled too (on a lost connection their acks
    // will fail and the broker redelivers them).
    if !batch.is_empty() {
        flush(&mut batch, &mut in_flight);
    }

    if let SessionEnd::Shutdown = end {
        info!(in_flight = in_flight.len(), "draining");
        if let Err(e) = deliveries.cancel().await {
            warn!(error = %e, "could not cancel the consumer");
        }
    }
    let drained = tokio::time::timeout(consumer.drain_timeout, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            abandoned = in_flight.len(),
            "drain deadline passed; unfinished deliveries go back to the queue"
        );
        in_flight.abort_all();
    }
    broker.close().await;
    Ok(end)
}
