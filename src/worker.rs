//! The consume loop: connect, declare, pipeline deliveries, reconnect, drain.
//!
//! Deliveries are gathered into batches and each batch is handled in its own
//! task: agent requests are recorded in one transaction (group commit), then
//! answered and acknowledged. A few batches run at once; while they are busy the
//! next one grows (up to its maximum), so the batch size follows the load and
//! throughput is bound neither by one commit per message nor by one publisher
//! confirm at a time. Losing the broker ends the session; the loop reconnects
//! with exponential backoff and carries on (unacknowledged deliveries come back
//! and idempotency absorbs them). A shutdown signal stops consuming, lets in-flight
//! deliveries finish within the drain deadline, and closes cleanly.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::ExponentialBackoff;
use thiserror::Error;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::amqp::{AmqpError, Broker, Deliveries, Incoming, Publisher};
use crate::backoff::endless_backoff;
use crate::handlers::Handlers;
use crate::intake::{Intake, Outcome};
use crate::keyring::{self, Creation, KeyringError};
use crate::settings::WorkerSettings;
use crate::store::{Store, StoreError};
use crate::store_gate::StoreGate;

/// A failure that stops the worker: configuration that cannot work.
#[derive(Debug, Error)]
pub enum FatalError {
    /// The keys for personal data are missing, unusable, or not the ones the
    /// store was written with.
    #[error(transparent)]
    Keys(KeyringError),
    /// The store cannot be used as configured.
    #[error(transparent)]
    Store(StoreError),
    /// The broker refuses us as configured.
    #[error(transparent)]
    Broker(AmqpError),
}

enum SessionEnd {
    Shutdown,
    Lost(String),
}

/// Runs until `shutdown` resolves. Returns an error only for fatal configuration
/// problems; unreachable services are waited for.
pub async fn run(
    settings: WorkerSettings,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), FatalError> {
    Broker::check_url(&settings.amqp_url).map_err(FatalError::Broker)?;
    let settings = Arc::new(settings);
    tokio::pin!(shutdown);
    let mut delays = reconnect_backoff();

    let store = loop {
        match Store::connect(&settings.store).await {
            Ok(store) => break store,
            Err(e) if e.is_transient() => {
                let delay = delays.next().unwrap_or(Duration::from_secs(30));
                warn!(error = %e, ?delay, "database unreachable, retrying");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = &mut shutdown => return Ok(()),
                }
            }
            Err(e) => return Err(FatalError::Store(e)),
        }
    };
    info!(backend = store.backend().as_str(), "store ready");
    let keys = keyring::open(settings.key_file.as_deref(), &store, Creation::ForNewStore).await;
    let keys = match keys {
        Ok(keys) => Arc::new(keys),
        Err(e) => {
            store.close().await;
            return Err(FatalError::Keys(e));
        }
    };
    let handlers = Handlers::new(store.clone(), keys, settings.tenant.clone());
    let gate = StoreGate::new(store.clone());

    delays = reconnect_backoff();
    loop {
        match session(&settings, &handlers, &gate, &mut shutdown, &mut delays).await {
            Ok(SessionEnd::Shutdown) => break,
            Ok(SessionEnd::Lost(reason)) => warn!(reason, "broker session lost"),
            Err(e) if e.is_transient() => warn!(error = %e, "broker unavailable"),
            Err(e) => {
                store.close().await;
                return Err(FatalError::Broker(e));
            }
        }
        let delay = delays.next().unwrap_or(Duration::from_secs(30));
        info!(?delay, "reconnecting to the broker");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = &mut shutdown => break,
        }
    }
    store.close().await;
    info!("worker stopped");
    Ok(())
}

fn reconnect_backoff() -> ExponentialBackoff {
    endless_backoff(Duration::from_secs(10))
}

/// Connects, declares the topology, and starts consuming.
async fn open(settings: &WorkerSettings) -> Result<(Broker, Publisher, Deliveries), AmqpError> {
    let broker = Broker::connect(&settings.amqp_url, &settings.connection_name).await?;
    broker.declare(&settings.intake.topology).await?;
    let publisher = broker
        .publisher()
        .await?
        .with_confirm_timeout(settings.confirm_timeout);
    let deliveries = broker
        .consume(&settings.intake.topology.work_queue, settings.prefetch)
        .await?;
    Ok((broker, publisher, deliveries))
}

/// One broker connection's life.
async fn session(
    settings: &Arc<WorkerSettings>,
    handlers: &Handlers,
    gate: &StoreGate,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
    delays: &mut ExponentialBackoff,
) -> Result<SessionEnd, AmqpError> {
    // A shutdown while connecting ends the session at once: nothing is in flight.
    let (broker, publisher, mut deliveries) = tokio::select! {
        opened = open(settings) => opened?,
        () = &mut *shutdown => return Ok(SessionEnd::Shutdown),
    };
    *delays = reconnect_backoff();
    info!(
        queue = %settings.intake.topology.work_queue,
        prefetch = settings.prefetch,
        "consuming"
    );

    let intake = Intake::new(
        handlers.clone(),
        gate.clone(),
        publisher,
        Arc::new(settings.intake.clone()),
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
            () = &mut *shutdown => break SessionEnd::Shutdown,
            delivery = deliveries.next() => match delivery {
                Some(Ok(incoming)) => {
                    batch.push(incoming);
                    if batch.len() >= settings.batch_max {
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
        if !batch.is_empty() && in_flight.len() < settings.batches_in_flight {
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
    let drained = tokio::time::timeout(settings.drain_timeout, async {
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
