//! The one backoff policy for waiting out an outage: the broker reconnect loop
//! and the store gate's probe both use it, so a service that is down is asked
//! again at the same, never-hot pace everywhere.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Jittered exponential delays from 100 ms up to `max_delay`, without end: for
/// waiting out an outage (broker reconnects, the store gate's probe).
pub fn endless_backoff(max_delay: Duration) -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(max_delay)
        .with_jitter()
        .without_max_times()
        .build()
}
