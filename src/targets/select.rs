//! Which rows of a table are the customer's, as SQL: a [`Selection`] (the
//! identifiers its match columns hold, the values its via column points at,
//! keys), turned into a WHERE clause with every value bound (or, for `COPY`,
//! written as a literal), and the SQL side of the one normalization of
//! identifiers. Names are the data map's (checked), quoted.

use sqlx::Row;

use super::binds::{Bind, postgres_query, sqlite_query};
use super::{Pool, TargetError, Targets, classify};
use crate::crypto::pseudonym::PREFIX;
use crate::datamap::TableMap;
use crate::request::IdentifierType;

/// An identifier a match column is compared with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Probe {
    /// Its type: which match column it is compared with.
    pub kind: IdentifierType,
    /// The value, normalized ([`IdentifierType::normalize`]) unless `exact`.
    pub value: String,
    /// Compared as stored, not normalized: a pseudonym, which an earlier
    /// pseudonymization wrote over the identifier.
    pub exact: bool,
}

impl Probe {
    /// A normalized identifier.
    pub fn normalized(kind: IdentifierType, value: String) -> Self {
        Self {
            kind,
            value,
            exact: false,
        }
    }
}

/// Which rows of a table are the customer's: the rows any of its parts
/// selects (none when all are empty).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Rows whose match columns hold one of these identifiers.
    pub probes: Vec<Probe>,
    /// Rows whose via column holds one of these values (as text).
    pub via: Vec<String>,
    /// Rows with one of these keys (as text, in the order of the map's `key`).
    pub keys: Vec<Vec<String>>,
    /// ... but none whose match columns hold one of these.
    pub except: Vec<Probe>,
}

impl Selection {
    /// The rows holding one of `probes`.
    pub fn probes(probes: Vec<Probe>) -> Self {
        Self {
            probes,
            ..Self::default()
        }
    }

    /// The rows with one of `keys`.
    pub fn keys(keys: Vec<Vec<String>>) -> Self {
        Self {
            keys,
            ..Self::default()
        }
    }
}

/// A name spliced into SQL, quoted, a quote in it doubled: any name the
/// database allows.
pub(super) fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// What the SQL of a customer database can say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    /// PostgreSQL; `icu` when it has the ICU root collation, which lowers
    /// text by Unicode's rules whatever the database's own collation.
    Postgres { icu: bool },
    /// SQLite, with the worker's collations registered on every connection.
    Sqlite,
}

/// SQLite collations the worker registers on customer connections: they
/// compare two texts by [`IdentifierType::normalize`], which SQLite's own
/// `lower()` (ASCII only) cannot.
pub(super) const SQLITE_EMAIL: &str = "privacy_email";
/// See [`SQLITE_EMAIL`]: a mobile number by its digits.
pub(super) const SQLITE_MOBILE: &str = "privacy_mobile";

/// Orders two texts by their normalized forms, for a SQLite collation.
pub(super) fn collate(kind: IdentifierType, a: &str, b: &str) -> std::cmp::Ordering {
    kind.normalize(a).cmp(&kind.normalize(b))
}

/// The SQL expression (and the operator's left side) that compares a column
/// holding an identifier of `kind` the way [`IdentifierType::normalize`]
/// does: trimmed; e-mail in Unicode lower case; a mobile number by its
/// digits. An `exact` probe compares the stored text as it is.
fn normalized(kind: IdentifierType, column: &str, dialect: Dialect, exact: bool) -> String {
    let text = format!("CAST({} AS TEXT)", quoted(column));
    if exact {
        return text;
    }
    match (kind, dialect) {
        (IdentifierType::Email, Dialect::Sqlite) => format!("{text} COLLATE {SQLITE_EMAIL}"),
        (IdentifierType::Mobile, Dialect::Sqlite) => format!("{text} COLLATE {SQLITE_MOBILE}"),
        (_, Dialect::Sqlite) => format!("trim({text}, char(32, 9, 13, 10))"),
        (IdentifierType::Email, Dialect::Postgres { icu }) => {
            let collate = if icu { " COLLATE \"und-x-icu\"" } else { "" };
            format!("lower(btrim({text}, E' \\t\\r\\n'){collate})")
        }
        (IdentifierType::Mobile, Dialect::Postgres { .. }) => {
            format!("regexp_replace({text}, '[^0-9]', '', 'g')")
        }
        (_, Dialect::Postgres { .. }) => format!("btrim({text}, E' \\t\\r\\n')"),
    }
}

