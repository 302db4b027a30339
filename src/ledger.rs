//! `privacy-worker ledger replay`: applies the erasure ledger again. After a
//! customer database is restored from a backup, the rows forget requests
//! deleted are back, and so are the personal values they and
//! pseudonymizations rewrote; replaying the ledger deletes and rewrites the
//! same rows, by key, with the same pseudonyms. Every change is idempotent, so
//! a second replay changes nothing.

use std::collections::BTreeMap;

use anyhow::Context;

use crate::check;
use crate::config::{LedgerAction, LedgerArgs};
use crate::fulfil::table_changes;
use crate::keyring::{self, Creation};
use crate::request::{IdentifierType, RowAction};
use crate::store::{LedgerEntry, Store, StoreSettings};

/// Runs `ledger replay` and returns what to print.
pub async fn run(args: &LedgerArgs) -> anyhow::Result<String> {
    let LedgerAction::Replay { database, since } = &args.action;
    let store = Store::connect(&StoreSettings::for_command(&args.store.database_url))
        .await
        .context("opening the store")?;
    let keys = keyring::open(args.store.key_file.as_deref(), &store, Creation::Never).await?;
    let entries = store.ledger(database.as_deref(), *since).await?;
    store.close().await;
    let (map, targets, columns) = check::connect_and_check(&args.datamap).await?;
    if let Some(name) = database
        && !map.databases.contains_key(name)
    {
        anyhow::bail!("the data map has no database {name}");
    }
    // Per database and tenant (pseudonyms are the tenant's).
    let mut groups: BTreeMap<(&str, &str), Vec<&LedgerEntry>> = BTreeMap::new();
    for entry in &entries {
        groups
            .entry((entry.rows.database.as_str(), entry.tenant.as_str()))
            .or_default()
            .push(entry);
    }
    let mut lines = Vec::new();
    for ((db, tenant), entries) in groups {
        let changes = table_changes(&map, &columns, db, entries.iter().map(|e| &e.rows));
        let pseudonym = |kind: Option<IdentifierType>, value: &str| {
            let normalized = kind.and_then(|k| k.normalize(value));
            keys.pseudonym(tenant, normalized.as_deref().unwrap_or(value))
        };
        let changed = targets
            .change(db, &changes, &pseudonym)
            .await
            .with_context(|| format!("replaying on database {db}"))?;
        let affected = changed
            .commit()
            .await
            .with_context(|| format!("replaying on database {db}"))?;
        for (change, n) in changes.iter().zip(affected) {
            lines.push(format!(
                "{}: {} of {} ledger rows {} again",
                change.table.table,
                n,
                change.keys.len(),
                match change.action {
                    RowAction::Delete => "deleted",
                    RowAction::Anonymize => "anonymized",
                    RowAction::Pseudonymize => "pseudonymized",
                }
            ));
        }
    }
    targets.close().await;
    let rows: usize = entries.iter().map(|e| e.rows.keys.len()).sum();
    lines.push(format!("ledger replayed: {rows} rows"));
    Ok(lines.join("\n"))
}
