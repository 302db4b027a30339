//! The JSON Schemas in `schemas/` against the seed samples and the worker's replies,
//! and the AsyncAPI document against the names the worker uses.

use std::sync::LazyLock;

use jsonschema::Validator;
use privacy_worker::protocol::canonicalize_payload;
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

use crate::helpers::{SAMPLE_REQUEST, TABLE_REQUEST};

fn load(file: &str) -> Validator {
    let path = format!("{}/schemas/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let schema: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{path} is not a valid schema: {e}"))
}

pub static ENVELOPE: LazyLock<Validator> = LazyLock::new(|| load("envelope.schema.json"));
pub static REQUEST: LazyLock<Validator> = LazyLock::new(|| load("privacy-request.schema.json"));
pub static REPLY: LazyLock<Validator> = LazyLock::new(|| load("reply.schema.json"));
pub static STATUS_CHANGED: LazyLock<Validator> =
    LazyLock::new(|| load("status-changed.schema.json"));

#[test]
fn the_rcdp_documents_bodies_validate_against_the_rcdp_schemas() {
    let request = load("rcdp-request.schema.json");
    for body in [
        serde_json::json!({"reqType": "access", "reqParam": "gcrid", "reqSource": "test_1"}),
        serde_json::json!({"reqType": "forget", "reqParam": "gcrid", "reqSource": "test_1"}),
    ] {
        assert!(request.is_valid(&body), "{body}");
    }
    assert!(!request.is_valid(
        &serde_json::json!({"reqType": "access", "reqParam": "gcrid", "reqSource": "elevenchars"})
    ));
    let reply = load("rcdp-reply.schema.json");
    for body in [
        serde_json::json!({"status": "OK", "data": {"message": "Request submitted successfully.", "trackingId": 595}}),
        serde_json::json!({"error": "Request already exist with tracking id:[399] and request status : [registered]"}),
        serde_json::json!({"status": "OK", "message": "Access request successfully revoked.", "data": "Access request successfully revoked."}),
    ] {
        assert!(reply.is_valid(&body), "{body}");
    }
    load("rcdp-status-request.schema.json");
}

/// Fails with every schema error when `reply` is not a valid reply.
pub fn assert_valid_reply(reply: &Value) {
    let errors: Vec<String> = REPLY.iter_errors(reply).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "reply {reply} breaks reply.schema.json: {errors:?}"
    );
}

/// The payload of an envelope with field names canonicalised, as the worker sees it.
pub fn canonical_payload(envelope: &Value) -> Value {
    let payload = envelope
        .get("message")
        .or_else(|| envelope.get("data"))
        .and_then(Value::as_object)
        .expect("envelope has a payload object");
    Value::Object(canonicalize_payload(payload).0)
}

#[test]
fn the_seed_samples_validate_against_the_schemas() {
    for text in [SAMPLE_REQUEST, TABLE_REQUEST] {
        let envelope: Value = serde_json::from_str(text).unwrap();
        assert!(ENVELOPE.is_valid(&envelope), "envelope: {envelope}");
        let payload = canonical_payload(&envelope);
        let errors: Vec<String> = REQUEST
            .iter_errors(&payload)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
    }
    let response: Value = serde_json::from_str(include_str!(
        "../../schemas/examples/lcm-sample-response.json"
    ))
    .unwrap();
    assert_valid_reply(&response);
}

#[test]
fn the_seed_sample_uses_field_names_the_schema_only_accepts_after_canonicalisation() {
    // `callid` is how the sample spells CallId: the raw payload lacks CallId.
    let envelope: Value = serde_json::from_str(SAMPLE_REQUEST).unwrap();
    assert!(!REQUEST.is_valid(&envelope["message"]));
}

#[test]
fn the_reply_schema_refuses_a_reply_without_an_id_or_an_error() {
    for bad in [
        serde_json::json!({"channel": "LCM", "topic": "WebService", "subtopic": "SetDataPrivacyStatusResponse", "message": {}}),
        serde_json::json!({"channel": "LCM", "topic": "WebService", "subtopic": "SetDataPrivacyStatusResponse", "message": {"response": 10089}}),
        serde_json::json!({"channel": "LCM", "topic": "WebService", "subtopic": "SetDataPrivacyStatusResponse", "message": {"response": null}}),
    ] {
        assert!(!REPLY.is_valid(&bad), "accepted {bad}");
    }
}

fn yaml_str<'a>(yaml: &'a Yaml, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(yaml, |node, key| {
            let next = &node[*key];
            (!next.is_badvalue()).then_some(next)
        })?
        .as_str()
}

#[test]
fn the_asyncapi_document_describes_the_worker_s_default_names() {
    let text = include_str!("../../schemas/asyncapi.yaml");
    let docs = YamlLoader::load_from_str(text).expect("asyncapi.yaml is YAML");
    let doc = &docs[0];
    assert_eq!(yaml_str(doc, &["asyncapi"]), Some("3.0.0"));
    let channels = doc["channels"].as_hash().expect("channels");
    let mut addresses = Vec::new();
    let mut names = Vec::new();
    for (_, channel) in channels {
        if let Some(address) = channel["address"].as_str() {
            addresses.push(address.to_owned());
        }
        for key in ["queue", "exchange"] {
            if let Some(name) = yaml_str(channel, &["bindings", "amqp", key, "name"]) {
                names.push(name.to_owned());
            }
        }
    }
    for expected in [
        "LCM.{topic}.GetDataPrivacyStatusRequest",
        "LCM.{topic}.SetDataPrivacyStatusResponse",
        "LCM.Webservice.GdprRequestStatusChanged",
    ] {
        assert!(
            addresses.iter().any(|a| a == expected),
            "{expected} missing from {addresses:?}"
        );
    }
    use clap::Parser;
    let cli = privacy_worker::config::Cli::try_parse_from(["privacy-worker"]).unwrap();
    let topology = cli.run.settings().intake.topology;
    for expected in [
        &topology.exchange,
        &topology.work_queue,
        &topology.invalid_queue,
        &topology.dead_queue,
    ] {
        assert!(
            names.contains(expected),
            "{expected} missing from {names:?}"
        );
    }
    let operations = doc["operations"].as_hash().expect("operations");
    assert!(operations.len() >= 2);
}

#[test]
fn the_status_changed_schema_takes_its_example_and_refuses_anything_more() {
    let path = format!(
        "{}/schemas/status-changed.schema.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let example = schema["examples"][0].clone();
    assert!(STATUS_CHANGED.is_valid(&example), "{example}");
    let mut with_email = example.clone();
    with_email["message"]["email"] = "zelda@example.org".into();
    assert!(!STATUS_CHANGED.is_valid(&with_email), "an extra key");
    let mut registered = example;
    registered["message"]["requestStatus"] = "registered".into();
    assert!(!STATUS_CHANGED.is_valid(&registered), "not announced");
}
