//! The store's side of forget and pseudonymization: discovery (the customer's
//! rows, by key, saved before any change to them commits, with the ids of the worker's
//! own requests of the same customer), the progress of an attempt (which
//! databases are done, the export of a pseudonymization), the destruction of
//! the worker's own copies of the customer's data, and the erasure ledger that
//! `ledger replay` reads. Every write is fenced by the lease, like the runner's.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use sqlx::Database;
use sqlx::query::Query;

use super::jobs::{Fenced, Lease};
use super::statements::Binds;
use super::tx::WriteTx;
use super::{Store, StoreError, decode, on_pool};
use crate::request::{RequestStatus, RowAction};

/// Some of the customer's rows of one table, by key, and what is done to
/// them: no personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundRows {
    /// The database of the data map.
    pub database: String,
    /// The table.
    pub table: String,
    /// What is done to them.
    pub action: RowAction,
    /// Each row's key values, as text, in the order of the map's `key`.
    pub keys: Vec<Vec<String>>,
}

/// A discovery: the customer's rows and requests, and how far their change went.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// The worker's own requests of the same customer (the request included).
    pub related: Vec<i64>,
    /// The rows, one entry per table and action.
    pub rows: Vec<FoundRows>,
    /// The databases whose change has committed.
    pub done: BTreeSet<String>,
}

/// One of the worker's requests of the same customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelatedRequest {
    /// Its id.
    pub id: i64,
    /// Its tenant.
    pub tenant: String,
    /// An LCM request with IsPseudonymize.
    pub pseudonymize: bool,
}

/// Entries of the erasure ledger: rows of one table a request changed.
#[derive(Debug, Clone)]
pub struct LedgerEntry {
    /// The request that changed them.
    pub request_id: i64,
    /// Its tenant (pseudonyms are per tenant).
    pub tenant: String,
    /// The rows.
    pub rows: FoundRows,
    /// When their database's change committed.
    pub done_at: DateTime<Utc>,
}

/// Keys saved in one row of `customer_row_batches`.
const BATCH: usize = 10_000;

const INSERT_BATCH: &str = "INSERT INTO customer_row_batches \
    (request_id, db_name, table_name, action, row_keys) VALUES ($1, $2, $3, $4, $5)";

/// A value bound to one of these statements.
#[derive(Debug, Clone, Copy)]
enum Arg<'a> {
    Id(i64),
    Text(&'a str),
    Time(DateTime<Utc>),
}

fn statement<'q, DB: Database>(
    sql: &'q str,
    args: &[Arg<'q>],
) -> Query<'q, DB, <DB as Database>::Arguments>
where
    i64: Binds<'q, DB>,
    &'q str: Binds<'q, DB>,
    DateTime<Utc>: Binds<'q, DB>,
{
    args.iter().fold(
        sqlx::query(sqlx::AssertSqlSafe(sql)),
        |query, arg| match *arg {
            Arg::Id(id) => query.bind(id),
            Arg::Text(text) => query.bind(text),
            Arg::Time(at) => query.bind(at),
        },
    )
}

impl WriteTx {
    /// Saves discovered rows: a statement per batch of keys of one table.
    async fn insert_rows(&mut self, request_id: i64, rows: &[FoundRows]) -> Result<(), StoreError> {
        for found in rows {
            for batch in found.keys.chunks(BATCH) {
                let keys = serde_json::to_string(batch).expect("strings serialise");
                let args = [
                    Arg::Id(request_id),
                    Arg::Text(&found.database),
                    Arg::Text(&found.table),
                    Arg::Text(found.action.as_str()),
                    Arg::Text(&keys),
                ];
                self.run(INSERT_BATCH, &args).await?;
            }
        }
        Ok(())
    }

    /// Runs a statement; returns the rows it changed.
    async fn run(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        Ok(match self {
            Self::Postgres(tx) => statement(sql, args)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
            Self::Sqlite(tx) => statement(sql, args)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
        })
    }
}

impl Store {
    /// Begins a transaction that holds `lease` (extended to `until`); `None`
    /// when the lease is lost.
    async fn begin_fenced(
        &self,
        lease: &Lease,
        until: DateTime<Utc>,
    ) -> Result<Option<WriteTx>, StoreError> {
        let mut tx = self.begin_write().await?;
        let held = tx.fenced(lease, Fenced::Extend(until), Utc::now()).await?;
        Ok(held.then_some(tx))
    }

