//! The job runner's side of the store: claiming a due request under a lease,
//! keeping the lease, and ending the attempt (completed, retried later, failed),
//! each write fenced by the lease (owner and attempt number) so an instance that
//! lost its lease cannot write over the one that took the request over.
//!
//! A request is due when it is `registered` and older than the fulfilment delay,
//! or `in_progress` with its lease run out (an instance died, or an attempt
//! failed and its backoff has passed). Claiming and revoking serialise on the
//! request's row: whichever commits first wins, so a request revoked before it
//! is claimed is never fulfilled. Status changes that are announced go to the
//! outbox in the same transaction.

use chrono::{DateTime, Utc};

use super::{Store, StoreError, Transition, decode};
use crate::crypto::Sealed;
use crate::request::{Flow, IdentifierType, RequestKind, RequestStatus};

/// The right to work on a request: its id, who holds it, and the attempt
/// number, the fencing token every later write checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The request.
    pub request_id: i64,
    /// The holder (unique per process start).
    pub owner: String,
    /// Which attempt this is, from 1.
    pub attempt: i64,
}

/// A request claimed for fulfilment.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The lease on it.
    pub lease: Lease,
    /// Its tenant.
    pub tenant: String,
    /// Access or forget.
    pub kind: RequestKind,
    /// The flow it came by.
    pub flow: Flow,
    /// LCM IsPseudonymize.
    pub pseudonymize: bool,
    /// Who it is about: the type, and the value sealed.
    pub identifier: (IdentifierType, Sealed),
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// True when another holder's lease ran out (it may have written part of
    /// the work: each step must be idempotent).
    pub taken_over: bool,
}

/// A status change waiting to be announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// Its place in the outbox.
    pub id: i64,
    /// The request.
    pub request_id: i64,
    /// Its tenant.
    pub tenant: String,
    /// Access or forget.
    pub kind: RequestKind,
    /// The new status.
    pub status: RequestStatus,
    /// When.
    pub changed_at: DateTime<Utc>,
}

/// What the runner is told about timing.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Now.
    pub now: DateTime<Utc>,
    /// Requests registered before this are due.
    pub due_before: DateTime<Utc>,
    /// The lease lasts until then.
    pub lease_until: DateTime<Utc>,
}

