//! How a delivery's end is counted: its operation (from the routing key) and
//! outcome as the metrics' label enums, and its latency since it arrived.
//!
//! The operation is read from the routing key's last part rather than from
//! the parsed envelope because every delivery has one, the invalid ones too,
//! and reading it allocates nothing; the work queue's bindings name exactly
//! these subtopics, so for what we consume the two agree.

use super::Outcome;
use crate::amqp::Incoming;
use crate::handlers::Answer;
use crate::metrics::{self, Operation};
use crate::protocol::{
    GET_DATA_PRIVACY_STATUS, GET_GDPR_REQUEST_STATUS, REGISTER_GDPR_REQUEST, REVOKE_GDPR_ACTIONS,
};

/// Counts a delivery that ended as `outcome`.
pub(super) fn ended(incoming: &Incoming, outcome: &Outcome) {
    let label = match outcome {
        Outcome::Answered { answer, .. } => match answer {
            Answer::Recorded => metrics::Outcome::Recorded,
            Answer::Joined => metrics::Outcome::Joined,
            Answer::Refused => metrics::Outcome::Refused,
            Answer::Revoked => metrics::Outcome::Revoked,
            Answer::Status => metrics::Outcome::Answered,
            Answer::Replayed => metrics::Outcome::Duplicate,
        },
        Outcome::Invalid(_) => metrics::Outcome::Parked,
        Outcome::Retrying(_) => metrics::Outcome::Retried,
        Outcome::Dead => metrics::Outcome::Dead,
        Outcome::Requeued => metrics::Outcome::Requeued,
        Outcome::Unsettled => metrics::Outcome::Unsettled,
    };
    let operation = operation_of(&incoming.routing_key);
    metrics::message_handled(operation, label, incoming.received.elapsed());
}

/// The operation a routing key (`<channel>.<topic>.<subtopic>`) names.
fn operation_of(routing_key: &str) -> Operation {
    let subtopic = routing_key.rsplit('.').next().unwrap_or("");
    [
        (GET_DATA_PRIVACY_STATUS, Operation::Lcm),
        (REGISTER_GDPR_REQUEST, Operation::Register),
        (REVOKE_GDPR_ACTIONS, Operation::Revoke),
        (GET_GDPR_REQUEST_STATUS, Operation::Status),
    ]
    .into_iter()
    .find(|(name, _)| subtopic.eq_ignore_ascii_case(name))
    .map_or(Operation::Unknown, |(_, operation)| operation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operation_is_the_routing_keys_subtopic_in_any_case() {
        let of = operation_of;
        assert_eq!(
            of("LCM.Webservice.GetDataPrivacyStatusRequest"),
            Operation::Lcm
        );
        assert_eq!(
            of("LCM.WebService.registergdprrequest"),
            Operation::Register
        );
        assert_eq!(of("LCM.Webservice.RevokeGdprActions"), Operation::Revoke);
        assert_eq!(of("LCM.Webservice.GetGdprRequestStatus"), Operation::Status);
        assert_eq!(of("LCM.Webservice.Something"), Operation::Unknown);
        assert_eq!(of(""), Operation::Unknown);
    }
}
