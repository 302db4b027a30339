//! Forget and pseudonymization, as resumable steps. Discovery comes first: the
//! customer's rows (by key) and the worker's own requests of the same customer
//! are found and saved before anything is changed, so a retry or a takeover
//! finishes the same rows although the identifiers that found them are gone.
//! Then each database's rows are changed in one transaction, committed only
//! while the lease is held, and marked done. A forget then deletes the
//! customer's archives and destroys the worker's own copies of its data; a
//! pseudonymization first exports the values as they were.

use std::collections::BTreeMap;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use tracing::info;

use super::FulfilError;
use super::access;
use super::resolve::Customer;
use super::runner::Runner;
use crate::datamap::{DataMap, Forget, TableMap};
use crate::request::{IdentifierType, RowAction};
use crate::store::{Claimed, Discovery, FoundRows, StoreError};
use crate::targets::{TableChange, TableColumns};

/// Saving a new discovery, run beside the first database's change.
type Saving<'a> = BoxFuture<'a, Result<bool, StoreError>>;

impl Runner {
    /// A new discovery of the customer's rows (each table's keys, read side
    /// by side) with the worker's requests of the same customer; saved by
    /// `save` before any change commits.
    async fn discover(
        &self,
        claimed: &Claimed,
        (customer, related): &(Customer, Vec<i64>),
        action: impl Fn(&TableMap) -> Option<RowAction>,
    ) -> Result<Discovery, FulfilError> {
        let id = claimed.lease.request_id;
        let started = std::time::Instant::now();
        let tables = self.map.tables.iter().filter_map(|table| {
            let selection = customer.selections.get(&table.table)?;
            Some((table, selection, action(table)?))
        });
        let reads = tables.map(|(table, selection, action)| async move {
            Ok::<_, FulfilError>(FoundRows {
                database: table.table.database.clone(),
                table: table.table.table.clone(),
                action,
                keys: self.targets.keys(table, selection).await?,
            })
        });
        let rows = futures_util::future::try_join_all(reads).await?;
        let found: usize = rows.iter().map(|r| r.keys.len()).sum();
        info!(request = id, rows = found, took = ?started.elapsed(), "discovery found");
        Ok(Discovery {
            related: related.clone(),
            rows,
            done: Default::default(),
        })
    }

    /// The saved discovery, or `None` with the customer resolved for a new
    /// one. The customer is also resolved when a saved discovery still has
    /// databases to change, for their verification; not once every change
    /// is done (the forget may have shredded the identifiers since).
    async fn saved_or_customer(
        &self,
        claimed: &Claimed,
    ) -> Result<(Option<Discovery>, Option<(Customer, Vec<i64>)>), FulfilError> {
        let saved = self.store.discovery(claimed.lease.request_id).await?;
        let pending = saved.as_ref().is_none_or(|d| {
            d.rows
                .iter()
                .any(|r| !r.keys.is_empty() && !d.done.contains(&r.database))
        });
        let customer = match pending {
            true => Some(self.customer(claimed).await?),
            false => None,
        };
        Ok((saved, customer))
    }

