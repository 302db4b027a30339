//! SQLite's side of a batch: a statement per row. SQLite runs in-process, so a
//! statement costs a function call, not a round trip, and its one writer (the
//! IMMEDIATE transaction) is the lock.

use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

use super::{customers, pending_row};
use crate::store::StoreError;
use crate::store::lifecycle::{Answered, Decision, NewRegistration};
use crate::store::rules::{Known, Plan};
use crate::store::statements::{self, INSERT_REQUEST, SELECT_PENDING};

/// Reads the customers' pending requests and the answers already given to the
/// batch's idempotency keys (the IMMEDIATE transaction is the lock).
pub async fn read(
    tx: &mut SqliteConnection,
    news: &[NewRegistration<'_>],
    order: &[usize],
) -> Result<Known, StoreError> {
    let mut known = Known::default();
    for key in news
        .iter()
        .filter_map(|n| n.message.idempotency_key.as_deref())
    {
        let answered = statements::answered(key).fetch_optional(&mut *tx).await?;
        if let Some(answered) = answered {
            known.answered.insert(key.to_owned(), answered);
        }
    }
    for (tenant, index) in customers(news, order) {
        let rows: Vec<(i64, String, bool, String)> = sqlx::query_as(SELECT_PENDING)
            .bind(tenant)
            .bind(index)
            .fetch_all(&mut *tx)
            .await?;
        let rows = rows
            .into_iter()
            .map(pending_row)
            .collect::<Result<_, _>>()?;
        known
            .pending
            .insert((tenant.to_owned(), index.to_owned()), rows);
    }
    Ok(known)
}

/// Inserts the registrations; returns their ids.
pub async fn insert_requests(
    tx: &mut SqliteConnection,
    news: &[NewRegistration<'_>],
    registrations: &[usize],
    now: DateTime<Utc>,
) -> Result<Vec<i64>, StoreError> {
    let mut ids = Vec::with_capacity(registrations.len());
    for &i in registrations {
        let new = &news[i];
        let id: i64 = sqlx::query_scalar(INSERT_REQUEST)
            .bind(new.tenant)
            .bind(new.flow.as_str())
            .bind(new.kind.as_str())
            .bind(new.pseudonymize)
            .bind(new.identifier.kind.as_str())
            .bind(new.identifier.index)
            .bind(&new.identifier.sealed.bytes)
            .bind(&new.identifier.sealed.key_id)
            .bind(new.source)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        ids.push(id);
    }
    Ok(ids)
}

/// Inserts the audit events and the decided messages with their replies.
pub async fn insert_answers(
    tx: &mut SqliteConnection,
    news: &[NewRegistration<'_>],
    plan: &Plan,
    answers: &[Answered<Decision>],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for e in &plan.events {
        let actor = news[e.message].actor;
        let change = (e.from_status, e.to_status);
        let event =
            statements::insert_event(e.request_id, now, actor, change.0, change.1, &e.reason);
        event.execute(&mut *tx).await?;
    }
    for i in plan.decided() {
        let (message, answer) = (&news[i].message, &answers[i]);
        let reply = answer.reply_payload.as_str();
        let record = statements::insert_message(message, answer.request_id, reply, now);
        record.execute(&mut *tx).await?;
    }
    Ok(())
}
