//! The echo stand-in (`privacy-worker-bench echo`): the worker's bus path with no
//! database (consume, publish a confirmed reply, ack), so the bench can measure the
//! upper bound of request/reply on this machine and compare the worker with it.

use privacy_worker::amqp::{Broker, Outgoing, Topology};

/// The echo stand-in: the bus path of the worker without a database.
pub async fn echo(
    amqp_url: &str,
    topology: &Topology,
    prefetch: u16,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let broker = Broker::connect(amqp_url, "privacy-worker echo").await?;
    broker.declare(topology).await?;
    let publisher = broker.publisher().await?;
    let mut deliveries = broker.consume(&topology.work_queue, prefetch).await?;
    let exchange = topology.exchange.clone();
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            delivery = deliveries.next() => {
                let Some(Ok(incoming)) = delivery else { break };
                let (publisher, exchange) = (publisher.clone(), exchange.clone());
                tasks.spawn(async move {
                    let correlation = incoming.correlation().map(str::to_owned);
                    let body = br#"{"channel":"LCM","topic":"WebService","subtopic":"SetDataPrivacyStatusResponse","source":"echo","message":{"response":"0"}}"#;
                    let sent = publisher.publish(Outgoing {
                        exchange: &exchange,
                        routing_key: "LCM.WebService.SetDataPrivacyStatusResponse",
                        body,
                        correlation_id: correlation.as_deref(),
                        message_id: None,
                        reply_to: None,
                    }).await;
                    if sent.is_ok() {
                        let _ = incoming.ack().await;
                    }
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    broker.close().await;
    Ok(())
}
