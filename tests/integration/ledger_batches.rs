//! The discovered keys moved from one row each (`customer_rows`, migration
//! 0005) into batches (`customer_row_batches`, 0006): a store saved before the
//! move gives the same discovery and the same erasure ledger after it.

use std::collections::BTreeSet;

use privacy_worker::request::RowAction;
use privacy_worker::store::FoundRows;

use crate::helpers::{Backend, store_at_migration, test_env_over};
use crate::on_both_backends;

on_both_backends!(keys_saved_one_row_each_are_the_same_discovery_and_ledger_in_batches);

/// A store at migration 0005 with a forget's keys saved a row each, its calls'
/// rows not in one run, and only the CRM done.
async fn a_store_before_batches(url: &str) {
    let now = chrono::Utc::now().to_rfc3339();
    let bytes = if url.starts_with("sqlite:") {
        "X'00'"
    } else {
        "'\\x00'::bytea"
    };
    let mut sql = vec![format!(
        "INSERT INTO privacy_requests (id, tenant, flow, kind, pseudonymize, identifier_type, \
         identifier_index, identifier_value, key_id, status, created_at, updated_at, due_at, \
         related_requests) VALUES (10000, 't1', 'rcdp', 'forget', false, 'gcrid', 'ix', {bytes}, \
         'k1', 'in_progress', '{now}', '{now}', '{now}', '[10000]')"
    )];
    let rows = [
        ("crm", "calls", "delete", r#"["7"]"#),
        ("crm", "calls", "delete", r#"["8"]"#),
        ("crm", "invoices", "anonymize", r#"["3"]"#),
        ("crm", "calls", "delete", r#"["9"]"#),
        ("dialer", "leads", "delete", r#"["L-1"]"#),
    ];
    for (db, table, action, key) in rows {
        sql.push(format!(
            "INSERT INTO customer_rows (request_id, db_name, table_name, action, row_key) \
             VALUES (10000, '{db}', '{table}', '{action}', '{key}')"
        ));
    }
    sql.push(format!(
        "INSERT INTO customer_databases_done (request_id, db_name, done_at) VALUES (10000, 'crm', '{now}')"
    ));
    store_at_migration(url, 5, sql).await;
}

fn rows(database: &str, table: &str, action: RowAction, keys: &[&str]) -> FoundRows {
    FoundRows {
        database: database.into(),
        table: table.into(),
        action,
        keys: keys.iter().map(|k| vec![(*k).to_owned()]).collect(),
    }
}

async fn keys_saved_one_row_each_are_the_same_discovery_and_ledger_in_batches(backend: Backend) {
    let app = test_env_over(backend, a_store_before_batches).await;
    let calls = rows("crm", "calls", RowAction::Delete, &["7", "8", "9"]);
    let invoices = rows("crm", "invoices", RowAction::Anonymize, &["3"]);
    let leads = rows("dialer", "leads", RowAction::Delete, &["L-1"]);

    let discovery = app.store.discovery(10000).await.unwrap().expect("saved");
    assert_eq!(discovery.related, vec![10000]);
    assert_eq!(discovery.rows, vec![calls.clone(), invoices.clone(), leads]);
    assert_eq!(discovery.done, BTreeSet::from(["crm".to_owned()]));

    let ledger = app.store.ledger(None, None).await.unwrap();
    let entries: Vec<(i64, &str, &FoundRows)> = ledger
        .iter()
        .map(|e| (e.request_id, e.tenant.as_str(), &e.rows))
        .collect();
    assert_eq!(
        entries,
        vec![(10000, "t1", &calls), (10000, "t1", &invoices)],
        "the CRM's rows, not the dialer's (not done)"
    );
    app.stop().await;
}
