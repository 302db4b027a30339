//! Access requests fulfilled end to end, with the store on SQLite and on
//! PostgreSQL and the demo CRM in PostgreSQL with its dialer list in SQLite: the
//! seed's LCM request and RCDP requests by e-mail and by gcrid each produce one
//! ZIP of one CSV per table (header, the customer's rows only, every column)
//! and a manifest; a table without the customer's rows has its header alone; a
//! request by e-mail finds the dialer rows keyed by the phone on the customer's
//! record; the status reply carries the link, its size, SHA-256 and row counts.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use privacy_worker::request::RequestStatus;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::datamap::DemoDatabases;
use crate::helpers::{Backend, SAMPLE_REQUEST, TestApp, properties, spawn_app_with};
use crate::lifecycle::{Rcdp, tracking_id};
use crate::on_both_backends;

on_both_backends!(access_requests_are_exported_as_one_zip_of_the_customer_s_rows);

/// The files of an archive, by name.
pub fn unzip(path: &Path) -> BTreeMap<String, String> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut zip = zip::ZipArchive::new(file).expect("a ZIP file");
    let mut files = BTreeMap::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        let name = entry.name().expect("a UTF-8 name").to_string();
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        if name.ends_with(".csv") {
            // RFC 4180: every record ends with CRLF. Compared below with \n.
            assert!(text.ends_with("\r\n"), "{name}: {text:?}");
            text = text.replace("\r\n", "\n");
        }
        files.insert(name, text);
    }
    files
}

/// Waits until request `id` is completed (20 s at most); fails on `failed`.
pub async fn completed(app: &TestApp, id: i64) {
    for _ in 0..200 {
        let summary = app.store.request_summary(id).await.unwrap().unwrap();
        match summary.status {
            RequestStatus::Completed => return,
            RequestStatus::Failed => panic!("request {id} failed: {:?}", summary.last_error),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("request {id} was not fulfilled within 20 s");
}

/// A worker fulfilling `map` at once into an export directory of its own.
pub async fn exporting(backend: Backend, map: &Path) -> (TestApp, tempfile::TempDir) {
    let exports = tempfile::tempdir().unwrap();
    let export_url = format!("file://{}", exports.path().display());
    let app = spawn_app_with(backend, |s| {
        s.datamap = Some(map.to_owned());
        s.export_url = export_url.clone();
        s.fulfil.delay = Duration::ZERO;
        s.fulfil.poll = Duration::from_millis(100);
    })
    .await;
    (app, exports)
}

/// Where request `id`'s archive is in `dir`: `privacy-export-<id>-<tag>.zip`,
/// the tag 32 hex digits no one derives without the key (never the guessable
/// `privacy-export-<id>.zip`); with no archive of the request, a path that
/// does not exist.
pub fn archive(dir: &Path, id: i64) -> PathBuf {
    let prefix = format!("privacy-export-{id}-");
    assert!(
        !dir.join(format!("privacy-export-{id}.zip")).exists(),
        "request {id}'s archive has the guessable name"
    );
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let tag = name.strip_prefix(&prefix)?.strip_suffix(".zip")?;
            Some((tag.to_owned(), dir.join(&name)))
        })
        .map(|(tag, path)| {
            assert!(
                tag.len() == 32 && tag.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                "{}: the tag is not 128 bits of hex",
                path.display()
            );
            path
        })
        .collect();
    assert!(found.len() <= 1, "one archive per request: {found:?}");
    found
        .pop()
        .unwrap_or_else(|| dir.join(format!("{prefix}none.zip")))
}

