//! Status changes are announced on the bus, from the outbox: a revoke, and a
//! fulfilment's start and end, each as an LCM GdprRequestStatusChanged envelope
//! with the tracking id, kind, status, tenant and time, and nothing else (no
//! identifier, no link); once announced, the outbox holds nothing unpublished.
//! The tenant is an opaque id, not the tenant_hash that authorises status
//! queries: the same for every request of a tenant, different for another.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use serde_json::json;

use crate::helpers::{Backend, spawn_app};
use crate::lifecycle::{Rcdp, tracking_id};
use crate::on_both_backends;
use crate::schemas::STATUS_CHANGED;

on_both_backends!(every_announced_status_change_is_published_once_without_personal_data);

async fn every_announced_status_change_is_published_once_without_personal_data(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut events = app
        .bus
        .listen(
            &app.topology().exchange,
            "LCM.Webservice.GdprRequestStatusChanged",
        )
        .await;
    let mut rcdp = Rcdp::new(&app).await;
    let revoked = tracking_id(
        &rcdp
            .register("access", "email", "zelda@example.org", "t1")
            .await,
    );
    let body = json!({"reqType": "access", "reqParam": "email", "reqSource": "crm"});
    rcdp.call(
        "RevokeGdprActions",
        body,
        Some("zelda@example.org"),
        Some("t1"),
    )
    .await;
    // A second request of the same tenant, revoked too.
    let also_revoked = tracking_id(&rcdp.register("access", "gcrid", "G-1", "t1").await);
    let body = json!({"reqType": "access", "reqParam": "gcrid", "reqSource": "crm"});
    rcdp.call("RevokeGdprActions", body, Some("G-1"), Some("t1"))
        .await;
    let fulfilled = tracking_id(&rcdp.register("access", "gcrid", "G-9", "t2").await);
    let now = Utc::now() + TimeDelta::seconds(1);
    let timing = privacy_worker::store::Timing {
        now,
        due_before: now,
        lease_until: now + TimeDelta::seconds(30),
    };
    let claimed = app
        .store
        .claim_due("test", timing)
        .await
        .unwrap()
        .expect("due");
    assert_eq!(claimed.lease.request_id, fulfilled);
    assert!(app.store.complete(&claimed.lease, "{}").await.unwrap());

    let got = events.take(4, Duration::from_secs(30)).await;
    let messages: Vec<serde_json::Value> = got.iter().map(|e| e.body["message"].clone()).collect();
    let seen: Vec<(i64, &str, &str)> = messages
        .iter()
        .map(|m| {
            (
                m["trackingId"].as_i64().unwrap(),
                m["reqType"].as_str().unwrap(),
                m["requestStatus"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (revoked, "access", "revoked"),
            (also_revoked, "access", "revoked"),
            (fulfilled, "access", "in_progress"),
            (fulfilled, "access", "completed"),
        ]
    );
    // Who may ask for a request's status is not said on the bus: the tenant
    // is an opaque id, stable per tenant, different across tenants.
    let tenants: Vec<&str> = messages
        .iter()
        .map(|m| m["tenant"].as_str().unwrap())
        .collect();
    for tenant in &tenants {
        for secret in ["t1", "t2", "default"] {
            assert_ne!(*tenant, secret, "not the tenant_hash nor the LCM tenant");
        }
        let hex = tenant
            .strip_prefix("tn-")
            .unwrap_or_else(|| panic!("{tenant}"));
        assert_eq!(hex.len(), 32, "{tenant}");
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{tenant}");
    }
    assert_eq!(tenants[0], tenants[1], "two requests of tenant t1");
    assert_eq!(tenants[2], tenants[3], "tenant t2");
    assert_ne!(tenants[0], tenants[2], "two tenants");
    for event in &got {
        assert_eq!(event.routing_key, "LCM.Webservice.GdprRequestStatusChanged");
        let errors: Vec<String> = STATUS_CHANGED
            .iter_errors(&event.body)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", event.body);
        assert_eq!(event.body["subtopic"], "GdprRequestStatusChanged");
        let keys: Vec<&String> = event.body["message"].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "trackingId",
                "reqType",
                "requestStatus",
                "tenant",
                "updatedAt"
            ]
        );
        assert!(
            !event.body.to_string().contains("zelda"),
            "no personal data: {}",
            event.body
        );
    }
    // Marked published, so nothing is announced again.
    let mut unpublished = app.store.unpublished_status_changes(10).await.unwrap();
    for _ in 0..20 {
        if unpublished.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        unpublished = app.store.unpublished_status_changes(10).await.unwrap();
    }
    assert!(unpublished.is_empty(), "{unpublished:?}");
    events.assert_quiet(Duration::from_secs(1)).await;
    app.stop().await;
}
