//! What a privacy request is, as types: its kind, the flow it came by, who it
//! is about, and its status with the transitions allowed between statuses. The
//! store maps these to and from the text it keeps; nothing compares the text.

use std::fmt;

/// Access (a copy of the data) or forget (erasure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// Right to access.
    Access,
    /// Right to be forgotten.
    Forget,
}

impl RequestKind {
    /// As stored and as the documents write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Forget => "forget",
        }
    }

    /// From its stored text.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Access, Self::Forget]
            .into_iter()
            .find(|k| k.as_str() == text)
    }

    /// `Access` or `Forget`, for reply texts.
    pub fn title(self) -> &'static str {
        match self {
            Self::Access => "Access",
            Self::Forget => "Forget",
        }
    }
}

/// The bus flow a request came by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    /// An agent application's GetDataPrivacyStatusRequest.
    Lcm,
    /// An RCDP RegisterGdprRequest.
    Rcdp,
}

impl Flow {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lcm => "lcm",
            Self::Rcdp => "rcdp",
        }
    }

    /// From its stored text.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Lcm, Self::Rcdp]
            .into_iter()
            .find(|f| f.as_str() == text)
    }
}

/// The kinds of customer identifier: the LCM AccountNumber and the four of the
/// RCDP documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentifierType {
    /// The LCM AccountNumber (the LCM key).
    Account,
    /// Golden Customer Record id.
    Gcrid,
    /// E-mail address (compared case-insensitively).
    Email,
    /// Mobile number (compared by its digits).
    Mobile,
    /// External customer code.
    Customer,
}

impl IdentifierType {
    /// Every type.
    pub const ALL: [Self; 5] = [
        Self::Account,
        Self::Gcrid,
        Self::Email,
        Self::Mobile,
        Self::Customer,
    ];

    /// As stored (and as a data map names it).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::Gcrid => "gcrid",
            Self::Email => "email",
            Self::Mobile => "mobile",
            Self::Customer => "customer",
        }
    }

    /// From its stored text.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// Strong identifiers name at most one customer; contact details (e-mail,
    /// mobile) can be shared by a household.
    pub fn is_strong(self) -> bool {
        matches!(self, Self::Account | Self::Gcrid | Self::Customer)
    }

    /// The value in the form that compares equal for the same customer, or
    /// `None` when nothing is left: every identifier trimmed of
    /// [`TRIMMED`]; an e-mail address in Unicode lower case (full mapping:
    /// what PostgreSQL's `lower()` under ICU and the SQLite collation the
    /// worker registers compute too); a mobile number by its ASCII digits.
    /// The one normalization: requests, rows read back, the SQL of every
    /// kind of customer database and pseudonyms all go through it.
    pub fn normalize(self, value: &str) -> Option<String> {
        let value = value.trim_matches(TRIMMED);
        let normalized = match self {
            Self::Email => value.to_lowercase(),
            Self::Mobile => value.chars().filter(char::is_ascii_digit).collect(),
            _ => value.to_owned(),
        };
        (!normalized.is_empty()).then_some(normalized)
    }
}

/// What normalization trims from both ends of an identifier: space, tab, CR,
/// LF (the only whitespace a request may carry; the SQL trims the same).
pub const TRIMMED: [char; 4] = [' ', '\t', '\r', '\n'];

/// Where a request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Recorded and answered; waiting to fall due (and still revocable).
    Registered,
    /// Claimed by a job runner.
    InProgress,
    /// Fulfilled.
    Completed,
    /// Given up on after its attempts; an operator may put it back.
    Failed,
    /// Revoked before processing started.
    Revoked,
}

impl RequestStatus {
    /// Every status.
    pub const ALL: [Self; 5] = [
        Self::Registered,
        Self::InProgress,
        Self::Completed,
        Self::Failed,
        Self::Revoked,
    ];

