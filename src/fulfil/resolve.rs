//! Who the customer is in the customer databases. Handing one person
//! another's data, or erasing the wrong person, is the worst this worker can
//! do, so the rules are strict (SPEC "Who the customer is"):
//! - The customer is their rows of the `subject: true` tables (one row per
//!   customer each), found by the request's own identifier. An own identifier
//!   two or more rows of one subject table hold is ambiguous: the request
//!   fails and nothing is done.
//! - Identifiers found on the customer's subject rows count as the customer's
//!   too (a request by e-mail finds the dialer rows keyed by the phone on the
//!   customer's record), and so do an LCM request's phones and e-mails, but
//!   only while no other subject row holds them: a phone a household shares
//!   finds nobody's rows. Rows reached only through such a shared identifier
//!   are counted as skipped, naming no value.
//! - An identifier is also looked for as its pseudonym, and rows an earlier
//!   pseudonymization of the customer saved are the customer's by key, so a
//!   pseudonymized customer is still found.
//! - A database the request's tenant does not reach is never read.

use std::collections::{BTreeMap, BTreeSet};

use crate::crypto::pseudonym::is_pseudonym;
use crate::datamap::{DataMap, TableMap, TableRef};
use crate::request::IdentifierType;
use crate::targets::{Probe, Read, Selection, TargetError, Targets};
use futures_util::TryStreamExt;

/// Rounds at most of finding a further subject table's row by a strong
/// identifier of the rows found so far.
const MAX_ROUNDS: usize = 8;

/// What the request says of its customer, as sent (normalized here).
#[derive(Debug, Clone, Default)]
pub struct Asked {
    /// The request's own identifier: what it is about (an RCDP request's one
    /// identifier; an LCM request's account).
    pub own: Vec<(IdentifierType, String)>,
    /// Contact details that help find the customer's rows but do not say
    /// who the customer is (an LCM request's phones and e-mails).
    pub contacts: Vec<(IdentifierType, String)>,
}

/// How the customer's identifiers are looked for besides themselves.
pub struct Lookups<'a> {
    /// The request's tenant: it reaches only the databases the map lets it.
    pub tenant: &'a str,
    /// The pseudonyms an identifier (normalized) may have been given.
    pub pseudonyms: &'a (dyn Fn(IdentifierType, &str) -> Vec<String> + Sync),
    /// Rows earlier pseudonymizations of the customer saved, by table.
    pub earlier: &'a BTreeMap<TableRef, Vec<Vec<String>>>,
}

/// The customer: the identifiers that are theirs, each table's selection.
#[derive(Debug, Clone, Default)]
pub struct Customer {
    /// The identifiers found to be the customer's (shared ones left out).
    pub identifiers: BTreeSet<Probe>,
    /// Which rows of each table the tenant reaches are the customer's.
    pub selections: BTreeMap<TableRef, Selection>,
    /// Per table, rows reached only through a shared identifier.
    pub skipped: BTreeMap<TableRef, u64>,
}

impl Customer {
    /// The normalized identifiers (no pseudonyms): for the blind indexes that
    /// find the worker's own requests of the customer.
    pub fn plain_identifiers(&self) -> impl Iterator<Item = (IdentifierType, &str)> {
        self.identifiers
            .iter()
            .filter(|p| !p.exact)
            .map(|p| (p.kind, p.value.as_str()))
    }

    /// `skipped` of a result: per `<database>.<table>`, the rows and why.
    pub fn skipped_json(&self) -> serde_json::Value {
        let skipped: serde_json::Map<String, serde_json::Value> = self
            .skipped
            .iter()
            .map(|(table, rows)| {
                let why = serde_json::json!({"rows": rows, "why": "shared_identifier"});
                (table.to_string(), why)
            })
            .collect();
        serde_json::Value::Object(skipped)
    }
}

/// Why the customer cannot be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// A customer database failed.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The request's own identifier is held by more than one row of a
    /// subject table: whose data it is cannot be told.
    #[error("the request's identifier matches {rows} rows of {table}")]
    Ambiguous {
        /// The subject table.
        table: TableRef,
        /// How many of its rows hold it.
        rows: usize,
    },
}

/// A subject row: its key and the identifiers it holds.
#[derive(Debug, Clone)]
struct SubjectRow {
    key: Vec<String>,
    holds: BTreeSet<Probe>,
}

