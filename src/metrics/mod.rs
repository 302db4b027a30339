//! The worker's Prometheus metrics: what happened (counters and histograms,
//! recorded where it happens) as one set per process.
//!
//! Why a process-wide set rather than a handle passed around: the events are
//! recorded deep in the intake, the session, the store gate and the job runner,
//! and one Prometheus target is one process; threading a handle through every
//! constructor would touch every subsystem for nothing. What is per worker
//! instance (readiness, the store's gauges) is not here: `http` computes it at
//! scrape time from the store and [`crate::health`].
//!
//! The intake's hot path pays an index into arrays of series made once at
//! start, an atomic add, and for the latency histogram one short uncontended
//! lock (prometheus-client's histogram); nothing allocates, nothing is held
//! across an await. Every series of the bounded label sets exists from the
//! start at 0, so `rate()` and `increase()` see the first event.
//! Labels are the enums of [`labels`]: no personal data can reach a label.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

pub mod labels;

pub use labels::{
    Component, ComponentLabels, FulfilKind, Operation, Outcome, RowAction, RunOutcome, Session,
    Status, StatusLabels,
};
use labels::{MessageLabels, OperationLabels, RowLabels, RunLabels, SessionLabels};

/// Every metric family the process records, with its series made up front.
struct Metrics {
    registry: Registry,
    /// Indexed `[operation][outcome]`.
    messages: Vec<Vec<Counter>>,
    /// Indexed `[operation]`.
    handling: Vec<Histogram>,
    batch_size: Histogram,
    gate_wait: Histogram,
    gate_closures: Counter,
    /// Indexed `[session]`.
    reconnects: Vec<Counter>,
    /// Indexed `[kind][outcome]`.
    runs: Vec<Vec<Counter>>,
    /// Indexed `[kind][outcome]`.
    run_seconds: Vec<Vec<Histogram>>,
    /// Indexed `[action]`.
    rows: Vec<Counter>,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// 1 ms to 16 s, doubling: a delivery's handling, commit and confirm included.
fn handling_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// 10 ms to about 5.5 min, doubling: a fulfilment run (a large export takes minutes).
fn run_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 16))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let messages = Family::<MessageLabels, Counter>::default();
        let handling: HistogramFamily<OperationLabels> =
            Family::new_with_constructor(handling_buckets);
        // 1 to 256 deliveries (the prefetch's default), doubling.
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 9));
        // 100 ms to about 27 min, doubling: how long an outage held a delivery.
        let gate_wait = Histogram::new(exponential_buckets(0.1, 2.0, 15));
        let gate_closures = Counter::default();
        let reconnects = Family::<SessionLabels, Counter>::default();
        let runs = Family::<RunLabels, Counter>::default();
        let run_seconds: HistogramFamily<RunLabels> = Family::new_with_constructor(run_buckets);
        let rows = Family::<RowLabels, Counter>::default();

        let r = &mut registry;
        r.register(
            "privacy_worker_messages",
            "Deliveries the intake ended, by operation and outcome",
            messages.clone(),
        );
        r.register_with_unit(
            "privacy_worker_message_handling",
            "From a delivery's arrival to its end (acknowledged, parked, retried or handed back)",
            Unit::Seconds,
            handling.clone(),
        );
        r.register(
            "privacy_worker_intake_batch_size",
            "Deliveries per batch the intake handled together (group commit)",
            batch_size.clone(),
        );
        r.register_with_unit(
            "privacy_worker_store_gate_wait",
            "How long deliveries were held at the closed store gate (the database down)",
            Unit::Seconds,
            gate_wait.clone(),
        );
        r.register(
            "privacy_worker_store_gate_closures",
            "Times the store gate closed because the database did not answer",
            gate_closures.clone(),
        );
        r.register(
            "privacy_worker_broker_reconnects",
            "Broker sessions lost or refused and opened again, by subsystem",
            reconnects.clone(),
        );
        r.register(
            "privacy_worker_fulfilment_runs",
            "Fulfilment attempts, by kind and outcome",
            runs.clone(),
        );
        r.register_with_unit(
            "privacy_worker_fulfilment_run_duration",
            "How long fulfilment attempts took, by kind and outcome",
            Unit::Seconds,
            run_seconds.clone(),
        );
        r.register(
            "privacy_worker_rows",
            "Rows of the customer databases exported, pseudonymized or erased",
            rows.clone(),
        );
        Self {
            messages: series2(Operation::ALL, Outcome::ALL, |&operation, &outcome| {
                messages.get_or_create_owned(&MessageLabels { operation, outcome })
            }),
            handling: Operation::ALL
                .iter()
                .map(|&operation| handling.get_or_create_owned(&OperationLabels { operation }))
                .collect(),
            batch_size,
            gate_wait,
            gate_closures,
            reconnects: Session::ALL
                .iter()
                .map(|&session| reconnects.get_or_create_owned(&SessionLabels { session }))
                .collect(),
            runs: series2(FulfilKind::ALL, RunOutcome::ALL, |&kind, &outcome| {
                runs.get_or_create_owned(&RunLabels { kind, outcome })
            }),
            run_seconds: series2(FulfilKind::ALL, RunOutcome::ALL, |&kind, &outcome| {
                run_seconds.get_or_create_owned(&RunLabels { kind, outcome })
            }),
            rows: RowAction::ALL
                .iter()
                .map(|&action| rows.get_or_create_owned(&RowLabels { action }))
                .collect(),
            registry,
        }
    }
}

/// One series per pair of label values, made once.
fn series2<A, B, M>(a: &[A], b: &[B], make: impl Fn(&A, &B) -> M) -> Vec<Vec<M>> {
    a.iter()
        .map(|x| b.iter().map(|y| make(x, y)).collect())
        .collect()
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Makes every series now, so the first scrape shows them all at 0.
pub fn init() {
    LazyLock::force(&METRICS);
}

/// A delivery ended: `outcome`, `elapsed` after it arrived.
pub fn message_handled(operation: Operation, outcome: Outcome, elapsed: Duration) {
    let m = &*METRICS;
    m.messages[operation as usize][outcome as usize].inc();
    m.handling[operation as usize].observe(elapsed.as_secs_f64());
}

/// The intake took `size` deliveries as one batch.
pub fn batch_taken(size: usize) {
    METRICS.batch_size.observe(size as f64);
}

/// The store gate closed (an outage began).
pub fn store_gate_closed() {
    METRICS.gate_closures.inc();
}

/// A delivery (or a batch) was held at the closed gate for `held`.
pub fn store_gate_held(held: Duration) {
    METRICS.gate_wait.observe(held.as_secs_f64());
}

/// A subsystem's broker session is being opened again.
pub fn broker_reconnect(session: Session) {
    METRICS.reconnects[session as usize].inc();
}

/// A fulfilment attempt ended.
pub fn fulfilment_run(kind: FulfilKind, outcome: RunOutcome, took: Duration) {
    let m = &*METRICS;
    m.runs[kind as usize][outcome as usize].inc();
    m.run_seconds[kind as usize][outcome as usize].observe(took.as_secs_f64());
}

/// `count` rows were exported, pseudonymized or erased.
pub fn rows(action: RowAction, count: u64) {
    METRICS.rows[action as usize].inc_by(count);
}

/// Writes the process's families in the OpenMetrics text format, without the
/// closing `# EOF` (the caller adds its own families first).
pub fn encode(out: &mut String) -> std::fmt::Result {
    prometheus_client::encoding::text::encode_registry(out, &METRICS.registry)
}