async fn access_requests_are_exported_as_one_zip_of_the_customer_s_rows(backend: Backend) {
    let demo = DemoDatabases::load().await;
    let map = demo.inline_datamap(&demo.crm_url, |m| m);
    let (app, exports) = exporting(backend, &map).await;

    // The seed's own sample: John Smith, by AccountNumber (and his phone).
    let mut replies = app.replies().await;
    app.publish(
        "LCM.WebService.GetDataPrivacyStatusRequest",
        SAMPLE_REQUEST.as_bytes(),
        properties(Some("access-lcm"), None),
    )
    .await;
    let reply = replies.take(1, Duration::from_secs(30)).await.remove(0);
    let lcm: i64 = reply.response().expect("a request id").parse().unwrap();
    completed(&app, lcm).await;
    let files = unzip(&archive(exports.path(), lcm));
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "crm.calls.csv",
            "crm.campaign_members.csv",
            "crm.customers.csv",
            "crm.invoices.csv",
            "dialer.leads.csv",
            "manifest.json"
        ]
    );
    assert_eq!(
        files["crm.customers.csv"],
        "id,account_number,gcr_id,customer_code,full_name,email,phone,postcode,birth_date\n\
         1,934|1|475|0|0|44|59,GCR-1001,C-1001,John Smith,john.smith@example.com,14152347172,SW1A 1AA,1980-04-02\n"
    );
    assert_eq!(
        files["crm.calls.csv"],
        "id,customer_id,started_at,caller_number,agent_id,notes\n\
         1,1,2026-11-02T09:14:00Z,14152347172,rajat,\"Asked about the November invoice, said \"\"thanks, bye\"\"\"\n\
         2,1,2026-11-20T16:40:00Z,14152347172,rajat,Asked for all personal information held about him\n"
    );
    assert_eq!(
        files["crm.campaign_members.csv"].lines().count(),
        3,
        "header and John's two"
    );
    assert_eq!(
        files["dialer.leads.csv"],
        "lead_id,msisdn,first_name,campaign,last_dial,outcome\n\
         1,1-415-234-7172,John,Winter broadband,2026-10-03T10:00:00Z,answered\n\
         2,14152347172,John,Loyalty 2026,2026-10-20T14:30:00Z,no answer\n"
    );
    let manifest: Value = serde_json::from_str(&files["manifest.json"]).unwrap();
    assert_eq!(manifest["requestId"], lcm.to_string());
    assert_eq!(manifest["tenant"], "default");
    let rows: Vec<(String, u64)> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_owned(),
                f["rows"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(
        rows.contains(&("crm.calls.csv".to_owned(), 2)),
        "{manifest}"
    );

    // RCDP by e-mail: the dialer rows are found by the phone on John's record.
    let mut rcdp = Rcdp::new(&app).await;
    let by_email = tracking_id(
        &rcdp
            .register("access", "email", "John.Smith@Example.com", "t1")
            .await,
    );
    completed(&app, by_email).await;
    let files = unzip(&archive(exports.path(), by_email));
    assert_eq!(
        files["dialer.leads.csv"].lines().count(),
        3,
        "found through the customer's phone"
    );
    assert_eq!(files["crm.customers.csv"].lines().count(), 2);

    // RCDP by gcrid for Mary, who was never dialled: the table is there, header alone.
    let mary = tracking_id(&rcdp.register("access", "gcrid", "GCR-1002", "t1").await);
    completed(&app, mary).await;
    let path = archive(exports.path(), mary);
    let files = unzip(&path);
    assert_eq!(
        files["dialer.leads.csv"],
        "lead_id,msisdn,first_name,campaign,last_dial,outcome\n"
    );
    assert!(files["crm.customers.csv"].contains("Mary Jones"));
    assert!(
        !files["crm.customers.csv"].contains("John"),
        "only the customer's rows"
    );

    // By the other two identifier types: Ahmed by his mobile number (compared by
    // its digits) and by his customer code.
    for (param, value) in [("mobile", "415-555-0101"), ("customer", "C-1003")] {
        let ahmed = tracking_id(&rcdp.register("access", param, value, "t3").await);
        completed(&app, ahmed).await;
        let files = unzip(&archive(exports.path(), ahmed));
        assert!(files["crm.customers.csv"].contains("Ahmed Khan"), "{param}");
        assert_eq!(
            files["crm.customers.csv"].lines().count(),
            2,
            "{param}: only Ahmed"
        );
        assert_eq!(
            files["dialer.leads.csv"].lines().count(),
            2,
            "{param}: his one dialer row"
        );
    }

    // The status reply: completed, with the link, its size and hash, and the counts.
    let status = rcdp.status(mary, "t1").await;
    assert_eq!(status["data"]["requestStatus"], "completed", "{status}");
    let download = &status["data"]["result"]["download"];
    assert_eq!(
        download["url"],
        format!("file://{}", path.canonicalize().unwrap().display())
    );
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(download["bytes"], bytes.len() as u64);
    assert_eq!(download["sha256"], hex::encode(Sha256::digest(&bytes)));
    assert_eq!(status["data"]["result"]["rows"]["crm.calls.csv"], 1);
    let leftovers: Vec<_> = std::fs::read_dir(exports.path())
        .unwrap()
        .filter_map(Result::ok)
        .collect();
    assert_eq!(
        leftovers.len(),
        6,
        "five archives and the spool directory: {leftovers:?}"
    );
    app.stop().await;
    demo.drop().await;
}

