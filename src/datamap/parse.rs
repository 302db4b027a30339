//! Reading a data map: YAML to plain values, each table checked on its own, so
//! an error names the table (and the column) it is about.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

use super::graph::visiting_order;
use super::{DataMap, DataMapError, DatabaseUrl, Forget, TableMap, TableRef, Via};
use crate::request::IdentifierType;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: Option<String>,
    url_env: Option<String>,
    tenants: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    table: String,
    #[serde(default)]
    subject: bool,
    key: Vec<String>,
    #[serde(rename = "match", default)]
    matches: BTreeMap<String, String>,
    #[serde(default)]
    via: BTreeMap<String, String>,
    #[serde(default)]
    personal: Vec<String>,
    #[serde(default)]
    forget: Option<String>,
}

fn error(message: impl Into<String>) -> DataMapError {
    DataMapError(message.into())
}

/// Parses and checks a data map's text.
pub fn parse(text: &str) -> Result<DataMap, DataMapError> {
    let documents = YamlLoader::load_from_str(text).map_err(|e| error(format!("not YAML: {e}")))?;
    let root = match documents.as_slice() {
        [one] => yaml_to_json(one)?,
        _ => return Err(error("expected one YAML document")),
    };
    let Value::Object(mut root) = root else {
        return Err(error("expected a mapping with `databases` and `tables`"));
    };
    if let Some(other) = root.keys().find(|k| *k != "databases" && *k != "tables") {
        return Err(error(format!(
            "unknown key `{other}` (expected databases, tables)"
        )));
    }
    let (databases, tenants) = databases(root.remove("databases"))?;
    let Some(Value::Array(raw_tables)) = root.remove("tables") else {
        return Err(error("`tables` must be a list of tables"));
    };
    let mut tables = Vec::with_capacity(raw_tables.len());
    for (i, raw) in raw_tables.into_iter().enumerate() {
        let name = raw.get("table").and_then(Value::as_str).map(str::to_owned);
        let name = name.unwrap_or_else(|| format!("#{}", i + 1));
        let raw: RawTable =
            serde_json::from_value(raw).map_err(|e| error(format!("table {name}: {e}")))?;
        let table = table(raw, &databases)?;
        if tables.iter().any(|t: &TableMap| t.table == table.table) {
            return Err(error(format!("table {}: listed twice", table.table)));
        }
        tables.push(table);
    }
    if tables.is_empty() {
        return Err(error("`tables` lists no table"));
    }
    let tables = visiting_order(tables)?;
    Ok(DataMap {
        databases,
        tenants,
        tables,
    })
}

/// The databases by name, and those only some tenants reach.
type Databases = (
    BTreeMap<String, DatabaseUrl>,
    BTreeMap<String, BTreeSet<String>>,
);

fn databases(raw: Option<Value>) -> Result<Databases, DataMapError> {
    let raw: BTreeMap<String, RawDatabase> = match raw {
        Some(raw) => serde_json::from_value(raw).map_err(|e| error(format!("databases: {e}")))?,
        None => return Err(error("`databases` is missing")),
    };
    if raw.is_empty() {
        return Err(error("`databases` names no database"));
    }
    let mut urls = BTreeMap::new();
    let mut tenants = BTreeMap::new();
    for (name, db) in raw {
        let url = match (db.url, db.url_env) {
            (Some(url), None) => DatabaseUrl::Inline(url),
            (None, Some(var)) => DatabaseUrl::FromEnv(var),
            _ => {
                return Err(error(format!(
                    "database {name}: give exactly one of url, url_env"
                )));
            }
        };
        if let Some(listed) = db.tenants {
            let listed: BTreeSet<String> = listed.into_iter().collect();
            if listed.is_empty() || listed.iter().any(|t| t.trim().is_empty()) {
                return Err(error(format!(
                    "database {name}: `tenants` must name at least one tenant, none empty"
                )));
            }
            tenants.insert(name.clone(), listed);
        }
        urls.insert(name, url);
    }
    Ok((urls, tenants))
}

/// `<database>.<table>`, the database one of the map's.
fn table_ref(
    text: &str,
    databases: &BTreeMap<String, DatabaseUrl>,
) -> Result<TableRef, DataMapError> {
    let Some((database, table)) = text.split_once('.') else {
        return Err(error(format!("table {text}: name it <database>.<table>")));
    };
    if !databases.contains_key(database) {
        return Err(error(format!(
            "table {text}: database {database} is not in `databases`"
        )));
    }
    if !is_name(table) {
        return Err(error(format!("table {text}: {NAME_RULE}")));
    }
    Ok(TableRef {
        database: database.to_owned(),
        table: table.to_owned(),
    })
}

