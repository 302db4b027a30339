//! Holding deliveries while the database is down, instead of burning their retries.
//!
//! A transient store failure is either an outage (the database is unreachable,
//! locked or read-only for everyone) or something about this one message. The gate
//! tells them apart by pinging the store right after the failure: if the ping fails
//! too, it is an outage: the gate closes, one probe task pings with backoff until
//! the store answers, and every delivery waits at the gate without counting an
//! attempt. Deliveries held at the gate stay unacknowledged, so with the prefetch
//! limit the broker stops sending more until the store is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{info, warn};

use crate::backoff::endless_backoff;
use crate::metrics;
use crate::store::Store;

/// Shared by every delivery of one worker.
#[derive(Debug, Clone)]
pub struct StoreGate {
    open: Arc<watch::Sender<bool>>,
    probing: Arc<AtomicBool>,
    store: Store,
}

impl StoreGate {
    /// An open gate over `store`.
    pub fn new(store: Store) -> Self {
        Self {
            open: Arc::new(watch::Sender::new(true)),
            probing: Arc::new(AtomicBool::new(false)),
            store,
        }
    }

    /// Whether the store is believed reachable.
    pub fn is_open(&self) -> bool {
        *self.open.borrow()
    }

    /// Waits until the store is believed reachable; a wait at a closed gate
    /// is measured (`privacy_worker_store_gate_wait_seconds`).
    pub async fn wait_open(&self) {
        if self.is_open() {
            return;
        }
        let held = Instant::now();
        let mut open = self.open.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = open.wait_for(|open| *open).await;
        metrics::store_gate_held(held.elapsed());
    }

    /// After a transient failure: true when the store answers (the failure was
    /// about the message), false when it does not (an outage: the gate closes
    /// until a probe succeeds).
    pub async fn store_answers(&self) -> bool {
        if self.is_open() && self.store.ping().await.is_ok() {
            return true;
        }
        if self.open.send_replace(false) {
            warn!("store unavailable: holding deliveries until it answers again");
            metrics::store_gate_closed();
        }
        if !self.probing.swap(true, Ordering::SeqCst) {
            tokio::spawn(self.clone().probe());
        }
        false
    }

    async fn probe(self) {
        let delays = endless_backoff(Duration::from_secs(5));
        for delay in delays {
            tokio::time::sleep(delay).await;
            if self.store.ping().await.is_ok() {
                break;
            }
        }
        self.probing.store(false, Ordering::SeqCst);
        self.open.send_replace(true);
        info!("store answers again: resuming deliveries");
    }
}
