//! Customer databases doing what production databases do (issue 26, first
//! slice): a lock held by the CRM application longer than SQLite's busy
//! timeout is a transient failure, retried with backoff until the lock goes,
//! not a refusal that fails the request on its first attempt.

use std::time::Duration;

use sqlx::Connection as _;

use crate::access::{completed, exporting};
use crate::datamap::DemoDatabases;
use crate::helpers::Backend;
use crate::lifecycle::{Rcdp, tracking_id};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_customer_database_locked_past_its_busy_timeout_is_retried_until_the_forget_completes()
 {
    let demo = DemoDatabases::load().await;
    let map = demo.inline_datamap(&demo.crm_url, |m| m);
    let (app, _exports) = exporting(Backend::Sqlite, &map).await;
    let mut rcdp = Rcdp::new(&app).await;
    // Fulfilment runs (the map was checked) ...
    let first = tracking_id(&rcdp.register("access", "customer", "C-1002", "t1").await);
    completed(&app, first).await;
    // ... when the dialer application takes the lock for 12 s (SQLite gives
    // up waiting after 5 s).
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&demo.dialer);
    let mut dialer = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN EXCLUSIVE; UPDATE leads SET outcome = outcome")
        .execute(&mut dialer)
        .await
        .unwrap();
    let forget = tracking_id(&rcdp.register("forget", "customer", "C-1003", "t1").await);
    tokio::time::sleep(Duration::from_secs(12)).await;
    sqlx::raw_sql("COMMIT").execute(&mut dialer).await.unwrap();
    completed(&app, forget).await;
    let leads: i64 = sqlx::query_scalar("SELECT count(*) FROM leads WHERE msisdn = '4155550101'")
        .fetch_one(&mut dialer)
        .await
        .unwrap();
    assert_eq!(leads, 0, "Ahmed's lead is deleted once the lock is gone");
    let reasons = crate::helpers::audit_reasons(&app.store, forget).await;
    assert!(
        reasons.iter().any(|r| r.starts_with("attempt 2")),
        "the first attempt was retried: {reasons:?}"
    );
    dialer.close().await.unwrap();
    app.stop().await;
    demo.drop().await;
}
