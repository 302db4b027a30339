//! Any table or column name the database allows works (SPEC "The data map"):
//! a table `Call Notes` in the PostgreSQL CRM, reached by `via` through a
//! column `Customer Id`, with a personal column holding a double quote, and a
//! table `Lead "Notes"` in the SQLite dialer found by its `Phone No` column:
//! `datamap check` passes, access exports their rows, forget deletes them.

use sqlx::Connection as _;

use crate::access::{archive, completed, exporting, unzip};
use crate::datamap::{DemoDatabases, datamap_check};
use crate::helpers::Backend;
use crate::lifecycle::{Rcdp, tracking_id};

const TABLES: &str = r#"
  - table: crm.Call Notes
    key: [Note Id]
    via: { Customer Id: crm.customers.id }
    personal: [Said "This"]
  - table: dialer.Lead "Notes"
    key: [id]
    match: { mobile: Phone No }
    personal: [Phone No]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_and_columns_with_spaces_capitals_and_quotes_are_checked_exported_and_forgotten() {
    let demo = DemoDatabases::load().await;
    let mut crm = sqlx::PgConnection::connect(&demo.crm_url).await.unwrap();
    sqlx::raw_sql(
        r#"CREATE TABLE "Call Notes" ("Note Id" INTEGER PRIMARY KEY,
             "Customer Id" INTEGER NOT NULL, "Said ""This""" TEXT);
           INSERT INTO "Call Notes" VALUES (1, 1, 'John: call me back'), (2, 2, 'Mary: fine');"#,
    )
    .execute(&mut crm)
    .await
    .unwrap();
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&demo.dialer);
    let mut dialer = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::raw_sql(
        r#"CREATE TABLE "Lead ""Notes""" (id INTEGER PRIMARY KEY, "Phone No" TEXT NOT NULL);
           INSERT INTO "Lead ""Notes""" VALUES (1, '+1 415 234 7172'), (2, '4155550199');"#,
    )
    .execute(&mut dialer)
    .await
    .unwrap();
    let map = demo.inline_datamap(&demo.crm_url, |m| m + TABLES);
    let (ok, said) = datamap_check(&map, &demo.crm_url).await;
    assert!(ok, "{said}");
    assert!(said.contains("crm.Call Notes"), "{said}");

    let (app, exports) = exporting(Backend::Sqlite, &map).await;
    let mut rcdp = Rcdp::new(&app).await;
    let access = tracking_id(&rcdp.register("access", "gcrid", "GCR-1001", "t1").await);
    completed(&app, access).await;
    let files = unzip(&archive(exports.path(), access));
    assert_eq!(
        files["crm.Call Notes.csv"],
        "Note Id,Customer Id,\"Said \"\"This\"\"\"\n1,1,John: call me back\n",
        "{files:?}"
    );
    assert_eq!(
        files["dialer.Lead \"Notes\".csv"], "id,Phone No\n1,+1 415 234 7172\n",
        "{files:?}"
    );

    let forget = tracking_id(&rcdp.register("forget", "gcrid", "GCR-1001", "t1").await);
    completed(&app, forget).await;
    let left: Vec<i32> = sqlx::query_scalar(r#"SELECT "Note Id" FROM "Call Notes" ORDER BY 1"#)
        .fetch_all(&mut crm)
        .await
        .unwrap();
    assert_eq!(left, [2], "John's note deleted, Mary's kept");
    let left: Vec<i64> = sqlx::query_scalar(r#"SELECT id FROM "Lead ""Notes""" ORDER BY 1"#)
        .fetch_all(&mut dialer)
        .await
        .unwrap();
    assert_eq!(left, [2]);
    crm.close().await.unwrap();
    dialer.close().await.unwrap();
    app.stop().await;
    demo.drop().await;
}

/// A key must be a key: a forget deletes by it, and the ledger keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_is_not_unique_or_may_be_null_or_is_an_identifier_is_refused_naming_it() {
    let demo = DemoDatabases::load().await;
    let mut crm = sqlx::PgConnection::connect(&demo.crm_url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE notes (customer_id INTEGER, day TEXT, body TEXT); \
         CREATE TABLE tags (code TEXT UNIQUE, customer_id INTEGER)",
    )
    .execute(&mut crm)
    .await
    .unwrap();
    crm.close().await.unwrap();
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&demo.dialer);
    let mut dialer = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::raw_sql("CREATE TABLE dials (msisdn TEXT, at TEXT); CREATE TABLE optouts (code TEXT PRIMARY KEY, msisdn TEXT)")
        .execute(&mut dialer)
        .await
        .unwrap();
    dialer.close().await.unwrap();
    let via = "via: { customer_id: crm.customers.id }";
    for (table, expected) in [
        (
            format!("crm.notes\n    key: [customer_id, day]\n    {via}"),
            "table crm.notes: key customer_id, day is not unique in database crm",
        ),
        (
            format!("crm.tags\n    key: [code]\n    {via}"),
            "table crm.tags: key column code may be NULL in database crm",
        ),
        (
            "dialer.dials\n    key: [at]\n    match: { mobile: msisdn }".to_owned(),
            "table dialer.dials: key at is not unique in database dialer",
        ),
        (
            "dialer.optouts\n    key: [code]\n    match: { mobile: msisdn }".to_owned(),
            "table dialer.optouts: key column code may be NULL in database dialer",
        ),
        (
            "dialer.optouts\n    key: [msisdn]\n    match: { mobile: msisdn }".to_owned(),
            "table dialer.optouts: key column msisdn is also a match column",
        ),
    ] {
        let map = demo.inline_datamap(&demo.crm_url, |m| m + &format!("  - table: {table}\n"));
        let (ok, said) = datamap_check(&map, &demo.crm_url).await;
        assert!(!ok && said.contains(expected), "{table}: {said}");
    }
    demo.drop().await;
}
