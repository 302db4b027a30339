//! Personal data at the edges of the bus: a control character in any field is
//! refused as invalid input (not left to fail in the database as a poison
//! message), and the plain-text copies parked for operators expire.

use std::time::Duration;

use serde_json::json;

use crate::faults::refuse_events_of;
use crate::helpers::{Backend, properties, sample_with, spawn_app, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_character_is_refused_as_invalid_input_naming_its_field() {
    let app = spawn_app(Backend::Postgres).await;
    let mut replies = app.replies().await;
    let body = sample_with(&[("AgentID", json!("ra\u{0}jat")), ("callid", json!("nul-1"))]);
    app.publish(
        "LCM.WebService.GetDataPrivacyStatusRequest",
        &body,
        properties(Some("nul-1"), None),
    )
    .await;
    let reply = replies.take(1, Duration::from_secs(30)).await.remove(0);
    let error = &reply.body["message"]["error"];
    assert_eq!(error["code"], "invalid_request", "{}", reply.body);
    assert_eq!(error["fields"][0]["field"], "AgentID", "{}", reply.body);
    assert_eq!(
        app.bus
            .depth_becomes(&app.topology().invalid_queue, 1)
            .await,
        1
    );
    assert_eq!(app.bus.depth(&app.topology().dead_queue).await, 0);
    assert_eq!(app.store.counts().await.unwrap(), (0, 0));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_copies_expire_after_the_parked_ttl() {
    let app = spawn_app_with(Backend::Postgres, |s| {
        s.intake.parked_ttl = Duration::from_secs(3);
        s.intake.retry_attempts = 1;
    })
    .await;
    let mut replies = app.replies().await;
    let invalid = sample_with(&[("EmailID", json!("not an address"))]);
    app.publish(
        "LCM.WebService.GetDataPrivacyStatusRequest",
        &invalid,
        properties(Some("ttl-invalid"), None),
    )
    .await;
    refuse_events_of(&app, "agent:ttl-poison").await;
    let poison = sample_with(&[("AgentID", json!("ttl-poison")), ("callid", json!("ttl-2"))]);
    app.publish(
        "LCM.WebService.GetDataPrivacyStatusRequest",
        &poison,
        properties(Some("ttl-poison"), None),
    )
    .await;
    replies.take(2, Duration::from_secs(30)).await;
    let t = app.topology();
    for queue in [&t.invalid_queue, &t.dead_queue] {
        assert_eq!(app.bus.depth_becomes(queue, 1).await, 1, "{queue}: parked");
    }
    for queue in [&t.invalid_queue, &t.dead_queue] {
        assert_eq!(app.bus.depth_becomes(queue, 0).await, 0, "{queue}: expired");
    }
    app.stop().await;
}
