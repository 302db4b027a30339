//! The job runner: claim a due request (one at a time per instance), keep its
//! lease alive while the work runs, and end the attempt: completed with its
//! result, retried after a backoff (a database or the storage down), or failed
//! when its attempts are spent. [`Runner::try_execute_task`] does one claim and
//! returns what happened, so tests can drive the runner step by step.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::FulfilError;
use super::access;
use super::exports::Exports;
use super::observe;
use super::resolve::{Asked, Customer, Lookups, resolve};
use crate::crypto::{IDENTIFIER_CONTEXT, Keys, PERSONAL_CONTEXT};
use crate::datamap::{DataMap, TableRef};
use crate::request::{Flow, IdentifierType, RequestKind};
use crate::store::{Claimed, RelatedRequest, Store, StoreError, Timing};
use crate::targets::{TableColumns, Targets};

/// How fulfilment is timed.
#[derive(Debug, Clone)]
pub struct FulfilSettings {
    /// How long after registration a request falls due (the revocation window).
    pub delay: Duration,
    /// Attempts a request gets before it is failed.
    pub attempts: u32,
    /// How long a claim holds without a heartbeat.
    pub lease: Duration,
    /// How often the runner looks for due requests when there were none.
    pub poll: Duration,
    /// The wait before the second attempt; it doubles for each later one (at
    /// most five minutes).
    pub retry_backoff: Duration,
}

/// What one call of [`Runner::try_execute_task`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ran {
    /// Nothing was due.
    Idle,
    /// The request is completed.
    Completed(i64),
    /// The attempt failed; the request falls due again later.
    Retrying(i64),
    /// The request failed for good.
    Failed(i64),
    /// The lease was lost (taken over, or the request changed): nothing written.
    LostLease(i64),
}

/// The job runner of one process.
#[derive(Debug, Clone)]
pub struct Runner {
    /// The worker's store.
    pub store: Store,
    /// Keys to read the request's identifiers.
    pub keys: Arc<Keys>,
    /// The data map, checked.
    pub map: Arc<DataMap>,
    /// Its databases.
    pub targets: Targets,
    /// Each table's columns, in visiting order.
    pub columns: Arc<Vec<TableColumns>>,
    /// Where archives go.
    pub exports: Exports,
    /// This process's name as a lease holder.
    pub owner: String,
    /// Timing.
    pub settings: FulfilSettings,
}

impl Runner {
    /// Runs until `token` is cancelled; the attempt in flight is finished first
    /// (its lease would otherwise only expire).
    pub async fn run(&self, token: &CancellationToken) {
        info!(owner = %self.owner, "fulfilment runner started");
        while !token.is_cancelled() {
            let idle = match self.try_execute_task().await {
                Ok(Ran::Idle) => true,
                Ok(ran) => {
                    info!(?ran, "fulfilment attempt ended");
                    false
                }
                Err(error) => {
                    warn!(%error, "fulfilment runner: store unavailable");
                    true
                }
            };
            if idle {
                tokio::select! {
                    () = tokio::time::sleep(self.settings.poll) => {}
                    () = token.cancelled() => {}
                }
            }
        }
    }

    /// Claims one due request, if any, and takes it to the end of its attempt.
    pub async fn try_execute_task(&self) -> Result<Ran, StoreError> {
        let now = Utc::now();
        let timing = Timing {
            now,
            due_before: now - delta(self.settings.delay),
            lease_until: now + delta(self.settings.lease),
        };
        let Some(claimed) = self.store.claim_due(&self.owner, timing).await? else {
            return Ok(Ran::Idle);
        };
        let started = std::time::Instant::now();
        let ran = self.attempt(&claimed).await;
        observe::run_ended(&claimed, &ran, started.elapsed());
        ran
    }

