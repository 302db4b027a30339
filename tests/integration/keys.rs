//! A key file cannot silently change under a store: the store records which
//! keys (ids and check values) its data was written with, a worker started with
//! other keys refuses to start and names the key, a key file is created only for
//! a new, empty store, and rotation (a new current key, the old ones kept) works.

use std::path::Path;

use privacy_worker::config::{RequestsAction, RequestsArgs};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app};
use crate::lifecycle::{Rcdp, tracking_id};

async fn register(app: &TestApp, value: &str) -> i64 {
    let mut rcdp = Rcdp::new(app).await;
    tracking_id(&rcdp.register("access", "gcrid", value, "t1").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_default_key_file_is_not_recreated_for_a_store_with_data() {
    let mut app = spawn_app(Backend::Sqlite).await;
    register(&app, "G-1").await;
    app.stop_worker().await;
    let db = app
        .settings
        .store
        .url
        .trim_start_matches("sqlite://")
        .to_owned();
    let key_file = Path::new(&db).with_extension("keys.json");
    std::fs::remove_file(&key_file).expect("the worker created the default key file");

    let refused = app.worker_refuses(app.settings.clone()).await.to_string();
    assert!(
        refused.contains("is missing, but the store holds data"),
        "{refused}"
    );
    assert!(!key_file.exists(), "no new key file was made");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_file_that_is_not_the_store_s_is_refused_and_names_the_key() {
    let mut app = spawn_app(Backend::Postgres).await;
    register(&app, "G-1").await;
    app.stop_worker().await;
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.json");
    privacy_worker::crypto::Keys::load_or_create(&other).unwrap();
    let mut settings = app.settings.clone();
    settings.key_file = Some(other.clone());
    let refused = app.worker_refuses(settings).await.to_string();
    assert!(
        refused.contains(
            "encryption key k1 in the key file is not the key the store was written with"
        ),
        "{refused}"
    );
    // The same encryption key with another index key is refused too.
    let mut file = key_file_json(app.settings.key_file.as_deref().unwrap());
    file["index_key"] = key_file_json(&other)["index_key"].clone();
    std::fs::write(&other, file.to_string()).unwrap();
    let mut settings = app.settings.clone();
    settings.key_file = Some(other);
    let refused = app.worker_refuses(settings).await.to_string();
    assert!(
        refused.contains("the index key in the key file is not the key"),
        "{refused}"
    );
    app.stop().await;
}

fn key_file_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn reveal(app: &TestApp, key_file: &Path, id: i64) -> String {
    let args = RequestsArgs {
        store: privacy_worker::config::StoreArgs {
            database_url: app.settings.store.url.clone(),
            key_file: Some(key_file.to_owned()),
        },
        operator: "tester".into(),
        response_deadline: std::time::Duration::from_secs(30 * 86_400),
        action: RequestsAction::Show {
            id,
            reveal: true,
            reason: "key rotation test".into(),
        },
    };
    privacy_worker::operator::run(&args)
        .await
        .expect("requests show --reveal")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_file_that_keeps_the_old_key_starts_and_reads_old_and_new_rows() {
    let mut app = spawn_app(Backend::Postgres).await;
    let old = register(&app, "G-old").await;
    app.stop_worker().await;

    let original = app.settings.key_file.clone().unwrap();
    let rotated = original.with_file_name("rotated.json");
    let mut file = key_file_json(&original);
    file["keys"]["k2"] = json!(hex::encode([7u8; 32]));
    file["current"] = json!("k2");
    std::fs::write(&rotated, file.to_string()).unwrap();
    let mut settings = app.settings.clone();
    settings.key_file = Some(rotated.clone());
    app.start_worker(settings);
    let new = register(&app, "G-new").await;
    app.stop_worker().await;

    assert!(reveal(&app, &rotated, old).await.contains("G-old"));
    assert!(reveal(&app, &rotated, new).await.contains("G-new"));
    let key_ids: Vec<String> =
        sqlx::query_scalar("SELECT key_id FROM privacy_requests ORDER BY id")
            .fetch_all(&pg_pool(&app).await)
            .await
            .unwrap();
    assert_eq!(
        key_ids,
        ["k1", "k2"],
        "new rows are sealed with the new current key"
    );

    // Dropping the old key now is refused: rows written with it remain.
    let mut file = key_file_json(&rotated);
    file["keys"].as_object_mut().unwrap().remove("k1");
    let dropped = original.with_file_name("dropped.json");
    std::fs::write(&dropped, file.to_string()).unwrap();
    let mut settings = app.settings.clone();
    settings.key_file = Some(dropped);
    let refused = app.worker_refuses(settings).await.to_string();
    assert!(
        refused.contains("encryption key k1, which the key file lacks"),
        "{refused}"
    );
    app.stop().await;
}

async fn pg_pool(app: &TestApp) -> sqlx::PgPool {
    sqlx::PgPool::connect(&app.settings.store.url)
        .await
        .unwrap()
}