/// Resolves the customer of a request.
pub async fn resolve(
    map: &DataMap,
    targets: &Targets,
    asked: &Asked,
    lookups: &Lookups<'_>,
) -> Result<Customer, ResolveError> {
    let reached: Vec<&TableMap> = map
        .tables
        .iter()
        .filter(|t| map.reaches(lookups.tenant, &t.table.database))
        .collect();
    let subjects: Vec<&TableMap> = reached.iter().copied().filter(|t| t.subject).collect();
    let probes = |ids: &[(IdentifierType, String)]| -> BTreeSet<Probe> {
        let mut probes = BTreeSet::new();
        for (kind, value) in ids {
            let Some(value) = kind.normalize(value) else {
                continue;
            };
            for pseudonym in (lookups.pseudonyms)(*kind, &value) {
                probes.insert(Probe {
                    kind: *kind,
                    value: pseudonym,
                    exact: true,
                });
            }
            probes.insert(Probe::normalized(*kind, value));
        }
        probes
    };
    let own = probes(&asked.own);
    let contacts = probes(&asked.contacts);

    // The customer's row of each subject table: by the own identifier, by
    // the keys an earlier pseudonymization saved, then by a strong
    // identifier of the rows found so far.
    let mut rows: BTreeMap<TableRef, SubjectRow> = BTreeMap::new();
    for table in &subjects {
        let mut found = holders(targets, table, &own).await?;
        if let Some(keys) = lookups.earlier.get(&table.table) {
            found.extend(by_keys(targets, table, keys).await?);
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        found.dedup_by(|a, b| a.key == b.key);
        match found.len() {
            0 => {}
            1 => {
                rows.insert(table.table.clone(), found.remove(0));
            }
            n => {
                return Err(ResolveError::Ambiguous {
                    table: table.table.clone(),
                    rows: n,
                });
            }
        }
    }
    for _ in 0..MAX_ROUNDS {
        let strong: BTreeSet<Probe> = known(&own, &rows)
            .into_iter()
            .filter(|p| p.kind.is_strong())
            .collect();
        let mut grew = false;
        let missing: Vec<&&TableMap> = subjects
            .iter()
            .filter(|t| !rows.contains_key(&t.table))
            .collect();
        for table in missing {
            let mut found = holders(targets, table, &strong).await?;
            if found.len() == 1 {
                rows.insert(table.table.clone(), found.remove(0));
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }

    // An identifier is the customer's while no other subject row holds it.
    let mut candidates = known(&own, &rows);
    candidates.extend(contacts);
    let mut shared = BTreeSet::new();
    let mut skipped = BTreeMap::new();
    for table in &subjects {
        let mine = rows.get(&table.table).map(|r| &r.key);
        let others: Vec<SubjectRow> = holders(targets, table, &candidates)
            .await?
            .into_iter()
            .filter(|r| Some(&r.key) != mine)
            .collect();
        for row in &others {
            let held = row.holds.intersection(&candidates);
            shared.extend(held.filter(|p| !own.contains(p)).cloned());
        }
        if !others.is_empty() {
            skipped.insert(table.table.clone(), others.len() as u64);
        }
    }
    let identifiers: BTreeSet<Probe> = candidates.difference(&shared).cloned().collect();
    let accepted: Vec<Probe> = identifiers.iter().cloned().collect();

    let mut selections: BTreeMap<TableRef, Selection> = BTreeMap::new();
    for table in &reached {
        let earlier = lookups
            .earlier
            .get(&table.table)
            .cloned()
            .unwrap_or_default();
        let selection = if table.subject {
            let key = rows.get(&table.table).map(|r| r.key.clone());
            Selection::keys(key.into_iter().collect())
        } else if let Some(via) = &table.via {
            let via_values = match (selections.get(&via.target), map.table(&via.target)) {
                (Some(of_target), Some(target)) => targets
                    .values(target, of_target, &[via.target_column.as_str()])
                    .await?
                    .into_iter()
                    .filter_map(|mut row| row.remove(0))
                    .collect(),
                // The target's database is not the tenant's: nothing leads here.
                _ => Vec::new(),
            };
            Selection {
                via: via_values,
                keys: earlier,
                ..Selection::default()
            }
        } else {
            if !shared.is_empty() {
                let reached_only_by_shared = Selection {
                    probes: shared.iter().cloned().collect(),
                    except: accepted.clone(),
                    ..Selection::default()
                };
                let n = targets.count(table, &reached_only_by_shared).await?;
                if n > 0 {
                    skipped.insert(table.table.clone(), n);
                }
            }
            Selection {
                probes: accepted.clone(),
                keys: earlier,
                ..Selection::default()
            }
        };
        selections.insert(table.table.clone(), selection);
    }
    Ok(Customer {
        identifiers,
        selections,
        skipped,
    })
}

/// The own identifiers and those the customer's subject rows hold.
fn known(own: &BTreeSet<Probe>, rows: &BTreeMap<TableRef, SubjectRow>) -> BTreeSet<Probe> {
    let mut known = own.clone();
    for row in rows.values() {
        known.extend(row.holds.iter().cloned());
    }
    known
}

/// The rows of a subject table holding one of `probes`.
async fn holders(
    targets: &Targets,
    table: &TableMap,
    probes: &BTreeSet<Probe>,
) -> Result<Vec<SubjectRow>, TargetError> {
    if probes.is_empty() {
        return Ok(Vec::new());
    }
    let selection = Selection::probes(probes.iter().cloned().collect());
    subject_rows(targets, table, &selection).await
}

/// The rows of a subject table with one of `keys`.
async fn by_keys(
    targets: &Targets,
    table: &TableMap,
    keys: &[Vec<String>],
) -> Result<Vec<SubjectRow>, TargetError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    subject_rows(targets, table, &Selection::keys(keys.to_vec())).await
}

/// The selected rows of a subject table, each with the identifiers its match
/// columns hold (a pseudonym as it is, anything else normalized).
async fn subject_rows(
    targets: &Targets,
    table: &TableMap,
    selection: &Selection,
) -> Result<Vec<SubjectRow>, TargetError> {
    let kinds: Vec<IdentifierType> = table.matches.keys().copied().collect();
    let mut columns: Vec<&str> = table.key.iter().map(String::as_str).collect();
    columns.extend(table.matches.values().map(String::as_str));
    let width = table.key.len();
    let mut found = Vec::new();
    let mut stream = targets.rows(table, selection, &columns, Read::Unordered);
    while let Some(cells) = stream.try_next().await? {
        let (key, held) = cells.split_at(width);
        let mut holds = BTreeSet::new();
        for (kind, cell) in kinds.iter().zip(held) {
            let Some(cell) = cell else { continue };
            if is_pseudonym(cell) {
                holds.insert(Probe {
                    kind: *kind,
                    value: cell.clone(),
                    exact: true,
                });
            } else if let Some(value) = kind.normalize(cell) {
                holds.insert(Probe::normalized(*kind, value));
            }
        }
        found.push(SubjectRow {
            key: key.iter().cloned().map(Option::unwrap_or_default).collect(),
            holds,
        });
    }
    Ok(found)
}