    /// The worker's requests of a customer, in every tenant, by the blind
    /// indexes of the customer's identifiers: id, tenant, and whether it is
    /// a pseudonymization.
    pub async fn requests_of_customer(
        &self,
        indexes: &[String],
    ) -> Result<Vec<RelatedRequest>, StoreError> {
        let mut found = Vec::new();
        for index in indexes {
            const SQL: &str = "SELECT id, tenant, pseudonymize FROM privacy_requests \
                WHERE identifier_index = $1";
            let rows: Vec<(i64, String, bool)> = on_pool!(self, pool =>
                sqlx::query_as(SQL).bind(index).fetch_all(pool).await?);
            found.extend(
                rows.into_iter()
                    .map(|(id, tenant, pseudonymize)| RelatedRequest {
                        id,
                        tenant,
                        pseudonymize,
                    }),
            );
        }
        found.sort_unstable_by_key(|r| r.id);
        found.dedup_by_key(|r| r.id);
        Ok(found)
    }

    /// The tenants whose requests have pseudonymized a customer (pseudonyms
    /// are per tenant: an identifier is looked for as each one's pseudonym).
    pub async fn pseudonymizing_tenants(&self) -> Result<Vec<String>, StoreError> {
        const SQL: &str = "SELECT DISTINCT tenant FROM privacy_requests WHERE pseudonymize \
            ORDER BY tenant";
        Ok(on_pool!(self, pool => sqlx::query_scalar(SQL).fetch_all(pool).await?))
    }

