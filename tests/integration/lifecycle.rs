//! The request lifecycle over the bus, on SQLite and on PostgreSQL: RCDP register,
//! revoke and status with the documents' reply texts, the duplicate rules, tenant
//! isolation, LCM requests joining a pending access request, the audit trail, and
//! no personal data in plain text in the database.

use std::time::Duration;

use lapin::types::{AMQPValue, FieldTable};
use privacy_worker::request::RequestStatus;
use privacy_worker::store::Transition;
use serde_json::{Value, json};

use crate::helpers::{Backend, Replies, TestApp, properties, sample_with, spawn_app};
use crate::on_both_backends;

const WAIT: Duration = Duration::from_secs(30);

on_both_backends!(
    registering_access_gives_a_tracking_id_and_a_duplicate_is_refused,
    a_pending_forget_blocks_every_new_request_until_revoked,
    only_registered_requests_can_be_revoked,
    tenants_never_see_match_or_revoke_each_other_s_requests,
    invalid_rcdp_requests_are_answered_in_the_error_shape_and_parked,
    concurrent_registrations_for_one_customer_yield_one_request_and_one_duplicate_error,
    an_lcm_request_joins_the_pending_access_request_of_its_customer,
    personal_data_is_not_stored_in_plain_text,
    operators_list_show_reveal_revoke_and_audit_requests,
    unknown_tenants_are_refused_when_a_tenant_list_is_configured,
);

async fn unknown_tenants_are_refused_when_a_tenant_list_is_configured(backend: Backend) {
    let app = crate::helpers::spawn_app_with(backend, |s| {
        s.intake.tenants = vec!["t1".into(), "t2".into()]
    })
    .await;
    let mut rcdp = Rcdp::new(&app).await;
    tracking_id(&rcdp.register("access", "gcrid", "G-7", "t2").await);
    assert_eq!(
        rcdp.register("access", "gcrid", "G-7", "t3").await,
        json!({"error": "tenant_hash names no known tenant."})
    );
    app.stop().await;
}

/// An RCDP client with its own reply queue.
pub struct Rcdp<'a> {
    app: &'a TestApp,
    queue: String,
    replies: Replies,
    sent: usize,
}

impl<'a> Rcdp<'a> {
    pub async fn new(app: &'a TestApp) -> Self {
        let queue = app.bus.private_queue().await;
        let replies = app.bus.consume(&queue).await;
        Self {
            app,
            queue,
            replies,
            sent: 0,
        }
    }

    /// Publishes without waiting for the reply, with a message id and
    /// correlation id of its own.
    async fn send(
        &mut self,
        subtopic: &str,
        body: Value,
        value: Option<&str>,
        tenant: Option<&str>,
    ) {
        let id = format!("rcdp-{}-{}", self.queue, self.sent + 1);
        self.send_with_ids(subtopic, body, value, tenant, Some(&id), Some(&id))
            .await;
    }

    /// Publishes without waiting for the reply, with these ids.
    async fn send_with_ids(
        &mut self,
        subtopic: &str,
        body: Value,
        value: Option<&str>,
        tenant: Option<&str>,
        message_id: Option<&str>,
        correlation_id: Option<&str>,
    ) {
        self.sent += 1;
        let mut headers = FieldTable::default();
        if let Some(value) = value {
            headers.insert("reqParamValue".into(), AMQPValue::LongString(value.into()));
        }
        if let Some(tenant) = tenant {
            headers.insert("tenant_hash".into(), AMQPValue::LongString(tenant.into()));
        }
        let envelope = json!({"channel": "LCM", "topic": "Webservice", "subtopic": subtopic, "source": "crm", "data": body});
        let props = properties(message_id, correlation_id)
            .with_reply_to(self.queue.as_str().into())
            .with_headers(headers);
        self.app
            .publish(
                &format!("LCM.Webservice.{subtopic}"),
                &serde_json::to_vec(&envelope).unwrap(),
                props,
            )
            .await;
    }

