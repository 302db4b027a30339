//! Registering a batch of requests in one transaction (group commit).
//!
//! The shape is the same on both backends: lock the batch's customers, read what
//! the store holds for them and for the batch's idempotency keys, decide every
//! message with the pure rules of [`super::rules`], then write the new requests,
//! the audit events and the messages with their replies, and commit once.
//!
//! On PostgreSQL every step is one set-based statement for the whole batch (arrays
//! bound as parameters and expanded with `unnest`), so a batch of 64 costs seven
//! round trips instead of 400: statements, not rows, are what the server pays for.
//! Customers are locked with transaction-scoped advisory locks in sorted order, so
//! two instances' batches cannot deadlock, and the reads come after the locks, so
//! they see everything committed before. SQLite has one writer (the transaction
//! is IMMEDIATE) and runs in-process, so it keeps one statement per row.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, SqliteConnection};

use super::lifecycle::{
    Answered, Decision, INSERT_EVENT, INSERT_REQUEST, NewRegistration, SELECT_ANSWERED,
    SELECT_PENDING, insert_message,
};
use super::rules::{self, Known, PendingRow, Plan, Planned};
use super::{Pools, Store, StoreError};

const LOCK_CUSTOMERS: &str = "SELECT pg_advisory_xact_lock(hashtextextended(t || '|' || i, 0)) \
    FROM unnest($1::text[], $2::text[]) AS c(t, i)";
const SELECT_ANSWERED_ANY: &str = "SELECT idempotency_key, request_id, reply_payload \
    FROM inbound_messages WHERE idempotency_key = ANY($1)";
const SELECT_PENDING_ANY: &str = "SELECT p.tenant, p.identifier_index, p.id, p.kind, p.pseudonymize, p.status \
    FROM privacy_requests p JOIN unnest($1::text[], $2::text[]) AS c(t, i) \
      ON p.tenant = c.t AND p.identifier_index = c.i \
    WHERE p.status IN ('registered', 'in_progress') ORDER BY p.id";
const NEXT_IDS: &str = "SELECT nextval('privacy_request_id_seq') FROM generate_series(1, $1)";
const INSERT_REQUESTS: &str = "INSERT INTO privacy_requests \
    (id, tenant, flow, kind, pseudonymize, identifier_type, identifier_index, identifier_value, \
     key_id, source, status, created_at, updated_at, due_at) \
    SELECT id, tenant, flow, kind, pseudonymize, itype, iindex, ivalue, key_id, source, \
           'registered', $11, $11, $11 \
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bool[], $6::text[], \
                $7::text[], $8::bytea[], $9::text[], $10::text[]) \
      AS r(id, tenant, flow, kind, pseudonymize, itype, iindex, ivalue, key_id, source)";
const INSERT_EVENTS: &str = "INSERT INTO request_events \
    (request_id, at, actor, from_status, to_status, reason) \
    SELECT r, $6, a, f, t, why \
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[]) AS e(r, a, f, t, why)";
const INSERT_MESSAGES: &str = "INSERT INTO inbound_messages \
    (idempotency_key, request_id, operation, source, message_id, correlation_id, reply_to, \
     routing_key, details, personal_data, personal_key_id, reply_payload, received_at, answered_at) \
    SELECT k, r, op, src, mid, cid, rt, rk, d, pd, pk, rp, ra, $14 \
    FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], \
                $7::text[], $8::text[], $9::text[], $10::bytea[], $11::text[], $12::text[], \
                $13::timestamptz[]) \
      AS m(k, r, op, src, mid, cid, rt, rk, d, pd, pk, rp, ra)";

/// A message decided now, to record with its reply.
struct MessageRow {
    index: usize,
    request_id: i64,
    reply_payload: String,
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
        match &self.pools {
            Pools::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let known = pg::read(&mut tx, news, &order).await?;
                let mut plan = rules::plan(news, &order, known);
                let ids = pg::insert_requests(&mut tx, news, &plan.registrations, now).await?;
                plan.resolve(&ids);
                let (answers, messages) = answers(&plan, &reply);
                pg::insert_events(&mut tx, news, &plan, now).await?;
                pg::insert_messages(&mut tx, news, &messages, now).await?;
                tx.commit().await?;
                Ok(answers)
            }
            Pools::Sqlite(pool) => {
                let mut tx = pool.begin_with(self.begin_write()).await?;
                let known = sqlite::read(&mut tx, news, &order).await?;
                let mut plan = rules::plan(news, &order, known);
                let ids = sqlite::insert_requests(&mut tx, news, &plan.registrations, now).await?;
                plan.resolve(&ids);
                let (answers, messages) = answers(&plan, &reply);
                sqlite::insert_events(&mut tx, news, &plan, now).await?;
                sqlite::insert_messages(&mut tx, news, &messages, now).await?;
                tx.commit().await?;
                Ok(answers)
            }
        }
    }
}