/// How a WHERE clause carries its values.
pub(super) enum Mark<'a> {
    /// As bind parameters, numbered from `$1` (every statement but `COPY`).
    Bind,
    /// Written as literals by this function (`COPY`, which takes no parameters).
    Literal(&'a dyn Fn(&str) -> Result<String, TargetError>),
}

/// What a WHERE clause needs to know of its table's database: its dialect,
/// and the PostgreSQL types of the via column and of a one-column key, when
/// they can be compared in their own type.
#[derive(Debug, Clone, Copy)]
pub(super) struct Typed<'a> {
    pub dialect: Dialect,
    pub via: Option<&'a str>,
    pub key: Option<&'a str>,
}

/// Builds a WHERE clause, binding values (or writing literals) in order.
struct Clause<'m, 'v> {
    mark: &'m Mark<'m>,
    values: &'v mut Vec<Bind>,
}

impl Clause<'_, '_> {
    fn value(&mut self, value: &str) -> Result<String, TargetError> {
        match self.mark {
            Mark::Bind => {
                self.values.push(Bind::One(Some(value.to_owned())));
                Ok(format!("${}", self.values.len()))
            }
            Mark::Literal(literal) => literal(value),
        }
    }

    fn list<'i>(&mut self, items: impl Iterator<Item = &'i String>) -> Result<String, TargetError> {
        let marks = items
            .map(|v| self.value(v))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(marks.join(", "))
    }

    /// A text array of `items` cast to `sql_type[]`, one parameter.
    fn array(&mut self, items: &[String], sql_type: &str) -> Result<String, TargetError> {
        let array = match self.mark {
            Mark::Bind => {
                self.values
                    .push(Bind::Many(items.iter().cloned().map(Some).collect()));
                format!("${}", self.values.len())
            }
            Mark::Literal(literal) => {
                let items = items
                    .iter()
                    .map(|v| literal(v))
                    .collect::<Result<Vec<_>, _>>()?;
                format!("ARRAY[{}]::text[]", items.join(", "))
            }
        };
        Ok(format!("CAST({array} AS {}[])", quoted(sql_type)))
    }

    /// Rows whose match columns hold one of `probes`, as clauses to OR.
    fn probes(
        &mut self,
        table: &TableMap,
        probes: &[Probe],
        dialect: Dialect,
    ) -> Result<Vec<String>, TargetError> {
        let mut clauses = Vec::new();
        for (kind, column) in &table.matches {
            for exact in [false, true] {
                let mut of_kind = probes
                    .iter()
                    .filter(|p| p.kind == *kind && p.exact == exact)
                    .map(|p| &p.value)
                    .peekable();
                if of_kind.peek().is_none() {
                    continue;
                }
                let marks = self.list(&mut of_kind)?;
                let left = normalized(*kind, column, dialect, exact);
                clauses.push(format!("{left} IN ({marks})"));
            }
        }
        Ok(clauses)
    }

    /// Rows with one of `keys`: on PostgreSQL a one-column key in its own
    /// type (its index serves), else every key as one JSON list of lists.
    fn keys(
        &mut self,
        table: &TableMap,
        keys: &[Vec<String>],
        typed: Typed<'_>,
    ) -> Result<String, TargetError> {
        if let ([column], Some(sql_type)) = (table.key.as_slice(), typed.key) {
            let firsts: Vec<String> = keys.iter().map(|k| k[0].clone()).collect();
            let array = self.array(&firsts, sql_type)?;
            return Ok(format!("{} = ANY({array})", quoted(column)));
        }
        let json = serde_json::to_string(keys).expect("texts serialise");
        let json = self.value(&json)?;
        let columns: Vec<String> = table
            .key
            .iter()
            .map(|c| format!("CAST({} AS TEXT)", quoted(c)))
            .collect();
        let (cells, from): (Vec<String>, String) = match typed.dialect {
            Dialect::Postgres { .. } => (
                (0..table.key.len()).map(|i| format!("k ->> {i}")).collect(),
                format!("jsonb_array_elements(CAST({json} AS jsonb)) AS k"),
            ),
            Dialect::Sqlite => (
                (0..table.key.len())
                    .map(|i| format!("json_extract(value, '$[{i}]')"))
                    .collect(),
                format!("json_each({json})"),
            ),
        };
        Ok(format!(
            "({}) IN (SELECT {} FROM {from})",
            columns.join(", "),
            cells.join(", ")
        ))
    }
}

