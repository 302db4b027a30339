//! One integration test binary (one link, shared helpers): the protocol table, the
//! schemas, the worker end to end on both stores, and the logs.

mod bench;
mod bus;
mod faults;
mod helpers;
mod intake;
mod lifecycle;
mod logs;
mod process;
mod protocol;
mod proxy;
mod schemas;
