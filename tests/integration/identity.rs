//! Who the customer is (SPEC "Who the customer is"), end to end on the demo
//! CRM in PostgreSQL (or SQLite) and its dialer in SQLite, with realistic
//! additions: a household sharing a phone is never merged (access and forget),
//! a forget by the shared phone is refused and changes nothing, identifiers
//! stored with spaces, Unicode capitals or a formatted phone are found, a
//! pseudonymized customer is still found and forgotten, a forget in one tenant
//! shreds an earlier LCM request of another, nothing found is said, a database
//! restricted to other tenants is never read, and an erasure undone by a
//! trigger fails `erasure_incomplete` until a retry finishes it.

use std::time::Duration;

use privacy_worker::config::{RequestsAction, RequestsArgs, StoreArgs};
use privacy_worker::request::RequestStatus;
use privacy_worker::store::RequestSummary;
use serde_json::Value;
use sqlx::Connection as _;

use crate::access::{archive, completed, exporting, unzip};
use crate::datamap::DemoDatabases;
use crate::forget::dump;
use crate::helpers::{Backend, SAMPLE_REQUEST, TestApp, properties};
use crate::lifecycle::{Rcdp, tracking_id};

/// Jane Smith, John's household: his phone, her own e-mail, a call and an invoice.
const JANE: &str = "INSERT INTO customers (id, account_number, gcr_id, customer_code, full_name, \
    email, phone, postcode, birth_date) VALUES (4, '934|1|475|0|0|44|62', 'GCR-1004', 'C-1004', \
    'Jane Smith', 'jane.smith@example.com', '14152347172', 'SW1A 1AA', '1982-06-30'); \
    INSERT INTO calls (id, customer_id, started_at, caller_number, agent_id, notes) VALUES \
    (5, 4, '2026-11-21T10:00:00Z', '14152347172', 'lena', 'Jane asked about her own contract'); \
    INSERT INTO invoices (id, customer_id, issued_on, billing_name, amount_cents) VALUES \
    (4, 4, '2026-11-30', 'Jane Smith', 1999);";

async fn crm(demo: &DemoDatabases, sql: &str) {
    let mut crm = sqlx::PgConnection::connect(&demo.crm_url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut crm)
        .await
        .unwrap();
    crm.close().await.unwrap();
}

