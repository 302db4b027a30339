//! Fault injection: the worker keeps "nothing lost, nothing doubled" when the
//! broker or the database goes away, when it is killed or stopped mid-burst, when
//! two instances share the queue, and when a message can never succeed.
//!
//! Each test publishes a burst, injects the fault mid-burst, and checks from the
//! replies and from the store: every request answered, one row per distinct
//! request, distinct ids, nothing left in the work queue, nothing wrongly parked.

use std::time::Duration;

use serde_json::json;
use sqlx::Connection as _;

use crate::helpers::{
    Answers, Backend, TestApp, amqp_url, properties, sample_with, spawn_app_with, test_env,
};
use crate::process::WorkerProcess;
use crate::proxy::{Proxy, upstream_of, via_proxy};

const LONG: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_connection_cut_for_five_seconds_loses_and_doubles_nothing() {
    let proxy = Proxy::start(upstream_of(&amqp_url())).await;
    let app = spawn_app_with(Backend::Postgres, |s| {
        s.broker.amqp_url = via_proxy(&s.broker.amqp_url, &proxy)
    })
    .await;
    burst_with_a_cut(app, &proxy, 2000, 400, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_for_ten_seconds_holds_deliveries_and_parks_nothing() {
    let proxy = Proxy::start(upstream_of(&crate::helpers::postgres_admin_url())).await;
    let app = spawn_app_with(Backend::Postgres, |s| {
        s.store.url = via_proxy(&s.store.url, &proxy)
    })
    .await;
    burst_with_a_cut(app, &proxy, 2000, 300, Duration::from_secs(10)).await;
}

/// Publishes `n` requests, cuts `proxy` for `outage` once `after` are answered,
/// and checks every request is answered exactly once.
async fn burst_with_a_cut(app: TestApp, proxy: &Proxy, n: usize, after: usize, outage: Duration) {
    let mut replies = app.replies().await;
    let mut answers = Answers::default();
    app.publish_burst("cut", n).await;
    replies.collect(&mut answers, after, LONG).await;
    proxy.cut();
    tokio::time::sleep(outage).await;
    proxy.restore();
    replies.collect(&mut answers, n, LONG).await;
    app.assert_exactly_once(&answers, n).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_file_locked_for_ten_seconds_holds_deliveries_and_parks_nothing() {
    use sqlx::Connection;
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let mut replies = app.replies().await;
    let mut answers = Answers::default();

    app.publish_burst("locked", 1000).await;
    replies.collect(&mut answers, 200, LONG).await;
    // Another process's write lock on the file, as a stuck writer or backup would hold.
    let mut holder = sqlx::SqliteConnection::connect(&app.settings.store.url)
        .await
        .unwrap();
    sqlx::query("PRAGMA busy_timeout = 10000")
        .execute(&mut holder)
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut holder)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    holder.close().await.unwrap();
    replies.collect(&mut answers, 1000, LONG).await;

    app.assert_exactly_once(&answers, 1000).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_always_fails_is_parked_dead_after_its_attempts_while_others_flow() {
    let app = spawn_app_with(Backend::Postgres, |s| {
        s.intake.retry_attempts = 3;
    })
    .await;
    let mut replies = app.replies().await;
    let mut answers = Answers::default();

    // Valid JSON and valid by every documented rule, but the database refuses
    // its audit event (a trigger of the test's own), the same way every time.
    refuse_events_of(&app, "agent:poison-agent").await;
    let poison = sample_with(&[
        ("AgentID", json!("poison-agent")),
        ("callid", json!("poison")),
        ("AccountNumber", json!("poison-account")),
    ]);
    app.publish_burst("before", 100).await;
    app.publish(
        "LCM.WebService.GetDataPrivacyStatusRequest",
        &poison,
        properties(Some("poison-1"), None),
    )
    .await;
    app.publish_burst("after", 100).await;
    replies.collect(&mut answers, 200, LONG).await;

    let mut parked = None;
    for _ in 0..50 {
        parked = app.bus.get(&app.topology().dead_queue).await;
        if parked.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (body, headers) = parked.expect("the poison message is parked in the dead queue");
    assert_eq!(body, poison, "parked body unchanged");
    assert_eq!(
        headers["x-privacy-reason"], "unexpected-error",
        "{headers:?}"
    );
    assert_eq!(headers["x-privacy-attempts"], "3");
    assert_eq!(
        headers["x-original-routing-key"],
        "LCM.WebService.GetDataPrivacyStatusRequest"
    );
    assert!(headers.contains_key("x-privacy-first-failure-at"));
    // It waited in the retry queues between attempts: the broker recorded each expiry.
    let retry_queue = app.topology().retry_queue_for(1).unwrap();
    assert!(
        headers["x-death"].contains(&retry_queue),
        "{}",
        headers["x-death"]
    );
    assert!(headers.contains_key("x-privacy-last-failure-at"));
    assert!(
        !headers["x-privacy-last-error"].contains("poison-account"),
        "no personal data in headers"
    );
    // The sender is told, instead of waiting for an answer that will not come.
    while answers.errors.is_empty() {
        let reply = replies
            .next_within(Duration::from_secs(10))
            .await
            .expect("an error reply");
        answers.errors.push(reply);
    }
    let told = answers.errors.remove(0);
    assert_eq!(told.correlation_id.as_deref(), Some("poison-1"));
    assert_eq!(told.body["message"]["error"]["code"], "internal_error");
    assert!(!answers.by_correlation.contains_key("poison-1"));
    app.assert_exactly_once(&answers, 200).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_replay_returns_parked_messages_and_they_are_answered_once() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let mut replies = app.replies().await;
    let mut answers = Answers::default();
    // Messages parked during an outage: valid requests with the worker's dead headers.
    for i in 0..5 {
        let id = format!("parked-{i}");
        let body = sample_with(&[
            ("callid", json!(id)),
            ("AccountNumber", json!(id)),
            ("CustomerName", json!("Parked Person")),
        ]);
        let mut headers = lapin::types::FieldTable::default();
        headers.insert(
            "x-privacy-reason".into(),
            lapin::types::AMQPValue::LongString("transient-failures-exhausted".into()),
        );
        headers.insert(
            "x-privacy-attempts".into(),
            lapin::types::AMQPValue::LongString("5".into()),
        );
        app.bus
            .publish(
                "",
                &app.topology().dead_queue,
                &body,
                properties(Some(&id), Some(&id)).with_headers(headers),
            )
            .await;
    }

    let broker = privacy_worker::amqp::Broker::connect(&amqp_url(), "test dlq")
        .await
        .unwrap();
    let listed = privacy_worker::dlq::list(&broker, &app.topology().dead_queue, 100)
        .await
        .unwrap();
    assert_eq!(listed.len(), 5);
    assert_eq!(
        listed[0].reason.as_deref(),
        Some("transient-failures-exhausted")
    );
    assert!(
        !serde_json::to_string(&listed)
            .unwrap()
            .contains("Parked Person")
    );
    assert_eq!(
        app.bus.depth_becomes(&app.topology().dead_queue, 5).await,
        5,
        "list leaves them parked"
    );

    let moved = privacy_worker::dlq::replay(
        &broker,
        &app.topology().dead_queue,
        &app.topology().work_queue,
        usize::MAX,
    )
    .await
    .unwrap();
    assert_eq!(moved, 5);
    replies.collect(&mut answers, 5, LONG).await;
    replies.assert_quiet(Duration::from_millis(500)).await;
    assert_eq!(answers.replies, 5, "each answered once");
    broker.close().await;
    app.assert_exactly_once(&answers, 5).await;
    app.stop().await;
}

/// A broker that accepts the connection and never speaks (a hung node, a half-open
/// load balancer): the worker gives up on the handshake and connects again, and a
/// SIGTERM while it waits on a handshake stops it at once, with status 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_broker_is_retried_and_sigterm_while_connecting_exits_zero() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let app = test_env(Backend::Sqlite).await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("amqp://guest:guest@{}/%2f", silent.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            held.push(silent.accept().await.unwrap().0);
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let mut worker = WorkerProcess::start(&app, &[("AMQP_URL", &url)]);

    // Each subsystem (intake, relay) opens its own connection; after the
    // handshake timeout each tries again.
    let retried = tokio::time::timeout(Duration::from_secs(30), async {
        while accepted.load(Ordering::SeqCst) < 3
            || !worker.logs().contains("no AMQP handshake within")
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let log = worker.logs();
    assert!(retried.is_ok(), "no second connection attempt; log:\n{log}");
    assert!(log.contains("no AMQP handshake within"), "log:\n{log}");

    let started = std::time::Instant::now();
    worker.sigterm_exits_zero(Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    server.abort();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_burst_then_restart_loses_and_doubles_nothing() {
    stop_mid_burst_and_restart(&[], async |worker: &mut WorkerProcess| worker.kill9().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_burst_exits_zero_within_the_deadline_and_a_restart_answers_the_rest() {
    stop_mid_burst_and_restart(
        &[("PRIVACY_DRAIN_SECS", "10")],
        async |worker: &mut WorkerProcess| {
            worker.sigterm_exits_zero(Duration::from_secs(15)).await;
            assert!(worker.logs().contains("draining"));
        },
    )
    .await;
}

/// A worker process takes a burst of 3,000; `stop` is applied to it once 1,000 are
/// answered; a new process answers the rest, and 1,000 more published after the
/// stop, so the restart is exercised even if the first process was quicker than
/// the test's reply consumer; every request is answered once.
async fn stop_mid_burst_and_restart(
    env: &[(&str, &str)],
    stop: impl AsyncFnOnce(&mut WorkerProcess),
) {
    let app = test_env(Backend::Postgres).await;
    let mut replies = app.replies().await;
    let mut answers = Answers::default();
    let mut worker = WorkerProcess::start(&app, env);

    app.publish_burst("stop", 3000).await;
    replies.collect(&mut answers, 1000, LONG).await;
    stop(&mut worker).await;
    let mut restarted = WorkerProcess::start(&app, &[]);
    app.publish_burst("after-stop", 1000).await;
    replies.collect(&mut answers, 4000, LONG).await;

    app.assert_exactly_once(&answers, 4000).await;
    restarted.sigterm_exits_zero(Duration::from_secs(30)).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_with_one_killed_mid_burst_lose_and_double_nothing() {
    let app = test_env(Backend::Postgres).await;
    let mut replies = app.replies().await;
    let mut answers = Answers::default();
    let mut first = WorkerProcess::start(&app, &[("PRIVACY_CONNECTION_NAME", "worker-a")]);
    let mut second = WorkerProcess::start(&app, &[("PRIVACY_CONNECTION_NAME", "worker-b")]);

    app.publish_burst("pair", 5000).await;
    replies.collect(&mut answers, 1500, LONG).await;
    first.kill9().await;
    replies.collect(&mut answers, 5000, LONG).await;

    app.assert_exactly_once(&answers, 5000).await;
    assert!(
        second.logs().contains("request answered"),
        "the second instance took its share"
    );
    second.sigterm_exits_zero(Duration::from_secs(30)).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rcdp_registration_that_cannot_be_stored_gets_the_documented_internal_error() {
    let app = spawn_app_with(Backend::Postgres, |s| s.intake.retry_attempts = 2).await;
    let mut rcdp = crate::lifecycle::Rcdp::new(&app).await;
    // The database refuses this source's audit events, every time.
    refuse_events_of(&app, "source:poison").await;
    let body = json!({"reqType": "access", "reqParam": "gcrid", "reqSource": "poison"});
    let reply = rcdp
        .call("RegisterGdprRequest", body, Some("G-1"), Some("t1"))
        .await;
    assert_eq!(
        reply,
        json!({"error": "Internal server error while registering the request."})
    );
    let dead = &app.topology().dead_queue;
    assert_eq!(
        app.bus.depth_becomes(dead, 1).await,
        1,
        "parked for an operator"
    );
    app.stop().await;
}

/// Makes the app's PostgreSQL database refuse every audit event of `actor`, as
/// a database refuses a write it will never take (a check, a trigger).
pub async fn refuse_events_of(app: &TestApp, actor: &str) {
    let mut conn = sqlx::PgConnection::connect(&app.settings.store.url)
        .await
        .expect("the test database");
    let function = format!(
        "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN \
           IF NEW.actor = '{actor}' THEN RAISE EXCEPTION 'refused by the test''s trigger'; END IF; \
           RETURN NEW; END $$ LANGUAGE plpgsql"
    );
    for sql in [
        function.as_str(),
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON request_events \
         FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect("trigger created");
    }
}
