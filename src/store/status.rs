//! Single-request lifecycle operations, each in one transaction with its audit
//! event: revoking a customer's request from the bus, and moving a request
//! between statuses (an operator's revoke, and later the job runner's steps).
//! The lifecycle's allowed transitions are [`RequestStatus::may_become`].

use chrono::Utc;

use super::lifecycle::{Answered, NewRevocation, RevokeDecision, Transition};
use super::{Store, StoreError};
use crate::request::RequestStatus;

impl Store {
    /// Revokes the newest request of a kind for a customer if it is still
    /// `registered`, records the message with its reply, and returns that reply;
    /// or the stored reply if the message was answered before.
    pub async fn revoke(
        &self,
        new: &NewRevocation<'_>,
        reply: impl Fn(&RevokeDecision) -> String,
    ) -> Result<Answered<RevokeDecision>, StoreError> {
        let now = Utc::now();
        let mut tx = self.begin_write().await?;
        tx.lock_customer(new.tenant, new.identifier_index).await?;
        if let Some(key) = &new.message.idempotency_key
            && let Some((request_id, reply_payload)) = tx.answered(key).await?
        {
            return Ok(Answered {
                request_id,
                reply_payload,
                decision: None,
            });
        }
        let latest = tx
            .latest(new.tenant, new.identifier_index, new.kind)
            .await?;
        let revoked = RequestStatus::Revoked;
        let decision = match latest {
            // The update is conditional on the status read: a job runner's claim
            // that commits first wins, and the revoke is refused instead.
            Some((id, status)) if status.may_become(revoked) => {
                if tx.set_status(id, status, revoked, now).await? {
                    let reason = format!("{} received", new.message.operation);
                    tx.insert_event(id, now, new.actor, (Some(status), revoked), &reason)
                        .await?;
                    tx.insert_status_change(id, new.tenant, new.kind, revoked, now)
                        .await?;
                    RevokeDecision::Revoked(id)
                } else {
                    let status = tx.status(id).await?.unwrap_or(status);
                    RevokeDecision::NotRevocable { id, status }
                }
            }
            Some((id, status)) => RevokeDecision::NotRevocable { id, status },
            None => RevokeDecision::NotFound,
        };
        let request_id = match &decision {
            RevokeDecision::Revoked(id) | RevokeDecision::NotRevocable { id, .. } => Some(*id),
            RevokeDecision::NotFound => None,
        };
        let reply_payload = reply(&decision);
        tx.insert_message(&new.message, request_id, &reply_payload, now)
            .await?;
        tx.commit().await?;
        Ok(Answered {
            request_id,
            reply_payload,
            decision: Some(decision),
        })
    }

    /// Moves a request to `to`, with an audit event, if the lifecycle allows it
    /// from the status it has.
    pub async fn transition(
        &self,
        id: i64,
        to: RequestStatus,
        actor: &str,
        reason: &str,
    ) -> Result<Transition, StoreError> {
        let now = Utc::now();
        let mut tx = self.begin_write().await?;
        let Some(status) = tx.status(id).await? else {
            return Ok(Transition::NotFound);
        };
        if !status.may_become(to) {
            return Ok(Transition::NotAllowed(status));
        }
        if !tx.set_status(id, status, to, now).await? {
            return Ok(Transition::NotAllowed(
                tx.status(id).await?.unwrap_or(status),
            ));
        }
        tx.insert_event(id, now, actor, (Some(status), to), reason)
            .await?;
        if to.is_announced() {
            let (tenant, kind) = tx.tenant_and_kind(id).await?;
            tx.insert_status_change(id, &tenant, kind, to, now).await?;
        }
        tx.commit().await?;
        Ok(Transition::Moved(status))
    }
}

impl Store {
    /// Records an audit event that changes nothing (e.g. personal data revealed).
    pub async fn note(&self, id: i64, actor: &str, reason: &str) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO request_events \
            (request_id, at, actor, from_status, to_status, reason) \
            SELECT id, $2, $3, status, status, $4 FROM privacy_requests WHERE id = $1";
        super::on_pool!(self, pool => {
            sqlx::query(SQL).bind(id).bind(Utc::now()).bind(actor).bind(reason)
                .execute(pool).await?;
        });
        Ok(())
    }
}