    /// Publishes and returns the reply's payload (`message`).
    pub async fn call(
        &mut self,
        subtopic: &str,
        body: Value,
        value: Option<&str>,
        tenant: Option<&str>,
    ) -> Value {
        self.send(subtopic, body, value, tenant).await;
        self.reply(subtopic).await
    }

    /// Publishes with these ids and returns the reply's payload.
    pub async fn call_with_ids(
        &mut self,
        subtopic: &str,
        body: Value,
        (value, tenant): (Option<&str>, Option<&str>),
        (message_id, correlation_id): (Option<&str>, Option<&str>),
    ) -> Value {
        self.send_with_ids(subtopic, body, value, tenant, message_id, correlation_id)
            .await;
        self.reply(subtopic).await
    }

    async fn reply(&mut self, subtopic: &str) -> Value {
        let reply = self.replies.take(1, WAIT).await.remove(0);
        assert_eq!(reply.body["subtopic"], format!("{subtopic}Response"));
        crate::schemas::assert_valid_reply(&reply.body);
        reply.body["message"].clone()
    }

    pub async fn register(&mut self, kind: &str, param: &str, value: &str, tenant: &str) -> Value {
        let body = json!({"reqType": kind, "reqParam": param, "reqSource": "test_1"});
        self.call("RegisterGdprRequest", body, Some(value), Some(tenant))
            .await
    }

    async fn revoke(&mut self, kind: &str, param: &str, value: &str, tenant: &str) -> Value {
        let body = json!({"reqType": kind, "reqParam": param, "reqSource": "test_1"});
        self.call("RevokeGdprActions", body, Some(value), Some(tenant))
            .await
    }

    pub async fn status(&mut self, tracking_id: i64, tenant: &str) -> Value {
        self.call(
            "GetGdprRequestStatus",
            json!({"trackingId": tracking_id}),
            None,
            Some(tenant),
        )
        .await
    }
}

pub fn tracking_id(reply: &Value) -> i64 {
    assert_eq!(reply["status"], "OK", "{reply}");
    assert_eq!(reply["data"]["message"], "Request submitted successfully.");
    reply["data"]["trackingId"]
        .as_i64()
        .expect("a numeric tracking id")
}

async fn registering_access_gives_a_tracking_id_and_a_duplicate_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut rcdp = Rcdp::new(&app).await;

    let id = tracking_id(
        &rcdp
            .register("access", "email", "John.Smith@example.com", "t1")
            .await,
    );
    assert!(id >= 10000);
    // The same customer: e-mail addresses compare case-insensitively.
    let duplicate = rcdp
        .register("Access", "EMAIL", " john.smith@EXAMPLE.com", "t1")
        .await;
    assert_eq!(
        duplicate,
        json!({"error": format!("Request already exist with tracking id:[{id}] and request status : [registered]")})
    );

    assert_eq!(
        rcdp.revoke("access", "email", "john.smith@example.com", "t1")
            .await,
        json!({"status": "OK", "message": "Access request successfully revoked.", "data": "Access request successfully revoked."})
    );

    let events = app.store.request_events(id).await.unwrap();
    let reasons: Vec<&str> = events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "RegisterGdprRequest received",
            "duplicate access registration refused",
            "RevokeGdprActions received"
        ]
    );
    assert!(events.iter().all(|e| e.actor == "source:test_1"));
    app.stop().await;
}

