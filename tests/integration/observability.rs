//! The HTTP listener: the real binary's `/metrics`, read with a Prometheus text
//! parser, counts each outcome by the right amount and shows none of the
//! personal data it was sent; `/readyz` turns 503 while the database is cut
//! off and 200 once it is back; the overdue gauge, the status reply's `dueBy`
//! and `requests list --overdue` agree on a request past a tiny deadline.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use privacy_worker::config::{RequestsAction, RequestsArgs};
use serde_json::json;

use crate::helpers::{Backend, TestApp, properties, sample_with, spawn_app_with, test_env};
use crate::lifecycle::{Rcdp, tracking_id};
use crate::process::WorkerProcess;
use crate::proxy::{Proxy, upstream_of, via_proxy};

const WAIT: Duration = Duration::from_secs(30);

const NAME: &str = "Ottoline Vandersteen-Marsh";
const PHONE: &str = "+44 20 7946 0321";
const EMAIL: &str = "ottoline.vm@example.org";
const ACCOUNT: &str = "ACCT-Vandersteen-9";
const RCDP_EMAIL: &str = "marsh.family@example.net";
const LCM_ROUTE: &str = "LCM.WebService.GetDataPrivacyStatusRequest";

/// A loopback address nobody listens on (bound and let go), so tests running
/// at once each get their own.
fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().unwrap()
}

