//! Forget end to end, on the demo CRM in PostgreSQL and its dialer in SQLite: a
//! forget by e-mail deletes the customer's rows from the `delete` tables
//! (reaching the dialer rows keyed by the phone on the customer's record),
//! rewrites the `anonymize` table's personal column (NOT NULL: a pseudonym),
//! leaves a customer sharing the postcode alone, deletes the customer's
//! archives, and leaves none of the customer's values in any table of the
//! customer databases or, decrypted, in the worker's own store. A completed
//! forget cannot be retried.

use privacy_worker::config::{RequestsAction, RequestsArgs};
use privacy_worker::crypto::pseudonym::is_pseudonym;
use privacy_worker::crypto::{IDENTIFIER_CONTEXT, Keys, PERSONAL_CONTEXT, Sealed};
use sqlx::Connection as _;

use crate::access::{archive, completed, exporting};
use crate::datamap::DemoDatabases;
use crate::helpers::{Backend, TestApp};
use crate::lifecycle::{Rcdp, tracking_id};

/// John Smith's personal values in the demo (his postcode is Mary's too).
pub const JOHN: [&str; 7] = [
    "john",
    "smith",
    "14152347172",
    "1-415-234-7172",
    "1980-04-02",
    "gcr-1001",
    "c-1001",
];

/// Every row of every table of the customer databases, as text, in order.
pub async fn dump(demo: &DemoDatabases) -> Vec<String> {
    let mut rows = Vec::new();
    let mut crm = sqlx::PgConnection::connect(&demo.crm_url).await.unwrap();
    for table in [
        "customers",
        "calls",
        "invoices",
        "campaigns",
        "campaign_members",
    ] {
        let sql = format!("SELECT '{table}' || CAST(t AS TEXT) FROM {table} t ORDER BY 1");
        let found: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut crm)
            .await
            .unwrap();
        rows.extend(found);
    }
    crm.close().await.unwrap();
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&demo.dialer);
    let mut dialer = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    let leads: Vec<String> = sqlx::query_scalar(
        "SELECT 'leads(' || lead_id || ',' || msisdn || ',' || ifnull(first_name, '') || ',' \
         || campaign || ',' || ifnull(last_dial, '') || ',' || ifnull(outcome, '') || ')' \
         FROM leads ORDER BY lead_id",
    )
    .fetch_all(&mut dialer)
    .await
    .unwrap();
    dialer.close().await.unwrap();
    rows.extend(leads);
    rows
}

/// The values of `values` found (case-insensitively) in `texts`.
pub fn found_in(texts: &[String], values: &[&str]) -> Vec<String> {
    texts
        .iter()
        .filter(|t| values.iter().any(|v| t.to_lowercase().contains(v)))
        .cloned()
        .collect()
}

