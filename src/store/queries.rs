//! Read-only queries for operators and tests. None of them returns personal data.

use chrono::{DateTime, Utc};

use super::{Store, StoreError, on_pool};

/// A request's lifecycle facts, without personal data.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RequestSummary {
    /// Request id.
    pub id: i64,
    /// Owning tenant.
    pub tenant: String,
    /// `lcm` or `rcdp`.
    pub flow: String,
    /// `access` or `forget`.
    pub kind: String,
    /// Lifecycle status.
    pub status: String,
    /// How many distinct bus messages were answered with this request's id.
    pub messages: i64,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

/// One entry of a request's audit trail.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RequestEvent {
    /// When.
    pub at: DateTime<Utc>,
    /// Who: `agent:<id>`, `source:<app>`, `operator:<name>` or `system`.
    pub actor: String,
    /// Status before, if any.
    pub from_status: Option<String>,
    /// Status after.
    pub to_status: String,
    /// Why.
    pub reason: String,
}

const SELECT_SUMMARY: &str = "SELECT r.id, r.tenant, r.flow, r.kind, r.status, \
    (SELECT COUNT(*) FROM inbound_messages m WHERE m.request_id = r.id) AS messages, \
    r.created_at FROM privacy_requests r WHERE r.id = $1";

const SELECT_EVENTS: &str = "SELECT at, actor, from_status, to_status, reason \
    FROM request_events WHERE request_id = $1 ORDER BY id";

impl Store {
    /// One request's summary.
    pub async fn request_summary(&self, id: i64) -> Result<Option<RequestSummary>, StoreError> {
        on_pool!(self, pool => Ok(sqlx::query_as(SELECT_SUMMARY).bind(id).fetch_optional(pool).await?))
    }

    /// One request's audit trail, oldest first.
    pub async fn request_events(&self, id: i64) -> Result<Vec<RequestEvent>, StoreError> {
        on_pool!(self, pool => Ok(sqlx::query_as(SELECT_EVENTS).bind(id).fetch_all(pool).await?))
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
