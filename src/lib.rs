//! privacy-worker: takes GDPR data-subject requests from a RabbitMQ bus, records them
//! durably and answers each with a request id.
//!
//! Code map (see ARCHITECTURE.md for the invariants):
//! - [`config`]: command line and environment, turned into [`settings`].
//! - [`settings`]: the worker's settings as plain values, one struct per part.
//! - [`backoff`]: the one backoff policy for waiting out an outage.
//! - [`telemetry`]: tracing set-up (text or JSON lines).
//! - [`request`]: a request's kind, flow, identifier type and status, with its transitions.
//! - [`protocol`]: the bus contract as pure functions (parse, validate, build replies).
//! - [`datamap`]: the data map of the customer databases, read and checked as data.
//! - [`crypto`]: personal data at rest: AES-256-GCM with key ids, keyed blind indexes.
//! - [`keyring`]: the key file for a store, checked against the keys it was written with.
//! - [`store`]: the request store, SQLite or PostgreSQL; the only place that runs SQL.
//! - [`targets`]: the customer databases; the only place that runs SQL on them.
//! - [`amqp`]: the broker; the only place that knows lapin.
//! - [`store_gate`]: holds deliveries while the database is down.
//! - [`handlers`]: what each operation does: the LCM request, RCDP register, revoke, status.
//! - [`app`]: opens the store and keys once, runs the subsystems, owns the shutdown.
//! - [`deadline`]: the one-month deadline: a request's `due_by`, what is open, overdue, due soon.
//! - [`metrics`]: the process's Prometheus families, with typed (bounded) labels.
//! - [`health`]: what readiness depends on, per worker instance (broker sessions, data map).
//! - [`endpoints`]: the HTTP listener subsystem: `/metrics`, `/healthz`, `/readyz`.
//! - [`session`]: a broker session any subsystem runs in: connect, declare, reconnect.
//! - [`intake`]: the intake subsystem: what happens to one delivery, from bytes to
//!   acknowledgement, and the consume loop (`intake::consumer`).
//! - [`check`]: `datamap check`, and the data map's checks at start.
//! - [`fulfil`]: the job runner subsystem: claims due requests, fulfils them (access
//!   export, forget, pseudonymization).
//! - [`relay`]: the outbox relay subsystem: announces status changes on the bus.
//! - [`dlq`]: the `dlq list | replay` subcommands for the dead queue.
//! - [`operator`]: the `requests list | show | revoke | audit` subcommands.
//! - [`ledger`]: the `ledger replay` subcommand: the erasure ledger applied again.
//! - [`send`]: the `send` subcommand, a one-minute tour of the request/reply loop.

pub mod amqp;
pub mod app;
pub mod backoff;
pub mod check;
pub mod config;
pub mod crypto;
pub mod datamap;
pub mod deadline;
pub mod dlq;
pub mod endpoints;
pub mod fulfil;
pub mod handlers;
pub mod health;
pub mod intake;
pub mod keyring;
pub mod ledger;
pub mod metrics;
pub mod operator;
pub mod protocol;
pub mod relay;
pub mod request;
pub mod send;
pub mod session;
pub mod settings;
pub mod store;
pub mod store_gate;
pub mod targets;
pub mod telemetry;