    /// Saves a new discovery; false when the lease is lost.
    fn save<'a>(&'a self, claimed: &'a Claimed, discovery: &'a Discovery) -> Saving<'a> {
        let lease = &claimed.lease;
        async move {
            let started = std::time::Instant::now();
            let (rows, related) = (&discovery.rows, &discovery.related);
            let saved = self
                .store
                .save_discovery(lease, self.lease_until(), rows, related)
                .await;
            let id = lease.request_id;
            info!(request = id, took = ?started.elapsed(), "discovery saved");
            saved
        }
        .boxed()
    }

    /// Changes the discovered rows not done yet, one database at a time, each
    /// committed once the lease is confirmed. A new discovery is saved while
    /// the first database's rows change, and that change commits only once the
    /// save has: until then nothing is changed for anyone but this transaction.
    /// With `verify` (a forget), each database the tenant reaches is selected
    /// again once committed, and is done only when none of the customer's
    /// rows remain; returns those databases.
    async fn apply(
        &self,
        claimed: &Claimed,
        discovery: &Discovery,
        mut saving: Option<Saving<'_>>,
        verify: Option<&Customer>,
    ) -> Result<Vec<String>, FulfilError> {
        let tenant = claimed.tenant.clone();
        let keys = self.keys.clone();
        let pseudonym = move |kind: Option<IdentifierType>, value: &str| {
            let normalized = kind.and_then(|k| k.normalize(value));
            keys.pseudonym(&tenant, normalized.as_deref().unwrap_or(value))
        };
        let lease = &claimed.lease;
        let saved = |saved: Result<bool, StoreError>| match saved {
            Ok(true) => Ok(()),
            Ok(false) => Err(FulfilError::LostLease),
            Err(e) => Err(FulfilError::from(e)),
        };
        let mut verified = Vec::new();
        let reached = self.map.databases.keys();
        for database in reached.filter(|db| self.map.reaches(&claimed.tenant, db)) {
            if discovery.done.contains(database) {
                verified.push(database.clone());
                continue;
            }
            let started = std::time::Instant::now();
            let changes = table_changes(&self.map, &self.columns, database, discovery.rows.iter());
            if !changes.is_empty() {
                let change = self.targets.change(database, &changes, &pseudonym);
                let changed = match saving.take() {
                    Some(save) => {
                        let (changed, save) = tokio::join!(change, save);
                        saved(save)?;
                        changed?
                    }
                    None => change.await?,
                };
                saved(self.store.heartbeat(lease, self.lease_until()).await)?;
                let affected = changed.commit().await?;
                for (change, count) in changes.iter().zip(affected) {
                    super::observe::rewritten(change.action, count);
                }
            }
            if let Some(customer) = verify {
                super::verify::no_residue(self, database, discovery, customer).await?;
                verified.push(database.clone());
            }
            if !changes.is_empty() {
                saved(
                    self.store
                        .mark_done(lease, self.lease_until(), database)
                        .await,
                )?;
                let id = lease.request_id;
                info!(request = id, database, took = ?started.elapsed(), "database changed");
            }
        }
        if let Some(save) = saving {
            saved(save.await)?;
        }
        Ok(verified)
    }

    /// Forget: discovery, the changes (verified), the archives, the worker's
    /// own copies.
    pub(super) async fn forget(&self, claimed: &Claimed) -> Result<Value, FulfilError> {
        let (saved, customer) = self.saved_or_customer(claimed).await?;
        let action = |table: &TableMap| {
            Some(match table.forget {
                Forget::Delete => RowAction::Delete,
                Forget::Anonymize => RowAction::Anonymize,
            })
        };
        let (discovery, new) = match (saved, &customer) {
            (Some(saved), _) => (saved, false),
            (None, Some(found)) => (self.discover(claimed, found, action).await?, true),
            (None, None) => unreachable!("a customer is resolved when nothing is saved"),
        };
        let saving = new.then(|| self.save(claimed, &discovery));
        let verify = customer.as_ref().map(|(c, _)| c);
        let verified = self.apply(claimed, &discovery, saving, verify).await?;
        let started = std::time::Instant::now();
        // Each related request's archive, and one an older version stored
        // under the guessable name.
        for &id in &discovery.related {
            let names = [
                access::archive_name(&self.keys, id),
                access::guessable_archive_name(id),
            ];
            for name in &names {
                self.exports
                    .delete(name)
                    .await
                    .map_err(FulfilError::Storage)?;
            }
        }
        let shredded = self
            .store
            .forget_own_copies(&claimed.lease, self.lease_until(), &discovery.related)
            .await?;
        if !shredded {
            return Err(FulfilError::LostLease);
        }
        let id = claimed.lease.request_id;
        info!(request = id, took = ?started.elapsed(), "archives deleted, own copies destroyed");
        let verified: serde_json::Map<String, Value> = verified
            .into_iter()
            .map(|db| (db, Value::Bool(true)))
            .collect();
        let result = json!({
            "deleted": counts(&discovery, RowAction::Delete),
            "anonymized": counts(&discovery, RowAction::Anonymize),
            "requestsErased": discovery.related.len(),
            "verified": verified,
        });
        let rows = discovery.rows.iter().map(|r| r.keys.len() as u64).sum();
        let customer = customer.map(|(c, _)| c).unwrap_or_default();
        Ok(super::runner::found(result, &customer, rows))
    }

    /// Pseudonymization: the export as the values were, then the pseudonyms.
    pub(super) async fn pseudonymize(&self, claimed: &Claimed) -> Result<Value, FulfilError> {
        if !self.keys.has_pseudonym_key() {
            return Err(FulfilError::Request(
                "the key file has no pseudonym key (pseudonym_key)".into(),
            ));
        }
        let id = claimed.lease.request_id;
        // Whether the export is done decides whether to export now: a store
        // that does not answer must not pass for "not yet" (the rows may be
        // pseudonyms already).
        let exported = self.store.request_summary(id).await?.and_then(|s| s.result);
        let exported: Option<Value> = exported.and_then(|r| serde_json::from_str(&r).ok());
        let (saved, customer) = match &exported {
            Some(_) => self.saved_or_customer(claimed).await?,
            None => (None, Some(self.customer(claimed).await?)),
        };
        let (discovery, new) = match (saved, &customer) {
            (Some(saved), _) => (saved, false),
            (None, Some(found)) => (self.discover(claimed, found, pseudonymized).await?, true),
            (None, None) => unreachable!("a customer is resolved when nothing is saved"),
        };
        let mut result = match (exported, &customer) {
            (Some(result), _) => result,
            (None, Some((customer, _))) => {
                let exported = self.export(claimed, customer).await?;
                let rows = exported.total_rows();
                let result = super::runner::found(exported.to_json(), customer, rows);
                let saved = self
                    .store
                    .save_partial_result(&claimed.lease, self.lease_until(), &result.to_string())
                    .await?;
                if !saved {
                    return Err(FulfilError::LostLease);
                }
                result
            }
            (None, None) => unreachable!("resolved when not exported"),
        };
        let saving = new.then(|| self.save(claimed, &discovery));
        self.apply(claimed, &discovery, saving, None).await?;
        result["pseudonymized"] = counts(&discovery, RowAction::Pseudonymize);
        Ok(result)
    }
}

