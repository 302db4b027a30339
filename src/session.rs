//! A broker session any subsystem can run in: connect (bounded by a timeout),
//! declare the topology, hand the connection to the subsystem's body, and when
//! the session is lost, reconnect with backoff and run the body again. A
//! cancellation ends it at any point: while connecting, while waiting to
//! reconnect, and (through the body) while the session runs.
//!
//! Each subsystem opens its own connection: RabbitMQ blocks a connection that
//! publishes during a resource alarm, and a consumer should not share that fate.

use std::future::Future;
use std::time::Duration;

use backon::ExponentialBackoff;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::amqp::{AmqpError, Broker, Topology};
use crate::backoff::endless_backoff;
use crate::health::SessionHealth;
use crate::metrics;
use crate::settings::BrokerSettings;

/// How a session ended, when it did not fail.
#[derive(Debug)]
pub enum SessionEnd {
    /// Cancelled: the subsystem is stopping.
    Shutdown,
    /// The connection or a channel went away; reconnect.
    Lost(String),
}

fn reconnect_backoff() -> ExponentialBackoff {
    endless_backoff(Duration::from_secs(10))
}

/// Runs `body` in one broker session after another until `token` is cancelled.
/// Returns an error only when the broker refuses us as configured (credentials,
/// a queue declared with other arguments); unreachable brokers are waited for.
/// `health` is told when a session is up and when it ends (readiness), and
/// each reconnection is counted.
pub async fn reconnecting<F, Fut>(
    broker: &BrokerSettings,
    topology: &Topology,
    token: &CancellationToken,
    health: &SessionHealth,
    mut body: F,
) -> Result<(), AmqpError>
where
    F: FnMut(Broker) -> Fut,
    Fut: Future<Output = Result<SessionEnd, AmqpError>>,
{
    let mut delays = reconnect_backoff();
    loop {
        // A cancellation while connecting ends at once: nothing is in flight.
        let opened = tokio::select! {
            opened = open(broker, topology) => opened,
            () = token.cancelled() => return Ok(()),
        };
        let ended = match opened {
            Ok(connection) => {
                delays = reconnect_backoff();
                health.set_up(true);
                let ended = body(connection).await;
                health.set_up(false);
                ended
            }
            Err(e) => Err(e),
        };
        match ended {
            Ok(SessionEnd::Shutdown) => return Ok(()),
            Ok(SessionEnd::Lost(reason)) => warn!(reason, "broker session lost"),
            Err(e) if e.is_transient() => warn!(error = %e, "broker unavailable"),
            Err(e) => return Err(e),
        }
        let delay = delays.next().unwrap_or(Duration::from_secs(30));
        info!(?delay, "reconnecting to the broker");
        metrics::broker_reconnect(health.which());
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = token.cancelled() => return Ok(()),
        }
    }
}

/// Connects and declares the topology (idempotent).
async fn open(settings: &BrokerSettings, topology: &Topology) -> Result<Broker, AmqpError> {
    let broker = Broker::connect(&settings.amqp_url, &settings.connection_name).await?;
    broker.declare(topology).await?;
    Ok(broker)
}