async fn a_pending_forget_blocks_every_new_request_until_revoked(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut rcdp = Rcdp::new(&app).await;

    let forget = tracking_id(
        &rcdp
            .register("forget", "Mobile", "+1 415 234 7172", "t1")
            .await,
    );
    let blocked = json!({"error": format!(
        "Request already exist for [forget] with tracking id:{forget}, revoke the existing request before raising any new request."
    )});
    // Mobile numbers compare by their digits.
    assert_eq!(
        rcdp.register("access", "mobile", "14152347172", "t1").await,
        blocked
    );
    assert_eq!(
        rcdp.register("forget", "mobile", "1-415-234-7172", "t1")
            .await,
        blocked
    );

    let revoked = rcdp.revoke("forget", "mobile", "14152347172", "t1").await;
    assert_eq!(
        revoked,
        json!({"status": "OK", "message": "Forget request successfully revoked.", "data": "Forget request successfully revoked."})
    );
    let access = tracking_id(&rcdp.register("access", "mobile", "14152347172", "t1").await);
    assert_ne!(access, forget);

    let events = app.store.request_events(forget).await.unwrap();
    let steps: Vec<(Option<&str>, &str)> = events
        .iter()
        .map(|e| {
            (
                e.from_status.map(RequestStatus::as_str),
                e.to_status.as_str(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            (None, "registered"),
            (Some("registered"), "registered"),
            (Some("registered"), "registered"),
            (Some("registered"), "revoked")
        ]
    );
    app.stop().await;
}

async fn only_registered_requests_can_be_revoked(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut rcdp = Rcdp::new(&app).await;

    assert_eq!(
        rcdp.revoke("access", "gcrid", "G-1", "t1").await,
        json!({"error": "No access request found to revoke."})
    );
    let id = tracking_id(&rcdp.register("access", "gcrId", "G-1", "t1").await);
    let moved = app
        .store
        .transition(id, RequestStatus::InProgress, "system", "export started")
        .await
        .unwrap();
    assert_eq!(moved, Transition::Moved(RequestStatus::Registered));
    assert_eq!(
        rcdp.revoke("access", "gcrid", "G-1", "t1").await,
        json!({"error": format!("Request with tracking id:[{id}] has request status : [in_progress]; only requests in status [registered] can be revoked.")})
    );
    app.store
        .transition(id, RequestStatus::Completed, "system", "export done")
        .await
        .unwrap();
    assert_eq!(
        rcdp.revoke("access", "gcrid", "G-1", "t1").await,
        json!({"error": format!("Request with tracking id:[{id}] has request status : [completed]; only requests in status [registered] can be revoked.")})
    );
    let summary = app.store.request_summary(id).await.unwrap().unwrap();
    assert_eq!(summary.status, RequestStatus::Completed);
    app.stop().await;
}

async fn tenants_never_see_match_or_revoke_each_other_s_requests(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut rcdp = Rcdp::new(&app).await;

    let mine = tracking_id(&rcdp.register("access", "customer", "C-42", "t1").await);
    let theirs = tracking_id(&rcdp.register("access", "customer", "C-42", "t2").await);
    assert_ne!(
        mine, theirs,
        "another tenant's pending request is no duplicate"
    );
    assert_eq!(
        rcdp.revoke("access", "customer", "C-42", "t3").await,
        json!({"error": "No access request found to revoke."})
    );
    assert_eq!(
        rcdp.status(mine, "t2").await,
        json!({"error": format!("No request found with tracking id:[{mine}].")})
    );
    let status = rcdp.status(mine, "t1").await;
    assert_eq!(status["status"], "OK");
    assert_eq!(status["data"]["trackingId"], mine);
    assert_eq!(status["data"]["reqType"], "access");
    assert_eq!(status["data"]["requestStatus"], "registered");
    assert!(status["data"]["createdAt"].is_string() && status["data"]["updatedAt"].is_string());
    assert!(
        !status.to_string().contains("C-42"),
        "no personal data in a status reply"
    );
    app.stop().await;
}

async fn invalid_rcdp_requests_are_answered_in_the_error_shape_and_parked(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut rcdp = Rcdp::new(&app).await;
    let cases = [
        (
            json!({"reqParam": "email", "reqSource": "s"}),
            Some("a@b.example"),
            Some("t1"),
            "reqType is required: access or forget.",
        ),
        (
            json!({"reqType": "access", "reqParam": "email", "reqSource": "elevenchars"}),
            Some("a@b.example"),
            Some("t1"),
            "reqSource must be at most 10 characters.",
        ),
        (
            json!({"reqType": "access", "reqParam": "passport", "reqSource": "s"}),
            Some("X1"),
            Some("t1"),
            "reqParam must be one of gcrid, email, mobile, customer.",
        ),
        (
            json!({"reqType": "access", "reqParam": "email", "reqSource": "s"}),
            None,
            Some("t1"),
            "reqParamValue is required (AMQP header reqParamValue).",
        ),
        (
            json!({"reqType": "access", "reqParam": "email", "reqSource": "s"}),
            Some("a@b.example"),
            None,
            "tenant_hash is required (AMQP header tenant_hash).",
        ),
        (
            json!({"reqType": "access", "reqParam": "email", "reqSource": "s"}),
            Some("not-an-address"),
            Some("t1"),
            "reqParamValue is not a well-formed email address.",
        ),
    ];
    for (body, value, tenant, error) in &cases {
        let reply = rcdp
            .call("RegisterGdprRequest", body.clone(), *value, *tenant)
            .await;
        assert_eq!(reply, json!({"error": error}));
    }
    assert!(
        !rcdp
            .call(
                "RegisterGdprRequest",
                cases[5].0.clone(),
                cases[5].1,
                cases[5].2
            )
            .await
            .to_string()
            .contains("not-an-address")
    );
    let invalid = &app.topology().invalid_queue;
    assert_eq!(
        app.bus.depth_becomes(invalid, cases.len() as u32 + 1).await,
        cases.len() as u32 + 1
    );
    assert_eq!(app.store.counts().await.unwrap(), (0, 0));
    app.stop().await;
}

async fn concurrent_registrations_for_one_customer_yield_one_request_and_one_duplicate_error(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let mut rcdp = Rcdp::new(&app).await;
    let customers = 10;
    // Two registrations per customer, back to back: the worker handles them concurrently.
    for c in 0..customers {
        for _ in 0..2 {
            let body = json!({"reqType": "access", "reqParam": "gcrid", "reqSource": "race"});
            rcdp.send(
                "RegisterGdprRequest",
                body,
                Some(&format!("G-{c}")),
                Some("t1"),
            )
            .await;
        }
    }
    let replies = rcdp.replies.take(2 * customers, WAIT).await;
    let ok: Vec<i64> = replies
        .iter()
        .filter(|r| r.body["message"]["status"] == "OK")
        .map(|r| r.body["message"]["data"]["trackingId"].as_i64().unwrap())
        .collect();
    let refused: Vec<&str> = replies
        .iter()
        .filter_map(|r| r.body["message"]["error"].as_str())
        .collect();
    assert_eq!(ok.len(), customers, "{replies:?}");
    assert_eq!(refused.len(), customers);
    for id in &ok {
        let text = format!(
            "Request already exist with tracking id:[{id}] and request status : [registered]"
        );
        assert_eq!(
            refused.iter().filter(|r| **r == text).count(),
            1,
            "one refusal names {id}"
        );
    }
    let (requests, _) = app.store.counts().await.unwrap();
    assert_eq!(requests, customers as i64);
    app.stop().await;
}

async fn an_lcm_request_joins_the_pending_access_request_of_its_customer(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut replies = app.replies().await;
    let key = "LCM.WebService.GetDataPrivacyStatusRequest";

    app.publish(
        key,
        &sample_with(&[("callid", json!("call-1"))]),
        properties(Some("a"), None),
    )
    .await;
    let first = replies.take(1, WAIT).await.remove(0);
    // Another call, another agent, same customer (AccountNumber) and kind.
    let again = sample_with(&[("callid", json!("call-2")), ("AgentID", json!("maria"))]);
    app.publish(key, &again, properties(Some("b"), None)).await;
    let second = replies.take(1, WAIT).await.remove(0);
    let pseudonymize = sample_with(&[("callid", json!("call-3")), ("IsPseudonymize", json!(true))]);
    app.publish(key, &pseudonymize, properties(Some("c"), None))
        .await;
    let third = replies.take(1, WAIT).await.remove(0);

    assert_eq!(
        first.response(),
        second.response(),
        "the agent quotes the pending id"
    );
    assert_ne!(
        first.response(),
        third.response(),
        "pseudonymization is another request"
    );
    let id: i64 = first.response().unwrap().parse().unwrap();
    let summary = app.store.request_summary(id).await.unwrap().unwrap();
    assert_eq!(summary.messages, 2);
    let events = app.store.request_events(id).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].actor, "agent:maria");
    assert_eq!(
        events[1].reason,
        "duplicate GetDataPrivacyStatusRequest joined this request"
    );
    app.stop().await;
}