/// Waits until request `id` has ended (completed or failed; 20 s at most).
async fn ended(app: &TestApp, id: i64) -> RequestSummary {
    for _ in 0..200 {
        let summary = app.store.request_summary(id).await.unwrap().unwrap();
        if matches!(
            summary.status,
            RequestStatus::Completed | RequestStatus::Failed
        ) {
            return summary;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("request {id} did not end within 20 s");
}

fn requests_args(app: &TestApp, action: RequestsAction) -> RequestsArgs {
    RequestsArgs {
        store: StoreArgs {
            database_url: app.settings.store.url.clone(),
            key_file: app.settings.key_file.clone(),
        },
        operator: "tester".into(),
        response_deadline: Duration::from_secs(30 * 86_400),
        action,
    }
}

/// `requests show --reveal`: whether the request's identifier is erased.
async fn erased(app: &TestApp, id: i64) -> bool {
    let show = RequestsAction::Show {
        id,
        reveal: true,
        reason: "audit".into(),
    };
    let shown = privacy_worker::operator::run(&requests_args(app, show))
        .await
        .unwrap();
    shown.contains("(erased: the customer was forgotten)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_request_of_one_of_a_household_exports_only_that_person_s_rows() {
    let demo = DemoDatabases::load().await;
    crm(&demo, JANE).await;
    let map = demo.inline_datamap(&demo.crm_url, |m| m);
    let (app, exports) = exporting(Backend::Sqlite, &map).await;
    let mut rcdp = Rcdp::new(&app).await;
    let jane = tracking_id(
        &rcdp
            .register("access", "email", "Jane.Smith@example.com", "t1")
            .await,
    );
    completed(&app, jane).await;
    let files = unzip(&archive(exports.path(), jane));
    let lines = |name: &str| files[name].lines().skip(1).collect::<Vec<_>>();
    assert_eq!(lines("crm.customers.csv").len(), 1, "{files:?}");
    assert!(lines("crm.customers.csv")[0].contains("Jane Smith"));
    assert_eq!(lines("crm.calls.csv").len(), 1, "her call alone: {files:?}");
    assert_eq!(lines("crm.invoices.csv").len(), 1, "{files:?}");
    assert!(
        lines("dialer.leads.csv").is_empty(),
        "John's leads are reached only through the shared phone: {files:?}"
    );
    let all: String = files.values().cloned().collect();
    assert!(!all.contains("John"), "nothing of John: {all}");
    assert!(!all.contains("November invoice"), "{all}");
    let status = rcdp.status(jane, "t1").await;
    let result = &status["data"]["result"];
    assert_eq!(result["found"], true, "{status}");
    assert_eq!(
        result["skipped"]["dialer.leads"],
        serde_json::json!({"rows": 2, "why": "shared_identifier"}),
        "{status}"
    );
    assert_eq!(result["skipped"]["crm.customers"]["rows"], 1, "{status}");
    app.stop().await;
    demo.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forget_of_one_of_a_household_leaves_the_other_and_a_forget_by_the_shared_phone_is_refused()
 {
    let demo = DemoDatabases::load().await;
    crm(&demo, JANE).await;
    let map = demo.inline_datamap(&demo.crm_url, |m| m);
    let (app, exports) = exporting(Backend::Postgres, &map).await;
    let mut rcdp = Rcdp::new(&app).await;
    let jane = tracking_id(&rcdp.register("access", "gcrid", "GCR-1004", "t1").await);
    completed(&app, jane).await;
    let before = dump(&demo).await;

    // By the phone both hold: whose data is it? Nothing is done.
    let shared = tracking_id(
        &rcdp
            .register("forget", "mobile", "+1 415 234 7172", "t1")
            .await,
    );
    let summary = ended(&app, shared).await;
    assert_eq!(summary.status, RequestStatus::Failed, "{summary:?}");
    let status = rcdp.status(shared, "t1").await;
    assert_eq!(
        status["data"]["errorCode"], "ambiguous_identifier",
        "{status}"
    );
    let error = status["data"]["error"].as_str().unwrap();
    assert!(error.contains("crm.customers"), "{error}");
    assert!(!error.contains("415"), "no value: {error}");
    assert_eq!(dump(&demo).await, before, "nothing changed");

    let john = tracking_id(&rcdp.register("forget", "gcrid", "GCR-1001", "t1").await);
    completed(&app, john).await;
    let after = dump(&demo).await;
    let janes: Vec<&String> = before.iter().filter(|r| r.contains("Jane")).collect();
    assert_eq!(janes.len(), 3, "{before:?}");
    for row in janes {
        assert!(after.contains(row), "Jane's {row} changed or went");
    }
    assert!(!after.iter().any(|r| r.contains("John Smith")), "{after:?}");
    assert!(
        archive(exports.path(), jane).exists(),
        "Jane's export is kept"
    );
    assert!(!erased(&app, jane).await, "Jane's request is not shredded");
    let janes_request = app.store.request_summary(jane).await.unwrap().unwrap();
    assert_eq!(janes_request.status, RequestStatus::Completed);
    let status = rcdp.status(john, "t1").await;
    let result = &status["data"]["result"];
    assert_eq!(result["deleted"]["crm.customers"], 1, "{status}");
    assert_eq!(
        result["deleted"]["dialer.leads"], 0,
        "his leads carry only the shared phone: {status}"
    );
    assert_eq!(result["skipped"]["dialer.leads"]["rows"], 2, "{status}");
    assert_eq!(result["verified"]["crm"], true, "{status}");
    assert_eq!(result["verified"]["dialer"], true, "{status}");
    app.stop().await;
    demo.drop().await;
}

/// The demo CRM in SQLite, with `edit` applied; returns its URL.
async fn sqlite_crm(demo: &DemoDatabases, edit: &str) -> String {
    let path = demo.dir.path().join("crm.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let mut crm = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    let seed =
        std::fs::read_to_string(format!("{}/demo/crm.sql", env!("CARGO_MANIFEST_DIR"))).unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(seed + edit))
        .execute(&mut crm)
        .await
        .unwrap();
    crm.close().await.unwrap();
    format!("sqlite://{}", path.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identifiers_stored_with_spaces_unicode_capitals_or_a_formatted_phone_are_found_and_erased()
{
    let demo = DemoDatabases::load().await;
    // PostgreSQL: a trailing space.
    crm(
        &demo,
        "UPDATE customers SET email = 'john.smith@example.com ' WHERE id = 1",
    )
    .await;
    let map = demo.inline_datamap(&demo.crm_url, |m| m);
    let (app, exports) = exporting(Backend::Sqlite, &map).await;
    let mut rcdp = Rcdp::new(&app).await;
    let john = tracking_id(
        &rcdp
            .register("access", "email", "john.smith@example.com", "t1")
            .await,
    );
    completed(&app, john).await;
    let files = unzip(&archive(exports.path(), john));
    assert_eq!(files["crm.customers.csv"].lines().count(), 2, "{files:?}");
    app.stop().await;

    // SQLite: Unicode capitals in an e-mail, words around a phone.
    let url = sqlite_crm(
        &demo,
        "UPDATE customers SET email = 'Élodie.Dupont@Exemple.fr', \
         phone = '+44 20 7946 0958 (mob)' WHERE id = 2;",
    )
    .await;
    let map = demo.inline_datamap(&url, |m| m);
    let (app, exports) = exporting(Backend::Sqlite, &map).await;
    let mut rcdp = Rcdp::new(&app).await;
    for (param, value) in [
        ("email", "élodie.dupont@exemple.fr"),
        ("mobile", "+44 20 7946 0958"),
    ] {
        let mary = tracking_id(&rcdp.register("access", param, value, "t1").await);
        completed(&app, mary).await;
        let files = unzip(&archive(exports.path(), mary));
        assert!(
            files["crm.customers.csv"].contains("Mary Jones"),
            "{param}: {files:?}"
        );
        assert_eq!(files["crm.calls.csv"].lines().count(), 2, "{param}");
    }
    let forget = tracking_id(
        &rcdp
            .register("forget", "email", "ÉLODIE.DUPONT@EXEMPLE.FR", "t1")
            .await,
    );
    completed(&app, forget).await;
    let status = rcdp.status(forget, "t1").await;
    assert_eq!(
        status["data"]["result"]["deleted"]["crm.customers"], 1,
        "{status}"
    );
    app.stop().await;
    demo.drop().await;
}

/// An LCM request for John with IsPseudonymize, answered with its id.
async fn lcm(app: &TestApp, pseudonymize: bool) -> i64 {
    let body = SAMPLE_REQUEST.replace(
        "\"IsPseudonymize\": false",
        &format!("\"IsPseudonymize\": {pseudonymize}"),
    );
    let mut replies = app.replies().await;
    app.publish(
        "LCM.WebService.GetDataPrivacyStatusRequest",
        body.as_bytes(),
        properties(Some(&format!("lcm-{pseudonymize}")), None),
    )
    .await;
    let reply = replies.take(1, Duration::from_secs(30)).await.remove(0);
    reply.response().expect("a request id").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pseudonymized_customer_is_still_found_and_forgotten_with_the_earlier_request_s_copies() {
    let demo = DemoDatabases::load().await;
    let map = demo.inline_datamap(&demo.crm_url, |m| m);
    let (app, exports) = exporting(Backend::Postgres, &map).await;
    let pseudonymized = lcm(&app, true).await;
    completed(&app, pseudonymized).await;
    assert!(
        !dump(&demo).await.iter().any(|r| r.contains("john.smith")),
        "pseudonymized"
    );
    let mut rcdp = Rcdp::new(&app).await;
    let forget = tracking_id(
        &rcdp
            .register("forget", "email", "john.smith@example.com", "acme")
            .await,
    );
    completed(&app, forget).await;
    let status = rcdp.status(forget, "acme").await;
    let result = &status["data"]["result"];
    assert_eq!(result["found"], true, "{status}");
    assert_eq!(result["deleted"]["crm.customers"], 1, "{status}");
    assert_eq!(result["deleted"]["crm.calls"], 2, "{status}");
    assert_eq!(result["deleted"]["dialer.leads"], 2, "{status}");
    assert_eq!(result["anonymized"]["crm.invoices"], 2, "{status}");
    let after = dump(&demo).await;
    assert!(
        !after.iter().any(|r| r.starts_with("customers(1,")),
        "{after:?}"
    );
    assert!(
        erased(&app, pseudonymized).await,
        "the pseudonymization's copies are shredded too"
    );
    assert!(!archive(exports.path(), pseudonymized).exists());
    app.stop().await;
    demo.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forget_in_one_tenant_shreds_the_customer_s_lcm_request_and_its_archive() {
    let demo = DemoDatabases::load().await;
    let map = demo.inline_datamap(&demo.crm_url, |m| m);
    let (app, exports) = exporting(Backend::Sqlite, &map).await;
    let exported = lcm(&app, false).await;
    completed(&app, exported).await;
    assert!(archive(exports.path(), exported).exists());
    let mut rcdp = Rcdp::new(&app).await;
    let forget = tracking_id(&rcdp.register("forget", "gcrid", "GCR-1001", "acme").await);
    completed(&app, forget).await;
    assert!(
        !archive(exports.path(), exported).exists(),
        "no archive left"
    );
    assert!(erased(&app, exported).await, "the LCM request is shredded");
    let status = rcdp.status(forget, "acme").await;
    assert_eq!(status["data"]["result"]["requestsErased"], 2, "{status}");
    app.stop().await;
    demo.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_found_is_said_and_a_database_of_other_tenants_is_never_read() {
    let demo = DemoDatabases::load().await;
    let map = demo.inline_datamap(&demo.crm_url, |m| {
        m.replace(
            &format!("url: \"sqlite://{}\" }}", demo.dialer.display()),
            &format!(
                "url: \"sqlite://{}\", tenants: [t2] }}",
                demo.dialer.display()
            ),
        )
    });
    assert!(
        std::fs::read_to_string(&map)
            .unwrap()
            .contains("tenants: [t2]")
    );
    let (app, exports) = exporting(Backend::Sqlite, &map).await;
    let mut rcdp = Rcdp::new(&app).await;
    let nobody = tracking_id(&rcdp.register("access", "gcrid", "GCR-9999", "t1").await);
    completed(&app, nobody).await;
    let status = rcdp.status(nobody, "t1").await;
    assert_eq!(status["data"]["result"]["found"], false, "{status}");

    let before = dump(&demo).await;
    let john = tracking_id(&rcdp.register("forget", "gcrid", "GCR-1001", "t1").await);
    completed(&app, john).await;
    let after = dump(&demo).await;
    let leads = |rows: &[String]| {
        rows.iter()
            .filter(|r| r.starts_with("leads"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        leads(&after),
        leads(&before),
        "t1 does not reach the dialer"
    );
    let status = rcdp.status(john, "t1").await;
    let result: &Value = &status["data"]["result"];
    assert!(result["deleted"].get("dialer.leads").is_none(), "{status}");
    assert!(result["verified"].get("dialer").is_none(), "{status}");
    let t2 = tracking_id(&rcdp.register("access", "gcrid", "GCR-1003", "t2").await);
    completed(&app, t2).await;
    let files = unzip(&archive(exports.path(), t2));
    assert_eq!(
        files["dialer.leads.csv"].lines().count(),
        2,
        "t2 reaches it"
    );
    app.stop().await;
    demo.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_put_back_by_a_trigger_fails_the_forget_as_incomplete_until_a_retry_finishes_it() {
    let demo = DemoDatabases::load().await;
    crm(
        &demo,
        "CREATE FUNCTION put_back() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN INSERT INTO customers SELECT (OLD).*; RETURN NULL; END $$; \
         CREATE TRIGGER put_back AFTER DELETE ON customers FOR EACH ROW EXECUTE FUNCTION put_back();",
    )
    .await;
    let map = demo.inline_datamap(&demo.crm_url, |m| m);
    let (app, _exports) = exporting(Backend::Sqlite, &map).await;
    let mut rcdp = Rcdp::new(&app).await;
    let forget = tracking_id(&rcdp.register("forget", "gcrid", "GCR-1001", "t1").await);
    let summary = ended(&app, forget).await;
    assert_eq!(summary.status, RequestStatus::Failed, "{summary:?}");
    let status = rcdp.status(forget, "t1").await;
    assert_eq!(
        status["data"]["errorCode"], "erasure_incomplete",
        "{status}"
    );
    let error = status["data"]["error"].as_str().unwrap();
    assert!(error.contains("crm.customers"), "{error}");

    crm(&demo, "DROP TRIGGER put_back ON customers").await;
    let retry = RequestsAction::Retry {
        id: forget,
        reason: "trigger dropped".into(),
    };
    privacy_worker::operator::run(&requests_args(&app, retry))
        .await
        .unwrap();
    completed(&app, forget).await;
    let after = dump(&demo).await;
    assert!(!after.iter().any(|r| r.contains("John Smith")), "{after:?}");
    let status = rcdp.status(forget, "t1").await;
    assert_eq!(
        status["data"]["result"]["verified"]["crm"], true,
        "{status}"
    );
    app.stop().await;
    demo.drop().await;
}
