//! The real binary, run with trace logging, must not write the personal data of
//! the requests it handles, in any rendering (the AMQP client would print
//! frames as byte lists); and it must exit 0 on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use lapin::types::{AMQPValue, FieldTable};
use serde_json::json;
use tokio::io::AsyncReadExt;

use crate::helpers::{Bus, amqp_url, properties, sample_with, test_topology, topology_env};

const NAME: &str = "Zelda Quixotic-Pemberton";
const PHONE: &str = "+44 20 7946 0958";
const OTHER_PHONE: &str = "4152347199";
const EMAIL: &str = "zelda.q.pemberton@example.org";
const COMMENT: &str = "Caller mentioned her daughter Ophelia";
const ACCOUNT: &str = "ACCT-77-Quixotic";
const GCRID: &str = "GCR-Pemberton-4711";
const TENANT: &str = "tenant-zelda";

/// The ways a secret could show in a log: as text, and as the byte list that
/// `Debug` gives a `Vec<u8>` (frame bodies, header values).
fn renderings(secret: &str) -> [String; 2] {
    let bytes: Vec<String> = secret.bytes().map(|b| b.to_string()).collect();
    [secret.to_owned(), bytes.join(", ")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_never_contain_personal_data_and_sigterm_exits_zero() {
    let topology = test_topology();
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::connect().await;
    bus.declare(&topology).await;
    let mut replies = bus
        .listen(&topology.exchange, "*.*.SetDataPrivacyStatusResponse")
        .await;

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_privacy-worker"))
        .arg("run")
        .env("AMQP_URL", amqp_url())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("r.db").display()),
        )
        .envs(topology_env(&topology))
        .env("RUST_LOG", "trace")
        .env("PRIVACY_HTTP_ADDR", "")
        .env("LOG_FORMAT", "text")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    // Read both pipes while the worker runs, so a full pipe never blocks it.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = tokio::spawn(async move {
        let mut text = String::new();
        stdout.read_to_string(&mut text).await.map(|_| text)
    });
    let err = tokio::spawn(async move {
        let mut text = String::new();
        stderr.read_to_string(&mut text).await.map(|_| text)
    });

    let personal = [
        ("CustomerName", json!(NAME)),
        ("PhoneNumber", json!(PHONE)),
        ("OtherPhoneNumber", json!(OTHER_PHONE)),
        ("EmailID", json!(EMAIL)),
        ("AgentComments", json!(COMMENT)),
        ("AccountNumber", json!(ACCOUNT)),
    ];
    for i in 0..3 {
        let mut changes = personal.to_vec();
        changes.push(("callid", json!(format!("log-call-{i}"))));
        let body = sample_with(&changes);
        bus.publish(
            &topology.exchange,
            "LCM.WebService.GetDataPrivacyStatusRequest",
            &body,
            properties(Some(&format!("log-{i}")), None),
        )
        .await;
    }
    // Invalid, with the same personal data in the fields at fault and beside them.
    let mut changes = personal.to_vec();
    changes.push(("EmailID", json!(format!("{NAME} <{EMAIL}>"))));
    changes.push(("PhoneNumber", json!(format!("{PHONE} ext. 12"))));
    let invalid = sample_with(&changes);
    bus.publish(
        &topology.exchange,
        "LCM.WebService.GetDataPrivacyStatusRequest",
        &invalid,
        properties(Some("log-invalid"), None),
    )
    .await;
    let got = replies.take(4, Duration::from_secs(60)).await;
    assert_eq!(got.iter().filter(|r| r.response().is_some()).count(), 3);
    // An RCDP registration and a status query, identifier and tenant in headers.
    let queue = bus.private_queue().await;
    let mut rcdp_replies = bus.consume(&queue).await;
    let mut headers = FieldTable::default();
    headers.insert("reqParamValue".into(), AMQPValue::LongString(GCRID.into()));
    headers.insert("tenant_hash".into(), AMQPValue::LongString(TENANT.into()));
    for (subtopic, data) in [
        (
            "RegisterGdprRequest",
            json!({"reqType": "access", "reqParam": "gcrid", "reqSource": "logs"}),
        ),
        ("GetGdprRequestStatus", json!({"trackingId": 10003})),
    ] {
        let envelope =
            json!({"channel": "LCM", "topic": "Webservice", "subtopic": subtopic, "data": data});
        let props = properties(Some(&format!("log-{subtopic}")), None)
            .with_reply_to(queue.as_str().into())
            .with_headers(headers.clone());
        bus.publish(
            &topology.exchange,
            &format!("LCM.Webservice.{subtopic}"),
            &serde_json::to_vec(&envelope).unwrap(),
            props,
        )
        .await;
    }
    let rcdp = rcdp_replies.take(2, Duration::from_secs(60)).await;
    // The two are handled concurrently, so their replies may come in either order.
    let registered = rcdp
        .iter()
        .find(|r| r.body["subtopic"] == "RegisterGdprRequestResponse")
        .expect("the registration's reply");
    assert_eq!(
        registered.body["message"]["status"], "OK",
        "{:?}",
        registered.body
    );

    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the worker exits within 30 s of SIGTERM")
        .unwrap();
    assert!(exit.success(), "exit status {exit}");

    let logs = format!(
        "{}{}",
        out.await.unwrap().unwrap(),
        err.await.unwrap().unwrap()
    );
    assert_eq!(
        logs.matches("request answered").count(),
        5,
        "one line per request (3 agent requests, a registration, a status query):\n{logs}"
    );
    assert!(logs.contains("request refused and parked"));
    let digits_only: String = PHONE.chars().filter(char::is_ascii_digit).collect();
    for secret in [
        NAME,
        "Zelda",
        "Pemberton",
        PHONE,
        &digits_only,
        OTHER_PHONE,
        EMAIL,
        COMMENT,
        "Ophelia",
        ACCOUNT,
        GCRID,
        TENANT,
    ] {
        for rendering in renderings(secret) {
            assert!(
                !logs.contains(&rendering),
                "logs contain personal data {secret:?} as {rendering:?}"
            );
        }
    }
    // RUST_LOG=trace reached the AMQP client, capped at debug: its debug lines
    // are there, its trace lines (every frame) are not.
    let lapin_at = |level: &str| {
        logs.lines()
            .any(|line| line.contains(level) && line.contains("lapin"))
    };
    assert!(lapin_at("DEBUG"), "the AMQP client's debug lines are kept");
    assert!(!lapin_at("TRACE"), "the AMQP client logged frames at trace");
    bus.delete(&topology).await;
}

