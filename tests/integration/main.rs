//! One integration test binary (one link, shared helpers): the protocol table, the
//! schemas, the worker end to end on both stores, and the logs.

mod access;
mod app;
mod architecture;
mod bench;
mod bus;
mod datamap;
mod edges;
mod events;
mod faults;
mod forget;
mod fulfilment;
mod helpers;
mod idempotency;
mod identity;
mod intake;
mod jobs;
mod keys;
mod ledger_batches;
mod lifecycle;
mod logs;
mod names;
mod observability;
mod process;
mod protocol;
mod proxy;
mod s3;
mod schemas;
mod takeover;
mod target_faults;