    /// The claimed request's attempt, to its end.
    async fn attempt(&self, claimed: &Claimed) -> Result<Ran, StoreError> {
        let lease = claimed.lease.clone();
        let id = lease.request_id;
        let work = self.fulfil(claimed);
        let heartbeat = async {
            loop {
                tokio::time::sleep(self.settings.lease / 3).await;
                let until = self.lease_until();
                // A store that does not answer is no sign the lease was lost:
                // keep working; the lease runs out if it stays down.
                if !self.store.heartbeat(&lease, until).await.unwrap_or(true) {
                    return;
                }
            }
        };
        let outcome = tokio::select! {
            outcome = work => outcome,
            () = heartbeat => return Ok(Ran::LostLease(id)),
        };
        if matches!(outcome, Err(FulfilError::LostLease)) {
            return Ok(Ran::LostLease(id));
        }
        if let Err(FulfilError::Target(error)) = &outcome {
            // What the database answered, so an operator can tell a refusal
            // from a bug (its code and message, never its detail).
            warn!(request = id, attempt = lease.attempt, error = %error.diagnosis(), "a customer database failed");
        }
        let attempts = i64::from(self.settings.attempts);
        // Each end of the attempt is a fenced write: false means the lease was
        // lost meanwhile (taken over, or the request revoked), and nothing is written.
        let ended = match outcome {
            Ok(result) => {
                let done = self.store.complete(&lease, &result.to_string()).await?;
                done.then_some(Ran::Completed(id))
            }
            Err(error) if error.is_transient() && lease.attempt < attempts => {
                // retry_backoff before the second attempt, doubling, at most 5 min.
                let doublings = u32::try_from(lease.attempt - 1).unwrap_or(0).min(16);
                let backoff = self.settings.retry_backoff * 2u32.pow(doublings);
                let retry_at = Utc::now() + delta(backoff.min(Duration::from_secs(300)));
                let done = self
                    .store
                    .retry_at(&lease, retry_at, &error.reason())
                    .await?;
                done.then_some(Ran::Retrying(id))
            }
            Err(error) => {
                let reason = if error.is_transient() {
                    format!("{} (after {} attempts)", error.reason(), lease.attempt)
                } else {
                    error.reason()
                };
                let done = self.store.fail(&lease, &reason).await?;
                done.then_some(Ran::Failed(id))
            }
        };
        Ok(ended.unwrap_or(Ran::LostLease(id)))
    }

    /// Until when a lease taken or extended now lasts.
    pub(super) fn lease_until(&self) -> chrono::DateTime<Utc> {
        Utc::now() + delta(self.settings.lease)
    }

    /// The work of one attempt: its result, recorded with the request.
    async fn fulfil(&self, claimed: &Claimed) -> Result<Value, FulfilError> {
        match claimed.kind {
            RequestKind::Forget => self.forget(claimed).await,
            RequestKind::Access if claimed.pseudonymize => self.pseudonymize(claimed).await,
            RequestKind::Access => {
                let (customer, _) = self.customer(claimed).await?;
                let exported = self.export(claimed, &customer).await?;
                Ok(found(exported.to_json(), &customer, exported.total_rows()))
            }
        }
    }

    /// The access export of the customer.
    pub(super) async fn export(
        &self,
        claimed: &Claimed,
        customer: &Customer,
    ) -> Result<access::AccessResult, FulfilError> {
        let id = claimed.lease.request_id;
        let archive = access::archive_name(&self.keys, id);
        let job = access::Job {
            request_id: id,
            attempt: claimed.lease.attempt,
            tenant: &claimed.tenant,
            archive: &archive,
        };
        let result = access::export(
            &self.map,
            &self.targets,
            &self.columns,
            customer,
            job,
            &self.exports,
        )
        .await?;
        observe::exported(&result);
        Ok(result)
    }

