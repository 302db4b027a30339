//! The job runner driven step by step (`Runner::try_execute_task`) against the
//! demo CRM: a customer database that goes down is retried, then the request is
//! failed with a reason naming the database and nothing personal, announced,
//! and an operator's `requests retry` has it fulfilled once the database is back;
//! an attempt whose holder died is taken over after its lease and completed
//! once, and the dead holder's late writes are refused.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use privacy_worker::config::{RequestsAction, RequestsArgs};
use privacy_worker::fulfil::{Exports, FulfilSettings, Ran, Runner};
use privacy_worker::keyring::{self, Creation};
use privacy_worker::request::RequestStatus;
use privacy_worker::store::Timing;

use crate::datamap::DemoDatabases;
use crate::helpers::{Backend, TestApp, spawn_app};
use crate::lifecycle::{Rcdp, tracking_id};
use crate::on_both_backends;
use crate::proxy::{Proxy, upstream_of, via_proxy};

on_both_backends!(
    a_database_down_is_retried_then_failed_and_an_operator_retry_fulfils_it,
    an_attempt_whose_holder_died_is_taken_over_and_completed_once,
);

/// A runner on `app`'s store over the demo map with the CRM at `crm_url`.
pub async fn runner(
    app: &TestApp,
    demo: &DemoDatabases,
    crm_url: &str,
    exports: &Path,
    lease: Duration,
) -> Runner {
    let map = demo.inline_datamap(crm_url, |m| m);
    let (map, targets, columns) = privacy_worker::check::connect_and_check(&map)
        .await
        .expect("the demo map");
    let keys = keyring::open(
        app.settings.key_file.as_deref(),
        &app.store,
        Creation::Never,
    )
    .await
    .expect("the worker's keys");
    Runner {
        store: app.store.clone(),
        keys: Arc::new(keys),
        map: Arc::new(map),
        targets,
        columns: Arc::new(columns),
        exports: Exports::open(
            &format!("file://{}", exports.display()),
            Duration::from_secs(60),
        )
        .unwrap(),
        owner: format!("test-{}", uuid::Uuid::new_v4().simple()),
        settings: FulfilSettings {
            delay: Duration::ZERO,
            attempts: 2,
            lease,
            poll: Duration::from_millis(100),
            retry_backoff: Duration::ZERO,
        },
    }
}

async fn a_database_down_is_retried_then_failed_and_an_operator_retry_fulfils_it(backend: Backend) {
    let demo = DemoDatabases::load().await;
    let proxy = Proxy::start(upstream_of(&demo.crm_url)).await;
    let app = spawn_app(backend).await;
    let exports = tempfile::tempdir().unwrap();
    let runner = runner(
        &app,
        &demo,
        &via_proxy(&demo.crm_url, &proxy),
        exports.path(),
        Duration::from_secs(60),
    )
    .await;
    let mut rcdp = Rcdp::new(&app).await;
    let id = tracking_id(&rcdp.register("access", "gcrid", "GCR-1001", "t1").await);

    proxy.cut();
    assert_eq!(runner.try_execute_task().await.unwrap(), Ran::Retrying(id));
    let summary = app.store.request_summary(id).await.unwrap().unwrap();
    assert_eq!(
        summary.last_error.as_deref(),
        Some("customer database crm unavailable")
    );
    assert_eq!(runner.try_execute_task().await.unwrap(), Ran::Failed(id));
    let status = rcdp.status(id, "t1").await;
    assert_eq!(status["data"]["requestStatus"], "failed", "{status}");
    assert_eq!(
        status["data"]["error"],
        "customer database crm unavailable (after 2 attempts)"
    );
    assert!(
        !status.to_string().contains("GCR-1001"),
        "no personal data: {status}"
    );
    let changes: Vec<RequestStatus> = app
        .store
        .status_changes_of(id)
        .await
        .unwrap()
        .iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(changes, [RequestStatus::InProgress, RequestStatus::Failed]);

    proxy.restore();
    let args = RequestsArgs {
        store: privacy_worker::config::StoreArgs {
            database_url: app.settings.store.url.clone(),
            key_file: app.settings.key_file.clone(),
        },
        operator: "tester".into(),
        response_deadline: std::time::Duration::from_secs(30 * 86_400),
        action: RequestsAction::Retry {
            id,
            reason: "the CRM is back".into(),
        },
    };
    let said = privacy_worker::operator::run(&args)
        .await
        .expect("requests retry");
    assert!(said.contains("put back"), "{said}");
    assert_eq!(runner.try_execute_task().await.unwrap(), Ran::Completed(id));
    assert!(crate::access::archive(exports.path(), id).exists());
    // A completed request cannot be put back.
    let again = privacy_worker::operator::run(&args)
        .await
        .unwrap_err()
        .to_string();
    assert!(again.contains("has status [completed]"), "{again}");
    app.stop().await;
    demo.drop().await;
}

async fn an_attempt_whose_holder_died_is_taken_over_and_completed_once(backend: Backend) {
    let demo = DemoDatabases::load().await;
    let app = spawn_app(backend).await;
    let exports = tempfile::tempdir().unwrap();
    let runner = runner(
        &app,
        &demo,
        &demo.crm_url,
        exports.path(),
        Duration::from_secs(60),
    )
    .await;
    let mut rcdp = Rcdp::new(&app).await;
    let id = tracking_id(&rcdp.register("access", "gcrid", "GCR-1003", "t1").await);

    // Another instance claims it and dies (kill -9) before it ends the attempt.
    let now = Utc::now() + TimeDelta::milliseconds(10);
    let timing = Timing {
        now,
        due_before: now,
        lease_until: now + TimeDelta::seconds(1),
    };
    let dead = app
        .store
        .claim_due("dead-instance", timing)
        .await
        .unwrap()
        .expect("due");
    assert_eq!(
        runner.try_execute_task().await.unwrap(),
        Ran::Idle,
        "its lease still holds"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(runner.try_execute_task().await.unwrap(), Ran::Completed(id));
    assert!(
        !app.store.complete(&dead.lease, "{}").await.unwrap(),
        "the dead holder's write is refused"
    );
    let archives: Vec<_> = std::fs::read_dir(exports.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".zip"))
        .collect();
    assert_eq!(archives.len(), 1, "one archive");
    let audit = crate::helpers::audit_reasons(&app.store, id).await;
    assert!(
        audit.iter().any(|r| r == "attempt 2: lease taken over"),
        "{audit:?}"
    );
    app.stop().await;
    demo.drop().await;
}
