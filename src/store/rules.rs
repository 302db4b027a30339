//! The duplicate rules as a pure plan over a batch: given what the store already
//! holds for the batch's customers and idempotency keys, decide every message in
//! the batch in one pass, with no I/O.
//!
//! Keeping the rules free of SQL lets both backends share them and lets a whole
//! batch be decided from two set-based reads. Requests the batch registers get
//! provisional (negative) ids until the store allocates real ones; [`Plan::resolve`]
//! swaps them in. Messages later in the batch see the earlier ones' effects, exactly
//! as if each had its own transaction in that order.

use std::collections::HashMap;

use super::lifecycle::{Decision, NewRegistration};
use crate::request::{RequestKind, RequestStatus};

/// A pending (`registered` or `in_progress`) request of a customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PendingRow {
    pub id: i64,
    pub kind: RequestKind,
    pub pseudonymize: bool,
    pub status: RequestStatus,
}

/// What the store holds for a batch, read under the customers' locks.
#[derive(Debug, Default)]
pub(super) struct Known {
    /// Idempotency key → the request id and reply a message with it got.
    pub answered: HashMap<String, (Option<i64>, String)>,
    /// (tenant, blind index) → that customer's pending requests, oldest first.
    pub pending: HashMap<(String, String), Vec<PendingRow>>,
}

/// An audit event to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PlannedEvent {
    /// Index of the message in the batch (for its actor).
    pub message: usize,
    pub request_id: i64,
    pub from_status: Option<RequestStatus>,
    pub to_status: RequestStatus,
    pub reason: String,
}

/// How one message of the batch is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Planned {
    /// Answered before: send the stored reply again, record nothing.
    Replay {
        request_id: Option<i64>,
        reply_payload: String,
    },
    /// Carries the idempotency key of an earlier message in this batch.
    SameAs(usize),
    /// Decided now: record the message with the reply for this decision.
    Decided(Decision),
}

/// The decisions for a batch, in the batch's order.
#[derive(Debug, Default)]
pub(super) struct Plan {
    pub planned: Vec<Planned>,
    /// Messages that register a new request; the k-th has provisional id -(k+1).
    pub registrations: Vec<usize>,
    pub events: Vec<PlannedEvent>,
}

