//! The job runner's store operations on both backends: a due request is
//! claimed once, under a lease whose owner and attempt fence every later write;
//! an expired lease is taken over; a revoke before the claim wins; a released
//! attempt falls due after its backoff; announced changes go to the outbox; and
//! two claimers racing over many due requests claim each exactly once.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use privacy_worker::request::{RequestKind, RequestStatus};
use privacy_worker::store::{Store, Timing};

use crate::helpers::{Answers, Backend, TestApp, spawn_app};
use crate::lifecycle::{Rcdp, tracking_id};
use crate::on_both_backends;

on_both_backends!(
    a_due_request_is_claimed_once_and_its_lease_fences_every_later_write,
    a_request_revoked_before_it_is_claimed_is_never_claimed,
    a_released_attempt_falls_due_after_its_backoff_and_a_failure_is_announced,
    two_claimers_racing_over_many_due_requests_claim_each_exactly_once,
);

/// Claiming as of `now`, for requests registered before `due_before`.
fn at(now: DateTime<Utc>, due_before: DateTime<Utc>) -> Timing {
    Timing {
        now,
        due_before,
        lease_until: now + TimeDelta::seconds(30),
    }
}

/// The request's status changes written to the outbox (the worker's relay
/// may have published them already).
async fn announced(store: &Store, id: i64) -> Vec<(i64, RequestStatus)> {
    let changes = store.status_changes_of(id).await.unwrap();
    changes.iter().map(|c| (c.request_id, c.status)).collect()
}

async fn register(app: &TestApp, value: &str) -> i64 {
    let mut rcdp = Rcdp::new(app).await;
    tracking_id(&rcdp.register("access", "gcrid", value, "t1").await)
}

async fn a_due_request_is_claimed_once_and_its_lease_fences_every_later_write(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = register(&app, "G-1").await;
    let store = &app.store;
    let now = Utc::now();
    let an_hour_ago = now - TimeDelta::hours(1);
    assert!(
        store
            .claim_due("a", at(now, an_hour_ago))
            .await
            .unwrap()
            .is_none(),
        "not due yet"
    );

    let soon = now + TimeDelta::seconds(1);
    let first = store
        .claim_due("a", at(now, soon))
        .await
        .unwrap()
        .expect("due");
    assert_eq!(
        (
            first.lease.request_id,
            first.lease.attempt,
            first.taken_over
        ),
        (id, 1, false)
    );
    assert_eq!(first.kind, RequestKind::Access);
    assert_eq!(first.tenant, "t1");
    assert!(
        store.claim_due("b", at(now, soon)).await.unwrap().is_none(),
        "the lease is held"
    );
    assert!(
        store
            .heartbeat(&first.lease, now + TimeDelta::seconds(60))
            .await
            .unwrap()
    );

    // Past the lease, another instance takes it over; the first one's writes
    // are refused from then on.
    let later = now + TimeDelta::seconds(61);
    let second = store
        .claim_due("b", at(later, later))
        .await
        .unwrap()
        .expect("taken over");
    assert_eq!((second.lease.attempt, second.taken_over), (2, true));
    assert!(!store.heartbeat(&first.lease, later).await.unwrap());
    assert!(
        !store
            .complete(&first.lease, r#"{"stale":true}"#)
            .await
            .unwrap()
    );
    assert!(!store.fail(&first.lease, "stale").await.unwrap());
    assert!(
        store
            .complete(&second.lease, r#"{"rows":3}"#)
            .await
            .unwrap()
    );

    let summary = store.request_summary(id).await.unwrap().unwrap();
    assert_eq!(summary.status, RequestStatus::Completed);
    assert_eq!(
        announced(store, id).await,
        [
            (id, RequestStatus::InProgress),
            (id, RequestStatus::Completed)
        ]
    );
    let audit = crate::helpers::audit_reasons(store, id).await;
    assert!(
        audit.contains(&"attempt 2: lease taken over".to_owned()),
        "{audit:?}"
    );
    app.stop().await;
}

async fn a_request_revoked_before_it_is_claimed_is_never_claimed(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = register(&app, "G-2").await;
    let mut rcdp = Rcdp::new(&app).await;
    let body = serde_json::json!({"reqType": "access", "reqParam": "gcrid", "reqSource": "crm"});
    let revoked = rcdp
        .call("RevokeGdprActions", body, Some("G-2"), Some("t1"))
        .await;
    assert_eq!(revoked["status"], "OK", "{revoked}");
    let far = Utc::now() + TimeDelta::days(1);
    assert!(
        app.store
            .claim_due("a", at(far, far))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        announced(&app.store, id).await,
        [(id, RequestStatus::Revoked)]
    );
    app.stop().await;
}

async fn a_released_attempt_falls_due_after_its_backoff_and_a_failure_is_announced(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let id = register(&app, "G-3").await;
    let store = &app.store;
    let now = Utc::now() + TimeDelta::seconds(1);
    let first = store
        .claim_due("a", at(now, now))
        .await
        .unwrap()
        .expect("due");
    let retry_at = now + TimeDelta::seconds(10);
    assert!(
        store
            .retry_at(&first.lease, retry_at, "database crm unavailable")
            .await
            .unwrap()
    );
    assert!(
        store.claim_due("a", at(now, now)).await.unwrap().is_none(),
        "backing off"
    );
    let after = retry_at + TimeDelta::seconds(1);
    let second = store
        .claim_due("a", at(after, after))
        .await
        .unwrap()
        .expect("due again");
    assert_eq!(second.lease.attempt, 2);
    assert!(!second.taken_over, "let go, not taken over");
    assert!(
        store
            .fail(&second.lease, "database crm unavailable after 2 attempts")
            .await
            .unwrap()
    );
    let summary = store.request_summary(id).await.unwrap().unwrap();
    assert_eq!(summary.status, RequestStatus::Failed);
    assert_eq!(
        announced(store, id).await,
        [(id, RequestStatus::InProgress), (id, RequestStatus::Failed)]
    );
    app.stop().await;
}

async fn two_claimers_racing_over_many_due_requests_claim_each_exactly_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let n = 30;
    let mut replies = app.replies().await;
    app.publish_burst("race", n).await;
    let mut answers = Answers::default();
    replies
        .collect(&mut answers, n, Duration::from_secs(60))
        .await;
    let due = Utc::now() + TimeDelta::seconds(1);
    let claimer = |owner: &'static str| {
        let store = app.store.clone();
        async move {
            let mut ids = Vec::new();
            while let Some(claimed) = store.claim_due(owner, at(due, due)).await.unwrap() {
                ids.push(claimed.lease.request_id);
            }
            ids
        }
    };
    let (a, b) = tokio::join!(claimer("a"), claimer("b"));
    let all: HashSet<i64> = a.iter().chain(&b).copied().collect();
    assert_eq!(a.len() + b.len(), n, "a claimed {}, b {}", a.len(), b.len());
    assert_eq!(all.len(), n, "no request claimed twice");
    app.stop().await;
}
