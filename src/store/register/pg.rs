//! PostgreSQL's side of a batch: one set-based statement per step. Arrays are
//! bound as parameters and expanded with `unnest`, so the server parses, plans and
//! round-trips once per batch, not once per row.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::{column, customers, pending_row};
use crate::request::RequestStatus;
use crate::store::StoreError;
use crate::store::lifecycle::{Answered, Decision, NewRegistration};
use crate::store::rules::{Known, Plan};

// The locks are a statement of their own: a statement reads from the snapshot
// taken when it starts, so a read in the locking statement could miss what the
// lock's previous holder committed while this one waited.
const LOCK_CUSTOMERS: &str = "SELECT pg_advisory_xact_lock(hashtextextended(t || '|' || i, 0)) \
    FROM unnest($1::text[], $2::text[]) AS c(t, i)";
// What the store holds for the batch, in one statement (one round trip): the
// answers already given to its idempotency keys (`key` set), and its customers'
// pending requests (`tenant` set). Both reads follow the locks, so they see
// everything committed before.
const SELECT_KNOWN: &str = "SELECT idempotency_key AS key, request_id AS id, reply_payload AS reply, \
      NULL::text AS tenant, NULL::text AS iindex, NULL::text AS kind, \
      NULL::bool AS pseudonymize, NULL::text AS status \
    FROM inbound_messages WHERE idempotency_key = ANY($3) \
    UNION ALL \
    SELECT NULL, p.id, NULL, p.tenant, p.identifier_index, p.kind, p.pseudonymize, p.status \
    FROM privacy_requests p JOIN unnest($1::text[], $2::text[]) AS c(t, i) \
      ON p.tenant = c.t AND p.identifier_index = c.i \
    WHERE p.status IN ('registered', 'in_progress')";
// Ids come from the sequence (the column default); RETURNING gives each row's
// customer, kind and pseudonymization, which identify it within the batch (the
// rules register at most one pending request per combination).
const INSERT_REQUESTS: &str = "INSERT INTO privacy_requests \
    (tenant, flow, kind, pseudonymize, identifier_type, identifier_index, identifier_value, \
     key_id, source, status, created_at, updated_at, due_at) \
    SELECT tenant, flow, kind, pseudonymize, itype, iindex, ivalue, key_id, source, \
           'registered', $10, $10, $10 \
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::text[], \
                $6::text[], $7::bytea[], $8::text[], $9::text[]) \
      AS r(tenant, flow, kind, pseudonymize, itype, iindex, ivalue, key_id, source) \
    RETURNING id, tenant, identifier_index, kind, pseudonymize";
// The audit events and the messages with their replies, in one statement.
const INSERT_ANSWERS: &str = "WITH events AS ( \
      INSERT INTO request_events (request_id, at, actor, from_status, to_status, reason) \
      SELECT r, $19, a, f, t, why \
      FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[]) \
        AS e(r, a, f, t, why)) \
    INSERT INTO inbound_messages \
    (idempotency_key, request_id, operation, source, message_id, correlation_id, reply_to, \
     routing_key, details, personal_data, personal_key_id, reply_payload, received_at, answered_at) \
    SELECT k, r, op, src, mid, cid, rt, rk, d, pd, pk, rp, ra, $19 \
    FROM unnest($6::text[], $7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[], \
                $12::text[], $13::text[], $14::text[], $15::bytea[], $16::text[], $17::text[], \
                $18::timestamptz[]) \
      AS m(k, r, op, src, mid, cid, rt, rk, d, pd, pk, rp, ra)";

