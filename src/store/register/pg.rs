//! PostgreSQL's side of a batch: one set-based statement per step. Arrays are
//! bound as parameters and expanded with `unnest`, so the server parses, plans and
//! round-trips once per batch, not once per row.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::{MessageRow, column, customers, pending_row};
use crate::store::StoreError;
use crate::store::lifecycle::NewRegistration;
use crate::store::rules::{Known, Plan};

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
    let rows: Vec<(String, String, i64, String, bool, String)> = sqlx::query_as(SELECT_PENDING_ANY)
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