async fn personal_data_is_not_stored_in_plain_text(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut replies = app.replies().await;
    let mut rcdp = Rcdp::new(&app).await;
    let secrets = [
        "Zelda Quixotic",
        "4155550123",
        "zelda.q@example.org",
        "prefers Tuesdays",
        "ACCT-77-SECRET",
        "gcr-secret-9",
    ];
    let body = sample_with(&[
        ("CustomerName", json!(secrets[0])),
        ("PhoneNumber", json!(secrets[1])),
        ("EmailID", json!(secrets[2])),
        ("AgentComments", json!(secrets[3])),
        ("AccountNumber", json!(secrets[4])),
    ]);
    app.publish(
        "LCM.WebService.GetDataPrivacyStatusRequest",
        &body,
        properties(Some("pii"), None),
    )
    .await;
    replies.take(1, WAIT).await;
    tracking_id(&rcdp.register("access", "gcrid", secrets[5], "t1").await);
    tracking_id(&rcdp.register("forget", "email", secrets[2], "t1").await);

    let dump = crate::helpers::dump_database(&app).await;
    assert!(dump.len() > 1000, "the dump holds the rows");
    for secret in secrets {
        assert!(!dump.contains(secret), "{secret:?} is stored in plain text");
    }
    app.stop().await;
}

