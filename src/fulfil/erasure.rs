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
use serde_json::{Value, json};
use tracing::info;

use super::FulfilError;
use super::access;
use super::resolve::{Customer, resolve};
use super::runner::Runner;
use crate::datamap::{DataMap, Forget, TableMap};
use crate::request::RowAction;
use crate::store::{Claimed, Discovery, FoundRow};
use crate::targets::{TableChange, TableColumns};

impl Runner {
    /// The saved discovery, or a new one, saved before it is returned.
    async fn discover(
        &self,
        claimed: &Claimed,
        customer: Option<&Customer>,
        action: impl Fn(&TableMap) -> Option<RowAction>,
    ) -> Result<Discovery, FulfilError> {
        let id = claimed.lease.request_id;
        if let Some(saved) = self.store.discovery(id).await? {
            return Ok(saved);
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
        let mut rows = Vec::new();
        for table in &self.map.tables {
            let Some(action) = action(table) else {
                continue;
            };
            let key: Vec<&str> = table.key.iter().map(String::as_str).collect();
            let selection = &customer.selections[&table.table];
            for values in self.targets.values(table, selection, &key).await? {
                rows.push(FoundRow {
                    database: table.table.database.clone(),
                    table: table.table.table.clone(),
                    action,
                    key: values.into_iter().map(Option::unwrap_or_default).collect(),
                });
            }
        }
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
        let found = started.elapsed();
        let saved = self
            .store
            .save_discovery(&claimed.lease, self.lease_until(), &rows, &related)
            .await?;
        if !saved {
            return Err(FulfilError::LostLease);
        }
        info!(request = id, rows = rows.len(), ?found, took = ?started.elapsed(), "discovery saved");
        Ok(Discovery {
            related,
            rows: rows.into_iter().map(|r| (r, false)).collect(),
        })
    }

    /// Changes the discovered rows not done yet, one database at a time.
    async fn apply(&self, claimed: &Claimed, discovery: &Discovery) -> Result<(), FulfilError> {
        let tenant = claimed.tenant.clone();
        let keys = self.keys.clone();
        let pseudonym =
            move |value: &str, max_len: Option<usize>| keys.pseudonym(&tenant, value, max_len);
        for database in self.map.databases.keys() {
            let pending: Vec<&FoundRow> = discovery
                .rows
                .iter()
                .filter(|(r, done)| !done && r.database == *database)
                .map(|(r, _)| r)
                .collect();
            let changes = table_changes(&self.map, &self.columns, database, &pending);
            if changes.is_empty() {
                continue;
            }
            let lease = &claimed.lease;
            let started = std::time::Instant::now();
            let held = self
                .store
                .heartbeat(lease, self.lease_until())
                .map(|held| matches!(held, Ok(true)))
                .boxed();
            let applied = self
                .targets
                .apply(database, &changes, &pseudonym, held)
                .await?;
            let marked = match applied {
                Some(_) => {
                    self.store
                        .mark_done(lease, self.lease_until(), database)
                        .await
                }
                None => self.store.heartbeat(lease, self.lease_until()).await,
            };
            for (change, count) in changes.iter().zip(applied.iter().flatten()) {
                super::observe::rewritten(change.action, *count);
            }
            match marked {
                Ok(true) if applied.is_some() => {
                    let id = lease.request_id;
                    info!(request = id, database, took = ?started.elapsed(), "database changed");
                }
                Ok(true) => return Err(FulfilError::StoreDown),
                Ok(false) => return Err(FulfilError::LostLease),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Forget: discovery, the changes, the archives, the worker's own copies.
    pub(super) async fn forget(&self, claimed: &Claimed) -> Result<Value, FulfilError> {
        let discovery = self
            .discover(claimed, None, |table| {
                Some(match table.forget {
                    Forget::Delete => RowAction::Delete,
                    Forget::Anonymize => RowAction::Anonymize,
                })
            })
            .await?;
        self.apply(claimed, &discovery).await?;
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
        let (discovery, mut result) = match exported.and_then(|r| serde_json::from_str(&r).ok()) {
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
        self.apply(claimed, &discovery).await?;
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
    rows: &[&FoundRow],
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
            let keys: Vec<Vec<String>> = rows
                .iter()
                .filter(|r| r.table == table.table.table && r.action == action)
                .map(|r| r.key.clone())
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
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for (row, _) in discovery.rows.iter().filter(|(r, _)| r.action == action) {
        *counts
            .entry(format!("{}.{}", row.database, row.table))
            .or_default() += 1;
    }
    json!(counts)
}
