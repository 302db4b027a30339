//! What the metrics and the deadline read from the store: requests by status,
//! the status outbox's backlog, the oldest open request, and how many open
//! requests are overdue or due soon; and the overdue requests themselves for
//! `requests list --overdue`. Read-only, no personal data.
//!
//! Which statuses are "open" and where the cutoffs lie is the caller's
//! ([`crate::deadline`]); the store only counts. The statuses are spliced into
//! the SQL as the enum's own texts (never input), quoted.

use chrono::{DateTime, Utc};

use super::queries::{SUMMARY_COLUMNS, SummaryRow};
use super::{RequestSummary, Store, StoreError, decode, on_pool};
use crate::request::RequestStatus;

/// The store's gauges at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreGauges {
    /// Requests per status (statuses with none are absent).
    pub by_status: Vec<(RequestStatus, i64)>,
    /// Status changes written to the outbox and not yet announced.
    pub outbox_backlog: i64,
    /// When the oldest open request was registered.
    pub oldest_open: Option<DateTime<Utc>>,
    /// Open requests registered before the overdue cutoff.
    pub overdue: i64,
    /// Open requests registered between the overdue and the due-soon cutoffs.
    pub due_soon: i64,
}

/// `<column> IN ('a', 'b')` of the enum's own texts.
fn status_in(column: &str, statuses: &[RequestStatus]) -> String {
    let quoted: Vec<String> = statuses
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    format!("{column} IN ({})", quoted.join(", "))
}

impl Store {
    /// Counts for the gauges: `open` are the statuses that still owe an
    /// answer; open requests registered before `overdue_before` are overdue,
    /// those registered before `due_soon_before` (and not overdue) due soon.
    pub async fn gauges(
        &self,
        open: &[RequestStatus],
        overdue_before: DateTime<Utc>,
        due_soon_before: DateTime<Utc>,
    ) -> Result<StoreGauges, StoreError> {
        const BY_STATUS: &str = "SELECT status, COUNT(*) FROM privacy_requests GROUP BY status";
        const BACKLOG: &str = "SELECT COUNT(*) FROM status_outbox WHERE published_at IS NULL";
        let open = status_in("status", open);
        let oldest = format!(
            "SELECT created_at FROM privacy_requests WHERE {open} ORDER BY created_at LIMIT 1"
        );
        let late = format!(
            "SELECT 0, COUNT(*) FROM privacy_requests WHERE {open} AND created_at < $1 \
             UNION ALL SELECT 1, COUNT(*) FROM privacy_requests \
             WHERE {open} AND created_at >= $1 AND created_at < $2"
        );
        let (by_status, (outbox_backlog,), oldest, late) = on_pool!(self, pool => {
            let by_status: Vec<(String, i64)> = sqlx::query_as(BY_STATUS).fetch_all(pool).await?;
            let backlog: (i64,) = sqlx::query_as(BACKLOG).fetch_one(pool).await?;
            let oldest: Option<(DateTime<Utc>,)> = sqlx::query_as(sqlx::AssertSqlSafe(oldest))
                .fetch_optional(pool).await?;
            // (0: overdue | 1: due soon, count)
            let late: Vec<(i32, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(late))
                .bind(overdue_before).bind(due_soon_before).fetch_all(pool).await?;
            (by_status, backlog, oldest, late)
        });
        let by_status = by_status
            .into_iter()
            .map(|(status, n)| Ok((decode(&status, RequestStatus::parse, "status")?, n)))
            .collect::<Result<_, StoreError>>()?;
        let count = |which: i32| {
            late.iter()
                .find(|(w, _)| *w == which)
                .map_or(0, |(_, n)| *n)
        };
        Ok(StoreGauges {
            by_status,
            outbox_backlog,
            oldest_open: oldest.map(|(at,)| at),
            overdue: count(0),
            due_soon: count(1),
        })
    }

    /// Requests in one of the `open` statuses registered before `before`
    /// (optionally of one tenant), oldest first: the overdue ones, when
    /// `before` is the overdue cutoff.
    pub async fn list_registered_before(
        &self,
        open: &[RequestStatus],
        before: DateTime<Utc>,
        tenant: Option<&str>,
        limit: i64,
    ) -> Result<Vec<RequestSummary>, StoreError> {
        let open = status_in("r.status", open);
        let sql = format!(
            "{SUMMARY_COLUMNS} WHERE {open} AND r.created_at < $1 AND ($2 IS NULL OR r.tenant = $2) \
             ORDER BY r.created_at, r.id LIMIT $3"
        );
        let rows: Vec<SummaryRow> = on_pool!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(before).bind(tenant).bind(limit).fetch_all(pool).await?);
        rows.into_iter().map(RequestSummary::try_from).collect()
    }
}