    /// Saves a discovery; false when the lease is lost (nothing saved).
    pub async fn save_discovery(
        &self,
        lease: &Lease,
        until: DateTime<Utc>,
        rows: &[FoundRows],
        related: &[i64],
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE privacy_requests SET related_requests = $2 WHERE id = $1";
        let Some(mut tx) = self.begin_fenced(lease, until).await? else {
            return Ok(false);
        };
        let related = serde_json::to_string(related).expect("ids serialise");
        tx.insert_rows(lease.request_id, rows).await?;
        tx.run(SQL, &[Arg::Id(lease.request_id), Arg::Text(&related)])
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The saved discovery of a request, if any.
    pub async fn discovery(&self, request_id: i64) -> Result<Option<Discovery>, StoreError> {
        const RELATED: &str = "SELECT related_requests FROM privacy_requests WHERE id = $1";
        const ROWS: &str = "SELECT db_name, table_name, action, row_keys \
            FROM customer_row_batches WHERE request_id = $1 ORDER BY id";
        const DONE: &str = "SELECT db_name FROM customer_databases_done WHERE request_id = $1";
        let related: Option<Option<String>> = on_pool!(self, pool =>
            sqlx::query_scalar(RELATED).bind(request_id).fetch_optional(pool).await?);
        let Some(related) = related.flatten() else {
            return Ok(None);
        };
        let related = serde_json::from_str(&related)
            .map_err(|_| StoreError::Corrupt(format!("request {request_id}: related requests")))?;
        let batches: Vec<(String, String, String, String)> = on_pool!(self, pool =>
            sqlx::query_as(ROWS).bind(request_id).fetch_all(pool).await?);
        let mut rows: Vec<FoundRows> = Vec::new();
        for (database, table, action, keys) in batches {
            let batch = found_rows(database, table, &action, &keys)?;
            match rows.last_mut() {
                Some(last) if same_table(last, &batch) => last.keys.extend(batch.keys),
                _ => rows.push(batch),
            }
        }
        let done: Vec<String> = on_pool!(self, pool =>
            sqlx::query_scalar(DONE).bind(request_id).fetch_all(pool).await?);
        Ok(Some(Discovery {
            related,
            rows,
            done: done.into_iter().collect(),
        }))
    }

    /// Records the result of a step before the request completes (the export
    /// of a pseudonymization); false when the lease is lost.
    pub async fn save_partial_result(
        &self,
        lease: &Lease,
        until: DateTime<Utc>,
        result: &str,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE privacy_requests SET result = $2 WHERE id = $1";
        let Some(mut tx) = self.begin_fenced(lease, until).await? else {
            return Ok(false);
        };
        tx.run(SQL, &[Arg::Id(lease.request_id), Arg::Text(result)])
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Marks a database's rows done (its change committed); false when the
    /// lease is lost.
    pub async fn mark_done(
        &self,
        lease: &Lease,
        until: DateTime<Utc>,
        database: &str,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "INSERT INTO customer_databases_done (request_id, db_name, done_at) \
            VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
        let Some(mut tx) = self.begin_fenced(lease, until).await? else {
            return Ok(false);
        };
        let args = [
            Arg::Id(lease.request_id),
            Arg::Text(database),
            Arg::Time(Utc::now()),
        ];
        tx.run(SQL, &args).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Destroys the worker's copies of a forgotten customer's data in the
    /// requests `related` (the forget request's own included): identifier
    /// values overwritten, blind indexes replaced, the messages' personal data
    /// and natural keys nulled. The audit trail keeps ids, kinds, statuses,
    /// times and actors. A related request still pending cannot be fulfilled
    /// any more and is failed, saying why. False when the lease is lost.
    pub async fn forget_own_copies(
        &self,
        lease: &Lease,
        until: DateTime<Utc>,
        related: &[i64],
    ) -> Result<bool, StoreError> {
        // An empty value of the column's own type, on both backends.
        const REQUEST: &str = "UPDATE privacy_requests \
            SET identifier_value = substr(identifier_value, 1, 0), key_id = 'shredded', \
            identifier_index = 'forgotten:' || CAST(id AS TEXT) WHERE id = $1";
        const MESSAGES: &str = "UPDATE inbound_messages SET personal_data = NULL, \
            personal_key_id = NULL, idempotency_key = CASE WHEN idempotency_key LIKE 'nk:%' \
            THEN NULL ELSE idempotency_key END WHERE request_id = $1";
        let Some(mut tx) = self.begin_fenced(lease, until).await? else {
            return Ok(false);
        };
        let now = Utc::now();
        let reason = format!("the customer was forgotten by request {}", lease.request_id);
        for &id in related {
            if id != lease.request_id {
                let status = tx.status(id).await?;
                for from in [RequestStatus::Registered, RequestStatus::InProgress] {
                    if status == Some(from)
                        && tx.set_status(id, from, RequestStatus::Failed, now).await?
                    {
                        tx.insert_event(
                            id,
                            now,
                            "system",
                            (Some(from), RequestStatus::Failed),
                            &reason,
                        )
                        .await?;
                        let (tenant, kind) = tx.tenant_and_kind(id).await?;
                        tx.insert_status_change(id, &tenant, kind, RequestStatus::Failed, now)
                            .await?;
                    }
                }
            }
            tx.run(REQUEST, &[Arg::Id(id)]).await?;
            tx.run(MESSAGES, &[Arg::Id(id)]).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The erasure ledger: the rows forget requests deleted or anonymized (and
    /// pseudonymizations rewrote), optionally of one database and since a time.
    pub async fn ledger(
        &self,
        database: Option<&str>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        const SQL: &str = "SELECT c.request_id, r.tenant, c.db_name, c.table_name, c.action, \
            c.row_keys, d.done_at FROM customer_row_batches c \
            JOIN customer_databases_done d ON d.request_id = c.request_id AND d.db_name = c.db_name \
            JOIN privacy_requests r ON r.id = c.request_id \
            WHERE ($1 IS NULL OR c.db_name = $1) AND ($2 IS NULL OR d.done_at >= $2) ORDER BY c.id";
        type Row = (i64, String, String, String, String, String, DateTime<Utc>);
        let rows: Vec<Row> = on_pool!(self, pool =>
            sqlx::query_as(SQL).bind(database).bind(since).fetch_all(pool).await?);
        rows.into_iter()
            .map(
                |(request_id, tenant, database, table, action, keys, done_at)| {
                    Ok(LedgerEntry {
                        request_id,
                        tenant,
                        rows: found_rows(database, table, &action, &keys)?,
                        done_at,
                    })
                },
            )
            .collect()
    }
}

fn same_table(a: &FoundRows, b: &FoundRows) -> bool {
    (&a.database, &a.table, a.action) == (&b.database, &b.table, b.action)
}

fn found_rows(
    database: String,
    table: String,
    action: &str,
    keys: &str,
) -> Result<FoundRows, StoreError> {
    Ok(FoundRows {
        database,
        table,
        action: decode(action, RowAction::parse, "row action")?,
        keys: serde_json::from_str(keys).map_err(|_| {
            StoreError::Corrupt("saved row keys are not a JSON list of lists".into())
        })?,
    })
}