/// Runs the binary with one bad setting and returns its exit status and output.
/// Its other names are a test's own, removed afterwards.
async fn run_with(key: &str, value: &str) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let topology = test_topology();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_privacy-worker"))
        .arg("run")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("r.db").display()),
        )
        .env("AMQP_URL", amqp_url())
        .env("LCM_EXCHANGE", &topology.exchange)
        .env("PRIVACY_QUEUE", &topology.work_queue)
        .env("PRIVACY_INVALID_QUEUE", &topology.invalid_queue)
        .env("PRIVACY_DEAD_QUEUE", &topology.dead_queue)
        .env(key, value)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("a fatal configuration ends the process at once")
        .unwrap();
    Bus::connect().await.delete(&topology).await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status, text)
}

#[tokio::test]
async fn a_configuration_that_cannot_work_exits_non_zero_with_the_reason() {
    let (status, text) = run_with("DATABASE_URL", "mysql://localhost/privacy").await;
    assert!(!status.success());
    assert!(
        text.contains("DATABASE_URL must start with sqlite: or postgres://"),
        "{text}"
    );

    let (status, text) = run_with("AMQP_URL", "http://127.0.0.1:5672").await;
    assert!(!status.success());
    assert!(text.contains("AMQP_URL is not an AMQP URL"), "{text}");

    // Personal data is stored encrypted: PostgreSQL without a key file cannot start.
    let (database, url) =
        crate::helpers::TestDatabase::create(crate::helpers::Backend::Postgres).await;
    let (status, text) = run_with("DATABASE_URL", &url).await;
    database.drop_database().await;
    assert!(!status.success());
    assert!(
        text.contains("PRIVACY_KEY_FILE is required with PostgreSQL"),
        "{text}"
    );

    // A work queue that exists with other arguments (a classic queue) cannot be used.
    let bus = Bus::connect().await;
    let classic = format!("test.classic.{}", uuid::Uuid::new_v4().simple());
    bus.declare_classic(&classic).await;
    let (status, text) = run_with("PRIVACY_QUEUE", &classic).await;
    bus.delete_queue(&classic).await;
    assert!(!status.success());
    assert!(
        text.contains("broker refused") && text.contains("PRECONDITION_FAILED"),
        "{text}"
    );
}
