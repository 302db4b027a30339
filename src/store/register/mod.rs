//! Registering a batch of requests in one transaction (group commit).
//!
//! The shape is the same on both backends: lock the batch's customers, read what
//! the store holds for them and for the batch's idempotency keys, decide every
//! message with the pure rules of [`super::rules`], then write the new requests,
//! the audit events and the messages with their replies, and commit once.
//!
//! On PostgreSQL every step is one set-based statement for the whole batch (arrays
//! bound as parameters and expanded with `unnest`), so a batch of 64 costs six
//! round trips instead of 400: statements, not rows, are what the server pays for.
//! Customers are locked with transaction-scoped advisory locks in sorted order, so
//! two instances' batches cannot deadlock, and the reads come after the locks, so
//! they see everything committed before. SQLite has one writer (the transaction
//! is IMMEDIATE) and runs in-process, so it keeps one statement per row.
//! [`Store::register_batch`] reads as the steps it takes; each step's match
//! names the backend function that does it.

mod pg;
mod sqlite;

use chrono::Utc;

use super::lifecycle::{Answered, Decision, NewRegistration};
use super::rules::{self, PendingRow, Plan, Planned};
use super::tx::WriteTx;
use super::{Store, StoreError, decode};
use crate::request::{RequestKind, RequestStatus};

impl Store {
    /// Registers a request under the duplicate rules, records the message with the
    /// reply `reply` builds for the decision, and returns that reply; or the
    /// stored reply if the message was answered before.
    pub async fn register(
        &self,
        new: &NewRegistration<'_>,
        reply: impl Fn(&Decision) -> String,
    ) -> Result<Answered<Decision>, StoreError> {
        let mut answers = self
            .register_batch(std::slice::from_ref(new), reply)
            .await?;
        Ok(answers.remove(0))
    }

    /// Registers several requests in one transaction: one commit, one WAL flush
    /// for the whole batch. Within the batch the rules see the batch's own earlier
    /// decisions, so two messages for one customer give one request, and two with
    /// one idempotency key get one answer. Answers come back in the order of
    /// `news`. Any failure rolls the whole batch back.
    pub async fn register_batch(
        &self,
        news: &[NewRegistration<'_>],
        reply: impl Fn(&Decision) -> String,
    ) -> Result<Vec<Answered<Decision>>, StoreError> {
        let now = Utc::now();
        let mut order: Vec<usize> = (0..news.len()).collect();
        order.sort_by_key(|&i| (news[i].tenant, news[i].identifier.index));
        // Each step runs on the transaction's backend: one set-based statement
        // per step on PostgreSQL, a statement per row on SQLite (`pg.rs`,
        // `sqlite.rs`); the decisions in between are the same pure rules.
        let mut tx = self.begin_write().await?;
        let known = match &mut tx {
            WriteTx::Postgres(tx) => pg::read(tx, news, &order).await?,
            WriteTx::Sqlite(tx) => sqlite::read(tx, news, &order).await?,
        };
        let mut plan = rules::plan(news, &order, known);
        let registrations = &plan.registrations;
        let ids = match &mut tx {
            WriteTx::Postgres(tx) => pg::insert_requests(tx, news, registrations, now).await?,
            WriteTx::Sqlite(tx) => sqlite::insert_requests(tx, news, registrations, now).await?,
        };
        plan.resolve(&ids);
        let answers = answers(&plan, &reply);
        match &mut tx {
            WriteTx::Postgres(tx) => pg::insert_answers(tx, news, &plan, &answers, now).await?,
            WriteTx::Sqlite(tx) => sqlite::insert_answers(tx, news, &plan, &answers, now).await?,
        }
        tx.commit().await?;
        Ok(answers)
    }
}

/// The answer to every message of a resolved plan. Those decided now
/// ([`Plan::decided`]) are recorded with theirs.
fn answers(plan: &Plan, reply: &impl Fn(&Decision) -> String) -> Vec<Answered<Decision>> {
    let mut answers: Vec<Option<Answered<Decision>>> = plan
        .planned
        .iter()
        .map(|planned| match planned {
            Planned::Replay {
                request_id,
                reply_payload,
            } => Some(Answered {
                request_id: *request_id,
                reply_payload: reply_payload.clone(),
                decision: None,
            }),
            Planned::Decided(decision) => Some(Answered {
                request_id: Some(decision.request_id()),
                reply_payload: reply(decision),
                decision: Some(decision.clone()),
            }),
            Planned::SameAs(_) => None,
        })
        .collect();
    for (index, planned) in plan.planned.iter().enumerate() {
        if let Planned::SameAs(first) = planned {
            let first = answers[*first]
                .as_ref()
                .expect("the first holder was decided");
            answers[index] = Some(Answered {
                decision: None,
                ..first.clone()
            });
        }
    }
    answers
        .into_iter()
        .map(|a| a.expect("every message answered"))
        .collect()
}

/// The batch's distinct customers, in lock order.
fn customers<'a>(news: &[NewRegistration<'a>], order: &[usize]) -> Vec<(&'a str, &'a str)> {
    let mut customers: Vec<_> = order
        .iter()
        .map(|&i| (news[i].tenant, news[i].identifier.index))
        .collect();
    customers.dedup();
    customers
}

/// A pending request as read: kind and status back from their text.
fn pending_row(
    (id, kind, pseudonymize, status): (i64, String, bool, String),
) -> Result<PendingRow, StoreError> {
    Ok(PendingRow {
        id,
        kind: decode(&kind, RequestKind::parse, "kind")?,
        pseudonymize,
        status: decode(&status, RequestStatus::parse, "status")?,
    })
}

/// One array parameter: a field of every row.
fn column<'r, R, T>(rows: &'r [R], field: impl Fn(&'r R) -> T) -> Vec<T> {
    rows.iter().map(field).collect()
}
