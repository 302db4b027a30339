//! Read-only queries for operators and tests. None of them returns personal data.

use chrono::{DateTime, Utc};

use super::{Store, StoreError, decode, on_pool};
use crate::crypto::Sealed;
use crate::request::{Flow, IdentifierType, RequestKind, RequestStatus};

/// A request's lifecycle facts, without personal data.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RequestSummary {
    /// Request id.
    pub id: i64,
    /// Owning tenant.
    pub tenant: String,
    /// The flow it came by.
    pub flow: Flow,
    /// Access or forget.
    pub kind: RequestKind,
    /// Lifecycle status.
    pub status: RequestStatus,
    /// Who it is about, by type.
    pub identifier_type: IdentifierType,
    /// How many distinct bus messages were answered with this request's id.
    pub messages: i64,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When its status last changed.
    pub updated_at: DateTime<Utc>,
    /// Once completed: what fulfilment produced (JSON, no personal data).
    pub result: Option<String>,
    /// Why its last attempt failed (no personal data).
    pub last_error: Option<String>,
}

/// A request's encrypted identifier and the personal data of its messages, for
/// an operator's `--reveal`.
#[derive(Debug, Clone)]
pub struct SealedDetail {
    /// The identifier value, encrypted.
    pub identifier: Sealed,
    /// Each message: operation, non-personal details (JSON), encrypted personal data.
    pub messages: Vec<(String, String, Option<Sealed>)>,
}

/// One entry of a request's audit trail.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RequestEvent {
    /// When.
    pub at: DateTime<Utc>,
    /// Who: `agent:<id>`, `source:<app>`, `operator:<name>` or `system`.
    pub actor: String,
    /// Status before, if any.
    pub from_status: Option<RequestStatus>,
    /// Status after.
    pub to_status: RequestStatus,
    /// Why.
    pub reason: String,
}

/// A summary row as stored.
#[derive(sqlx::FromRow)]
pub(super) struct SummaryRow {
    id: i64,
    tenant: String,
    flow: String,
    kind: String,
    status: String,
    identifier_type: String,
    messages: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    result: Option<String>,
    last_error: Option<String>,
}

impl TryFrom<SummaryRow> for RequestSummary {
    type Error = StoreError;

    fn try_from(row: SummaryRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.id,
            tenant: row.tenant,
            flow: decode(&row.flow, Flow::parse, "flow")?,
            kind: decode(&row.kind, RequestKind::parse, "kind")?,
            status: decode(&row.status, RequestStatus::parse, "status")?,
            identifier_type: decode(
                &row.identifier_type,
                IdentifierType::parse,
                "identifier type",
            )?,
            messages: row.messages,
            created_at: row.created_at,
            updated_at: row.updated_at,
            result: row.result,
            last_error: row.last_error,
        })
    }
}

/// at, actor, from_status, to_status, reason
type EventRow = (DateTime<Utc>, String, Option<String>, String, String);

fn event((at, actor, from, to, reason): EventRow) -> Result<RequestEvent, StoreError> {
    Ok(RequestEvent {
        at,
        actor,
        from_status: from
            .map(|s| decode(&s, RequestStatus::parse, "status"))
            .transpose()?,
        to_status: decode(&to, RequestStatus::parse, "status")?,
        reason,
    })
}

pub(super) const SUMMARY_COLUMNS: &str = "SELECT r.id, r.tenant, r.flow, r.kind, r.status, r.identifier_type, \
    (SELECT COUNT(*) FROM inbound_messages m WHERE m.request_id = r.id) AS messages, \
    r.created_at, r.updated_at, r.result, r.last_error FROM privacy_requests r";

/// operation, details, personal_data, personal_key_id
type MessageRow = (String, String, Option<Vec<u8>>, Option<String>);

const SELECT_EVENTS: &str = "SELECT at, actor, from_status, to_status, reason \
    FROM request_events WHERE request_id = $1 ORDER BY id";

impl Store {
    /// One request's summary.
    pub async fn request_summary(&self, id: i64) -> Result<Option<RequestSummary>, StoreError> {
        let sql = format!("{SUMMARY_COLUMNS} WHERE r.id = $1");
        let row: Option<SummaryRow> = on_pool!(self, pool =>
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await?);
        row.map(RequestSummary::try_from).transpose()
    }

    /// Requests, newest first, optionally of one status and one tenant.
    pub async fn list_requests(
        &self,
        status: Option<RequestStatus>,
        tenant: Option<&str>,
        limit: i64,
    ) -> Result<Vec<RequestSummary>, StoreError> {
        let status = status.map(RequestStatus::as_str);
        let sql = format!(
            "{SUMMARY_COLUMNS} WHERE ($1 IS NULL OR r.status = $1) AND ($2 IS NULL OR r.tenant = $2) \
             ORDER BY r.id DESC LIMIT $3"
        );
        let rows: Vec<SummaryRow> = on_pool!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(status).bind(tenant).bind(limit).fetch_all(pool).await?);
        rows.into_iter().map(RequestSummary::try_from).collect()
    }

    /// The encrypted personal data of a request and its messages.
    pub async fn sealed_detail(&self, id: i64) -> Result<Option<SealedDetail>, StoreError> {
        on_pool!(self, pool => {
            let identifier: Option<(Vec<u8>, String)> = sqlx::query_as(
                "SELECT identifier_value, key_id FROM privacy_requests WHERE id = $1",
            ).bind(id).fetch_optional(pool).await?;
            let Some((bytes, key_id)) = identifier else { return Ok(None) };
            let rows: Vec<MessageRow> = sqlx::query_as(
                "SELECT operation, details, personal_data, personal_key_id FROM inbound_messages \
                 WHERE request_id = $1 ORDER BY id",
            ).bind(id).fetch_all(pool).await?;
            let messages = rows.into_iter().map(|(operation, details, bytes, key_id)| {
                let sealed = bytes.zip(key_id).map(|(bytes, key_id)| Sealed { key_id, bytes });
                (operation, details, sealed)
            }).collect();
            Ok(Some(SealedDetail { identifier: Sealed { key_id, bytes }, messages }))
        })
    }

    /// One request's audit trail, oldest first.
    pub async fn request_events(&self, id: i64) -> Result<Vec<RequestEvent>, StoreError> {
        let rows: Vec<EventRow> =
            on_pool!(self, pool => sqlx::query_as(SELECT_EVENTS).bind(id).fetch_all(pool).await?);
        rows.into_iter().map(event).collect()
    }

    /// How many requests and how many distinct messages are recorded.
    pub async fn counts(&self) -> Result<(i64, i64), StoreError> {
        const SQL: &str = "SELECT (SELECT COUNT(*) FROM privacy_requests), \
            (SELECT COUNT(*) FROM inbound_messages)";
        on_pool!(self, pool => Ok(sqlx::query_as(SQL).fetch_one(pool).await?))
    }
}

impl Store {
    /// Whether the database can take a write now. SQLite takes and releases the
    /// write lock (so a locked or read-only file fails); PostgreSQL makes a round trip.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &self.pools {
            super::Pools::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
                sqlx::query("ROLLBACK").execute(&mut *conn).await?;
            }
            super::Pools::Postgres(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
        }
        Ok(())
    }
}
