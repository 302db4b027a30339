//! `privacy-worker datamap check`: reads the data map, connects to each customer
//! database, checks every table and column it names, and says what each table
//! would export, without starting the worker. The worker runs the same checks
//! at start and refuses a map that fails them.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::datamap::{self, DataMap, DataMapError, Forget};
use crate::targets::{TableColumns, TargetError, Targets};

/// Why a data map cannot be used.
#[derive(Debug, Error)]
pub enum CheckError {
    /// The file cannot be read.
    #[error("cannot read the data map {path}: {source}")]
    Read {
        /// Which file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The map itself is wrong.
    #[error(transparent)]
    Map(#[from] DataMapError),
    /// The map does not fit its databases, or one cannot be reached.
    #[error(transparent)]
    Target(#[from] TargetError),
}

impl CheckError {
    /// True when the map may pass later: a database did not answer.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Target(e) if e.is_transient())
    }
}

/// Reads and parses the data map at `path`.
pub fn load(path: &Path) -> Result<DataMap, CheckError> {
    let text = std::fs::read_to_string(path).map_err(|source| CheckError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(datamap::parse(&text)?)
}

/// Loads the map, connects to its databases and checks it against them.
pub async fn connect_and_check(
    path: &Path,
) -> Result<(DataMap, Targets, Vec<TableColumns>), CheckError> {
    let map = load(path)?;
    let mut targets = Targets::connect(&map, |var| std::env::var(var).ok()).await?;
    match targets.check(&map).await {
        Ok(columns) => Ok((map, targets, columns)),
        Err(e) => {
            targets.close().await;
            Err(e.into())
        }
    }
}

/// The report of `datamap check`: one line per table, in visiting order.
pub async fn run(path: &Path) -> anyhow::Result<String> {
    let (map, targets, columns) = connect_and_check(path).await?;
    targets.close().await;
    let mut lines = Vec::new();
    for (n, (table, found)) in map.tables.iter().zip(&columns).enumerate() {
        let found_by = match &table.via {
            Some(via) => format!("via {} = {}.{}", via.column, via.target, via.target_column),
            None => {
                let by: Vec<String> = table
                    .matches
                    .iter()
                    .map(|(kind, col)| format!("{kind}={col}"))
                    .collect();
                format!("by {}", by.join(", "))
            }
        };
        let forget = match table.forget {
            Forget::Delete => "delete",
            Forget::Anonymize => "anonymize",
        };
        lines.push(format!(
            "{}. {}: found {found_by}; key {}; exports {}.csv with {} columns ({}); personal: {}; forget: {forget}",
            n + 1,
            table.table,
            table.key.join(", "),
            table.table,
            found.columns.len(),
            found.columns.join(", "),
            if table.personal.is_empty() { "none".to_owned() } else { table.personal.join(", ") },
        ));
    }
    lines.push(format!(
        "data map OK: {} tables in {} databases",
        map.tables.len(),
        map.databases.len()
    ));
    Ok(lines.join("\n"))
}
