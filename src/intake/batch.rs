//! Group commit: a batch of deliveries whose agent requests are recorded in one
//! transaction, then answered and acknowledged one by one.
//!
//! The ordering of effects is the single path's, per message: committed, then the
//! reply confirmed, then the ack. Only the commit is shared. If the batch
//! transaction fails, every message goes the single path instead, with its own
//! gate, retries and parking, so one poison message costs only itself.

use chrono::Utc;
use futures_util::future::join_all;
use tracing::warn;

use super::{Failure, Intake, Outcome, stored_reply};
use crate::amqp::Incoming;
use crate::handlers::{Delivery, Handled};
use crate::protocol::{Operation, ReplyRoute, ValidRequest};

impl Intake {
    /// Handles a batch of deliveries. Agent requests that parse are recorded in one
    /// transaction (group commit), then each is answered and acknowledged;
    /// everything else goes the single-delivery path, and so does the whole batch
    /// if its transaction fails (so one bad message cannot sink the others).
    pub async fn handle_batch(&self, batch: Vec<Incoming>) -> Vec<Outcome> {
        crate::metrics::batch_taken(batch.len());
        let mut grouped = Vec::new();
        let mut single = Vec::new();
        for incoming in batch {
            match self.parse(&incoming) {
                Ok(valid) if matches!(valid.operation, Operation::Lcm(_)) => {
                    grouped.push((incoming, valid))
                }
                _ => single.push(incoming),
            }
        }
        let singles = join_all(single.into_iter().map(|incoming| self.handle(incoming)));
        let (mut outcomes, grouped) = tokio::join!(singles, self.handle_grouped(grouped));
        outcomes.extend(grouped);
        outcomes
    }

    async fn handle_grouped(&self, items: Vec<(Incoming, ValidRequest)>) -> Vec<Outcome> {
        if items.len() < 2 {
            return join_all(items.into_iter().map(|(incoming, _)| self.handle(incoming))).await;
        }
        self.gate.wait_open().await;
        let received_at = Utc::now();
        let requests: Vec<_> = items
            .iter()
            .filter_map(|(incoming, valid)| match &valid.operation {
                Operation::Lcm(request) => Some((
                    request,
                    valid.source.as_deref(),
                    Delivery {
                        message_id: incoming.message_id.as_deref(),
                        correlation_id: incoming.correlation_id.as_deref(),
                        reply_to: incoming.reply_to.as_deref(),
                        routing_key: &incoming.routing_key,
                        received_at,
                    },
                )),
                _ => None,
            })
            .collect();
        let result = self.handlers.lcm_batch(&requests).await;
        drop(requests);
        match result {
            Ok(handled) => {
                let answers = items
                    .iter()
                    .zip(handled)
                    .map(|((incoming, valid), handled)| {
                        self.answer(incoming, &valid.route, handled)
                    });
                join_all(answers).await
            }
            Err(error) => {
                warn!(%error, size = items.len(), "group commit failed; handling the batch one by one");
                join_all(items.into_iter().map(|(incoming, _)| self.handle(incoming))).await
            }
        }
    }

    /// Publishes a committed reply; [`Intake::settle`] then acknowledges, or
    /// acts on the failure exactly as for a single delivery.
    async fn answer(&self, incoming: &Incoming, route: &ReplyRoute, handled: Handled) -> Outcome {
        let result = self.send_committed(incoming, route, handled).await;
        self.settle(incoming, result).await
    }

    async fn send_committed(
        &self,
        incoming: &Incoming,
        route: &ReplyRoute,
        handled: Handled,
    ) -> Result<Outcome, Failure> {
        let payload = stored_reply(handled.reply_payload)?;
        self.reply(incoming, Some(route), &payload).await?;
        Ok(Outcome::Answered {
            request_id: handled.request_id,
            answer: handled.answer,
        })
    }
}