/// The changes `rows` make to `database`: per table, tables reached by `via`
/// before the tables they point at, one change per action. Shared by the
/// runner and `ledger replay`.
pub fn table_changes<'a>(
    map: &'a DataMap,
    columns: &'a [TableColumns],
    database: &str,
    rows: impl Iterator<Item = &'a FoundRows> + Clone,
) -> Vec<TableChange<'a>> {
    let mut changes = Vec::new();
    for (table, columns) in map.tables.iter().zip(columns).rev() {
        if table.table.database != database {
            continue;
        }
        for action in [
            RowAction::Delete,
            RowAction::Anonymize,
            RowAction::Pseudonymize,
        ] {
            let keys: Vec<&[String]> = rows
                .clone()
                .filter(|r| {
                    (r.database.as_str(), &r.table, r.action)
                        == (database, &table.table.table, action)
                })
                .flat_map(|r| r.keys.iter().map(Vec::as_slice))
                .collect();
            if !keys.is_empty() {
                changes.push(TableChange {
                    table,
                    columns,
                    action,
                    keys,
                });
            }
        }
    }
    changes
}

fn pseudonymized(table: &TableMap) -> Option<RowAction> {
    (!table.personal.is_empty()).then_some(RowAction::Pseudonymize)
}

/// Rows per `<database>.<table>` of one action.
fn counts(discovery: &Discovery, action: RowAction) -> Value {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for rows in discovery.rows.iter().filter(|r| r.action == action) {
        *counts
            .entry(format!("{}.{}", rows.database, rows.table))
            .or_default() += rows.keys.len();
    }
    json!(counts)
}
