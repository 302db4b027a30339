//! The data map against real customer databases: `datamap check` on the demo
//! CRM in PostgreSQL and its dialer list in SQLite, and a map naming a column or
//! a table that is not there refused by `datamap check` and by the worker at
//! start, naming the table and the column.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::Connection as _;

use crate::helpers::{Backend, TestDatabase, amqp_url, test_topology, topology_env};

/// The demo seeds, loaded into a PostgreSQL database of the test's own (the
/// CRM) and an SQLite file (the dialer).
pub struct DemoDatabases {
    pub crm: TestDatabase,
    pub crm_url: String,
    pub dialer: PathBuf,
    pub dir: tempfile::TempDir,
}

impl DemoDatabases {
    pub async fn load() -> Self {
        let seed = |name: &str| {
            let path = format!("{}/demo/{name}", env!("CARGO_MANIFEST_DIR"));
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
        };
        let (crm, crm_url) = TestDatabase::create(Backend::Postgres).await;
        let mut pg = sqlx::PgConnection::connect(&crm_url)
            .await
            .expect("the CRM database");
        sqlx::raw_sql(sqlx::AssertSqlSafe(seed("crm.sql")))
            .execute(&mut pg)
            .await
            .expect("the CRM seed loads into PostgreSQL");
        pg.close().await.expect("the seed's connection closes");
        let dir = tempfile::tempdir().unwrap();
        let dialer = dir.path().join("dialer.db");
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&dialer)
            .create_if_missing(true);
        let mut lite = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(seed("dialer.sql")))
            .execute(&mut lite)
            .await
            .expect("the dialer seed loads into SQLite");
        lite.close().await.unwrap();
        Self {
            crm,
            crm_url,
            dialer,
            dir,
        }
    }

    /// The demo's data map with the CRM from CRM_DATABASE_URL and the dialer
    /// file here, edited by `edit`; returns its path.
    pub fn datamap(&self, edit: impl Fn(String) -> String) -> PathBuf {
        self.write_map("{ url_env: CRM_DATABASE_URL }", edit)
    }

    /// The same with the CRM's URL written in the map (`crm_url`, the demo CRM's
    /// own or one through a proxy).
    pub fn inline_datamap(&self, crm_url: &str, edit: impl Fn(String) -> String) -> PathBuf {
        self.write_map(&format!("{{ url: \"{crm_url}\" }}"), edit)
    }

    fn write_map(&self, crm: &str, edit: impl Fn(String) -> String) -> PathBuf {
        let demo =
            std::fs::read_to_string(format!("{}/demo/datamap.yaml", env!("CARGO_MANIFEST_DIR")))
                .unwrap();
        let map = demo
            .replace(
                r#"crm:    { url: "sqlite://demo/crm.db" }"#,
                &format!("crm:    {crm}"),
            )
            .replace(
                "sqlite://demo/dialer.db",
                &format!("sqlite://{}", self.dialer.display()),
            );
        let path = self
            .dir
            .path()
            .join(format!("map-{}.yaml", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, edit(map)).unwrap();
        path
    }

    pub async fn drop(self) {
        self.crm.drop_database().await;
    }
}