/// The WHERE clause of a selection and the values to bind to it.
pub(super) fn where_clause(
    table: &TableMap,
    selection: &Selection,
    typed: Typed<'_>,
    mark: Mark<'_>,
) -> Result<(String, Vec<Bind>), TargetError> {
    let mut values = Vec::new();
    let mut clause = Clause {
        mark: &mark,
        values: &mut values,
    };
    let mut clauses = clause.probes(table, &selection.probes, typed.dialect)?;
    if let (false, Some(via)) = (selection.via.is_empty(), &table.via) {
        let column = quoted(&via.column);
        clauses.push(match typed.via {
            // In its own type, as one array: the index serves, and there
            // is no limit on how many values.
            Some(sql_type) => format!(
                "{column} = ANY({})",
                clause.array(&selection.via, sql_type)?
            ),
            None => format!(
                "CAST({column} AS TEXT) IN ({})",
                clause.list(selection.via.iter())?
            ),
        });
    }
    if !selection.keys.is_empty() {
        clauses.push(clause.keys(table, &selection.keys, typed)?);
    }
    if clauses.is_empty() {
        return Ok(("1 = 0".to_owned(), values));
    }
    let mut sql = format!("({})", clauses.join(" OR "));
    let except = clause.probes(table, &selection.except, typed.dialect)?;
    if !except.is_empty() {
        // NULL compares as unknown: a row holding none is not excepted.
        sql = format!("{sql} AND NOT COALESCE(({}), FALSE)", except.join(" OR "));
    }
    Ok((sql, values))
}

impl Targets {
    /// How many rows the selection selects.
    pub async fn count(&self, table: &TableMap, selection: &Selection) -> Result<u64, TargetError> {
        self.count_where(table, selection, None).await
    }

    /// How many selected rows hold a personal value that is not a
    /// pseudonym: what an anonymization must leave none of.
    pub async fn count_personal(
        &self,
        table: &TableMap,
        selection: &Selection,
    ) -> Result<u64, TargetError> {
        if table.personal.is_empty() {
            return Ok(0);
        }
        let held: Vec<String> = table
            .personal
            .iter()
            .map(|c| {
                let c = quoted(c);
                format!("({c} IS NOT NULL AND CAST({c} AS TEXT) NOT LIKE '{PREFIX}%')")
            })
            .collect();
        let held = held.join(" OR ");
        self.count_where(table, selection, Some(&held)).await
    }

    async fn count_where(
        &self,
        table: &TableMap,
        selection: &Selection,
        and: Option<&str>,
    ) -> Result<u64, TargetError> {
        let typed = self.typed(&table.table)?;
        let (clause, values) = where_clause(table, selection, typed, Mark::Bind)?;
        let and = and.map(|c| format!(" AND ({c})")).unwrap_or_default();
        let sql = format!(
            "SELECT count(*) FROM {} WHERE ({clause}){and}",
            quoted(&table.table.table)
        );
        let fail = |e| classify(&table.table.database, e);
        let n: i64 = match self.pool(&table.table.database)? {
            Pool::Postgres(pool) => {
                let row = postgres_query(sql, values).fetch_one(pool).await;
                row.and_then(|r| r.try_get(0)).map_err(fail)?
            }
            Pool::Sqlite(pool) => {
                let row = sqlite_query(sql, values).fetch_one(pool).await;
                row.and_then(|r| r.try_get(0)).map_err(fail)?
            }
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