    /// As stored and as status replies and events write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Revoked => "revoked",
        }
    }

    /// From its stored text.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Pending, for the duplicate rules: registered or in progress.
    pub fn is_pending(self) -> bool {
        matches!(self, Self::Registered | Self::InProgress)
    }

    /// The end of the line (the request's `completed_at` is set).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Revoked)
    }

    /// Changed to this status, a request is announced on the bus
    /// (`GdprRequestStatusChanged`): everything but a return to `registered`.
    pub fn is_announced(self) -> bool {
        !matches!(self, Self::Registered)
    }

    /// The lifecycle, in one place: registered → in progress → completed or
    /// failed; registered → revoked (only before processing starts); failed →
    /// registered (an operator's retry).
    pub fn may_become(self, to: Self) -> bool {
        use RequestStatus::*;
        matches!(
            (self, to),
            (Registered, InProgress)
                | (InProgress, Completed | Failed)
                | (Registered, Revoked)
                | (Failed, Registered)
        )
    }

    /// The statuses a request may come to `to` from.
    pub fn sources_of(to: Self) -> Vec<Self> {
        Self::ALL
            .into_iter()
            .filter(|from| from.may_become(to))
            .collect()
    }
}

macro_rules! display_as_stored {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}
display_as_stored!(
    RequestKind,
    Flow,
    IdentifierType,
    RequestStatus,
    FailureCode
);

/// Why a request failed, for a machine: the code its failure reason starts
/// with (`<code>: <what, naming no value>`), shown as `errorCode` by a
/// status reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCode {
    /// The request's own identifier is held by two or more subject rows.
    AmbiguousIdentifier,
    /// Rows of the customer were still there after a forget committed.
    ErasureIncomplete,
}

impl FailureCode {
    /// Every code.
    pub const ALL: [Self; 2] = [Self::AmbiguousIdentifier, Self::ErasureIncomplete];

    /// As written.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AmbiguousIdentifier => "ambiguous_identifier",
            Self::ErasureIncomplete => "erasure_incomplete",
        }
    }

    /// The code of a recorded failure reason, as written, if it has one.
    pub fn code_of(reason: Option<&str>) -> Option<&'static str> {
        reason.and_then(Self::of_reason).map(Self::as_str)
    }

    /// The code a recorded failure reason starts with, if any.
    pub fn of_reason(reason: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|code| {
            reason
                .strip_prefix(code.as_str())
                .is_some_and(|rest| rest.starts_with(':'))
        })
    }
}

/// What a fulfilment does to one of the customer's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RowAction {
    /// Forget, `delete` table: the row goes.
    Delete,
    /// Forget, `anonymize` table: personal columns nulled (a pseudonym where
    /// the column may not be null).
    Anonymize,
    /// Pseudonymization: personal columns replaced by pseudonyms.
    Pseudonymize,
}

impl RowAction {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delete => "delete",
            Self::Anonymize => "anonymize",
            Self::Pseudonymize => "pseudonymize",
        }
    }

    /// From its stored text.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Delete, Self::Anonymize, Self::Pseudonymize]
            .into_iter()
            .find(|a| a.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_kind_and_type_reads_back_from_its_text() {
        for s in RequestStatus::ALL {
            assert_eq!(RequestStatus::parse(s.as_str()), Some(s));
        }
        for t in IdentifierType::ALL {
            assert_eq!(IdentifierType::parse(t.as_str()), Some(t));
        }
        for k in [RequestKind::Access, RequestKind::Forget] {
            assert_eq!(RequestKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(RequestStatus::parse("done"), None);
        let shown = serde_json::to_string(&RequestStatus::InProgress).unwrap();
        assert_eq!(shown, format!("\"{}\"", RequestStatus::InProgress));
    }

    #[test]
    fn identifiers_normalize_the_same_way_everywhere() {
        use IdentifierType::*;
        assert_eq!(
            Email.normalize(" \tÉlodie.Dupont@Exemple.FR \n").as_deref(),
            Some("élodie.dupont@exemple.fr")
        );
        assert_eq!(
            Mobile.normalize("+44 20 7946 0958 (mob)").as_deref(),
            Some("442079460958")
        );
        assert_eq!(Mobile.normalize("(mob)"), None);
        assert_eq!(Account.normalize(" 934|1 ").as_deref(), Some("934|1"));
        assert!(Gcrid.is_strong() && !Email.is_strong() && !Mobile.is_strong());
    }

    #[test]
    fn only_registered_requests_can_be_revoked_and_only_failed_ones_retried() {
        use RequestStatus::*;
        assert_eq!(RequestStatus::sources_of(Revoked), vec![Registered]);
        assert_eq!(RequestStatus::sources_of(Registered), vec![Failed]);
        assert_eq!(RequestStatus::sources_of(Completed), vec![InProgress]);
        assert!(
            !Completed.may_become(Registered),
            "a completed request stays completed"
        );
        assert!(!InProgress.may_become(Revoked), "processing has started");
    }
}
