//! One integration test binary (one link, shared helpers): the protocol table, the
//! schemas, the worker end to end on both stores, and the logs.

mod helpers;
mod intake;
mod logs;
mod protocol;
mod schemas;
