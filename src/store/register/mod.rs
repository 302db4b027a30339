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

mod pg;
mod sqlite;

use chrono::Utc;

use super::lifecycle::{Answered, Decision, NewRegistration};
use super::rules::{self, PendingRow, Plan, Planned};
use super::{Pools, Store, StoreError};

/// The batch flow on one backend: `$side` is its module (`pg` or `sqlite`), `$tx`
/// its open transaction. Written once, expanded per backend, like `on_pool!`.
macro_rules! plan_and_write {
    ($side:ident, $tx:expr, $news:expr, $order:expr, $reply:expr, $now:expr) => {{
        let mut tx = $tx;
        let known = $side::read(&mut tx, $news, $order).await?;
        let mut plan = rules::plan($news, $order, known);
        let ids = $side::insert_requests(&mut tx, $news, &plan.registrations, $now).await?;
        plan.resolve(&ids);
        let answers = answers(&plan, $reply);
        $side::insert_answers(&mut tx, $news, &plan, &answers, $now).await?;
        tx.commit().await?;
        Ok(answers)
    }};
}

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
        let begin = self.begin_write();
        match &self.pools {
            Pools::Postgres(pool) => {
                plan_and_write!(pg, pool.begin_with(begin).await?, news, &order, &reply, now)
            }
            Pools::Sqlite(pool) => {
                plan_and_write!(
                    sqlite,
                    pool.begin_with(begin).await?,
                    news,
                    &order,
                    &reply,
                    now
                )
            }
        }
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

fn pending_row((id, kind, pseudonymize, status): (i64, String, bool, String)) -> PendingRow {
    PendingRow {
        id,
        kind,
        pseudonymize,
        status,
    }
}

/// One array parameter: a field of every row.
fn column<'r, R, T>(rows: &'r [R], field: impl Fn(&'r R) -> T) -> Vec<T> {
    rows.iter().map(field).collect()
}