pub async fn datamap_check(map: &Path, crm_url: &str) -> (bool, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_privacy-worker"))
        .args(["datamap", "check", "--datamap"])
        .arg(map)
        .env("CRM_DATABASE_URL", crm_url)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datamap_check_reports_every_table_in_visiting_order_with_its_columns() {
    let demo = DemoDatabases::load().await;
    let (ok, report) = datamap_check(&demo.datamap(|m| m), &demo.crm_url).await;
    assert!(ok, "{report}");
    let lines: Vec<&str> = report.lines().collect();
    assert!(
        lines[0].starts_with("1. crm.customers: found by account=account_number"),
        "{report}"
    );
    assert!(
        lines[1].starts_with("2. crm.calls: found via customer_id = crm.customers.id"),
        "{report}"
    );
    assert!(
        lines[2].starts_with("3. crm.invoices") && lines[2].ends_with("forget: anonymize"),
        "{report}"
    );
    assert!(lines[3].starts_with("4. crm.campaign_members"), "{report}");
    assert!(
        lines[4].starts_with("5. dialer.leads: found by mobile=msisdn"),
        "{report}"
    );
    assert!(
        lines[1].contains("exports crm.calls.csv with 6 columns (id, customer_id, started_at, caller_number, agent_id, notes)"),
        "{report}"
    );
    assert_eq!(lines[5], "data map OK: 5 tables in 2 databases");
    demo.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_naming_a_missing_column_or_table_is_refused_by_check_and_at_start() {
    let demo = DemoDatabases::load().await;
    let cases = [
        (
            "[caller_number, notes]",
            "[caller_number, notez]",
            "table crm.calls: personal column notez does not exist",
        ),
        (
            "table: dialer.leads",
            "table: dialer.lead",
            "table dialer.lead: not found in database dialer",
        ),
        (
            "crm.customers.id }",
            "crm.customers.uid }",
            "table crm.calls: via customer_id points at crm.customers.uid, which does not exist",
        ),
        (
            "mobile: msisdn",
            "mobile: phone_number",
            "table dialer.leads: match column phone_number does not exist",
        ),
    ];
    for (from, to, expected) in cases {
        let map = demo.datamap(|m| m.replacen(from, to, 1));
        let (ok, text) = datamap_check(&map, &demo.crm_url).await;
        assert!(!ok && text.contains(expected), "{to}: {text}");
        let (status, text) = start_worker_with(&map, &demo.crm_url).await;
        assert!(!status.success(), "the worker started with {to}");
        assert!(text.contains(expected), "{to}: {text}");
    }
    // Without the variable the map names, the database cannot be reached.
    let map = demo.datamap(|m| m);
    let (ok, text) = datamap_check(&map, "").await;
    assert!(
        !ok && text.contains("database crm: CRM_DATABASE_URL is not set"),
        "{text}"
    );
    demo.drop().await;
}

/// Pseudonymization and anonymization must be able to rewrite every personal
/// column: text long enough for a pseudonym, or a column that may be NULL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_personal_column_that_cannot_be_rewritten_is_refused_naming_it() {
    let demo = DemoDatabases::load().await;
    let mut crm = sqlx::PgConnection::connect(&demo.crm_url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE loyalty (id INTEGER PRIMARY KEY, customer_id INTEGER, \
         code VARCHAR(20), points INTEGER NOT NULL, born DATE)",
    )
    .execute(&mut crm)
    .await
    .unwrap();
    crm.close().await.unwrap();
    let table = |personal: &str| {
        format!(
            "  - table: crm.loyalty\n    key: [id]\n    via: {{ customer_id: crm.customers.id }}\n    personal: [{personal}]\n"
        )
    };
    for (personal, expected) in [
        (
            "code",
            // Wide enough for a cut pseudonym, which earlier versions wrote: a
            // pseudonym is never cut now, so the column is refused.
            "table crm.loyalty: personal column code holds at most 20 characters; a pseudonym needs 27",
        ),
        (
            "points",
            "table crm.loyalty: personal column points is int4 NOT NULL",
        ),
    ] {
        let map = demo.datamap(|m| m + &table(personal));
        let (ok, text) = datamap_check(&map, &demo.crm_url).await;
        assert!(!ok && text.contains(expected), "{personal}: {text}");
        let (status, text) = start_worker_with(&map, &demo.crm_url).await;
        assert!(
            !status.success() && text.contains(expected),
            "{personal}: {text}"
        );
    }
    // A DATE that may be NULL is nulled: accepted.
    let map = demo.datamap(|m| m + &table("born"));
    let (ok, text) = datamap_check(&map, &demo.crm_url).await;
    assert!(ok, "{text}");
    demo.drop().await;
}

/// Runs the worker with a data map; it must refuse at once.
async fn start_worker_with(map: &Path, crm_url: &str) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let topology = test_topology();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_privacy-worker"))
        .arg("run")
        .env("AMQP_URL", amqp_url())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("r.db").display()),
        )
        .envs(topology_env(&topology))
        .env("PRIVACY_DATAMAP", map)
        .env("CRM_DATABASE_URL", crm_url)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("a bad data map ends the process at once")
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status, text)
}
