//! Fulfilment by worker processes: a worker killed with SIGKILL in the middle of
//! an export loses its lease, another takes the request over and writes one
//! complete archive; two workers sharing several due requests fulfil each once,
//! one archive each; a worker killed in the middle of an erasure is taken over
//! and the erasure ends in the same state, and one killed before its discovery
//! is saved has changed nothing.

use std::path::Path;
use std::time::Duration;

use privacy_worker::request::RequestStatus;
use sqlx::Connection as _;

use crate::datamap::DemoDatabases;
use crate::helpers::{Backend, SAMPLE_REQUEST, TestApp, properties, test_env};
use crate::lifecycle::{Rcdp, tracking_id};
use crate::process::WorkerProcess;

fn archives(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".zip"))
        .collect();
    names.sort();
    names
}

async fn status_becomes(app: &TestApp, id: i64, wanted: RequestStatus, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let summary = app.store.request_summary(id).await.unwrap().unwrap();
        if summary.status == wanted {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "request {id} is {:?}, not {wanted:?}",
            summary.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The demo map with the CRM inline, and the worker environment to fulfil it.
fn fulfilling(
    demo: &DemoDatabases,
    exports: &Path,
    lease: &str,
) -> (std::path::PathBuf, Vec<(String, String)>) {
    let map = demo.inline_datamap(&demo.crm_url, |m| m);
    let env = vec![
        ("PRIVACY_DATAMAP".to_owned(), map.display().to_string()),
        (
            "PRIVACY_EXPORT_URL".to_owned(),
            format!("file://{}", exports.display()),
        ),
        ("PRIVACY_FULFIL_DELAY".to_owned(), "0s".to_owned()),
        ("PRIVACY_FULFIL_LEASE".to_owned(), lease.to_owned()),
    ];
    (map, env)
}

/// Gives John `calls` more calls, their notes `note` and a number; returns a
/// connection to the CRM.
async fn with_calls(demo: &DemoDatabases, calls: usize, note: &str) -> sqlx::PgConnection {
    let mut crm = sqlx::PgConnection::connect(&demo.crm_url).await.unwrap();
    let seed = format!(
        "INSERT INTO calls (id, customer_id, started_at, caller_number, agent_id, notes) \
         SELECT 100 + g, 1, '2026-01-01T00:00:00Z', '14152347172', 'agent', '{note}' || g \
         FROM generate_series(1, {calls}) AS g"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(seed))
        .execute(&mut crm)
        .await
        .unwrap();
    crm
}

fn start(app: &TestApp, env: &[(String, String)]) -> WorkerProcess {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    WorkerProcess::start(app, &env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_export_is_taken_over_after_its_lease_and_one_complete_archive_is_written()
 {
    let demo = DemoDatabases::load().await;
    let calls = 300_000;
    let _crm = with_calls(&demo, calls, "a call about an invoice ").await;
    let app = test_env(Backend::Postgres).await;
    let exports = tempfile::tempdir().unwrap();
    let (_map, env) = fulfilling(&demo, exports.path(), "3s");
    let mut first = start(&app, &env);

    let mut replies = app.replies().await;
    app.publish(
        "LCM.WebService.GetDataPrivacyStatusRequest",
        SAMPLE_REQUEST.as_bytes(),
        properties(Some("takeover"), None),
    )
    .await;
    let reply = replies.take(1, Duration::from_secs(60)).await.remove(0);
    let id: i64 = reply.response().expect("a request id").parse().unwrap();
    status_becomes(&app, id, RequestStatus::InProgress, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    first.kill9().await;
    assert!(
        archives(exports.path()).is_empty(),
        "killed before its archive was stored"
    );

    let mut second = start(&app, &env);
    status_becomes(&app, id, RequestStatus::Completed, Duration::from_secs(90)).await;
    let archive = crate::access::archive(exports.path(), id);
    let name = archive.file_name().unwrap().to_str().unwrap().to_owned();
    assert_eq!(archives(exports.path()), [name]);
    let file = std::fs::File::open(archive).unwrap();
    let mut zip = zip::ZipArchive::new(file).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("crm.calls.csv").unwrap(), &mut text).unwrap();
    assert_eq!(
        text.lines().count(),
        1 + 2 + calls,
        "header, John's two calls and the seeded ones"
    );
    let spooled: Vec<_> = std::fs::read_dir(exports.path().join(".spool"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(
        spooled.is_empty(),
        "the killed worker's spool file is gone too: {spooled:?}"
    );
    let audit = crate::helpers::audit_reasons(&app.store, id).await;
    assert!(
        audit.iter().any(|r| r == "attempt 2: lease taken over"),
        "{audit:?}"
    );
    second.sigterm_exits_zero(Duration::from_secs(30)).await;
    app.stop().await;
    demo.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_sharing_several_due_requests_fulfil_each_once_with_one_archive_each() {
    let demo = DemoDatabases::load().await;
    let app = test_env(Backend::Postgres).await;
    let exports = tempfile::tempdir().unwrap();
    let (_map, env) = fulfilling(&demo, exports.path(), "60s");
    let mut workers = [start(&app, &env), start(&app, &env)];
    let mut rcdp = Rcdp::new(&app).await;
    let mut ids = Vec::new();
    for (param, value) in [
        ("gcrid", "GCR-1001"),
        ("gcrid", "GCR-1002"),
        ("gcrid", "GCR-1003"),
        ("customer", "C-1001"),
        ("customer", "C-1002"),
        ("customer", "C-1003"),
    ] {
        ids.push(tracking_id(
            &rcdp.register("access", param, value, "t1").await,
        ));
    }
    for &id in &ids {
        status_becomes(&app, id, RequestStatus::Completed, Duration::from_secs(60)).await;
        let events = app.store.request_events(id).await.unwrap();
        let claims = events
            .iter()
            .filter(|e| e.reason == "fulfilment started")
            .count();
        assert_eq!(claims, 1, "request {id} claimed once: {events:?}");
    }
    let mut expected: Vec<String> = ids
        .iter()
        .map(|&id| {
            let archive = crate::access::archive(exports.path(), id);
            archive.file_name().unwrap().to_str().unwrap().to_owned()
        })
        .collect();
    expected.sort();
    assert_eq!(archives(exports.path()), expected);
    for worker in &mut workers {
        worker.sigterm_exits_zero(Duration::from_secs(30)).await;
    }
    app.stop().await;
    demo.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_erasure_is_taken_over_and_the_erasure_ends_the_same() {
    let demo = DemoDatabases::load().await;
    let calls = 200_000;
    let mut crm = with_calls(&demo, calls, "John called ").await;
    let app = test_env(Backend::Postgres).await;
    let exports = tempfile::tempdir().unwrap();
    let (_map, env) = fulfilling(&demo, exports.path(), "3s");
    let mut first = start(&app, &env);
    let mut rcdp = Rcdp::new(&app).await;
    let id = tracking_id(&rcdp.register("forget", "gcrid", "GCR-1001", "t1").await);
    status_becomes(&app, id, RequestStatus::InProgress, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.kill9().await;

    let mut second = start(&app, &env);
    status_becomes(&app, id, RequestStatus::Completed, Duration::from_secs(120)).await;
    let left: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM customers WHERE id = 1), \
                (SELECT count(*) FROM calls WHERE customer_id = 1), \
                (SELECT count(*) FROM calls)",
    )
    .fetch_one(&mut crm)
    .await
    .unwrap();
    assert_eq!(
        left,
        (0, 0, 2),
        "John and his calls gone, Mary's and Ahmed's kept"
    );
    let leads = crate::forget::dump(&demo).await;
    assert!(crate::forget::found_in(&leads, &crate::forget::JOHN).is_empty());
    let mut store = sqlx::PgConnection::connect(&app.settings.store.url)
        .await
        .unwrap();
    let (rows, pending): (i64, i64) = sqlx::query_as(
        "SELECT coalesce(sum(jsonb_array_length(CAST(c.row_keys AS jsonb))), 0), \
         count(*) FILTER (WHERE d.done_at IS NULL) FROM customer_row_batches c \
         LEFT JOIN customer_databases_done d ON (d.request_id, d.db_name) = (c.request_id, c.db_name) \
         WHERE c.request_id = $1",
    )
    .bind(id)
    .fetch_one(&mut store)
    .await
    .unwrap();
    assert_eq!(pending, 0, "every discovered row done");
    assert!(
        rows > i64::try_from(calls).unwrap(),
        "the ledger holds his {calls} calls and more: {rows}"
    );
    let audit = crate::helpers::audit_reasons(&app.store, id).await;
    assert!(
        audit.iter().any(|r| r == "attempt 2: lease taken over"),
        "killed before it was done: {audit:?}"
    );
    store.close().await.unwrap();
    crm.close().await.unwrap();
    second.sigterm_exits_zero(Duration::from_secs(30)).await;
    app.stop().await;
    demo.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_before_its_discovery_is_saved_leaves_the_customer_databases_unchanged() {
    let demo = DemoDatabases::load().await;
    let mut crm = with_calls(&demo, 1_000, "John called ").await;
    let app = test_env(Backend::Postgres).await;
    let exports = tempfile::tempdir().unwrap();
    let (_map, env) = fulfilling(&demo, exports.path(), "3s");
    // The discovery cannot be saved while this lock is held: the worker
    // blocks on it, whatever it has done meanwhile.
    let mut blocker = sqlx::PgConnection::connect(&app.settings.store.url)
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE customer_row_batches IN EXCLUSIVE MODE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let johns = "SELECT (SELECT count(*) FROM customers WHERE id = 1), \
                 (SELECT count(*) FROM calls WHERE customer_id = 1)";
    let seeded: (i64, i64) = sqlx::query_as(johns).fetch_one(&mut crm).await.unwrap();
    assert_eq!(seeded, (1, 1_002), "John, his two calls and 1,000 more");
    let mut first = start(&app, &env);
    let mut rcdp = Rcdp::new(&app).await;
    let id = tracking_id(&rcdp.register("forget", "gcrid", "GCR-1001", "t1").await);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
             WHERE c.relname = 'customer_row_batches' AND NOT l.granted",
        )
        .fetch_one(&mut blocker)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never tried to save its discovery"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Time for the customer databases' changes, had they not waited.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before: (i64, i64) = sqlx::query_as(johns).fetch_one(&mut crm).await.unwrap();
    assert_eq!(
        before, seeded,
        "nothing of John's is changed before the save"
    );
    first.kill9().await;
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut blocker)
        .await
        .unwrap();
    let after_kill: (i64, i64) = sqlx::query_as(johns).fetch_one(&mut crm).await.unwrap();
    assert_eq!(after_kill, seeded, "the killed worker changed nothing");

    let mut second = start(&app, &env);
    status_becomes(&app, id, RequestStatus::Completed, Duration::from_secs(60)).await;
    let left: (i64, i64) = sqlx::query_as(johns).fetch_one(&mut crm).await.unwrap();
    assert_eq!(left, (0, 0), "the takeover erased John");
    let audit = crate::helpers::audit_reasons(&app.store, id).await;
    assert!(
        audit.iter().any(|r| r == "attempt 2: lease taken over"),
        "{audit:?}"
    );
    blocker.close().await.unwrap();
    crm.close().await.unwrap();
    second.sigterm_exits_zero(Duration::from_secs(30)).await;
    app.stop().await;
    demo.drop().await;
}
