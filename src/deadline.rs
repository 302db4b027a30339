//! The one-month deadline the law gives to answer a request, in one place.
//!
//! A request's `due_by` is its registration time plus `PRIVACY_RESPONSE_DEADLINE`
//! (30 days by default). It is computed, not stored: no migration, and one
//! setting moves every request's deadline at once (an operator who shortens it
//! to be safe sees the effect on the requests already open). The status reply,
//! `requests show`, `requests list --overdue` and the overdue gauges all ask
//! here, so they cannot disagree. Pure: no I/O.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::request::RequestStatus;

/// The default deadline: the one month of GDPR article 12(3), as 30 days.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30 * 86_400);

/// When a request registered at `registered_at` must be answered.
pub fn due_by(registered_at: DateTime<Utc>, deadline: Duration) -> DateTime<Utc> {
    registered_at + delta(deadline)
}

/// Whether a request in this status still owes the customer an answer. A
/// failed request does: it waits for an operator's retry, and the clock runs.
pub fn is_open(status: RequestStatus) -> bool {
    !matches!(status, RequestStatus::Completed | RequestStatus::Revoked)
}

/// The statuses [`is_open`] holds for, for queries.
pub fn open_statuses() -> Vec<RequestStatus> {
    RequestStatus::ALL
        .iter()
        .copied()
        .filter(|s| is_open(*s))
        .collect()
}

/// How long before its `due_by` an open request counts as "due soon": the last
/// quarter of the deadline (7.5 days of 30), so a shorter deadline gets a
/// proportionally shorter warning.
pub fn due_soon_window(deadline: Duration) -> Duration {
    deadline / 4
}

/// The registration times that make an open request overdue (registered
/// before the first) or due soon (registered before the second, not the first).
pub fn cutoffs(now: DateTime<Utc>, deadline: Duration) -> (DateTime<Utc>, DateTime<Utc>) {
    let overdue = now - delta(deadline);
    (overdue, overdue + delta(due_soon_window(deadline)))
}

fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_due_thirty_days_after_registration_by_default() {
        let at = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let due = due_by(at, DEFAULT_DEADLINE);
        assert_eq!(due.to_rfc3339(), "2026-01-31T00:00:00+00:00");
    }

    #[test]
    fn completed_and_revoked_requests_owe_nothing_the_rest_do() {
        let open: Vec<&str> = open_statuses().iter().map(|s| s.as_str()).collect();
        assert_eq!(open, ["registered", "in_progress", "failed"]);
    }

    #[test]
    fn the_due_soon_cutoff_lies_a_quarter_of_the_deadline_after_the_overdue_one() {
        let now = Utc::now();
        let (overdue, soon) = cutoffs(now, Duration::from_secs(400));
        assert_eq!(now - overdue, TimeDelta::seconds(400));
        assert_eq!(soon - overdue, TimeDelta::seconds(100));
    }
}
