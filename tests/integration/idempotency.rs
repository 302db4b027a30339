//! Idempotency keys are scoped by tenant and operation: the same message_id from
//! two tenants is two messages, a revoke that reuses its register's correlation
//! id is a revoke, and keys recorded before scoping are still recognised after
//! the migration that rewrites them.

use std::time::Duration;

use privacy_worker::crypto::{IDENTIFIER_CONTEXT, Keys};
use serde_json::{Value, json};

use crate::helpers::{Backend, properties, sample_with, store_at_migration, test_env_over};
use crate::lifecycle::{Rcdp, tracking_id};
use crate::on_both_backends;

on_both_backends!(
    one_message_id_from_two_tenants_registers_two_requests,
    a_revoke_reusing_its_register_s_correlation_id_revokes,
    keys_recorded_before_scoping_are_recognised_after_the_migration,
);

fn access(source: &str) -> Value {
    json!({"reqType": "access", "reqParam": "gcrid", "reqSource": source})
}

async fn one_message_id_from_two_tenants_registers_two_requests(backend: Backend) {
    let app = crate::helpers::spawn_app(backend).await;
    let mut rcdp = Rcdp::new(&app).await;
    let same = (Some("shared-id"), Some("shared-id"));
    let a = rcdp
        .call_with_ids(
            "RegisterGdprRequest",
            access("a"),
            (Some("G-1"), Some("tenant-a")),
            same,
        )
        .await;
    let b = rcdp
        .call_with_ids(
            "RegisterGdprRequest",
            access("b"),
            (Some("G-1"), Some("tenant-b")),
            same,
        )
        .await;
    assert_ne!(tracking_id(&a), tracking_id(&b), "two requests: {a} {b}");
    assert_eq!(app.store.counts().await.unwrap(), (2, 2));
    // Each tenant sees its own.
    let status = rcdp.status(tracking_id(&b), "tenant-b").await;
    assert_eq!(status["data"]["requestStatus"], "registered", "{status}");
    app.stop().await;
}

async fn a_revoke_reusing_its_register_s_correlation_id_revokes(backend: Backend) {
    let app = crate::helpers::spawn_app(backend).await;
    let mut rcdp = Rcdp::new(&app).await;
    let conversation = (None, Some("conversation-7"));
    let who = (Some("G-7"), Some("t1"));
    let registered = rcdp
        .call_with_ids("RegisterGdprRequest", access("crm"), who, conversation)
        .await;
    let id = tracking_id(&registered);
    let revoked = rcdp
        .call_with_ids("RevokeGdprActions", access("crm"), who, conversation)
        .await;
    let text = "Access request successfully revoked.";
    assert_eq!(
        revoked,
        json!({"status": "OK", "message": text, "data": text})
    );
    // A status query with the same correlation id is answered afresh.
    let status = rcdp
        .call_with_ids(
            "GetGdprRequestStatus",
            json!({"trackingId": id}),
            (None, Some("t1")),
            conversation,
        )
        .await;
    assert_eq!(status["data"]["requestStatus"], "revoked", "{status}");
    // A redelivery of the revoke is still answered with the revoke's reply.
    let again = rcdp
        .call_with_ids("RevokeGdprActions", access("crm"), who, conversation)
        .await;
    assert_eq!(again, revoked);
    assert_eq!(app.store.counts().await.unwrap(), (1, 2));
    app.stop().await;
}

/// A store as the worker left it before keys were scoped: schema 0001 only, one
/// LCM request recorded under `mid:lcm-old` and one RCDP registration under
/// `cid:rcdp-old`, written with `keys`.
async fn a_store_from_before_scoping(url: &str, keys: &Keys) {
    let now = chrono::Utc::now().to_rfc3339();
    let hex = |bytes: &[u8]| hex::encode(bytes);
    let mut sql = Vec::new();
    let requests = [
        (10000, "default", "lcm", "account", "acct-old"),
        (10001, "t1", "rcdp", "gcrid", "G-old"),
    ];
    for (id, tenant, flow, itype, value) in requests {
        let sealed = keys.seal(IDENTIFIER_CONTEXT, value.as_bytes());
        let index = keys.blind_index(itype, value);
        let bytes = if url.starts_with("sqlite:") {
            format!("X'{}'", hex(&sealed.bytes))
        } else {
            format!("'\\x{}'::bytea", hex(&sealed.bytes))
        };
        sql.push(format!(
            "INSERT INTO privacy_requests (id, tenant, flow, kind, pseudonymize, identifier_type, \
             identifier_index, identifier_value, key_id, status, created_at, updated_at, due_at) \
             VALUES ({id}, '{tenant}', '{flow}', 'access', false, '{itype}', '{index}', {bytes}, \
             '{}', 'registered', '{now}', '{now}', '{now}')",
            sealed.key_id
        ));
    }
    let messages = [
        (
            "mid:lcm-old",
            10000,
            "GetDataPrivacyStatusRequest",
            r#"{"response":"10000"}"#,
        ),
        (
            "cid:rcdp-old",
            10001,
            "RegisterGdprRequest",
            r#"{"status":"OK","data":{"message":"Request submitted successfully.","trackingId":10001}}"#,
        ),
    ];
    for (key, request_id, operation, reply) in messages {
        sql.push(format!(
            "INSERT INTO inbound_messages (idempotency_key, request_id, operation, routing_key, \
             details, reply_payload, received_at, answered_at) VALUES ('{key}', {request_id}, \
             '{operation}', 'LCM.Webservice.{operation}', '{{}}', '{reply}', '{now}', '{now}')"
        ));
    }
    if url.starts_with("postgres") {
        sql.push("SELECT setval('privacy_request_id_seq', 10001)".to_owned());
    }
    store_at_migration(url, 1, sql).await;
}

async fn keys_recorded_before_scoping_are_recognised_after_the_migration(backend: Backend) {
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("keys.json");
    let (keys, _) = Keys::load_or_create(&key_file).unwrap();
    let mut app = test_env_over(backend, async |url: &str| {
        a_store_from_before_scoping(url, &keys).await
    })
    .await;

    // Another key file cannot read that store: refused, even though the store
    // recorded no keys then (they are tried on its newest identifier).
    let mut wrong = app.settings.clone();
    let wrong_file = key_dir.path().join("wrong.json");
    Keys::load_or_create(&wrong_file).unwrap();
    wrong.key_file = Some(wrong_file);
    let refused = app.worker_refuses(wrong).await.to_string();
    assert!(
        refused.contains("does not open the store's data"),
        "{refused}"
    );

    let mut settings = app.settings.clone();
    settings.key_file = Some(key_file);
    app.start_worker(settings);
    let mut replies = app.replies().await;
    let lcm = sample_with(&[
        ("AccountNumber", json!("acct-old")),
        ("callid", json!("call-old")),
    ]);
    app.publish(
        "LCM.WebService.GetDataPrivacyStatusRequest",
        &lcm,
        properties(Some("lcm-old"), None),
    )
    .await;
    let reply = replies.take(1, Duration::from_secs(30)).await.remove(0);
    assert_eq!(reply.response(), Some("10000"));
    let mut rcdp = Rcdp::new(&app).await;
    let again = rcdp
        .call_with_ids(
            "RegisterGdprRequest",
            access("crm"),
            (Some("G-old"), Some("t1")),
            (None, Some("rcdp-old")),
        )
        .await;
    assert_eq!(
        tracking_id(&again),
        10001,
        "the stored reply, not a duplicate error: {again}"
    );
    // Nothing recorded anew: both were recognised as the messages answered before.
    assert_eq!(app.store.counts().await.unwrap(), (2, 2));
    app.stop().await;
}
