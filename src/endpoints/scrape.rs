//! What the endpoints answer: the metrics page (the process's families, then
//! the gauges read at scrape time from the store and the instance's health)
//! and the reasons the instance is not ready.
//!
//! The store's gauges are read at scrape time rather than kept up to date by a
//! task: a scrape every 15 s costs a few indexed counts, nothing runs between
//! scrapes, and the numbers are never stale. A store that does not answer in
//! time leaves them out of the page (Prometheus marks them stale) and shows as
//! `privacy_worker_component_up{component="store"} 0`; the page itself is
//! always served.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use chrono::Utc;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use tracing::debug;

use crate::deadline;
use crate::health::{DatamapState, Health};
use crate::metrics::{self, Component, ComponentLabels, Session, Status, StatusLabels};
use crate::request::RequestStatus;
use crate::store::{Store, StoreGauges};
use crate::store_gate::StoreGate;

/// How long a scrape or a readiness check waits for the store.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the endpoints look at, for one worker instance.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The request store.
    pub store: Store,
    /// The intake's store gate: closed while the database is down.
    pub gate: StoreGate,
    /// The broker sessions and the data map.
    pub health: Health,
    /// `PRIVACY_RESPONSE_DEADLINE`.
    pub deadline: Duration,
}

type FloatGauge = Gauge<f64, AtomicU64>;

impl Observed {
    /// What the endpoints of one worker look at.
    pub fn new(store: &Store, gate: &StoreGate, health: &Health, deadline: Duration) -> Self {
        Self {
            store: store.clone(),
            gate: gate.clone(),
            health: health.clone(),
            deadline,
        }
    }

    /// Why the instance is not ready; empty when it is.
    pub async fn not_ready(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        for (session, what) in [(Session::Intake, "intake"), (Session::Relay, "relay")] {
            if !self.health.session_up(session) {
                reasons.push(format!("the {what}'s broker session is down"));
            }
        }
        if !self.gate.is_open() {
            reasons.push("the store does not answer (the store gate is closed)".into());
        } else {
            // A failed ping closes the gate, so the intake holds its
            // deliveries too, until the gate's probe finds the store back.
            match tokio::time::timeout(STORE_TIMEOUT, self.gate.store_answers()).await {
                Ok(true) => {}
                Ok(false) => reasons.push("the store does not answer".into()),
                Err(_) => reasons.push(format!(
                    "the store did not answer within {} s",
                    STORE_TIMEOUT.as_secs()
                )),
            }
        }
        if self.health.datamap() == DatamapState::Waiting {
            reasons.push("the data map is not loaded (its databases do not answer)".into());
        }
        reasons
    }

    /// The metrics page, in the OpenMetrics text format.
    pub async fn page(&self) -> String {
        let now = Utc::now();
        let (overdue_before, due_soon_before) = deadline::cutoffs(now, self.deadline);
        let open = deadline::open_statuses();
        let read = self.store.gauges(&open, overdue_before, due_soon_before);
        let gauges = match tokio::time::timeout(STORE_TIMEOUT, read).await {
            Ok(Ok(gauges)) => Some(gauges),
            Ok(Err(error)) => {
                debug!(%error, "scrape: the store's gauges could not be read");
                None
            }
            Err(_) => {
                debug!("scrape: the store's gauges timed out");
                None
            }
        };
        let mut registry = Registry::default();
        self.components(&mut registry, gauges.is_some());
        let deadline = FloatGauge::default();
        deadline.set(self.deadline.as_secs_f64());
        registry.register_with_unit(
            "privacy_worker_response_deadline",
            "PRIVACY_RESPONSE_DEADLINE: how long after registration a request must be answered",
            Unit::Seconds,
            deadline,
        );
        if let Some(gauges) = gauges {
            register_store_gauges(&mut registry, &gauges, now);
        }
        let mut page = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = metrics::encode(&mut page);
        let _ = prometheus_client::encoding::text::encode(&mut page, &registry);
        page
    }

    fn components(&self, registry: &mut Registry, store_read: bool) {
        let up = Family::<ComponentLabels, Gauge>::default();
        let datamap = self.health.datamap() != DatamapState::Waiting;
        for (component, is_up) in [
            (
                Component::BrokerIntake,
                self.health.session_up(Session::Intake),
            ),
            (
                Component::BrokerRelay,
                self.health.session_up(Session::Relay),
            ),
            (Component::Store, self.gate.is_open() && store_read),
            (Component::Datamap, datamap),
        ] {
            up.get_or_create(&ComponentLabels { component })
                .set(i64::from(is_up));
        }
        registry.register(
            "privacy_worker_component_up",
            "Whether what readiness depends on is up (1) or not (0)",
            up,
        );
    }
}

fn register_store_gauges(
    registry: &mut Registry,
    gauges: &StoreGauges,
    now: chrono::DateTime<Utc>,
) {
    let by_status = Family::<StatusLabels, Gauge>::default();
    for status in RequestStatus::ALL {
        let n = gauges
            .by_status
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n);
        by_status
            .get_or_create(&StatusLabels {
                status: Status(status),
            })
            .set(n);
    }
    registry.register(
        "privacy_worker_requests",
        "Requests in the store, by lifecycle status",
        by_status,
    );
    let plain = |registry: &mut Registry, name: &str, help: &str, value: i64| {
        let gauge = Gauge::<i64>::default();
        gauge.set(value);
        registry.register(name, help, gauge);
    };
    plain(
        registry,
        "privacy_worker_outbox_backlog",
        "Status changes written to the outbox and not yet announced on the bus",
        gauges.outbox_backlog,
    );
    plain(
        registry,
        "privacy_worker_requests_overdue",
        "Open requests (registered, in progress or failed) past their due_by",
        gauges.overdue,
    );
    plain(
        registry,
        "privacy_worker_requests_due_soon",
        "Open requests in the last quarter of their deadline, not yet overdue",
        gauges.due_soon,
    );
    let age = FloatGauge::default();
    let oldest = gauges.oldest_open.map_or(0.0, |at| {
        (now - at).to_std().unwrap_or_default().as_secs_f64()
    });
    age.set(oldest);
    registry.register_with_unit(
        "privacy_worker_oldest_open_request_age",
        "Age of the oldest open request (0 when none is open)",
        Unit::Seconds,
        age,
    );
}
