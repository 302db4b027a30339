//! Test harness: each test gets its own exchange, queues and database, a worker
//! running in-process against the real RabbitMQ and PostgreSQL/SQLite, and a bus
//! client to publish requests and read replies.
//!
//! A missing broker or database fails the test with a message saying what to
//! start; nothing is skipped.

use std::time::Duration;

use lapin::BasicProperties;
use privacy_worker::amqp::Topology;
use privacy_worker::app::{self, FatalError};
use privacy_worker::protocol::Limits;
use privacy_worker::settings::{
    BrokerSettings, IntakeSettings, ObservabilitySettings, WorkerSettings,
};
use privacy_worker::store::{Store, StoreSettings};
use serde_json::Value;
use sqlx::Connection as _;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub use crate::bus::{Answers, Bus, Replies};

/// The seed's sample request, verbatim.
pub const SAMPLE_REQUEST: &str = include_str!("../../schemas/examples/lcm-sample-request.json");
/// The documentation table's form.
pub const TABLE_REQUEST: &str = include_str!("../../schemas/examples/lcm-table-request.json");

pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into())
}

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database of a test's own, removed at the end.
pub enum TestDatabase {
    /// Held so the directory lives as long as the test.
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    /// The database name, and a directory holding its key file.
    Postgres(String, #[allow(dead_code)] tempfile::TempDir),
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> (Self, String) {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("requests.db").display());
                (Self::Sqlite(dir), url)
            }
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let name = format!("pw_test_{}", Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                    panic!("PostgreSQL is not reachable at {admin} ({e}); start it (see README) or set TEST_POSTGRES_URL")
                });
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let base = admin.rsplit_once('/').expect("URL has a database path").0;
                (
                    Self::Postgres(name.clone(), tempfile::tempdir().expect("temp dir")),
                    format!("{base}/{name}"),
                )
            }
        }
    }

    /// The key file a worker on this database uses: with SQLite the default one
    /// next to the database (created by the worker), with PostgreSQL a fresh one.
    pub fn key_file(&self) -> Option<std::path::PathBuf> {
        match self {
            Self::Sqlite(_) => None,
            Self::Postgres(_, dir) => {
                let path = dir.path().join("keys.json");
                privacy_worker::crypto::Keys::load_or_create(&path).expect("test keys");
                Some(path)
            }
        }
    }

    pub async fn drop_database(self) {
        if let Self::Postgres(name, _) = self {
            let mut conn = sqlx::PgConnection::connect(&postgres_admin_url())
                .await
                .expect("admin connection");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await
            .expect("drop test database");
        }
    }
}

/// The environment naming a topology's exchange and queues, for a worker process.
pub fn topology_env(t: &Topology) -> Vec<(&'static str, String)> {
    let delays: Vec<String> = t
        .retry_delays
        .iter()
        .map(|d| format!("{}ms", d.as_millis()))
        .collect();
    vec![
        ("LCM_EXCHANGE", t.exchange.clone()),
        ("PRIVACY_QUEUE", t.work_queue.clone()),
        ("PRIVACY_INVALID_QUEUE", t.invalid_queue.clone()),
        ("PRIVACY_DEAD_QUEUE", t.dead_queue.clone()),
        ("PRIVACY_BINDINGS", t.bindings.join(",")),
        ("PRIVACY_DELIVERY_LIMIT", t.delivery_limit.to_string()),
        ("PRIVACY_RETRY_DELAYS", delays.join(",")),
    ]
}

/// Worker logs go to the test's captured output, shown when a test fails.
pub fn init_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// Unique names so tests run in parallel on one broker.
pub fn test_topology() -> Topology {
    let id = Uuid::new_v4().simple().to_string();
    let id = &id[..12];
    Topology {
        // Short tiers keep the tests quick; the defaults are 1s, 5s, 30s.
        retry_delays: vec![Duration::from_millis(200), Duration::from_millis(500)],
        ..Topology::scratch(&format!("test.{id}"))
    }
}

pub fn worker_settings(topology: Topology, database_url: String) -> WorkerSettings {
    WorkerSettings {
        broker: BrokerSettings {
            amqp_url: amqp_url(),
            connection_name: format!("privacy-worker test {}", topology.work_queue),
            confirm_timeout: Duration::from_secs(30),
        },
        store: StoreSettings {
            url: database_url,
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
        },
        prefetch: 64,
        batch_max: 16,
        batches_in_flight: 2,
        drain_timeout: Duration::from_secs(10),
        tenant: "default".into(),
        key_file: None,
        datamap: None,
        export_url: "file://./privacy-exports".into(),
        export_link_ttl: Duration::from_secs(7 * 86_400),
        fulfil: privacy_worker::fulfil::FulfilSettings {
            delay: Duration::from_secs(3600),
            attempts: 5,
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(1),
            retry_backoff: Duration::from_secs(2),
        },
        intake: IntakeSettings {
            topology,
            limits: Limits::default(),
            tenants: vec![],
            retry_attempts: 5,
            reply_source: "privacy-worker".into(),
            parked_ttl: Duration::from_secs(14 * 86_400),
        },
        // Off: tests that want the listener give it a free port of their own.
        observability: ObservabilitySettings {
            http_addr: None,
            response_deadline: Duration::from_secs(30 * 86_400),
        },
    }
}

