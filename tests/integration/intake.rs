//! End to end over the bus, on SQLite and on PostgreSQL: requests in, replies out,
//! rows in the store.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Backend, SAMPLE_REQUEST, TABLE_REQUEST, properties, sample_with, spawn_app};
use crate::on_both_backends;
use crate::schemas::assert_valid_reply;

const SAMPLE_KEY: &str = "LCM.WebService.GetDataPrivacyStatusRequest";
const TABLE_KEY: &str = "LCM.Webservice.GetDataPrivacyStatusRequest";
const WAIT: Duration = Duration::from_secs(30);

on_both_backends!(
    the_seed_sample_is_answered_with_a_request_id_on_the_reply_topic,
    the_table_form_is_answered_and_correlated_by_message_id,
    a_request_with_reply_to_also_gets_the_reply_in_that_queue,
    invalid_input_is_answered_with_an_error_and_parked,
    a_duplicate_message_id_is_answered_with_the_same_id_and_recorded_once,
    a_natural_key_duplicate_is_answered_with_the_same_id,
    a_thousand_requests_get_a_thousand_distinct_ids,
    a_burst_repeating_customers_and_message_ids_is_decided_as_if_one_by_one,
);

async fn the_seed_sample_is_answered_with_a_request_id_on_the_reply_topic(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut replies = app.replies().await;

    app.publish(
        SAMPLE_KEY,
        SAMPLE_REQUEST.as_bytes(),
        properties(None, Some("corr-1")),
    )
    .await;

    let reply = replies.take(1, WAIT).await.remove(0);
    assert_eq!(
        reply.routing_key,
        "LCM.WebService.SetDataPrivacyStatusResponse"
    );
    assert_eq!(reply.correlation_id.as_deref(), Some("corr-1"));
    assert_valid_reply(&reply.body);
    assert_eq!(reply.body["subtopic"], "SetDataPrivacyStatusResponse");
    let id: i64 = reply
        .response()
        .expect("a request id")
        .parse()
        .expect("decimal");
    assert!(id >= 10000, "ids start at 10000, got {id}");

    let summary = app.store.request_summary(id).await.unwrap().expect("row");
    assert_eq!(
        (summary.status.as_str(), summary.kind.as_str()),
        ("registered", "access")
    );
    assert_eq!(summary.messages, 1);
    let events = app.store.request_events(id).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].to_status.as_str(), "registered");
    assert_eq!(events[0].actor, "agent:rajat");
    app.stop().await;
}

async fn the_table_form_is_answered_and_correlated_by_message_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut replies = app.replies().await;

    app.publish(
        TABLE_KEY,
        TABLE_REQUEST.as_bytes(),
        properties(Some("msg-1"), None),
    )
    .await;

    let reply = replies.take(1, WAIT).await.remove(0);
    assert_eq!(
        reply.routing_key,
        "LCM.Webservice.SetDataPrivacyStatusResponse"
    );
    assert_eq!(reply.correlation_id.as_deref(), Some("msg-1"));
    assert_valid_reply(&reply.body);
    assert!(reply.response().is_some(), "{}", reply.body);
    assert_eq!(app.store.counts().await.unwrap(), (1, 1));
    app.stop().await;
}

async fn a_request_with_reply_to_also_gets_the_reply_in_that_queue(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut on_topic = app.replies().await;
    let private = app.bus.private_queue().await;
    let mut direct = app.bus.consume(&private).await;

    let props = properties(Some("rpc-1"), Some("rpc-corr")).with_reply_to(private.as_str().into());
    app.publish(SAMPLE_KEY, SAMPLE_REQUEST.as_bytes(), props)
        .await;

    let direct_reply = direct.take(1, WAIT).await.remove(0);
    let topic_reply = on_topic.take(1, WAIT).await.remove(0);
    assert_eq!(direct_reply.correlation_id.as_deref(), Some("rpc-corr"));
    assert_eq!(direct_reply.body, topic_reply.body);
    assert_valid_reply(&direct_reply.body);
    direct.assert_quiet(Duration::from_millis(300)).await;
    app.stop().await;
}