/// GET `path`: its status and body, or `None` while nothing listens.
async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let response = reqwest::get(format!("http://{addr}{path}")).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// Polls `path` until it answers `status`; the body it answered with.
async fn until_status(addr: SocketAddr, path: &str, status: u16) -> String {
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < WAIT {
        if let Some((got, body)) = get(addr, path).await {
            if got == status {
                return body;
            }
            last = Some((got, body));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{path} did not answer {status} within {WAIT:?}; last answer {last:?}");
}

/// A scrape: the page as text, and its samples by name and labels.
struct Scrape {
    text: String,
    samples: Vec<prometheus_parse::Sample>,
}

impl Scrape {
    async fn of(addr: SocketAddr) -> Self {
        let (status, text) = get(addr, "/metrics").await.expect("/metrics answers");
        assert_eq!(status, 200, "{text}");
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let parsed = prometheus_parse::Scrape::parse(lines).expect("the page parses");
        Self {
            text,
            samples: parsed.samples,
        }
    }

    /// The value of the sample `metric` with exactly these labels.
    fn value(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted: HashMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let sample = self
            .samples
            .iter()
            .find(|s| s.metric == metric && *s.labels == wanted)
            .unwrap_or_else(|| panic!("no sample {metric}{labels:?} in\n{}", self.text));
        plain(&sample.value)
    }

    /// The number of observations of a histogram's series.
    fn count(&self, histogram: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(&format!("{histogram}_count"), labels)
    }

    /// Every `privacy_worker_messages_total` series, by (operation, outcome).
    fn messages(&self) -> HashMap<(String, String), f64> {
        let label = |s: &prometheus_parse::Sample, k: &str| s.labels.get(k).unwrap().to_owned();
        self.samples
            .iter()
            .filter(|s| s.metric == "privacy_worker_messages_total")
            .map(|s| {
                (
                    (label(s, "operation"), label(s, "outcome")),
                    plain(&s.value),
                )
            })
            .collect()
    }
}

/// A counter's or gauge's value (OpenMetrics counters parse as untyped).
fn plain(value: &prometheus_parse::Value) -> f64 {
    match value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        other => panic!("not a plain value: {other:?}"),
    }
}

/// The sample request for one customer of our own, personal data included.
fn lcm_request(call_id: &str) -> Vec<u8> {
    sample_with(&[
        ("CustomerName", json!(NAME)),
        ("PhoneNumber", json!(PHONE)),
        ("EmailID", json!(EMAIL)),
        ("AccountNumber", json!(ACCOUNT)),
        ("callid", json!(call_id)),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_counts_each_outcome_once_and_its_scrape_shows_none_of_the_personal_data_sent() {
    let app = test_env(Backend::Sqlite).await;
    let addr = free_addr();
    let mut worker = WorkerProcess::start(&app, &[("PRIVACY_HTTP_ADDR", &addr.to_string())]);
    until_status(addr, "/readyz", 200).await;
    let mut lcm_replies = app
        .bus
        .listen(&app.topology().exchange, "*.*.SetDataPrivacyStatusResponse")
        .await;

    // LCM: one recorded, the same message again (a duplicate), one invalid.
    let first = lcm_request("obs-call-1");
    let props = || properties(Some("obs-lcm-1"), Some("obs-lcm-1"));
    app.publish(LCM_ROUTE, &first, props()).await;
    let id = lcm_replies.take(1, WAIT).await[0]
        .response()
        .map(str::to_owned);
    app.publish(LCM_ROUTE, &first, props()).await;
    assert_eq!(lcm_replies.take(1, WAIT).await[0].response(), id.as_deref());
    let invalid = sample_with(&[
        ("CustomerName", json!(NAME)),
        ("PhoneNumber", json!("ring Ottoline on 0207 946 0321 ext")),
        ("AccountNumber", json!(ACCOUNT)),
    ]);
    app.publish(LCM_ROUTE, &invalid, properties(Some("obs-lcm-2"), None))
        .await;
    let refused = &lcm_replies.take(1, WAIT).await[0];
    assert_eq!(refused.body["message"]["error"]["code"], "invalid_request");

    // RCDP: registered, a duplicate refused, a status query, a revoke.
    let mut rcdp = Rcdp::new(&app).await;
    let tracking = tracking_id(&rcdp.register("access", "email", RCDP_EMAIL, "t-obs").await);
    let again = rcdp.register("access", "email", RCDP_EMAIL, "t-obs").await;
    assert!(again["error"].is_string(), "{again}");
    assert_eq!(rcdp.status(tracking, "t-obs").await["status"], "OK");
    let body = json!({"reqType": "access", "reqParam": "email", "reqSource": "test_1"});
    let revoked = rcdp
        .call("RevokeGdprActions", body, Some(RCDP_EMAIL), Some("t-obs"))
        .await;
    assert_eq!(revoked["status"], "OK", "{revoked}");

    let scrape = Scrape::of(addr).await;
    let mut expected: HashMap<(String, String), f64> = HashMap::new();
    for (operation, outcome) in [
        ("lcm", "recorded"),
        ("lcm", "duplicate"),
        ("lcm", "parked"),
        ("register", "recorded"),
        ("register", "refused"),
        ("status", "answered"),
        ("revoke", "revoked"),
    ] {
        expected.insert((operation.into(), outcome.into()), 1.0);
    }
    let moved: HashMap<_, _> = scrape
        .messages()
        .into_iter()
        .filter(|(_, n)| *n != 0.0)
        .collect();
    assert_eq!(moved, expected, "messages by operation and outcome");
    let handling = "privacy_worker_message_handling_seconds";
    assert_eq!(scrape.count(handling, &[("operation", "lcm")]), 3.0);
    assert_eq!(scrape.count(handling, &[("operation", "register")]), 2.0);
    assert!(scrape.count("privacy_worker_intake_batch_size", &[]) >= 4.0);
    let requests = |status| scrape.value("privacy_worker_requests", &[("status", status)]);
    assert_eq!(requests("registered"), 1.0);
    assert_eq!(requests("revoked"), 1.0);
    assert_eq!(requests("completed"), 0.0);
    let up = |component| scrape.value("privacy_worker_component_up", &[("component", component)]);
    assert_eq!(up("store"), 1.0);
    assert_eq!(up("broker_intake"), 1.0);
    assert_eq!(scrape.value("privacy_worker_requests_overdue", &[]), 0.0);

    for secret in [
        NAME,
        PHONE,
        EMAIL,
        ACCOUNT,
        RCDP_EMAIL,
        "0207 946 0321",
        "t-obs",
    ] {
        assert!(
            !scrape.text.contains(secret),
            "the scrape shows {secret:?}:\n{}",
            scrape.text
        );
    }
    worker.sigterm_exits_zero(WAIT).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_503_while_the_store_is_down_and_200_once_it_is_back() {
    let proxy = Proxy::start(upstream_of(&crate::helpers::postgres_admin_url())).await;
    let addr = free_addr();
    let app = spawn_app_with(Backend::Postgres, |s| {
        s.store.url = via_proxy(&s.store.url, &proxy);
        s.observability.http_addr = Some(addr);
    })
    .await;
    assert_eq!(until_status(addr, "/readyz", 200).await, "ready\n");

    proxy.cut();
    let body = until_status(addr, "/readyz", 503).await;
    assert!(body.contains("the store does not answer"), "{body}");
    assert!(!body.contains("broker"), "{body}");
    let scrape = Scrape::of(addr).await;
    let store = &[("component", "store")];
    assert_eq!(scrape.value("privacy_worker_component_up", store), 0.0);
    assert_eq!(until_status(addr, "/healthz", 200).await, "ok\n");

    proxy.restore();
    assert_eq!(until_status(addr, "/readyz", 200).await, "ready\n");
    let scrape = Scrape::of(addr).await;
    assert_eq!(scrape.value("privacy_worker_component_up", store), 1.0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overdue_gauge_counts_a_request_registered_with_a_tiny_deadline() {
    let deadline = Duration::from_secs(3);
    let addr = free_addr();
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.observability.http_addr = Some(addr);
        s.observability.response_deadline = deadline;
    })
    .await;
    until_status(addr, "/readyz", 200).await;
    let mut rcdp = Rcdp::new(&app).await;
    let registered = Instant::now();
    let id = tracking_id(
        &rcdp
            .register("access", "gcrid", "G-OVERDUE-1", "t-late")
            .await,
    );

    let status = rcdp.status(id, "t-late").await;
    let stamp = |key: &str| {
        let text = status["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("{status}"));
        chrono::DateTime::parse_from_rfc3339(text).unwrap()
    };
    assert_eq!(
        stamp("dueBy") - stamp("createdAt"),
        chrono::TimeDelta::seconds(3)
    );
    let scrape = Scrape::of(addr).await;
    if registered.elapsed() < deadline {
        assert_eq!(scrape.value("privacy_worker_requests_overdue", &[]), 0.0);
    }
    let overdue = list_overdue(&app, deadline).await;
    assert!(
        overdue.is_empty() || registered.elapsed() >= deadline,
        "{overdue}"
    );

    tokio::time::sleep(deadline.saturating_sub(registered.elapsed()) + Duration::from_millis(500))
        .await;
    let scrape = Scrape::of(addr).await;
    assert_eq!(scrape.value("privacy_worker_requests_overdue", &[]), 1.0);
    assert_eq!(scrape.value("privacy_worker_requests_due_soon", &[]), 0.0);
    let age = scrape.value("privacy_worker_oldest_open_request_age_seconds", &[]);
    assert!(age >= 3.0, "oldest open request is {age} s old");
    let overdue = list_overdue(&app, deadline).await;
    assert!(overdue.starts_with(&format!("{id} ")), "{overdue}");
    assert!(overdue.contains("due_by="), "{overdue}");
    let show = RequestsAction::Show {
        id,
        reveal: false,
        reason: String::new(),
    };
    let shown: serde_json::Value =
        serde_json::from_str(&requests(&app, deadline, show).await).unwrap();
    let due_by = chrono::DateTime::parse_from_rfc3339(shown["request"]["due_by"].as_str().unwrap());
    // The status reply shows milliseconds; `show` the stored precision.
    let apart = due_by.unwrap() - stamp("dueBy");
    assert_eq!(apart.num_milliseconds(), 0, "{shown}");
    app.stop().await;
}

/// `requests list --overdue`, as an operator runs it.
async fn list_overdue(app: &TestApp, deadline: Duration) -> String {
    let list = RequestsAction::List {
        status: None,
        tenant: None,
        overdue: true,
        limit: 100,
        json: false,
    };
    requests(app, deadline, list).await
}

/// A `requests` command on the app's store, with this response deadline.
async fn requests(app: &TestApp, deadline: Duration, action: RequestsAction) -> String {
    let args = RequestsArgs {
        store: privacy_worker::config::StoreArgs {
            database_url: app.settings.store.url.clone(),
            key_file: app.settings.key_file.clone(),
        },
        operator: "tester".into(),
        response_deadline: deadline,
        action,
    };
    privacy_worker::operator::run(&args)
        .await
        .expect("the requests command")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_the_alerts_name_only_metrics_the_worker_serves() {
    let addr = free_addr();
    let app = spawn_app_with(Backend::Sqlite, |s| s.observability.http_addr = Some(addr)).await;
    until_status(addr, "/readyz", 200).await;
    let scrape = Scrape::of(addr).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in [
        "ops/grafana/dashboards/privacy-worker.json",
        "ops/prometheus/alerts.yml",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let names = metric_names(&text);
        assert!(names.len() >= 5, "{file} names {names:?}");
        for name in names {
            // The parser files a histogram's buckets under its base name.
            let base = name.strip_suffix("_bucket").unwrap_or(&name);
            let served = scrape
                .samples
                .iter()
                .any(|s| s.metric == name || s.metric == base);
            assert!(served, "{file} uses {name}, which /metrics does not serve");
        }
    }
    app.stop().await;
}

/// The `privacy_worker_…` names a text uses.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    text.match_indices("privacy_worker_")
        .map(|(at, _)| {
            text[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect::<String>()
        })
        .collect()
}