/// Decides every message of `news`, taking them in `order` (the lock order).
pub(super) fn plan(news: &[NewRegistration<'_>], order: &[usize], mut known: Known) -> Plan {
    let mut planned: Vec<Option<Planned>> = vec![None; news.len()];
    let mut plan = Plan::default();
    let mut keys_in_batch: HashMap<&str, usize> = HashMap::new();
    for &i in order {
        let new = &news[i];
        if let Some(key) = new.message.idempotency_key.as_deref() {
            if let Some((request_id, reply_payload)) = known.answered.get(key) {
                planned[i] = Some(Planned::Replay {
                    request_id: *request_id,
                    reply_payload: reply_payload.clone(),
                });
                continue;
            }
            if let Some(&first) = keys_in_batch.get(key) {
                planned[i] = Some(Planned::SameAs(first));
                continue;
            }
            keys_in_batch.insert(key, i);
        }
        let customer = (new.tenant.to_owned(), new.identifier.index.to_owned());
        let pending = known.pending.entry(customer).or_default();
        let provisional = -(plan.registrations.len() as i64 + 1);
        let (decision, event) = decide(new, i, pending, provisional);
        if let Decision::Registered(id) = decision {
            plan.registrations.push(i);
            pending.push(PendingRow {
                id,
                kind: new.kind,
                pseudonymize: new.pseudonymize,
                status: RequestStatus::Registered,
            });
        }
        plan.events.push(event);
        planned[i] = Some(Planned::Decided(decision));
    }
    plan.planned = planned
        .into_iter()
        .map(|p| p.expect("every message planned"))
        .collect();
    plan
}

/// The rule for one registration against its customer's pending requests: a
/// pending forget refuses everything; a pending access request of the same kind
/// and pseudonymization is joined (LCM) or refuses (RCDP); otherwise a new request
/// with id `new_id` is registered. Returns the audit event it records for the
/// batch's message number `message`.
fn decide(
    new: &NewRegistration<'_>,
    message: usize,
    pending: &[PendingRow],
    new_id: i64,
) -> (Decision, PlannedEvent) {
    let (kind, access_kind) = (new.kind.as_str(), RequestKind::Access);
    let forget = pending.iter().find(|p| p.kind == RequestKind::Forget);
    let access = pending.iter().find(|p| {
        new.kind == access_kind && p.kind == access_kind && p.pseudonymize == new.pseudonymize
    });
    let (decision, hit, reason) = match (forget, access) {
        (Some(p), _) => (
            Decision::ForgetPending(p.id),
            p,
            format!("{kind} registration refused: forget pending"),
        ),
        (None, Some(p)) if new.join_pending => (
            Decision::Joined(p.id),
            p,
            format!("duplicate {} joined this request", new.message.operation),
        ),
        (None, Some(p)) => (
            Decision::Duplicate {
                id: p.id,
                status: p.status,
            },
            p,
            "duplicate access registration refused".to_owned(),
        ),
        (None, None) => {
            let event = PlannedEvent {
                message,
                request_id: new_id,
                from_status: None,
                to_status: RequestStatus::Registered,
                reason: format!("{} received", new.message.operation),
            };
            return (Decision::Registered(new_id), event);
        }
    };
    let event = PlannedEvent {
        message,
        request_id: hit.id,
        from_status: Some(hit.status),
        to_status: hit.status,
        reason,
    };
    (decision, event)
}

impl Decision {
    /// The request the decision is about.
    pub fn request_id(&self) -> i64 {
        match self {
            Decision::Registered(id)
            | Decision::Joined(id)
            | Decision::ForgetPending(id)
            | Decision::Duplicate { id, .. } => *id,
        }
    }

    fn request_id_mut(&mut self) -> &mut i64 {
        match self {
            Decision::Registered(id)
            | Decision::Joined(id)
            | Decision::ForgetPending(id)
            | Decision::Duplicate { id, .. } => id,
        }
    }
}

impl Plan {
    /// The messages decided now (to record), by their index in the batch.
    pub fn decided(&self) -> Vec<usize> {
        let decided = self.planned.iter().enumerate();
        decided
            .filter_map(|(i, p)| matches!(p, Planned::Decided(_)).then_some(i))
            .collect()
    }

    /// Replaces provisional ids by `ids` (the k-th registration's real id).
    pub fn resolve(&mut self, ids: &[i64]) {
        let real = |id: i64| if id < 0 { ids[(-id - 1) as usize] } else { id };
        for planned in &mut self.planned {
            if let Planned::Decided(decision) = planned {
                let id = decision.request_id_mut();
                *id = real(*id);
            }
        }
        for event in &mut self.events {
            event.request_id = real(event.request_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::crypto::Sealed;
    use crate::request::{Flow, IdentifierType};
    use crate::store::{NewMessage, StoredIdentifier};

    fn registration<'a>(
        sealed: &'a Sealed,
        customer: &'a str,
        kind: RequestKind,
        key: Option<&str>,
        join_pending: bool,
    ) -> NewRegistration<'a> {
        NewRegistration {
            tenant: "t",
            flow: Flow::Lcm,
            kind,
            pseudonymize: false,
            identifier: StoredIdentifier {
                kind: IdentifierType::Account,
                index: customer,
                sealed,
            },
            source: None,
            actor: "agent:a",
            join_pending,
            message: NewMessage {
                idempotency_key: key.map(str::to_owned),
                operation: "Op",
                source: None,
                message_id: None,
                correlation_id: None,
                reply_to: None,
                routing_key: "rk",
                details: "{}".to_owned(),
                personal: None,
                received_at: Utc::now(),
            },
        }
    }

    fn sealed() -> Sealed {
        Sealed {
            bytes: vec![1],
            key_id: "k".to_owned(),
        }
    }

    #[test]
    fn a_batch_sees_its_own_earlier_decisions() {
        let s = sealed();
        let access = RequestKind::Access;
        let news = [
            registration(&s, "b", access, Some("m1"), true),
            registration(&s, "a", access, Some("m2"), true),
            registration(&s, "a", access, Some("m3"), true),
            registration(&s, "a", access, Some("m2"), true),
        ];
        let mut plan = plan(&news, &[1, 2, 3, 0], Known::default());
        assert_eq!(plan.registrations, vec![1, 0]);
        plan.resolve(&[500, 501]);
        assert_eq!(
            plan.planned,
            vec![
                Planned::Decided(Decision::Registered(501)),
                Planned::Decided(Decision::Registered(500)),
                Planned::Decided(Decision::Joined(500)),
                Planned::SameAs(1),
            ]
        );
        let ids: Vec<i64> = plan.events.iter().map(|e| e.request_id).collect();
        assert_eq!(ids, vec![500, 500, 501], "registered, joined, registered");
    }

    #[test]
    fn stored_answers_replay_and_a_pending_forget_refuses() {
        let s = sealed();
        let news = [
            registration(&s, "a", RequestKind::Access, Some("old"), false),
            registration(&s, "a", RequestKind::Access, Some("new"), false),
            registration(&s, "b", RequestKind::Access, None, false),
        ];
        let mut known = Known::default();
        known
            .answered
            .insert("old".to_owned(), (Some(7), "stored".to_owned()));
        known.pending.insert(
            ("t".to_owned(), "a".to_owned()),
            vec![PendingRow {
                id: 9,
                kind: RequestKind::Forget,
                pseudonymize: false,
                status: RequestStatus::InProgress,
            }],
        );
        let plan = plan(&news, &[0, 1, 2], known);
        assert_eq!(
            plan.planned[..2],
            [
                Planned::Replay {
                    request_id: Some(7),
                    reply_payload: "stored".to_owned()
                },
                Planned::Decided(Decision::ForgetPending(9)),
            ]
        );
        assert_eq!(plan.planned[2], Planned::Decided(Decision::Registered(-1)));
        assert_eq!(plan.events[0].from_status, Some(RequestStatus::InProgress));
    }
}