/// The answer to every message of a resolved plan, and the messages to record.
fn answers(
    plan: &Plan,
    reply: &impl Fn(&Decision) -> String,
) -> (Vec<Answered<Decision>>, Vec<MessageRow>) {
    let mut messages = Vec::new();
    let mut answers: Vec<Option<Answered<Decision>>> = plan
        .planned
        .iter()
        .enumerate()
        .map(|(index, planned)| match planned {
            Planned::Replay {
                request_id,
                reply_payload,
            } => Some(Answered {
                request_id: *request_id,
                reply_payload: reply_payload.clone(),
                decision: None,
            }),
            Planned::Decided(decision) => {
                let reply_payload = reply(decision);
                let request_id = decision.request_id();
                messages.push(MessageRow {
                    index,
                    request_id,
                    reply_payload: reply_payload.clone(),
                });
                Some(Answered {
                    request_id: Some(request_id),
                    reply_payload,
                    decision: Some(decision.clone()),
                })
            }
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
    let answers = answers
        .into_iter()
        .map(|a| a.expect("every message answered"));
    (answers.collect(), messages)
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

mod pg {
    use super::*;

    /// Locks the batch's customers, then reads their pending requests and the
    /// answers already given to the batch's idempotency keys.
    pub async fn read(
        tx: &mut PgConnection,
        news: &[NewRegistration<'_>],
        order: &[usize],
    ) -> Result<Known, StoreError> {
        let (tenants, indexes): (Vec<&str>, Vec<&str>) = customers(news, order).into_iter().unzip();
        sqlx::query(LOCK_CUSTOMERS)
            .bind(&tenants)
            .bind(&indexes)
            .execute(&mut *tx)
            .await?;
        let keys: Vec<&str> = news
            .iter()
            .filter_map(|n| n.message.idempotency_key.as_deref())
            .collect();
        let answered: Vec<(String, Option<i64>, String)> = sqlx::query_as(SELECT_ANSWERED_ANY)
            .bind(&keys)
            .fetch_all(&mut *tx)
            .await?;
        let rows: Vec<(String, String, i64, String, bool, String)> =
            sqlx::query_as(SELECT_PENDING_ANY)
                .bind(&tenants)
                .bind(&indexes)
                .fetch_all(&mut *tx)
                .await?;
        let mut known = Known {
            answered: answered
                .into_iter()
                .map(|(key, request_id, reply)| (key, (request_id, reply)))
                .collect(),
            pending: HashMap::new(),
        };
        for (tenant, index, id, kind, pseudonymize, status) in rows {
            let row = pending_row((id, kind, pseudonymize, status));
            known.pending.entry((tenant, index)).or_default().push(row);
        }
        Ok(known)
    }

    /// Allocates ids for the registrations and inserts them; returns the ids.
    pub async fn insert_requests(
        tx: &mut PgConnection,
        news: &[NewRegistration<'_>],
        registrations: &[usize],
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        if registrations.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids: Vec<i64> = sqlx::query_scalar(NEXT_IDS)
            .bind(registrations.len() as i64)
            .fetch_all(&mut *tx)
            .await?;
        ids.sort_unstable();
        let new = |i: &usize| &news[*i];
        sqlx::query(INSERT_REQUESTS)
            .bind(&ids)
            .bind(column(registrations, |i| new(i).tenant))
            .bind(column(registrations, |i| new(i).flow))
            .bind(column(registrations, |i| new(i).kind.as_str()))
            .bind(column(registrations, |i| new(i).pseudonymize))
            .bind(column(registrations, |i| new(i).identifier.kind))
            .bind(column(registrations, |i| new(i).identifier.index))
            .bind(column(registrations, |i| {
                new(i).identifier.sealed.bytes.as_slice()
            }))
            .bind(column(registrations, |i| {
                new(i).identifier.sealed.key_id.as_str()
            }))
            .bind(column(registrations, |i| new(i).source))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        Ok(ids)
    }

    pub async fn insert_events(
        tx: &mut PgConnection,
        news: &[NewRegistration<'_>],
        plan: &Plan,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if plan.events.is_empty() {
            return Ok(());
        }
        let events = &plan.events;
        sqlx::query(INSERT_EVENTS)
            .bind(column(events, |e| e.request_id))
            .bind(column(events, |e| news[e.message].actor))
            .bind(column(events, |e| e.from_status.as_deref()))
            .bind(column(events, |e| e.to_status.as_str()))
            .bind(column(events, |e| e.reason.as_str()))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    pub async fn insert_messages(
        tx: &mut PgConnection,
        news: &[NewRegistration<'_>],
        rows: &[MessageRow],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let m = |row: &MessageRow| &news[row.index].message;
        sqlx::query(INSERT_MESSAGES)
            .bind(column(rows, |r| m(r).idempotency_key.as_deref()))
            .bind(column(rows, |r| r.request_id))
            .bind(column(rows, |r| m(r).operation))
            .bind(column(rows, |r| m(r).source))
            .bind(column(rows, |r| m(r).message_id))
            .bind(column(rows, |r| m(r).correlation_id))
            .bind(column(rows, |r| m(r).reply_to))
            .bind(column(rows, |r| m(r).routing_key))
            .bind(column(rows, |r| m(r).details.as_str()))
            .bind(column(rows, |r| m(r).personal.map(|s| s.bytes.as_slice())))
            .bind(column(rows, |r| m(r).personal.map(|s| s.key_id.as_str())))
            .bind(column(rows, |r| r.reply_payload.as_str()))
            .bind(column(rows, |r| m(r).received_at))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

mod sqlite {
    use super::*;

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
            let answered: Option<(Option<i64>, String)> = sqlx::query_as(SELECT_ANSWERED)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
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
            let rows = rows.into_iter().map(pending_row).collect();
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
                .bind(new.flow)
                .bind(new.kind.as_str())
                .bind(new.pseudonymize)
                .bind(new.identifier.kind)
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

    pub async fn insert_events(
        tx: &mut SqliteConnection,
        news: &[NewRegistration<'_>],
        plan: &Plan,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for event in &plan.events {
            sqlx::query(INSERT_EVENT)
                .bind(event.request_id)
                .bind(now)
                .bind(news[event.message].actor)
                .bind(event.from_status.as_deref())
                .bind(&event.to_status)
                .bind(&event.reason)
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }

    pub async fn insert_messages(
        tx: &mut SqliteConnection,
        news: &[NewRegistration<'_>],
        rows: &[MessageRow],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for row in rows {
            let message = &news[row.index].message;
            insert_message!(tx, message, Some(row.request_id), &row.reply_payload, now);
        }
        Ok(())
    }
}
