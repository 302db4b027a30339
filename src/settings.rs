//! The worker's settings as plain values, built from the command line and the
//! environment by [`crate::config`]. Each part of the worker takes only the
//! settings it uses: the intake gets [`IntakeSettings`], not the URLs and key
//! paths that only start-up needs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::amqp::Topology;
use crate::fulfil::FulfilSettings;
use crate::protocol::Limits;
use crate::store::StoreSettings;

/// Everything the worker needs to run.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// The broker and how to talk to it.
    pub broker: BrokerSettings,
    /// The request store.
    pub store: StoreSettings,
    /// Deliveries in flight at once.
    pub prefetch: u16,
    /// Deliveries recorded in one transaction at most (group commit); 1 turns it off.
    pub batch_max: usize,
    /// Batches handled at once; while all are busy, deliveries gather into the next.
    pub batches_in_flight: usize,
    /// Time allowed to finish in-flight deliveries on shutdown.
    pub drain_timeout: Duration,
    /// Tenant of LCM requests.
    pub tenant: String,
    /// Key file for personal data at rest; `None` uses one next to an SQLite
    /// database (created only for a new, empty store), and is an error with
    /// PostgreSQL.
    pub key_file: Option<PathBuf>,
    /// The data map of the customer databases; `None` fulfils nothing.
    pub datamap: Option<PathBuf>,
    /// Where access archives go (`file:///dir`, `s3://bucket/prefix`).
    pub export_url: String,
    /// How long an S3 download link is valid.
    pub export_link_ttl: Duration,
    /// How fulfilment is timed.
    pub fulfil: FulfilSettings,
    /// What the intake needs for each delivery.
    pub intake: IntakeSettings,
    /// The HTTP listener and the response deadline.
    pub observability: ObservabilitySettings,
}

/// The HTTP listener (metrics, health, readiness) and the deadline it watches.
#[derive(Debug, Clone)]
pub struct ObservabilitySettings {
    /// Where `/metrics`, `/healthz` and `/readyz` listen; `None` turns it off.
    pub http_addr: Option<SocketAddr>,
    /// How long after registration a request must be answered (`due_by`).
    pub response_deadline: Duration,
}

/// The broker and how to talk to it.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// AMQP URL.
    pub amqp_url: String,
    /// Connection name shown in the management UI.
    pub connection_name: String,
    /// How long a publish may wait for the broker's confirm before it counts as
    /// failed (a resource alarm blocks publishers).
    pub confirm_timeout: Duration,
}

/// What the intake needs to handle a delivery: where to park and retry it, how
/// to parse it, how to sign its reply.
#[derive(Debug, Clone)]
pub struct IntakeSettings {
    /// Names to declare and use.
    pub topology: Topology,
    /// Body limits.
    pub limits: Limits,
    /// Tenants RCDP requests may name; empty accepts any.
    pub tenants: Vec<String>,
    /// Attempts a message gets, the first included, before it is parked as dead
    /// (attempts during a database outage do not count).
    pub retry_attempts: u32,
    /// `source` of replies.
    pub reply_source: String,
    /// How long a copy parked in the invalid or dead queue is kept (it holds the
    /// request's personal data in plain text) before the broker drops it.
    pub parked_ttl: Duration,
}
