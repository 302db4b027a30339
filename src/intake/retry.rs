//! After a failed attempt: the retry queue of the message's tier, or, when its
//! attempts are spent, the dead queue (with an error reply to the sender first).

use chrono::{SecondsFormat, Utc};
use tracing::warn;

use super::{Failure, Intake, Outcome};
use crate::amqp::{AmqpError, Incoming};
use crate::protocol::{Operation, lcm_error, rcdp_error};

/// Header counting a message's failed attempts.
const ATTEMPTS: &str = "x-privacy-attempts";
/// Header holding the time of its first failure.
const FIRST_FAILURE: &str = "x-privacy-first-failure-at";

impl Intake {
    /// After a failed attempt: into the retry queue of its tier, or, when its
    /// attempts are spent, into the dead queue. The count and the first failure
    /// time travel in the message's headers, so they survive a crash and any
    /// instance can pick the retry up.
    pub(super) async fn retry_later(
        &self,
        incoming: &Incoming,
        failure: &Failure,
    ) -> Result<Outcome, AmqpError> {
        let failures = incoming
            .header(ATTEMPTS)
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
            + 1;
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let first = incoming
            .header(FIRST_FAILURE)
            .unwrap_or_else(|| now.clone());
        let last_error = describe(failure);
        let topology = &self.settings.topology;
        let retry_queue = topology.retry_queue_for(failures);
        let (queue, reason, outcome, expires) = match retry_queue {
            Some(queue) if failures < self.settings.retry_attempts => {
                (queue, "retrying", Outcome::Retrying(failures), None)
            }
            _ => {
                let reason = match failure {
                    Failure::Transient(_) => "transient-failures-exhausted",
                    _ => "unexpected-error",
                };
                let ttl = Some(self.settings.parked_ttl);
                (topology.dead_queue.clone(), reason, Outcome::Dead, ttl)
            }
        };
        let headers = [
            ("x-privacy-reason", reason.to_owned()),
            ("x-privacy-last-error", last_error.clone()),
            (ATTEMPTS, failures.to_string()),
            (FIRST_FAILURE, first),
            ("x-privacy-last-failure-at", now),
        ];
        if let Outcome::Dead = outcome {
            // The sender is told now rather than left waiting; the reply goes
            // first so that a failure to send it leaves the message unparked.
            self.reply_internal_error(incoming).await?;
        }
        self.publisher
            .park(incoming, &queue, &headers, expires)
            .await?;
        warn!(
            correlation_id = incoming.correlation().unwrap_or(""),
            attempts = failures,
            error = %last_error,
            queue,
            "attempt failed; message moved"
        );
        Ok(outcome)
    }

    /// Tells the sender its request could not be recorded (it is being parked in
    /// the dead queue), in the documents' words for RCDP.
    async fn reply_internal_error(&self, incoming: &Incoming) -> Result<(), AmqpError> {
        let Ok(valid) = self.parse(incoming) else {
            return Ok(());
        };
        let payload = match &valid.operation {
            Operation::Register(_) => {
                rcdp_error("Internal server error while registering the request.")
            }
            Operation::Revoke(_) => rcdp_error("Internal server error while revoking the request."),
            Operation::Status(_) => {
                rcdp_error("Internal server error while reading the request status.")
            }
            Operation::Lcm(_) => lcm_error(
                "internal_error",
                "the request could not be recorded; it is parked for an operator",
                &[],
            ),
        };
        self.reply(incoming, Some(&valid.route), &payload).await
    }
}

fn describe(failure: &Failure) -> String {
    match failure {
        Failure::Transient(e) => e.to_string(),
        Failure::Broker(e) => e.to_string(),
        Failure::Unexpected(e) => e.clone(),
    }
}