/// What a table or column name may hold.
const NAME_RULE: &str = "a name must not be empty nor hold a control character, / or \\";

/// Table and column names are whatever the database allows (mixed case,
/// spaces, quotes): they are spliced into SQL always quoted, a quote doubled.
/// Not a control character (no database needs one, and a NUL ends a C
/// string), and not `/` or `\`, which would make a path of the archive's
/// `<database>.<table>.csv`.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
}

fn column(table: &TableRef, what: &str, name: &str) -> Result<String, DataMapError> {
    if is_name(name) {
        Ok(name.to_owned())
    } else {
        Err(error(format!(
            "table {table}: {what} column {name:?}: {NAME_RULE}"
        )))
    }
}

fn table(
    raw: RawTable,
    databases: &BTreeMap<String, DatabaseUrl>,
) -> Result<TableMap, DataMapError> {
    let table = table_ref(&raw.table, databases)?;
    if raw.key.is_empty() {
        return Err(error(format!("table {table}: `key` names no column")));
    }
    let key = raw
        .key
        .iter()
        .map(|c| column(&table, "key", c))
        .collect::<Result<Vec<_>, _>>()?;
    let mut matches = BTreeMap::new();
    for (kind, col) in &raw.matches {
        let Some(kind) = IdentifierType::parse(kind) else {
            let known: Vec<&str> = IdentifierType::ALL.iter().map(|t| t.as_str()).collect();
            return Err(error(format!(
                "table {table}: match type {kind:?} is not one of {}",
                known.join(", ")
            )));
        };
        matches.insert(kind, column(&table, "match", col)?);
    }
    if let Some(both) = key.iter().find(|c| matches.values().any(|m| m == *c)) {
        return Err(error(format!(
            "table {table}: key column {both} is also a match column: the erasure \
             ledger keeps keys, and would keep the customer's identifier"
        )));
    }
    let via = match raw.via.len() {
        0 => None,
        1 => {
            let (col, target) = raw.via.iter().next().expect("one entry");
            let Some((target_table, target_column)) = target.rsplit_once('.') else {
                return Err(error(format!(
                    "table {table}: via {col} must point at <database>.<table>.<column>"
                )));
            };
            Some(Via {
                column: column(&table, "via", col)?,
                target: table_ref(target_table, databases)
                    .map_err(|e| error(format!("table {table}: via {col}: {}", e.0)))?,
                target_column: column(&table, "via target", target_column)?,
            })
        }
        _ => return Err(error(format!("table {table}: `via` takes one column"))),
    };
    match (matches.is_empty(), &via) {
        (true, None) => {
            return Err(error(format!(
                "table {table}: is reachable from no identifier (give it `match` or `via`)"
            )));
        }
        (false, Some(_)) => {
            return Err(error(format!(
                "table {table}: give it `match` or `via`, not both"
            )));
        }
        (true, Some(_)) if raw.subject => {
            return Err(error(format!(
                "table {table}: a subject table is found by `match`, not `via`"
            )));
        }
        _ => {}
    }
    let mut personal = Vec::new();
    for col in &raw.personal {
        let col = column(&table, "personal", col)?;
        if key.contains(&col) {
            return Err(error(format!(
                "table {table}: key column {col} cannot be personal"
            )));
        }
        if personal.contains(&col) {
            return Err(error(format!(
                "table {table}: personal column {col} listed twice"
            )));
        }
        personal.push(col);
    }
    let forget = match raw.forget.as_deref() {
        None | Some("delete") => Forget::Delete,
        Some("anonymize") => Forget::Anonymize,
        Some(other) => {
            return Err(error(format!(
                "table {table}: forget {other:?} is not delete or anonymize"
            )));
        }
    };
    Ok(TableMap {
        table,
        subject: raw.subject,
        key,
        matches,
        via,
        personal,
        forget,
    })
}

/// A YAML value as the JSON value serde reads; keys must be strings.
fn yaml_to_json(yaml: &Yaml) -> Result<Value, DataMapError> {
    Ok(match yaml {
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(r) => Value::String(r.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Null => Value::Null,
        Yaml::Array(items) => {
            Value::Array(items.iter().map(yaml_to_json).collect::<Result<_, _>>()?)
        }
        Yaml::Hash(map) => {
            let mut object = serde_json::Map::new();
            for (k, v) in map {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    _ => return Err(error("mapping keys must be names")),
                };
                object.insert(key, yaml_to_json(v)?);
            }
            Value::Object(object)
        }
        Yaml::Alias(_) | Yaml::BadValue => {
            return Err(error("unsupported YAML (an alias or a bad value)"));
        }
    })
}
