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
use super::resolve::{Customer, resolve};
use super::runner::Runner;
use crate::datamap::{DataMap, Forget, TableMap};
use crate::request::RowAction;
use crate::store::{Claimed, Discovery, FoundRows, StoreError};
use crate::targets::{TableChange, TableColumns};

/// Saving a new discovery, run beside the first database's change.
type Saving<'a> = BoxFuture<'a, Result<bool, StoreError>>;

impl Runner {
    /// The saved discovery, or a new one and whether it still has to be saved
    /// (by `save`, before any change commits).
    async fn discover(
        &self,
        claimed: &Claimed,
        customer: Option<&Customer>,
        action: impl Fn(&TableMap) -> Option<RowAction>,
    ) -> Result<(Discovery, bool), FulfilError> {
        let id = claimed.lease.request_id;
        if let Some(saved) = self.store.discovery(id).await? {
            return Ok((saved, false));
        }
        let started = std::time::Instant::now();
        let resolved;
        let customer = match customer {
            Some(customer) => customer,
            None => {
                let identifiers = self.identifiers(claimed).await?;
                resolved = resolve(&self.map, &self.targets, identifiers).await?;
                &resolved
            }
        };
        // Each table's keys, read side by side.
        let tables = self
            .map
            .tables
            .iter()
            .filter_map(|table| Some((table, action(table)?)));
        let reads = tables.map(|(table, action)| async move {
            let selection = &customer.selections[&table.table];
            Ok::<_, FulfilError>(FoundRows {
                database: table.table.database.clone(),
                table: table.table.table.clone(),
                action,
                keys: self.targets.keys(table, selection).await?,
            })
        });
        let rows = futures_util::future::try_join_all(reads).await?;
        let indexes: Vec<String> = customer
            .identifiers
            .iter()
            .map(|(kind, value)| self.keys.blind_index(kind.as_str(), value))
            .collect();
        let mut related = self
            .store
            .requests_of_customer(&claimed.tenant, &indexes)
            .await?;
        if !related.contains(&id) {
            related.push(id);
        }
        let found: usize = rows.iter().map(|r| r.keys.len()).sum();
        info!(request = id, rows = found, took = ?started.elapsed(), "discovery found");
        let discovery = Discovery {
            related,
            rows,
            done: Default::default(),
        };
        Ok((discovery, true))
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
    async fn apply(
        &self,
        claimed: &Claimed,
        discovery: &Discovery,
        mut saving: Option<Saving<'_>>,
    ) -> Result<(), FulfilError> {
        let tenant = claimed.tenant.clone();
        let keys = self.keys.clone();
        let pseudonym =
            move |value: &str, max_len: Option<usize>| keys.pseudonym(&tenant, value, max_len);
        let lease = &claimed.lease;
        let saved = |saved: Result<bool, StoreError>| match saved {
            Ok(true) => Ok(()),
            Ok(false) => Err(FulfilError::LostLease),
            Err(e) => Err(FulfilError::from(e)),
        };
        for database in self.map.databases.keys() {
            if discovery.done.contains(database) {
                continue;
            }
            let started = std::time::Instant::now();
            let changes = table_changes(&self.map, &self.columns, database, discovery.rows.iter());
            if changes.is_empty() {
                continue;
            }
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
            saved(
                self.store
                    .mark_done(lease, self.lease_until(), database)
                    .await,
            )?;
            let id = lease.request_id;
            info!(request = id, database, took = ?started.elapsed(), "database changed");
        }
        if let Some(save) = saving {
            saved(save.await)?;
        }
        Ok(())
    }

    /// Forget: discovery, the changes, the archives, the worker's own copies.
    pub(super) async fn forget(&self, claimed: &Claimed) -> Result<Value, FulfilError> {
        let (discovery, new) = self
            .discover(claimed, None, |table| {
                Some(match table.forget {
                    Forget::Delete => RowAction::Delete,
                    Forget::Anonymize => RowAction::Anonymize,
                })
            })
            .await?;
        let saving = new.then(|| self.save(claimed, &discovery));
        self.apply(claimed, &discovery, saving).await?;
        let started = std::time::Instant::now();
        for id in &discovery.related {
            self.exports
                .delete(&access::archive_name(*id))
                .await
                .map_err(FulfilError::Storage)?;
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
        Ok(json!({
            "deleted": counts(&discovery, RowAction::Delete),
            "anonymized": counts(&discovery, RowAction::Anonymize),
            "requestsErased": discovery.related.len(),
        }))
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
        let ((discovery, new), mut result) = match exported
            .and_then(|r| serde_json::from_str(&r).ok())
        {
            Some(result) => (self.discover(claimed, None, pseudonymized).await?, result),
            None => {
                let identifiers = self.identifiers(claimed).await?;
                let customer = resolve(&self.map, &self.targets, identifiers).await?;
                let discovery = self
                    .discover(claimed, Some(&customer), pseudonymized)
                    .await?;
                let result = self.export(claimed, &customer).await?.to_json();
                let saved = self
                    .store
                    .save_partial_result(&claimed.lease, self.lease_until(), &result.to_string())
                    .await?;
                if !saved {
                    return Err(FulfilError::LostLease);
                }
                (discovery, result)
            }
        };
        let saving = new.then(|| self.save(claimed, &discovery));
        self.apply(claimed, &discovery, saving).await?;
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