    /// What the request says of its customer: the identifier it names, and
    /// for an LCM request the non-empty phone numbers and e-mail addresses
    /// the agent sent, as contact details.
    async fn asked(&self, claimed: &Claimed) -> Result<Asked, FulfilError> {
        let unreadable = |what: &str| FulfilError::Request(format!("its {what} does not decrypt"));
        let (kind, sealed) = &claimed.identifier;
        let value = self
            .keys
            .open(IDENTIFIER_CONTEXT, sealed)
            .map_err(|_| unreadable("identifier"))?;
        let value = String::from_utf8(value).map_err(|_| unreadable("identifier"))?;
        let mut asked = Asked {
            own: vec![(*kind, value)],
            contacts: Vec::new(),
        };
        if claimed.flow == Flow::Lcm {
            let detail = self.store.sealed_detail(claimed.lease.request_id).await?;
            for (_, _, personal) in detail.iter().flat_map(|d| &d.messages) {
                let Some(sealed) = personal else { continue };
                let bytes = self
                    .keys
                    .open(PERSONAL_CONTEXT, sealed)
                    .map_err(|_| unreadable("message"))?;
                let fields: Value =
                    serde_json::from_slice(&bytes).map_err(|_| unreadable("message"))?;
                let pairs = [
                    ("PhoneNumber", IdentifierType::Mobile),
                    ("OtherPhoneNumber", IdentifierType::Mobile),
                    ("EmailID", IdentifierType::Email),
                    ("OtherEmailID", IdentifierType::Email),
                ];
                for (field, kind) in pairs {
                    if let Some(value) = fields[field].as_str().filter(|v| !v.trim().is_empty()) {
                        asked.contacts.push((kind, value.to_owned()));
                    }
                }
            }
        }
        Ok(asked)
    }

    /// The request's customer, and the worker's requests of the same
    /// customer in every tenant that reaches a database the request does
    /// (the request itself included). Rows an earlier pseudonymization of
    /// the customer saved are the customer's too, so the customer is
    /// resolved a second time when there was one.
    pub(super) async fn customer(
        &self,
        claimed: &Claimed,
    ) -> Result<(Customer, Vec<i64>), FulfilError> {
        let id = claimed.lease.request_id;
        let asked = self.asked(claimed).await?;
        let tenants = self.store.pseudonymizing_tenants().await?;
        let keys = &self.keys;
        let pseudonyms = |_: IdentifierType, value: &str| -> Vec<String> {
            tenants
                .iter()
                .filter_map(|t| keys.pseudonym(t, value))
                .collect()
        };
        let none = BTreeMap::new();
        let lookups = Lookups {
            tenant: &claimed.tenant,
            pseudonyms: &pseudonyms,
            earlier: &none,
        };
        let mut customer = resolve(&self.map, &self.targets, &asked, &lookups).await?;
        let mut earlier = BTreeMap::new();
        let related = self.related(claimed, &customer).await?;
        for other in related.iter().filter(|r| r.pseudonymize && r.id != id) {
            let Some(saved) = self.store.discovery(other.id).await? else {
                continue;
            };
            for rows in saved.rows {
                let table = TableRef {
                    database: rows.database,
                    table: rows.table,
                };
                earlier
                    .entry(table)
                    .or_insert_with(Vec::new)
                    .extend(rows.keys);
            }
        }
        if !earlier.is_empty() {
            let lookups = Lookups {
                earlier: &earlier,
                ..lookups
            };
            customer = resolve(&self.map, &self.targets, &asked, &lookups).await?;
        }
        let mut ids: Vec<i64> = self
            .related(claimed, &customer)
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect();
        if !ids.contains(&id) {
            ids.push(id);
        }
        Ok((customer, ids))
    }

    /// The worker's requests of the customer, by the blind indexes of the
    /// customer's identifiers, of the tenants that share a database with
    /// the request's.
    async fn related(
        &self,
        claimed: &Claimed,
        customer: &Customer,
    ) -> Result<Vec<RelatedRequest>, FulfilError> {
        let indexes: Vec<String> = customer
            .plain_identifiers()
            .map(|(kind, value)| self.keys.blind_index(kind.as_str(), value))
            .collect();
        let map = &self.map;
        let shares = |tenant: &str| {
            map.databases
                .keys()
                .any(|db| map.reaches(&claimed.tenant, db) && map.reaches(tenant, db))
        };
        let found = self.store.requests_of_customer(&indexes).await?;
        Ok(found.into_iter().filter(|r| shares(&r.tenant)).collect())
    }
}

/// A result with `found` (whether any row of the customer was found) and
/// `skipped` (rows reached only through a shared identifier, per table).
pub(super) fn found(mut result: Value, customer: &Customer, rows: u64) -> Value {
    result["found"] = Value::Bool(rows > 0);
    result["skipped"] = customer.skipped_json();
    result
}

fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}