/// A `via` that crosses databases: callbacks in the dialer's SQLite file point
/// at the CRM's customers in PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_reached_through_another_database_s_rows_is_exported() {
    use sqlx::Connection as _;
    let demo = DemoDatabases::load().await;
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&demo.dialer);
    let mut dialer = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE callbacks (id INTEGER PRIMARY KEY, crm_customer_id INTEGER NOT NULL, note TEXT); \
         INSERT INTO callbacks VALUES (1, 1, 'call John back'), (2, 2, 'call Mary back'), (3, 1, 'again');",
    )
    .execute(&mut dialer)
    .await
    .unwrap();
    dialer.close().await.unwrap();
    let map = demo.inline_datamap(&demo.crm_url, |m| {
        m + "  - table: dialer.callbacks\n    key: [id]\n    via: { crm_customer_id: crm.customers.id }\n    personal: [note]\n"
    });
    let (app, exports) = exporting(Backend::Sqlite, &map).await;
    let mut rcdp = Rcdp::new(&app).await;
    let john = tracking_id(&rcdp.register("access", "gcrid", "GCR-1001", "t1").await);
    completed(&app, john).await;
    let files = unzip(&archive(exports.path(), john));
    assert_eq!(
        files["dialer.callbacks.csv"],
        "id,crm_customer_id,note\n1,1,call John back\n3,1,again\n"
    );
    app.stop().await;
    demo.drop().await;
}

/// On PostgreSQL the rows are written by `COPY`, which takes no bind
/// parameters: an identifier holding a quote and a backslash still selects
/// exactly its customer, and cells with line breaks, quotes, an empty string
/// and NULL come out as RFC 4180 records, each ending with CRLF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_that_need_quoting_are_exported_as_written() {
    use chrono::Datelike as _;
    use sqlx::Connection as _;
    let demo = DemoDatabases::load().await;
    let mut crm = sqlx::PgConnection::connect(&demo.crm_url).await.unwrap();
    sqlx::raw_sql(
        r#"INSERT INTO customers (id, account_number, customer_code, full_name, email) VALUES
             (4, 'acc-4', 'O''Hara\', 'Siobhán O''Hara', ''),
             (5, 'acc-5', 'O''Hara\'' OR ''1''=''1', 'Someone Else', NULL);
           INSERT INTO calls (id, customer_id, started_at, agent_id, notes) VALUES
             (10, 4, '2026-11-03T10:00:00Z', 'lena', E'first line\nsecond line'),
             (11, 4, '2026-11-04T10:00:00Z', 'lena', E'windows\r\nline, "quoted"'),
             (12, 5, '2026-11-04T11:00:00Z', 'lena', 'not hers');"#,
    )
    .execute(&mut crm)
    .await
    .unwrap();
    crm.close().await.unwrap();
    let map = demo.inline_datamap(&demo.crm_url, |m| m);
    let (app, exports) = exporting(Backend::Sqlite, &map).await;
    let mut rcdp = Rcdp::new(&app).await;
    let id = tracking_id(&rcdp.register("access", "customer", r"O'Hara\", "t1").await);
    completed(&app, id).await;

    let file = std::fs::File::open(archive(exports.path(), id)).unwrap();
    let mut zip = zip::ZipArchive::new(file).unwrap();
    let mut calls = Vec::new();
    zip.by_name("crm.calls.csv")
        .unwrap()
        .read_to_end(&mut calls)
        .unwrap();
    assert_eq!(
        String::from_utf8(calls).unwrap(),
        "id,customer_id,started_at,caller_number,agent_id,notes\r\n\
         10,4,2026-11-03T10:00:00Z,,lena,\"first line\nsecond line\"\r\n\
         11,4,2026-11-04T10:00:00Z,,lena,\"windows\r\nline, \"\"quoted\"\"\"\r\n"
    );
    let mut customers = String::new();
    zip.by_name("crm.customers.csv")
        .unwrap()
        .read_to_string(&mut customers)
        .unwrap();
    let mut reader = csv::Reader::from_reader(customers.as_bytes());
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 1, "only hers: {customers}");
    assert_eq!(&records[0][3], r"O'Hara\");
    assert_eq!(&records[0][4], "Siobhán O'Hara");
    assert_eq!(&records[0][5], "", "the empty e-mail");
    let dated = zip.by_name("manifest.json").unwrap().last_modified();
    let year = i32::from(dated.expect("a date").year());
    assert!(
        (year - chrono::Utc::now().year()).abs() <= 1,
        "dated when written, not 1980: {dated:?}"
    );
    let status = rcdp.status(id, "t1").await;
    assert_eq!(status["data"]["result"]["rows"]["crm.calls.csv"], 2);
    app.stop().await;
    demo.drop().await;
}
