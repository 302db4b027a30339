//! Forget end to end, on the demo CRM in PostgreSQL and its dialer in SQLite: a
//! forget by e-mail deletes the customer's rows from the `delete` tables
//! (reaching the dialer rows keyed by the phone on the customer's record),
//! rewrites the `anonymize` table's personal column (NOT NULL: a pseudonym),
//! leaves a customer sharing the postcode alone, deletes the customer's
//! archives, and leaves none of the customer's values in any table of the
//! customer databases or, decrypted, in the worker's own store. A completed
//! forget cannot be retried.

use std::time::Duration;

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
        "customer_row_batches",
        "customer_databases_done",
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
        store: privacy_worker::config::StoreArgs {
            database_url: app.settings.store.url.clone(),
            key_file: app.settings.key_file.clone(),
        },
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
    let show = RequestsAction::Show {
        id: access,
        reveal: true,
        reason: "audit".into(),
    };
    let shown = privacy_worker::operator::run(&args(show)).await.unwrap();
    assert!(
        shown.contains("(erased: the customer was forgotten)"),
        "{shown}"
    );
    app.stop().await;
    demo.drop().await;
}

/// The demo CRM's customers row of `id`, cell by cell.
async fn customer(demo: &DemoDatabases, id: i32) -> Vec<Option<String>> {
    use sqlx::Row as _;
    let mut crm = sqlx::PgConnection::connect(&demo.crm_url).await.unwrap();
    let row = sqlx::query(
        "SELECT full_name, email, phone, postcode, birth_date FROM customers WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&mut crm)
    .await
    .unwrap();
    crm.close().await.unwrap();
    (0..5).map(|i| row.get(i)).collect()
}

/// An LCM request with IsPseudonymize for the account, answered with its id.
async fn pseudonymize(app: &TestApp, account: &str, phone: &str) -> i64 {
    let body = crate::helpers::SAMPLE_REQUEST
        .replace("\"IsPseudonymize\": false", "\"IsPseudonymize\": true")
        .replace("934|1|475|0|0|44|59", account)
        .replace("14152347172", phone);
    let mut replies = app.replies().await;
    app.publish(
        "LCM.WebService.GetDataPrivacyStatusRequest",
        body.as_bytes(),
        crate::helpers::properties(Some(&format!("pseudonymize-{account}")), None),
    )
    .await;
    let reply = replies.take(1, Duration::from_secs(30)).await.remove(0);
    reply.response().expect("a request id").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pseudonymization_exports_the_originals_then_gives_one_value_one_pseudonym_everywhere() {
    let demo = DemoDatabases::load().await;
    let map = demo.inline_datamap(&demo.crm_url, |m| m);
    // A unique column stays unique: distinct values get distinct pseudonyms.
    let mut crm = sqlx::PgConnection::connect(&demo.crm_url).await.unwrap();
    sqlx::raw_sql("CREATE UNIQUE INDEX customers_email_idx ON customers (email)")
        .execute(&mut crm)
        .await
        .unwrap();
    crm.close().await.unwrap();
    let (app, exports) = exporting(Backend::Sqlite, &map).await;
    let before = dump(&demo).await;
    let john = pseudonymize(&app, "934|1|475|0|0|44|59", "14152347172").await;
    completed(&app, john).await;

    // The export has the values as they were.
    let file = std::fs::File::open(archive(exports.path(), john)).unwrap();
    let mut zip = zip::ZipArchive::new(file).unwrap();
    let mut customers = String::new();
    std::io::Read::read_to_string(
        &mut zip.by_name("crm.customers.csv").unwrap(),
        &mut customers,
    )
    .unwrap();
    assert!(customers.contains("John Smith,john.smith@example.com,14152347172"));

    // The databases have none of them: every personal cell is a pseudonym.
    let after = dump(&demo).await;
    let personal = [
        "john",
        "smith",
        "14152347172",
        "1-415-234-7172",
        "1980-04-02",
    ];
    assert!(
        found_in(&after, &personal).is_empty(),
        "{:?}",
        found_in(&after, &personal)
    );
    assert_eq!(after.len(), before.len(), "no row added or removed");
    let cells = customer(&demo, 1).await;
    assert!(cells.iter().flatten().all(|c| is_pseudonym(c)), "{cells:?}");
    let (name, phone, postcode) = (
        cells[0].clone().unwrap(),
        cells[2].clone().unwrap(),
        cells[3].clone().unwrap(),
    );
    // One value, one pseudonym: his phone in three tables of two databases, his
    // name in the customers and the invoices.
    let with = |needle: &str, prefix: &str| {
        after
            .iter()
            .filter(|r| r.starts_with(prefix) && r.contains(needle))
            .count()
    };
    assert_eq!(with(&phone, "calls"), 2, "{after:?}");
    assert_eq!(
        with(&phone, "leads"),
        2,
        "lead 1 holds the same digits (1-415-234-7172): the pseudonym is of the normalized value: {after:?}"
    );
    assert_eq!(with(&name, "invoices"), 2, "{after:?}");
    // Ahmed is untouched.
    assert_eq!(customer(&demo, 3).await[0].as_deref(), Some("Ahmed Khan"));

    // A second request of the tenant: Mary's postcode is John's, so is its pseudonym.
    let mary = pseudonymize(&app, "934|1|475|0|0|44|60", "+44 20 7946 0958").await;
    completed(&app, mary).await;
    let cells = customer(&demo, 2).await;
    assert_eq!(cells[3].as_deref(), Some(postcode.as_str()));
    assert_ne!(cells[0].as_deref(), Some(name.as_str()));
    assert!(cells[1].as_deref().is_some_and(is_pseudonym), "{cells:?}");
    let status = crate::lifecycle::Rcdp::new(&app)
        .await
        .status(john, "default")
        .await;
    assert_eq!(
        status["data"]["result"]["pseudonymized"]["crm.customers"], 1,
        "{status}"
    );
    app.stop().await;
    demo.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restored_from_a_backup_is_erased_again_by_ledger_replay_and_a_second_replay_changes_nothing()
 {
    let demo = DemoDatabases::load().await;
    let crate::helpers::TestDatabase::Postgres(crm, _) = &demo.crm else {
        unreachable!("the CRM is PostgreSQL")
    };
    let backup = format!("{crm}_backup");
    let admin = crate::helpers::postgres_admin_url();
    let mut pg = sqlx::PgConnection::connect(&admin).await.unwrap();
    // The seed's own connection may still be closing: PostgreSQL copies a
    // template nobody is connected to.
    let sql = format!("CREATE DATABASE {backup} TEMPLATE {crm}");
    for attempt in 1.. {
        match sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&mut pg)
            .await
        {
            Ok(_) => break,
            Err(e) if attempt < 50 && e.to_string().contains("other users") => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{sql}: {e}"),
        }
    }
    let dialer_backup = demo.dialer.with_extension("backup");
    std::fs::copy(&demo.dialer, &dialer_backup).unwrap();

    let map = demo.inline_datamap(&demo.crm_url, |m| m);
    let (mut app, _exports) = exporting(Backend::Sqlite, &map).await;
    let mut rcdp = Rcdp::new(&app).await;
    let forget = tracking_id(
        &rcdp
            .register("forget", "mobile", "+1 415 234 7172", "t1")
            .await,
    );
    drop(rcdp);
    completed(&app, forget).await;
    let forgotten = dump(&demo).await;
    assert!(found_in(&forgotten, &JOHN).is_empty());
    let (store_url, key_file) = (
        app.settings.store.url.clone(),
        app.settings.key_file.clone(),
    );
    app.stop_worker().await;

    // The backup comes back: so does John.
    let sql = format!("DROP DATABASE {crm} WITH (FORCE)");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut pg)
        .await
        .unwrap();
    let sql = format!("CREATE DATABASE {crm} TEMPLATE {backup}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut pg)
        .await
        .unwrap();
    std::fs::copy(&dialer_backup, &demo.dialer).unwrap();
    assert!(!found_in(&dump(&demo).await, &JOHN).is_empty(), "restored");

    let replay = || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_privacy-worker"));
        command
            .args(["ledger", "replay"])
            .env("DATABASE_URL", &store_url)
            .env("PRIVACY_DATAMAP", &map)
            .env("RUST_LOG", "warn");
        if let Some(key_file) = &key_file {
            command.env("PRIVACY_KEY_FILE", key_file);
        }
        let output = command.output().unwrap();
        let said = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{said}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        said
    };
    let said = replay();
    assert!(
        said.contains("crm.customers: 1 of 1 ledger rows deleted again"),
        "{said}"
    );
    assert_eq!(dump(&demo).await, forgotten, "erased again, the same way");
    let said = replay();
    assert!(
        said.contains("crm.customers: 0 of 1 ledger rows deleted again"),
        "{said}"
    );
    assert_eq!(
        dump(&demo).await,
        forgotten,
        "a second replay changes nothing"
    );

    let sql = format!("DROP DATABASE {backup} WITH (FORCE)");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut pg)
        .await
        .unwrap();
    pg.close().await.unwrap();
    app.stop().await;
    demo.drop().await;
}

