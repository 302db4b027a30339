//! The broker: the only module that knows lapin.
//!
//! It offers the rest of the worker three things: a [`Broker`] connection that
//! declares the topology, a [`Publisher`] whose publishes resolve only once the
//! broker has confirmed them, and a stream of [`Incoming`] deliveries that are
//! acknowledged explicitly.

mod broker;
mod incoming;
mod publisher;
mod topology;

pub use broker::{AmqpError, Broker, Deliveries, QueueReader};
pub use incoming::Incoming;
pub use publisher::{Outgoing, Publisher};
pub use topology::Topology;