/// A running worker and everything a test needs around it.
pub struct TestApp {
    pub settings: WorkerSettings,
    pub bus: Bus,
    pub store: Store,
    database: Option<TestDatabase>,
    shutdown: Option<oneshot::Sender<()>>,
    worker: Option<JoinHandle<Result<(), FatalError>>>,
}

/// Starts a worker on fresh resources. The topology is declared first, so messages
/// published right away wait in the queue for the worker.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Like [`spawn_app`], with the worker's settings adjusted first (to go through a
/// proxy, say).
pub async fn spawn_app_with(
    backend: Backend,
    configure: impl FnOnce(&mut WorkerSettings),
) -> TestApp {
    let mut app = test_env(backend).await;
    let mut settings = app.settings.clone();
    configure(&mut settings);
    app.start_worker(settings);
    app
}

/// Fresh resources (exchange, queues, migrated database) and no worker yet.
pub async fn test_env(backend: Backend) -> TestApp {
    test_env_over(backend, async |_: &str| {}).await
}

/// Brings the store at `url` to its first `migrations` migrations and runs
/// `sql` on it: a store as an older worker left it, for `test_env_over`.
pub async fn store_at_migration(url: &str, migrations: usize, sql: Vec<String>) {
    if url.starts_with("sqlite:") {
        let options: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
        let mut conn = sqlx::SqliteConnection::connect_with(&options.create_if_missing(true))
            .await
            .expect("the test database");
        let mut migrator = sqlx::migrate!("./migrations/sqlite");
        migrator.migrations = migrator.migrations[..migrations].to_vec().into();
        migrator.run(&mut conn).await.expect("the older schema");
        for sql in sql {
            let query = sqlx::query(sqlx::AssertSqlSafe(sql));
            query.execute(&mut conn).await.expect("old rows");
        }
    } else {
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .expect("the test database");
        let mut migrator = sqlx::migrate!("./migrations/postgres");
        migrator.migrations = migrator.migrations[..migrations].to_vec().into();
        migrator.run(&mut conn).await.expect("the older schema");
        for sql in sql {
            let query = sqlx::query(sqlx::AssertSqlSafe(sql));
            query.execute(&mut conn).await.expect("old rows");
        }
    }
}

/// Like [`test_env`], with `before_migration` run on the new, empty database
/// first (to lay out what an older version of the worker left).
pub async fn test_env_over(backend: Backend, before_migration: impl AsyncFnOnce(&str)) -> TestApp {
    init_logs();
    let (database, url) = TestDatabase::create(backend).await;
    before_migration(&url).await;
    let mut settings = worker_settings(test_topology(), url);
    settings.key_file = database.key_file();
    let bus = Bus::connect().await;
    bus.declare(&settings.intake.topology).await;
    let store = Store::connect(&settings.store).await.expect("test store");
    TestApp {
        settings,
        bus,
        store,
        database: Some(database),
        shutdown: None,
        worker: None,
    }
}

impl TestApp {
    pub fn topology(&self) -> &Topology {
        &self.settings.intake.topology
    }

    /// Runs a worker in this process with `settings`.
    pub fn start_worker(&mut self, settings: WorkerSettings) {
        let (tx, rx) = oneshot::channel::<()>();
        self.worker = Some(tokio::spawn(app::run(settings, async move {
            let _ = rx.await;
        })));
        self.shutdown = Some(tx);
    }

    /// The environment that points a worker process at this app's resources.
    pub fn worker_env(&self) -> Vec<(&'static str, String)> {
        let mut env = topology_env(self.topology());
        env.push(("AMQP_URL", self.settings.broker.amqp_url.clone()));
        env.push(("DATABASE_URL", self.settings.store.url.clone()));
        if let Some(path) = &self.settings.key_file {
            env.push(("PRIVACY_KEY_FILE", path.display().to_string()));
        }
        env
    }

    /// Waits until every queue of the app is empty, then asserts it.
    pub async fn assert_queues_drained(&self) {
        let t = self.topology();
        let retry_queues = t.retry_queues().into_iter().map(|(name, _)| name);
        let queues = [
            t.work_queue.clone(),
            t.invalid_queue.clone(),
            t.dead_queue.clone(),
        ];
        for queue in &queues.into_iter().chain(retry_queues).collect::<Vec<_>>() {
            assert_eq!(
                self.bus.depth_becomes(queue, 0).await,
                0,
                "{queue} is not empty"
            );
        }
    }