impl Store {
    /// Claims the request that has been due longest, if any.
    pub async fn claim_due(
        &self,
        owner: &str,
        timing: Timing,
    ) -> Result<Option<Claimed>, StoreError> {
        let mut tx = self.begin_write().await?;
        let Some((id, was, lease_ran_out)) = tx.next_due(timing.now, timing.due_before).await?
        else {
            return Ok(None);
        };
        let row = tx
            .take_lease(id, owner, timing.lease_until, timing.now)
            .await?;
        let (attempt, tenant, kind, flow, pseudonymize, itype, bytes, key_id, created_at) = row;
        let kind = decode(&kind, RequestKind::parse, "kind")?;
        if was == RequestStatus::Registered {
            let change = (Some(was), RequestStatus::InProgress);
            tx.insert_event(
                id,
                timing.now,
                owner_actor(owner).as_str(),
                change,
                "fulfilment started",
            )
            .await?;
            tx.insert_status_change(id, &tenant, kind, RequestStatus::InProgress, timing.now)
                .await?;
        } else {
            let reason = if lease_ran_out {
                format!("attempt {attempt}: lease taken over")
            } else {
                format!("attempt {attempt}: after backoff")
            };
            tx.insert_event(
                id,
                timing.now,
                owner_actor(owner).as_str(),
                (Some(was), was),
                &reason,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Some(Claimed {
            lease: Lease {
                request_id: id,
                owner: owner.to_owned(),
                attempt,
            },
            tenant,
            kind,
            flow: decode(&flow, Flow::parse, "flow")?,
            pseudonymize,
            identifier: (
                decode(&itype, IdentifierType::parse, "identifier type")?,
                Sealed { key_id, bytes },
            ),
            created_at,
            taken_over: lease_ran_out,
        }))
    }

    /// Extends the lease; false when it is no longer held (taken over, revoked).
    pub async fn heartbeat(&self, lease: &Lease, until: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let held = tx.fenced(lease, Fenced::Extend(until), Utc::now()).await?;
        tx.commit().await?;
        Ok(held)
    }

    /// Ends the attempt: completed with `result` (JSON, no personal data).
    pub async fn complete(&self, lease: &Lease, result: &str) -> Result<bool, StoreError> {
        self.end_attempt(lease, Fenced::Complete(result), "fulfilled")
            .await
    }

    /// Ends the attempt for now: the request stays in progress, unleased, and
    /// falls due again at `retry_at`. `error` names no personal data.
    pub async fn retry_at(
        &self,
        lease: &Lease,
        retry_at: DateTime<Utc>,
        error: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let held = tx
            .fenced(lease, Fenced::Release { retry_at, error }, Utc::now())
            .await?;
        tx.commit().await?;
        Ok(held)
    }

    /// Ends the attempt and the request: failed with `error` (no personal data).
    pub async fn fail(&self, lease: &Lease, error: &str) -> Result<bool, StoreError> {
        self.end_attempt(lease, Fenced::Fail(error), error).await
    }

    async fn end_attempt(
        &self,
        lease: &Lease,
        how: Fenced<'_>,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        let to = match how {
            Fenced::Complete(_) => RequestStatus::Completed,
            _ => RequestStatus::Failed,
        };
        let mut tx = self.begin_write().await?;
        if !tx.fenced(lease, how, now).await? {
            return Ok(false);
        }
        let (tenant, kind) = tx.tenant_and_kind(lease.request_id).await?;
        let change = (Some(RequestStatus::InProgress), to);
        tx.insert_event(
            lease.request_id,
            now,
            owner_actor(&lease.owner).as_str(),
            change,
            reason,
        )
        .await?;
        tx.insert_status_change(lease.request_id, &tenant, kind, to, now)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Puts a failed request back (an operator's retry): registered again, its
    /// attempts counted afresh. The fencing still holds: the lease owner is part
    /// of the fence and owners are unique per process start.
    pub async fn retry_failed(
        &self,
        id: i64,
        actor: &str,
        reason: &str,
    ) -> Result<Transition, StoreError> {
        let now = Utc::now();
        let (failed, registered) = (RequestStatus::Failed, RequestStatus::Registered);
        let mut tx = self.begin_write().await?;
        let Some(status) = tx.status(id).await? else {
            return Ok(Transition::NotFound);
        };
        if status != failed || !tx.set_status(id, failed, registered, now).await? {
            return Ok(Transition::NotAllowed(status));
        }
        tx.reset_attempts(id).await?;
        tx.insert_event(id, now, actor, (Some(failed), registered), reason)
            .await?;
        tx.commit().await?;
        Ok(Transition::Moved(failed))
    }

    /// Status changes not announced yet, oldest first.
    pub async fn unpublished_status_changes(
        &self,
        limit: i64,
    ) -> Result<Vec<StatusChange>, StoreError> {
        const SQL: &str = "SELECT id, request_id, tenant, kind, status, changed_at FROM status_outbox \
            WHERE published_at IS NULL ORDER BY id LIMIT $1";
        let rows: Vec<ChangeRow> =
            super::on_pool!(self, pool => sqlx::query_as(SQL).bind(limit).fetch_all(pool).await?);
        rows.into_iter().map(status_change).collect()
    }

    /// Every status change of one request written to the outbox, published or
    /// not, oldest first.
    pub async fn status_changes_of(
        &self,
        request_id: i64,
    ) -> Result<Vec<StatusChange>, StoreError> {
        const SQL: &str = "SELECT id, request_id, tenant, kind, status, changed_at FROM status_outbox \
            WHERE request_id = $1 ORDER BY id";
        let rows: Vec<ChangeRow> = super::on_pool!(self, pool => sqlx::query_as(SQL).bind(request_id).fetch_all(pool).await?);
        rows.into_iter().map(status_change).collect()
    }

    /// Marks a status change announced.
    pub async fn mark_published(&self, id: i64) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE status_outbox SET published_at = $2 WHERE id = $1";
        super::on_pool!(self, pool => {
            sqlx::query(SQL).bind(id).bind(Utc::now()).execute(pool).await?;
        });
        Ok(())
    }
}

/// id, request_id, tenant, kind, status, changed_at
type ChangeRow = (i64, i64, String, String, String, DateTime<Utc>);

fn status_change(
    (id, request_id, tenant, kind, status, changed_at): ChangeRow,
) -> Result<StatusChange, StoreError> {
    Ok(StatusChange {
        id,
        request_id,
        tenant,
        kind: decode(&kind, RequestKind::parse, "kind")?,
        status: decode(&status, RequestStatus::parse, "status")?,
        changed_at,
    })
}

/// A write that only the lease's holder may make.
#[derive(Debug, Clone, Copy)]
pub(super) enum Fenced<'a> {
    /// Keep the lease until then.
    Extend(DateTime<Utc>),
    /// Completed, with this result.
    Complete(&'a str),
    /// Let go; due again at `retry_at`.
    Release {
        retry_at: DateTime<Utc>,
        error: &'a str,
    },
    /// Failed, for this reason.
    Fail(&'a str),
}

/// The audit trail's name for a lease holder.
fn owner_actor(owner: &str) -> String {
    format!("system:{owner}")
}
