//! The `via` graph: every reference resolves, no cycle, and the order tables are
//! visited in (a table reached by `via` after the table it points at; otherwise
//! as the map lists them).

use super::{DataMapError, TableMap, TableRef};

/// The tables in visiting order; an error for a `via` to a table not in the map
/// or a `via` cycle, naming the tables.
pub fn visiting_order(tables: Vec<TableMap>) -> Result<Vec<TableMap>, DataMapError> {
    let index = |table: &TableRef| tables.iter().position(|t| &t.table == table);
    // Each table's target, by index.
    let mut target = Vec::with_capacity(tables.len());
    for t in &tables {
        target.push(match &t.via {
            None => None,
            Some(via) => Some(index(&via.target).ok_or_else(|| {
                DataMapError(format!(
                    "table {}: via {} points at {}, which is not in the map",
                    t.table, via.column, via.target
                ))
            })?),
        });
    }
    for start in 0..tables.len() {
        let mut path = vec![start];
        let mut at = start;
        while let Some(next) = target[at] {
            if path.contains(&next) {
                let names: Vec<String> = path
                    .iter()
                    .chain([&next])
                    .map(|&i| tables[i].table.to_string())
                    .collect();
                return Err(DataMapError(format!("via cycle: {}", names.join(" -> "))));
            }
            path.push(next);
            at = next;
        }
    }
    // Depth-first: a table's target chain first, then the table.
    let mut placed = vec![false; tables.len()];
    let mut order = Vec::with_capacity(tables.len());
    for start in 0..tables.len() {
        let mut chain = vec![start];
        while let Some(next) = target[*chain.last().expect("not empty")] {
            chain.push(next);
        }
        for &i in chain.iter().rev() {
            if !placed[i] {
                placed[i] = true;
                order.push(i);
            }
        }
    }
    let mut tables: Vec<Option<TableMap>> = tables.into_iter().map(Some).collect();
    Ok(order
        .into_iter()
        .map(|i| tables[i].take().expect("placed once"))
        .collect())
}

#[cfg(test)]
mod tests {
    use crate::datamap::parse;

    const SPEC_MAP: &str = r#"
databases:
  crm:    { url_env: CRM_DATABASE_URL }
  dialer: { url: "sqlite://dialer.db" }
tables:
  - table: crm.calls
    key: [id]
    via: { customer_id: crm.customers.id }
    personal: [caller_number, notes]
  - table: crm.customers
    key: [id]
    match:
      account: account_number
      gcrid: gcr_id
      customer: customer_code
      email: email
      mobile: phone
    personal: [full_name, email, phone, birth_date]
    forget: delete
  - table: crm.invoices
    key: [id]
    via: { customer_id: crm.customers.id }
    personal: [billing_name]
    forget: anonymize
  - table: dialer.leads
    key: [lead_id]
    match: { mobile: msisdn }
    personal: [msisdn, first_name]
"#;

    fn names(text: &str) -> Vec<String> {
        let map = parse(text).unwrap();
        map.tables.iter().map(|t| t.table.to_string()).collect()
    }

    #[test]
    fn the_spec_s_map_parses_and_via_tables_come_after_their_targets() {
        assert_eq!(
            names(SPEC_MAP),
            ["crm.customers", "crm.calls", "crm.invoices", "dialer.leads"]
        );
        let map = parse(SPEC_MAP).unwrap();
        let invoices = &map.tables[2];
        assert_eq!(invoices.forget, crate::datamap::Forget::Anonymize);
        assert_eq!(invoices.via.as_ref().unwrap().target_column, "id");
        assert_eq!(map.tables[0].matches.len(), 5);
    }

    fn refused(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_via_cycle_a_missing_target_and_an_unreachable_table_are_refused_by_name() {
        let cycle = r#"
databases: { a: { url: "sqlite://a.db" } }
tables:
  - { table: a.x, key: [id], via: { y_id: a.y.id } }
  - { table: a.y, key: [id], via: { x_id: a.x.id } }
"#;
        assert_eq!(refused(cycle), "data map: via cycle: a.x -> a.y -> a.x");
        let missing = r#"
databases: { a: { url: "sqlite://a.db" } }
tables:
  - { table: a.x, key: [id], via: { y_id: a.y.id } }
"#;
        assert_eq!(
            refused(missing),
            "data map: table a.x: via y_id points at a.y, which is not in the map"
        );
        let unreachable = r#"
databases: { a: { url: "sqlite://a.db" } }
tables:
  - { table: a.x, key: [id], personal: [name] }
"#;
        assert!(refused(unreachable).contains("table a.x: is reachable from no identifier"));
    }

    #[test]
    fn misspellings_and_bad_values_are_refused_naming_table_and_column() {
        let cases = [
            (
                "matches: { email: e }",
                "table a.x: unknown field `matches`",
            ),
            (
                "match: { phone: p }",
                "table a.x: match type \"phone\" is not one of",
            ),
            (
                "match: { email: \"e/drop\" }",
                "table a.x: match column \"e/drop\": a name must not",
            ),
            (
                "match: { email: id }",
                "table a.x: key column id is also a match column",
            ),
            (
                "match: { email: e }\n    forget: erase",
                "table a.x: forget \"erase\"",
            ),
            (
                "match: { email: e }\n    personal: [id]",
                "table a.x: key column id cannot be personal",
            ),
        ];
        for (fields, expected) in cases {
            let text = format!(
                "databases: {{ a: {{ url: \"sqlite://a.db\" }} }}\ntables:\n  - table: a.x\n    key: [id]\n    {fields}\n"
            );
            let error = refused(&text);
            assert!(error.contains(expected), "{fields}: {error}");
        }
        let no_db = "databases: { a: { url: x } }\ntables:\n  - { table: b.x, key: [id], match: { email: e } }\n";
        assert!(refused(no_db).contains("table b.x: database b is not in `databases`"));
    }
}