/// The demo as `scripts/dev run` has it: the CRM in SQLite too (whose foreign
/// keys sqlx turns on), forgotten by the customer code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forget_by_customer_code_on_sqlite_databases_erases_the_customer() {
    let demo = DemoDatabases::load().await;
    let path = demo.dir.path().join("crm.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let mut crm = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    let seed =
        std::fs::read_to_string(format!("{}/demo/crm.sql", env!("CARGO_MANIFEST_DIR"))).unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(seed))
        .execute(&mut crm)
        .await
        .unwrap();
    let map = demo.inline_datamap(&format!("sqlite://{}", path.display()), |m| m);
    let (app, _exports) = exporting(Backend::Sqlite, &map).await;
    let mut rcdp = Rcdp::new(&app).await;
    let forget = tracking_id(&rcdp.register("forget", "customer", "C-1003", "t1").await);
    completed(&app, forget).await;
    let left: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM customers WHERE id = 3), \
         (SELECT count(*) FROM calls WHERE customer_id = 3)",
    )
    .fetch_one(&mut crm)
    .await
    .unwrap();
    assert_eq!(
        left,
        (2, 0, 0),
        "Ahmed and his call gone, John and Mary kept"
    );
    let status = rcdp.status(forget, "t1").await;
    assert_eq!(
        status["data"]["result"]["deleted"]["dialer.leads"], 1,
        "{status}"
    );
    crm.close().await.unwrap();
    app.stop().await;
    demo.drop().await;
}

