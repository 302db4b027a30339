//! The outbox relay subsystem: announces the status changes the store wrote to
//! its outbox (in the transaction of each change) on the exchange as
//! `LCM.Webservice.GdprRequestStatusChanged`, each published with a confirm and
//! only then marked published. A crash between the two publishes it again, so a
//! consumer may see an announcement twice, never none. Several instances may run
//! it; they may publish the same change twice, which is the same promise. The
//! outbox holds the request's tenant; the announcement names it by its opaque
//! id (`Keys::tenant_id`), since the tenant_hash is what a status query needs.

use std::sync::Arc;
use std::time::Duration;

use chrono::SecondsFormat;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::amqp::{AmqpError, Broker, Outgoing, Topology};
use crate::crypto::Keys;
use crate::health::SessionHealth;
use crate::protocol::StatusChanged;
use crate::session::{self, SessionEnd};
use crate::settings::BrokerSettings;
use crate::store::Store;

/// How often the outbox is looked at when it was empty.
const POLL: Duration = Duration::from_millis(500);
/// Changes published per look.
const BATCH: i64 = 100;

/// What the relay needs.
#[derive(Debug, Clone)]
pub struct Relay {
    /// The broker, on a connection of the relay's own.
    pub broker: BrokerSettings,
    /// Where announcements go (the exchange).
    pub topology: Topology,
    /// The `source` of announcements.
    pub source: String,
    /// Where the session's state is reported (readiness).
    pub session: SessionHealth,
    /// The keys the tenant id is derived with.
    pub keys: Arc<Keys>,
}

/// Runs the relay until `token` is cancelled.
pub async fn run(relay: &Relay, store: &Store, token: &CancellationToken) -> Result<(), AmqpError> {
    session::reconnecting(
        &relay.broker,
        &relay.topology,
        token,
        &relay.session,
        |broker| publish_changes(relay, broker, store, token),
    )
    .await
}

async fn publish_changes(
    relay: &Relay,
    broker: Broker,
    store: &Store,
    token: &CancellationToken,
) -> Result<SessionEnd, AmqpError> {
    let publisher = broker
        .publisher()
        .await?
        .with_confirm_timeout(relay.broker.confirm_timeout);
    let routing_key = StatusChanged::routing_key();
    let end = loop {
        if token.is_cancelled() {
            break SessionEnd::Shutdown;
        }
        let changes = match store.unpublished_status_changes(BATCH).await {
            Ok(changes) => changes,
            Err(error) => {
                warn!(%error, "cannot read the status outbox; trying again");
                Vec::new()
            }
        };
        if changes.is_empty() {
            tokio::select! {
                () = tokio::time::sleep(POLL) => continue,
                () = token.cancelled() => break SessionEnd::Shutdown,
            }
        }
        for change in changes {
            let tenant = relay.keys.tenant_id(&change.tenant);
            let announced = StatusChanged {
                tracking_id: change.request_id,
                req_type: change.kind.as_str(),
                request_status: change.status.as_str(),
                tenant: &tenant,
                updated_at: change
                    .changed_at
                    .to_rfc3339_opts(SecondsFormat::Millis, true),
            };
            let body = announced.body(&relay.source);
            let message_id = format!("status-change-{}", change.id);
            let sent = publisher
                .publish(Outgoing {
                    exchange: &relay.topology.exchange,
                    routing_key: &routing_key,
                    body: &body,
                    correlation_id: None,
                    message_id: Some(&message_id),
                    reply_to: None,
                })
                .await;
            if let Err(error) = sent {
                broker.close().await;
                return Err(error);
            }
            if let Err(error) = store.mark_published(change.id).await {
                // Published but not marked: it will be published again.
                warn!(%error, request_id = change.request_id, "status change published but not marked");
            }
            debug!(
                request_id = change.request_id,
                status = change.status.as_str(),
                "status change announced"
            );
        }
    };
    broker.close().await;
    Ok(end)
}
