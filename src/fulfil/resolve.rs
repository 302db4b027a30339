//! Who the customer is in the customer databases: the request's identifiers,
//! expanded by the identifiers found in the customer's matched rows (a request
//! by e-mail also finds the dialer rows keyed by the phone on the customer's
//! record), then, table by table in visiting order, which rows are theirs.

use std::collections::{BTreeMap, BTreeSet};

use crate::datamap::{DataMap, TableRef};
use crate::request::IdentifierType;
use crate::targets::{Selection, TargetError, Targets};

/// Rounds of expansion at most; each finds the identifiers the last one's rows hold.
const MAX_ROUNDS: usize = 8;

/// An identifier in the form that compares equal for the same customer.
pub fn normalize(kind: IdentifierType, value: &str) -> Option<String> {
    let value = value.trim();
    let normalized = match kind {
        IdentifierType::Email => value.to_lowercase(),
        IdentifierType::Mobile => value.chars().filter(char::is_ascii_digit).collect(),
        _ => value.to_owned(),
    };
    (!normalized.is_empty()).then_some(normalized)
}

/// The customer: every identifier found, and each table's selection.
#[derive(Debug, Clone)]
pub struct Customer {
    /// Identifiers, normalized.
    pub identifiers: BTreeSet<(IdentifierType, String)>,
    /// Which rows of each table are the customer's.
    pub selections: BTreeMap<TableRef, Selection>,
}

/// Resolves the customer from the request's identifiers.
pub async fn resolve(
    map: &DataMap,
    targets: &Targets,
    identifiers: impl IntoIterator<Item = (IdentifierType, String)>,
) -> Result<Customer, TargetError> {
    let mut known: BTreeSet<(IdentifierType, String)> = identifiers
        .into_iter()
        .filter_map(|(kind, value)| Some((kind, normalize(kind, &value)?)))
        .collect();
    for _ in 0..MAX_ROUNDS {
        let before = known.len();
        let selection = Selection::Matching(known.iter().cloned().collect());
        for table in map.tables.iter().filter(|t| !t.matches.is_empty()) {
            let kinds: Vec<IdentifierType> = table.matches.keys().copied().collect();
            let columns: Vec<&str> = table.matches.values().map(String::as_str).collect();
            for row in targets.values(table, &selection, &columns).await? {
                for (kind, cell) in kinds.iter().zip(row) {
                    if let Some(value) = cell.and_then(|v| normalize(*kind, &v)) {
                        known.insert((*kind, value));
                    }
                }
            }
        }
        if known.len() == before {
            break;
        }
    }
    let mut selections = BTreeMap::new();
    let matching = Selection::Matching(known.iter().cloned().collect());
    for table in &map.tables {
        let selection = match &table.via {
            None => matching.clone(),
            Some(via) => {
                let target = map.table(&via.target).expect("the map is checked");
                let of_target = selections
                    .get(&via.target)
                    .expect("targets are visited first");
                let values = targets
                    .values(target, of_target, &[via.target_column.as_str()])
                    .await?;
                Selection::Via(
                    values
                        .into_iter()
                        .filter_map(|mut row| row.remove(0))
                        .collect(),
                )
            }
        };
        selections.insert(table.table.clone(), selection);
    }
    Ok(Customer {
        identifiers: known,
        selections,
    })
}