/// Runs `privacy-worker requests ...` on the app's store as operator alice.
async fn requests_command(app: &TestApp, args: &[&str]) -> (bool, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_privacy-worker"));
    command
        .arg("requests")
        .args(args)
        .env("DATABASE_URL", &app.settings.store.url)
        .env("PRIVACY_OPERATOR", "alice")
        .env_remove("PRIVACY_KEY_FILE");
    if let Some(path) = &app.settings.key_file {
        command.env("PRIVACY_KEY_FILE", path);
    }
    let output = command.output().await.expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        (true, stdout)
    } else {
        (
            false,
            format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)),
        )
    }
}

async fn operators_list_show_reveal_revoke_and_audit_requests(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut rcdp = Rcdp::new(&app).await;
    let id = tracking_id(
        &rcdp
            .register("access", "email", "opal.operator@example.org", "t9")
            .await,
    );

    let (ok, listed) = requests_command(&app, &["list", "--tenant", "t9", "--json"]).await;
    assert!(ok, "{listed}");
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["id"], id);
    assert_eq!(listed[0]["status"], "registered");

    let (ok, shown) = requests_command(&app, &["show", &id.to_string()]).await;
    assert!(ok, "{shown}");
    assert!(
        !shown.contains("opal.operator"),
        "no personal data without --reveal"
    );
    let (ok, revealed) = requests_command(
        &app,
        &[
            "show",
            &id.to_string(),
            "--reveal",
            "--reason",
            "subject access check",
        ],
    )
    .await;
    assert!(ok, "{revealed}");
    assert!(revealed.contains("opal.operator@example.org"));

    let (ok, revoked) = requests_command(
        &app,
        &["revoke", &id.to_string(), "--reason", "customer withdrew"],
    )
    .await;
    assert!(ok, "{revoked}");
    let (ok, again) =
        requests_command(&app, &["revoke", &id.to_string(), "--reason", "twice"]).await;
    assert!(!ok);
    assert!(again.contains("has status [revoked]"), "{again}");

    let (ok, audit) = requests_command(&app, &["audit", &id.to_string()]).await;
    assert!(ok, "{audit}");
    let lines: Vec<&str> = audit.lines().collect();
    assert_eq!(lines.len(), 3, "{audit}");
    assert!(lines[0].contains("source:test_1 - -> registered"));
    assert!(lines[1].contains(
        "operator:alice registered -> registered: personal data revealed: subject access check"
    ));
    assert!(lines[2].contains("operator:alice registered -> revoked: customer withdrew"));
    app.stop().await;
}