async fn invalid_input_is_answered_with_an_error_and_parked(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut replies = app.replies().await;
    let bad_phone = "call me on 0800";
    let invalid = sample_with(&[
        ("PhoneNumber", json!(bad_phone)),
        ("callid", Value::Null),
        ("IsPseudonymize", json!("no")),
    ]);

    app.publish(SAMPLE_KEY, &invalid, properties(Some("bad-1"), None))
        .await;
    app.publish(SAMPLE_KEY, b"{not json", properties(Some("bad-2"), None))
        .await;
    app.publish(
        SAMPLE_KEY,
        SAMPLE_REQUEST.as_bytes(),
        properties(Some("good"), None),
    )
    .await;

    let mut got = replies.take(3, WAIT).await;
    got.sort_by_key(|r| r.correlation_id.clone());
    let [bad_fields, bad_json, good] = [&got[0], &got[1], &got[2]];
    for reply in &got {
        assert_valid_reply(&reply.body);
    }
    let error = &bad_fields.body["message"]["error"];
    assert_eq!(bad_fields.body["message"]["response"], Value::Null);
    assert_eq!(error["code"], "invalid_request");
    let fields: Vec<&str> = error["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["PhoneNumber", "CallId", "IsPseudonymize"]);
    assert!(
        !bad_fields.body.to_string().contains(bad_phone),
        "error reply repeats input"
    );
    assert_eq!(bad_json.body["message"]["error"]["code"], "not_json");
    assert!(good.response().is_some());

    // Both invalid messages are parked, body unchanged, with headers saying why.
    // The reply can overtake the parked copy: wait until both are in the queue.
    let invalid_queue = &app.topology().invalid_queue;
    assert_eq!(app.bus.depth_becomes(invalid_queue, 2).await, 2);
    let mut parked = Vec::new();
    while let Some(message) = app.bus.get(invalid_queue).await {
        parked.push(message);
    }
    assert_eq!(parked.len(), 2, "two messages parked");
    let (body, headers) = parked
        .iter()
        .find(|(_, h)| h["x-privacy-error-code"] == "invalid_request")
        .expect("the invalid request is parked");
    assert_eq!(body, &invalid);
    assert_eq!(
        headers["x-privacy-error-fields"],
        "PhoneNumber,CallId,IsPseudonymize"
    );
    assert_eq!(headers["x-original-routing-key"], SAMPLE_KEY);
    assert!(headers.contains_key("x-privacy-parked-at"));
    assert!(
        parked
            .iter()
            .any(|(_, h)| h["x-privacy-error-code"] == "not_json")
    );

    assert_eq!(
        app.store.counts().await.unwrap(),
        (1, 1),
        "only the good one is recorded"
    );
    assert_eq!(app.bus.depth(&app.topology().work_queue).await, 0);
    app.stop().await;
}

async fn a_duplicate_message_id_is_answered_with_the_same_id_and_recorded_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut replies = app.replies().await;

    app.publish(
        SAMPLE_KEY,
        SAMPLE_REQUEST.as_bytes(),
        properties(Some("same"), Some("a")),
    )
    .await;
    let first = replies.take(1, WAIT).await.remove(0);
    app.publish(
        SAMPLE_KEY,
        SAMPLE_REQUEST.as_bytes(),
        properties(Some("same"), Some("b")),
    )
    .await;
    let second = replies.take(1, WAIT).await.remove(0);

    assert_eq!(second.correlation_id.as_deref(), Some("b"));
    assert_eq!(first.response(), second.response());
    assert_eq!(app.store.counts().await.unwrap(), (1, 1));
    app.stop().await;
}