/// Everything the worker's PostgreSQL store holds, decrypted where it can be.
async fn store_texts(app: &TestApp) -> Vec<String> {
    let keys = Keys::load(app.settings.key_file.as_deref().unwrap()).unwrap();
    let mut store = sqlx::PgConnection::connect(&app.settings.store.url)
        .await
        .unwrap();
    let mut texts = Vec::new();
    for table in [
        "privacy_requests",
        "inbound_messages",
        "request_events",
        "status_outbox",
        "customer_rows",
    ] {
        let sql = format!("SELECT CAST(t AS TEXT) FROM {table} t");
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut store)
            .await
            .unwrap();
        texts.extend(rows);
    }
    let sealed: Vec<(Vec<u8>, String)> =
        sqlx::query_as("SELECT identifier_value, key_id FROM privacy_requests")
            .fetch_all(&mut store)
            .await
            .unwrap();
    for (bytes, key_id) in sealed.into_iter().filter(|(_, k)| k != "shredded") {
        let plain = keys
            .open(IDENTIFIER_CONTEXT, &Sealed { key_id, bytes })
            .unwrap();
        texts.push(String::from_utf8(plain).unwrap());
    }
    let sealed: Vec<(Vec<u8>, String)> = sqlx::query_as(
        "SELECT personal_data, personal_key_id FROM inbound_messages WHERE personal_data IS NOT NULL",
    )
    .fetch_all(&mut store)
    .await
    .unwrap();
    for (bytes, key_id) in sealed {
        let plain = keys
            .open(PERSONAL_CONTEXT, &Sealed { key_id, bytes })
            .unwrap();
        texts.push(String::from_utf8(plain).unwrap());
    }
    store.close().await.unwrap();
    texts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forget_erases_the_customer_everywhere_and_leaves_the_others() {
    let demo = DemoDatabases::load().await;
    let map = demo.inline_datamap(&demo.crm_url, |m| m);
    let (app, exports) = exporting(Backend::Postgres, &map).await;
    let mut rcdp = Rcdp::new(&app).await;
    let access = tracking_id(&rcdp.register("access", "gcrid", "GCR-1001", "t1").await);
    completed(&app, access).await;
    assert!(archive(exports.path(), access).exists());
    let mary = tracking_id(&rcdp.register("access", "gcrid", "GCR-1002", "t1").await);
    completed(&app, mary).await;
    let before = dump(&demo).await;

    let forget = tracking_id(
        &rcdp
            .register("forget", "email", "John.Smith@Example.com", "t1")
            .await,
    );
    completed(&app, forget).await;
    let status = rcdp.status(forget, "t1").await;
    let result = &status["data"]["result"];
    assert_eq!(result["deleted"]["crm.customers"], 1, "{status}");
    assert_eq!(result["deleted"]["crm.calls"], 2, "{status}");
    assert_eq!(result["deleted"]["crm.campaign_members"], 2, "{status}");
    assert_eq!(
        result["deleted"]["dialer.leads"], 2,
        "by his phone: {status}"
    );
    assert_eq!(result["anonymized"]["crm.invoices"], 2, "{status}");

    let after = dump(&demo).await;
    assert!(
        found_in(&after, &JOHN).is_empty(),
        "{:?}",
        found_in(&after, &JOHN)
    );
    // The invoices stay, their NOT NULL billing name a pseudonym, the amounts kept.
    let invoices: Vec<&String> = after.iter().filter(|r| r.starts_with("invoices")).collect();
    assert_eq!(invoices.len(), 3, "{invoices:?}");
    for (id, row) in [(1, invoices[0]), (2, invoices[1])] {
        let cells: Vec<&str> = row["invoices(".len()..row.len() - 1].split(',').collect();
        assert_eq!(cells[0], id.to_string());
        assert_eq!(cells[1], "", "the link to the deleted customer goes: {row}");
        assert!(is_pseudonym(cells[3]), "{row}");
        assert_eq!(cells[4], "4599");
    }
    // Everything that was not John's is as it was (Mary shares his postcode).
    let untouched: Vec<&String> = before
        .iter()
        .filter(|r| found_in(&[(*r).clone()], &JOHN).is_empty())
        .filter(|r| !r.starts_with("invoices") && !r.starts_with("campaign_members"))
        .collect();
    for row in untouched {
        assert!(after.contains(row), "{row} changed or went");
    }
    assert!(
        after
            .iter()
            .any(|r| r.contains("Mary Jones") && r.contains("SW1A 1AA"))
    );
    assert_eq!(after.iter().filter(|r| r.starts_with("leads")).count(), 2);

    // The worker's own copies: his archive is deleted, and nothing it keeps,
    // decrypted, names him; Mary's request still does name her.
    assert!(
        !archive(exports.path(), access).exists(),
        "his archive is gone"
    );
    assert!(archive(exports.path(), mary).exists(), "hers is not");
    let texts = store_texts(&app).await;
    assert!(
        found_in(&texts, &JOHN).is_empty(),
        "{:?}",
        found_in(&texts, &JOHN)
    );
    assert!(!found_in(&texts, &["gcr-1002"]).is_empty());

    // Once completed, nothing brings it back.
    let args = |action| RequestsArgs {
        database_url: app.settings.store.url.clone(),
        key_file: app.settings.key_file.clone(),
        operator: "tester".into(),
        response_deadline: std::time::Duration::from_secs(30 * 86_400),
        action,
    };
    let retry = RequestsAction::Retry {
        id: forget,
        reason: "again".into(),
    };
    let refused = privacy_worker::operator::run(&args(retry)).await;
    assert!(refused.is_err(), "{refused:?}");
    app.stop().await;
    demo.drop().await;
}