/// A request of the customer still pending when the forget destroys the
/// worker's copies can never be fulfilled: it is failed, saying why, and the
/// change is announced like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_request_of_a_forgotten_customer_is_failed_saying_why() {
    use privacy_worker::fulfil::Ran;
    use privacy_worker::request::RequestStatus;
    let demo = DemoDatabases::load().await;
    let app = crate::helpers::spawn_app(Backend::Sqlite).await;
    let exports = tempfile::tempdir().unwrap();
    let runner = crate::fulfilment::runner(
        &app,
        &demo,
        &demo.crm_url,
        exports.path(),
        Duration::from_secs(60),
    )
    .await;
    let mut rcdp = Rcdp::new(&app).await;
    let access = tracking_id(&rcdp.register("access", "gcrid", "GCR-1001", "t1").await);
    // Another instance holds the access request, and will not finish it.
    let now = chrono::Utc::now() + chrono::TimeDelta::seconds(1);
    let timing = privacy_worker::store::Timing {
        now,
        due_before: now,
        lease_until: now + chrono::TimeDelta::seconds(600),
    };
    let held = app.store.claim_due("elsewhere", timing).await.unwrap();
    assert_eq!(held.map(|c| c.lease.request_id), Some(access));
    let forget = tracking_id(
        &rcdp
            .register("forget", "email", "john.smith@example.com", "t1")
            .await,
    );
    assert_eq!(
        runner.try_execute_task().await.unwrap(),
        Ran::Completed(forget)
    );

    let summary = app.store.request_summary(access).await.unwrap().unwrap();
    assert_eq!(summary.status, RequestStatus::Failed);
    let reasons = crate::helpers::audit_reasons(&app.store, access).await;
    assert!(
        reasons
            .iter()
            .any(|r| r == &format!("the customer was forgotten by request {forget}")),
        "{reasons:?}"
    );
    let announced = app.store.status_changes_of(access).await.unwrap();
    assert_eq!(
        announced.last().map(|c| c.status),
        Some(RequestStatus::Failed)
    );
    app.stop().await;
    demo.drop().await;
}