/// A row of [`SELECT_KNOWN`]: an answered message, or a pending request.
#[derive(sqlx::FromRow)]
struct KnownRow {
    key: Option<String>,
    id: Option<i64>,
    reply: Option<String>,
    tenant: Option<String>,
    iindex: Option<String>,
    kind: Option<String>,
    pseudonymize: Option<bool>,
    status: Option<String>,
}

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
    let mut rows: Vec<KnownRow> = sqlx::query_as(SELECT_KNOWN)
        .bind(&tenants)
        .bind(&indexes)
        .bind(&keys)
        .fetch_all(&mut *tx)
        .await?;
    // A customer's pending requests, oldest first.
    rows.sort_by_key(|row| row.id);
    let mut known = Known::default();
    let malformed = || StoreError::Corrupt("a known row lacks a column".into());
    for row in rows {
        match (row.key, row.tenant) {
            (Some(key), _) => {
                let reply = row.reply.ok_or_else(malformed)?;
                known.answered.insert(key, (row.id, reply));
            }
            (None, Some(tenant)) => {
                let pending = pending_row((
                    row.id.ok_or_else(malformed)?,
                    row.kind.ok_or_else(malformed)?,
                    row.pseudonymize.ok_or_else(malformed)?,
                    row.status.ok_or_else(malformed)?,
                ))?;
                let index = row.iindex.ok_or_else(malformed)?;
                known
                    .pending
                    .entry((tenant, index))
                    .or_default()
                    .push(pending);
            }
            (None, None) => return Err(malformed()),
        }
    }
    Ok(known)
}

/// Inserts the registrations; returns their ids, in the order of `registrations`.
pub async fn insert_requests(
    tx: &mut PgConnection,
    news: &[NewRegistration<'_>],
    registrations: &[usize],
    now: DateTime<Utc>,
) -> Result<Vec<i64>, StoreError> {
    if registrations.is_empty() {
        return Ok(Vec::new());
    }
    let new = |i: &usize| &news[*i];
    let rows: Vec<(i64, String, String, String, bool)> = sqlx::query_as(INSERT_REQUESTS)
        .bind(column(registrations, |i| new(i).tenant))
        .bind(column(registrations, |i| new(i).flow.as_str()))
        .bind(column(registrations, |i| new(i).kind.as_str()))
        .bind(column(registrations, |i| new(i).pseudonymize))
        .bind(column(registrations, |i| new(i).identifier.kind.as_str()))
        .bind(column(registrations, |i| new(i).identifier.index))
        .bind(column(registrations, |i| {
            new(i).identifier.sealed.bytes.as_slice()
        }))
        .bind(column(registrations, |i| {
            new(i).identifier.sealed.key_id.as_str()
        }))
        .bind(column(registrations, |i| new(i).source))
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
    let ids: HashMap<(String, String, String, bool), i64> = rows
        .into_iter()
        .map(|(id, tenant, index, kind, pseudonymize)| ((tenant, index, kind, pseudonymize), id))
        .collect();
    registrations
        .iter()
        .map(|&i| {
            let n = &news[i];
            let key = (
                n.tenant.to_owned(),
                n.identifier.index.to_owned(),
                n.kind.as_str().to_owned(),
                n.pseudonymize,
            );
            ids.get(&key)
                .copied()
                .ok_or_else(|| StoreError::Corrupt("an inserted request was not returned".into()))
        })
        .collect()
}

/// Inserts the audit events and the decided messages with their replies.
pub async fn insert_answers(
    tx: &mut PgConnection,
    news: &[NewRegistration<'_>],
    plan: &Plan,
    answers: &[Answered<Decision>],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let rows = plan.decided();
    if plan.events.is_empty() && rows.is_empty() {
        return Ok(());
    }
    let events = &plan.events;
    let rows = rows.as_slice();
    let m = |i: &usize| &news[*i].message;
    sqlx::query(INSERT_ANSWERS)
        .bind(column(events, |e| e.request_id))
        .bind(column(events, |e| news[e.message].actor))
        .bind(column(events, |e| e.from_status.map(RequestStatus::as_str)))
        .bind(column(events, |e| e.to_status.as_str()))
        .bind(column(events, |e| e.reason.as_str()))
        .bind(column(rows, |r| m(r).idempotency_key.as_deref()))
        .bind(column(rows, |i| answers[*i].request_id))
        .bind(column(rows, |r| m(r).operation))
        .bind(column(rows, |r| m(r).source))
        .bind(column(rows, |r| m(r).message_id))
        .bind(column(rows, |r| m(r).correlation_id))
        .bind(column(rows, |r| m(r).reply_to))
        .bind(column(rows, |r| m(r).routing_key))
        .bind(column(rows, |r| m(r).details.as_str()))
        .bind(column(rows, |r| m(r).personal.map(|s| s.bytes.as_slice())))
        .bind(column(rows, |r| m(r).personal.map(|s| s.key_id.as_str())))
        .bind(column(rows, |i| answers[*i].reply_payload.as_str()))
        .bind(column(rows, |r| m(r).received_at))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
