//! The label values of the metrics, as enums: a label can only take a value
//! listed here, so the number of series is bounded and no label can ever carry
//! a value that came in a message (no name, phone, e-mail, account, id).

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

use crate::request::{RequestKind, RequestStatus};

/// A label enum: its variants, their text, `ALL` in declaration order (so
/// `value as usize` indexes arrays of pre-made series) and the encoding.
macro_rules! label {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &[Self] = &[$(Self::$variant),+];

            /// The label's text.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
                std::fmt::Write::write_str(encoder, self.as_str())
            }
        }
    };
}

label! {
    /// The bus operation a message asked for, read from its routing key.
    Operation {
        /// GetDataPrivacyStatusRequest (the agent's LCM request).
        Lcm => "lcm",
        /// RegisterGdprRequest.
        Register => "register",
        /// RevokeGdprActions.
        Revoke => "revoke",
        /// GetGdprRequestStatus.
        Status => "status",
        /// A routing key that names none of them.
        Unknown => "unknown",
    }
}

label! {
    /// How the intake ended a delivery.
    Outcome {
        /// A new request was recorded.
        Recorded => "recorded",
        /// Answered before: the stored reply was sent again (a redelivery or a re-publish).
        Duplicate => "duplicate",
        /// An agent request joined the customer's pending request.
        Joined => "joined",
        /// Refused by the lifecycle rules (already pending, forget pending, not revocable).
        Refused => "refused",
        /// A request was revoked.
        Revoked => "revoked",
        /// A status query was answered.
        Answered => "answered",
        /// Invalid input: answered with an error and parked in the invalid queue.
        Parked => "parked",
        /// Failed while the store answered; waiting in a retry queue.
        Retried => "retried",
        /// Parked in the dead queue, its attempts spent.
        Dead => "dead",
        /// Handed back to the broker after a broker failure.
        Requeued => "requeued",
        /// Not settled (its channel was gone); the session ended.
        Unsettled => "unsettled",
    }
}

label! {
    /// Which subsystem's broker session.
    Session {
        /// The consumer of the work queue.
        Intake => "intake",
        /// The status outbox relay.
        Relay => "relay",
    }
}

label! {
    /// What a fulfilment run did.
    FulfilKind {
        /// An access export.
        Access => "access",
        /// An access export, then pseudonymization (LCM IsPseudonymize).
        Pseudonymize => "pseudonymize",
        /// Erasure.
        Forget => "forget",
    }
}

impl FulfilKind {
    /// The kind of run a request gets.
    pub fn of(kind: RequestKind, pseudonymize: bool) -> Self {
        match (kind, pseudonymize) {
            (RequestKind::Forget, _) => Self::Forget,
            (RequestKind::Access, true) => Self::Pseudonymize,
            (RequestKind::Access, false) => Self::Access,
        }
    }
}

label! {
    /// How a fulfilment run ended.
    RunOutcome {
        /// The request is completed.
        Completed => "completed",
        /// The attempt failed; the request falls due again after a backoff.
        Retried => "retried",
        /// The request failed for good.
        Failed => "failed",
        /// The lease was lost (taken over, or the request changed): nothing written.
        LostLease => "lost_lease",
    }
}

label! {
    /// What was done to rows of the customer databases.
    RowAction {
        /// Written into an access archive.
        Exported => "exported",
        /// Personal columns replaced by pseudonyms.
        Pseudonymized => "pseudonymized",
        /// Deleted, or anonymized in place (forget).
        Erased => "erased",
    }
}

label! {
    /// What readiness depends on.
    Component {
        /// The intake's broker session.
        BrokerIntake => "broker_intake",
        /// The relay's broker session.
        BrokerRelay => "broker_relay",
        /// The request store (the store gate open and a ping answered).
        Store => "store",
        /// The data map, checked against its databases (ready when there is none).
        Datamap => "datamap",
    }
}

/// A request status as a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub RequestStatus);

impl EncodeLabelValue for Status {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        std::fmt::Write::write_str(encoder, self.0.as_str())
    }
}

/// `{operation, outcome}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct MessageLabels {
    /// The operation.
    pub operation: Operation,
    /// How it ended.
    pub outcome: Outcome,
}

/// `{operation}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OperationLabels {
    /// The operation.
    pub operation: Operation,
}

/// `{session}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SessionLabels {
    /// Whose session.
    pub session: Session,
}

/// `{kind, outcome}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RunLabels {
    /// What the run did.
    pub kind: FulfilKind,
    /// How it ended.
    pub outcome: RunOutcome,
}

/// `{action}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RowLabels {
    /// What was done.
    pub action: RowAction,
}

/// `{status}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StatusLabels {
    /// The lifecycle status.
    pub status: Status,
}

/// `{component}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ComponentLabels {
    /// What readiness depends on.
    pub component: Component,
}
