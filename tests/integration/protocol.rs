//! The bus contract as a table: `tests/fixtures/protocol-cases.json` holds each case
//! (a change to a seed sample, or a raw body) and the verdict the worker must give.
//! The same table proves the JSON Schemas in `schemas/` agree with the worker.

use std::collections::BTreeMap;

use jsonschema::error::ValidationErrorKind;
use privacy_worker::protocol::{ParseContext, parse_request};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::helpers::{SAMPLE_REQUEST, TABLE_REQUEST};
use crate::schemas::{ENVELOPE, REQUEST, canonical_payload};

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    #[serde(default)]
    base: Option<String>,
    #[serde(default)]
    payload_set: Map<String, Value>,
    #[serde(default)]
    payload_remove: Vec<String>,
    #[serde(default)]
    payload_rename: BTreeMap<String, String>,
    #[serde(default)]
    envelope_set: Map<String, Value>,
    #[serde(default)]
    envelope_remove: Vec<String>,
    #[serde(default)]
    envelope_copy: BTreeMap<String, String>,
    #[serde(default)]
    raw: Option<String>,
    #[serde(default)]
    raw_hex: Option<String>,
    #[serde(default)]
    oversize: Option<usize>,
    #[serde(default = "yes")]
    schema: bool,
    expect: Expect,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Expect {
    Ok(String),
    Rejected {
        code: String,
        #[serde(default)]
        fields: BTreeMap<String, String>,
    },
}

fn cases() -> Vec<Case> {
    let text = include_str!("../fixtures/protocol-cases.json");
    serde_json::from_str(text).expect("protocol-cases.json parses")
}

impl Case {
    fn body(&self) -> Vec<u8> {
        if let Some(raw) = &self.raw {
            return raw.as_bytes().to_vec();
        }
        if let Some(hex) = &self.raw_hex {
            return (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
        }
        if let Some(size) = self.oversize {
            return vec![b' '; size];
        }
        let base = match self.base.as_deref() {
            Some("table") => TABLE_REQUEST,
            _ => SAMPLE_REQUEST,
        };
        let mut envelope: Value = serde_json::from_str(base).unwrap();
        let key = if envelope.get("data").is_some() {
            "data"
        } else {
            "message"
        };
        let payload = envelope[key].as_object_mut().unwrap();
        for (from, to) in &self.payload_rename {
            let value = payload.remove(from).expect("renamed field exists");
            payload.insert(to.clone(), value);
        }
        for field in &self.payload_remove {
            payload.remove(field).expect("removed field exists");
        }
        for (field, value) in &self.payload_set {
            payload.insert(field.clone(), value.clone());
        }
        let object = envelope.as_object_mut().unwrap();
        for (to, from) in &self.envelope_copy {
            let value = object[from].clone();
            object.insert(to.clone(), value);
        }
        for field in &self.envelope_remove {
            object.remove(field);
        }
        for (field, value) in &self.envelope_set {
            object.insert(field.clone(), value.clone());
        }
        serde_json::to_vec(&envelope).unwrap()
    }
}

const ROUTING_KEY: &str = "LCM.WebService.GetDataPrivacyStatusRequest";

#[test]
fn every_protocol_case_gets_its_documented_verdict() {
    let cases = cases();
    assert!(cases.len() >= 40, "the table lost cases");
    let mut failures = Vec::new();
    for case in &cases {
        let verdict = parse_request(&case.body(), ROUTING_KEY, ParseContext::default());
        match (&case.expect, verdict) {
            (Expect::Ok(ok), Ok(_)) if ok == "ok" => {}
            (Expect::Rejected { code, fields }, Err(rejection)) => {
                let got: BTreeMap<String, String> = rejection
                    .fields
                    .iter()
                    .map(|f| (f.field.clone(), f.problem.clone()))
                    .collect();
                if rejection.code.as_str() != code || &got != fields {
                    failures.push(format!(
                        "{}: expected {code} {fields:?}, got {} {got:?}",
                        case.name,
                        rejection.code.as_str()
                    ));
                }
                if rejection.route.is_none() {
                    failures.push(format!("{}: no reply route", case.name));
                }
            }
            (expect, got) => {
                failures.push(format!("{}: expected {expect:?}, got {got:?}", case.name))
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The fields the request schema finds at fault.
fn schema_faults(payload: &Value) -> Vec<String> {
    let mut fields: Vec<String> = REQUEST
        .iter_errors(payload)
        .map(|error| match error.kind() {
            ValidationErrorKind::Required { property } => property.as_str().unwrap().to_owned(),
            _ => error
                .instance_path()
                .as_str()
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap()
                .to_owned(),
        })
        .collect();
    fields.sort();
    fields.dedup();
    fields
}

#[test]
fn the_schemas_agree_with_the_worker_on_every_case() {
    let mut disagreements = Vec::new();
    for case in cases().iter().filter(|c| c.schema) {
        let Ok(Value::Object(envelope)) = serde_json::from_slice::<Value>(&case.body()) else {
            continue; // not an object: the schemas have nothing to say
        };
        let envelope = Value::Object(envelope);
        let envelope_valid = ENVELOPE.is_valid(&envelope);
        let worker_envelope_valid =
            !matches!(&case.expect, Expect::Rejected { code, .. } if code == "invalid_envelope");
        if envelope_valid != worker_envelope_valid {
            disagreements.push(format!(
                "{}: envelope schema says {envelope_valid}",
                case.name
            ));
            continue;
        }
        if !envelope_valid
            || matches!(&case.expect, Expect::Rejected { code, .. } if code == "unknown_subtopic")
        {
            continue;
        }
        let from_schema = schema_faults(&canonical_payload(&envelope));
        let from_worker: Vec<String> = match &case.expect {
            Expect::Ok(_) => vec![],
            Expect::Rejected { fields, .. } => fields.keys().cloned().collect(),
        };
        if from_schema != from_worker {
            disagreements.push(format!(
                "{}: schema {from_schema:?}, worker {from_worker:?}",
                case.name
            ));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}