async fn a_natural_key_duplicate_is_answered_with_the_same_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut replies = app.replies().await;

    // No message_id: CallId + AccountNumber + RequestType + IsPseudonymize decide.
    let first = sample_with(&[("CustomerName", json!("John Smith"))]);
    let same_key = sample_with(&[
        ("CustomerName", json!("J. Smith")),
        ("RequestType", json!("access to pi data")),
    ]);
    let pseudonymize = sample_with(&[("IsPseudonymize", json!(true))]);
    let mut ids = Vec::new();
    for (body, corr) in [
        (&first, "1"),
        (&same_key, "2"),
        (&pseudonymize, "3"),
        (&first, "4"),
    ] {
        app.publish(SAMPLE_KEY, body, properties(None, Some(corr)))
            .await;
        let reply = replies.take(1, WAIT).await.remove(0);
        ids.push(reply.response().expect("success").to_owned());
    }

    assert_eq!(ids[0], ids[1], "same natural key, same id");
    assert_eq!(ids[0], ids[3], "a re-publish gets the same id");
    assert_ne!(ids[0], ids[2], "IsPseudonymize is part of the key");
    assert_eq!(app.store.counts().await.unwrap(), (2, 2));
    app.stop().await;
}

async fn a_thousand_requests_get_a_thousand_distinct_ids(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut replies = app.replies().await;

    for i in 0..1000 {
        let body = sample_with(&[
            ("callid", json!(format!("call-{i}"))),
            ("AccountNumber", json!(format!("account-{i}"))),
        ]);
        let id = format!("m-{i}");
        app.bus
            .publish_pipelined(
                &app.topology().exchange,
                SAMPLE_KEY,
                &body,
                properties(Some(&id), Some(&id)),
            )
            .await;
    }
    app.bus.wait_for_confirms().await;

    let got = replies.take(1000, Duration::from_secs(120)).await;
    let ids: HashSet<&str> = got.iter().map(|r| r.response().expect("success")).collect();
    let correlations: HashSet<_> = got.iter().map(|r| r.correlation_id.clone()).collect();
    assert_eq!(ids.len(), 1000, "distinct ids");
    assert_eq!(correlations.len(), 1000, "every request answered once");
    assert_eq!(app.store.counts().await.unwrap(), (1000, 1000));
    assert_eq!(app.bus.depth(&app.topology().work_queue).await, 0);
    app.stop().await;
}

async fn a_burst_repeating_customers_and_message_ids_is_decided_as_if_one_by_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut replies = app.replies().await;

    // 300 deliveries at once, so they share batches: 200 distinct messages (the
    // last 100 are redeliveries of the first 100) about 40 customers.
    for i in 0..300 {
        let j = i % 200;
        let body = sample_with(&[
            ("callid", json!(format!("call-{j}"))),
            ("AccountNumber", json!(format!("account-{}", j % 40))),
        ]);
        app.bus
            .publish_pipelined(
                &app.topology().exchange,
                SAMPLE_KEY,
                &body,
                properties(Some(&format!("m-{j}")), Some(&format!("c-{i}"))),
            )
            .await;
    }
    app.bus.wait_for_confirms().await;

    let got = replies.take(300, Duration::from_secs(120)).await;
    let mut by_customer: Vec<HashSet<&str>> = vec![HashSet::new(); 40];
    for reply in &got {
        let i: usize = reply.correlation_id.as_deref().unwrap()[2..]
            .parse()
            .unwrap();
        by_customer[(i % 200) % 40].insert(reply.response().expect("success"));
    }
    assert!(
        by_customer.iter().all(|ids| ids.len() == 1),
        "every customer's messages got one request id: {by_customer:?}"
    );
    let ids: HashSet<&str> = by_customer.iter().flatten().copied().collect();
    assert_eq!(ids.len(), 40, "one request per customer");
    assert_eq!(app.store.counts().await.unwrap(), (40, 200));
    app.stop().await;
}