    /// Publishes `n` distinct valid requests (message ids `{prefix}-{i}`) without
    /// waiting for each confirm, then waits for all confirms.
    pub async fn publish_burst(&self, prefix: &str, n: usize) {
        for i in 0..n {
            let id = format!("{prefix}-{i}");
            let body = sample_with(&[
                ("callid", serde_json::json!(id)),
                ("AccountNumber", serde_json::json!(format!("acct-{id}"))),
            ]);
            self.bus
                .publish_pipelined(
                    &self.topology().exchange,
                    "LCM.WebService.GetDataPrivacyStatusRequest",
                    &body,
                    properties(Some(&id), Some(&id)),
                )
                .await;
        }
        self.bus.wait_for_confirms().await;
    }

    /// Asserts that `answers` hold `n` distinct requests with `n` distinct ids, that
    /// the store recorded each exactly once, and that nothing is left or parked.
    pub async fn assert_exactly_once(&self, answers: &Answers, n: usize) {
        let errors: Vec<&Value> = answers.errors.iter().map(|r| &r.body).collect();
        assert!(errors.is_empty(), "error replies: {errors:?}");
        assert_eq!(answers.by_correlation.len(), n, "requests answered");
        let ids: std::collections::HashSet<&String> = answers.by_correlation.values().collect();
        assert_eq!(ids.len(), n, "distinct ids");
        assert_eq!(
            self.store.counts().await.unwrap(),
            (n as i64, n as i64),
            "one request and one message row per request"
        );
        self.assert_queues_drained().await;
    }

    /// Publishes to the app's exchange.
    pub async fn publish(&self, routing_key: &str, body: &[u8], properties: BasicProperties) {
        self.bus
            .publish(
                &self.settings.intake.topology.exchange,
                routing_key,
                body,
                properties,
            )
            .await;
    }

    /// Listens on the app's exchange for replies to either topic spelling.
    pub async fn replies(&self) -> Replies {
        self.bus
            .listen(
                &self.settings.intake.topology.exchange,
                "*.*.SetDataPrivacyStatusResponse",
            )
            .await
    }

    /// Stops the worker as SIGTERM would and checks it stopped cleanly; the
    /// app's queues and database stay, for another worker.
    pub async fn stop_worker(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(worker) = self.worker.take() {
            let result = tokio::time::timeout(Duration::from_secs(30), worker)
                .await
                .expect("worker stops within 30 s")
                .expect("worker task did not panic");
            result.expect("worker stopped without error");
        }
    }

    /// Runs a worker with `settings` that must refuse to start; returns why.
    pub async fn worker_refuses(&self, settings: WorkerSettings) -> FatalError {
        let run = app::run(settings, std::future::pending());
        match tokio::time::timeout(Duration::from_secs(30), run).await {
            Ok(Err(fatal)) => fatal,
            Ok(Ok(())) => panic!("the worker stopped without refusing"),
            Err(_) => panic!("the worker started instead of refusing"),
        }
    }

    /// Stops the worker as SIGTERM would, checks it stopped cleanly, and removes
    /// the test's queues, exchange and database.
    pub async fn stop(mut self) {
        self.store.close().await;
        self.stop_worker().await;
        self.bus.delete(&self.settings.intake.topology).await;
        if let Some(database) = self.database.take() {
            database.drop_database().await;
        }
    }
}

/// The reasons of a request's audit trail, oldest first.
pub async fn audit_reasons(store: &Store, id: i64) -> Vec<String> {
    let events = store.request_events(id).await.expect("the audit trail");
    events.into_iter().map(|e| e.reason).collect()
}

/// Everything the database holds, as text: every row of every table (PostgreSQL),
/// or the raw bytes of the database file and its WAL (SQLite).
pub async fn dump_database(app: &TestApp) -> String {
    let url = &app.settings.store.url;
    if let Some(path) = url.strip_prefix("sqlite://") {
        let mut bytes = std::fs::read(path).expect("database file");
        bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
        return String::from_utf8_lossy(&bytes).into_owned();
    }
    let mut conn = sqlx::PgConnection::connect(url).await.expect("database");
    let mut dump = String::new();
    for table in ["privacy_requests", "inbound_messages", "request_events"] {
        let sql = format!("SELECT row_to_json(t)::text FROM {table} t");
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut conn)
            .await
            .expect("dump table");
        dump.push_str(&rows.join("\n"));
    }
    dump
}

/// Properties with a message id and correlation id.
pub fn properties(message_id: Option<&str>, correlation_id: Option<&str>) -> BasicProperties {
    let mut properties = BasicProperties::default().with_content_type("application/json".into());
    if let Some(id) = message_id {
        properties = properties.with_message_id(id.into());
    }
    if let Some(id) = correlation_id {
        properties = properties.with_correlation_id(id.into());
    }
    properties
}

/// The sample request with its payload fields replaced.
pub fn sample_with(changes: &[(&str, Value)]) -> Vec<u8> {
    let mut envelope: Value = serde_json::from_str(SAMPLE_REQUEST).expect("sample is JSON");
    for (field, value) in changes {
        envelope["message"][*field] = value.clone();
    }
    serde_json::to_vec(&envelope).expect("serialise")
}

/// Runs an async test body on SQLite and on PostgreSQL, as two tests.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            )*
        }
    };
}
