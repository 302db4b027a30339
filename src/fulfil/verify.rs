//! Verified erasure: after a database's forget commits, the customer's rows
//! are selected again, by the keys the discovery saved and by the customer's
//! identifiers (a row re-inserted by a trigger or an application under a new
//! key still holds them). A `delete` table must have none left, an
//! `anonymize` table none with a personal value that is not a pseudonym.
//! A residual fails the request with `erasure_incomplete`, naming the tables,
//! never values; the database is not marked done, so a retry finishes it.

use super::FulfilError;
use super::resolve::Customer;
use super::runner::Runner;
use crate::datamap::Forget;
use crate::request::FailureCode;
use crate::store::Discovery;
use crate::targets::Selection;

/// Fails when rows of the customer remain in `database`.
pub(super) async fn no_residue(
    runner: &Runner,
    database: &str,
    discovery: &Discovery,
    customer: &Customer,
) -> Result<(), FulfilError> {
    let identifiers: Vec<_> = customer.identifiers.iter().cloned().collect();
    let tables = runner.map.tables.iter();
    // The tables are counted side by side, as discovery reads them.
    let counts = tables
        .filter(|t| t.table.database == database)
        .map(|table| {
            let keys: Vec<Vec<String>> = discovery
                .rows
                .iter()
                .filter(|r| r.database == database && r.table == table.table.table)
                .flat_map(|r| r.keys.iter().cloned())
                .collect();
            let selection = Selection {
                probes: identifiers.clone(),
                keys,
                ..Selection::default()
            };
            async move {
                let left = match table.forget {
                    Forget::Delete => runner.targets.count(table, &selection).await?,
                    Forget::Anonymize => runner.targets.count_personal(table, &selection).await?,
                };
                Ok::<_, FulfilError>((table, left))
            }
        });
    let residual: Vec<String> = futures_util::future::try_join_all(counts)
        .await?
        .into_iter()
        .filter(|(_, left)| *left > 0)
        .map(|(table, left)| format!("{} ({left} rows)", table.table))
        .collect();
    if residual.is_empty() {
        return Ok(());
    }
    Err(FulfilError::Refused {
        code: FailureCode::ErasureIncomplete,
        what: format!(
            "rows of the customer remain after the erasure committed in {}",
            residual.join(", ")
        ),
    })
}
