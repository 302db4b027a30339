//! The S3 path, against a real S3-compatible server (moto's, which
//! `scripts/dev test` and `.ci/run` start and point `AWS_ENDPOINT_URL` at): an
//! access request's archive is uploaded to `s3://<bucket>/<prefix>`, and the
//! status reply's presigned link downloads it over HTTP, with the size and
//! SHA-256 the reply gives.

use std::io::Read;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::datamap::DemoDatabases;
use crate::helpers::{Backend, SAMPLE_REQUEST, properties, spawn_app_with};
use crate::lifecycle::Rcdp;

/// The S3 test server; refuses anything but one on this machine.
fn endpoint() -> String {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!("AWS_ENDPOINT_URL is not set: start the S3 test server (scripts/dev up --s3) and export it, or run scripts/dev test")
    });
    assert!(
        endpoint.starts_with("http://127.0.0.1") || endpoint.starts_with("http://localhost"),
        "AWS_ENDPOINT_URL={endpoint} is not a test server on this machine"
    );
    endpoint
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_archive_goes_to_s3_and_its_presigned_link_downloads_it() {
    let endpoint = endpoint();
    let bucket = format!(
        "exports-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("the S3 test server at {endpoint} does not answer ({e}); start it with scripts/dev up --s3"));
    assert!(
        created.status().is_success(),
        "create bucket: {}",
        created.status()
    );

    let demo = DemoDatabases::load().await;
    let map = demo.inline_datamap(&demo.crm_url, |m| m);
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.datamap = Some(map.clone());
        s.export_url = format!("s3://{bucket}/privacy/exports");
        s.export_link_ttl = Duration::from_secs(600);
        s.fulfil.delay = Duration::ZERO;
        s.fulfil.poll = Duration::from_millis(100);
    })
    .await;
    let mut replies = app.replies().await;
    app.publish(
        "LCM.WebService.GetDataPrivacyStatusRequest",
        SAMPLE_REQUEST.as_bytes(),
        properties(Some("s3-access"), None),
    )
    .await;
    let reply = replies.take(1, Duration::from_secs(30)).await.remove(0);
    let id: i64 = reply.response().expect("a request id").parse().unwrap();
    crate::access::completed(&app, id).await;
    let mut rcdp = Rcdp::new(&app).await;
    let status = rcdp.status(id, "default").await;
    let download = &status["data"]["result"]["download"];
    let url = download["url"].as_str().expect("a link");
    let prefix = format!("{endpoint}/{bucket}/privacy/exports/privacy-export-{id}-");
    let tag = url
        .strip_prefix(&prefix)
        .and_then(|rest| rest.split_once(".zip?"))
        .map(|(tag, _)| tag)
        .unwrap_or_else(|| panic!("{url}"));
    assert_eq!(tag.len(), 32, "an unguessable name: {url}");
    assert!(url.contains("X-Amz-Signature="), "presigned: {url}");
    assert!(download["expiresAt"].is_string(), "{status}");

    let fetched = reqwest::get(url).await.expect("the link answers");
    assert!(
        fetched.status().is_success(),
        "GET the link: {}",
        fetched.status()
    );
    let bytes = fetched.bytes().await.unwrap();
    assert_eq!(download["bytes"], bytes.len() as u64);
    assert_eq!(download["sha256"], hex::encode(Sha256::digest(&bytes)));
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).expect("a ZIP");
    let mut customers = String::new();
    zip.by_name("crm.customers.csv")
        .unwrap()
        .read_to_string(&mut customers)
        .unwrap();
    assert!(customers.contains("John Smith"), "{customers}");
    app.stop().await;
    demo.drop().await;
}
