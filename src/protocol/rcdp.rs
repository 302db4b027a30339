//! The RCDP operations carried on the bus: RegisterGdprRequest, RevokeGdprActions
//! and GetGdprRequestStatus.
//!
//! The payload is the RCDP body (`reqType`, `reqParam`, `reqSource`); the
//! identifier value (`reqParamValue`) and the tenant (`tenant_hash`) come as AMQP
//! headers, as the documents put them in HTTP headers, or in the payload. Values of
//! `reqType` and `reqParam` and the payload's key names match case-insensitively
//! (the documents write `gcrId`, `Mobile`, `Customer`). Problems are reported as
//! one sentence, the documents' `{"error": ...}` shape, never repeating the value.

use std::fmt;

use serde_json::{Map, Value};

use super::{has_control_character, is_well_formed_email};
use crate::request::{IdentifierType, RequestKind};

/// The identifier type a `reqParam` names: one of the four of the documents
/// (the LCM AccountNumber is not an RCDP identifier).
fn req_param(text: &str) -> Option<IdentifierType> {
    match text.trim().to_ascii_lowercase().as_str() {
        "gcrid" => Some(IdentifierType::Gcrid),
        "email" => Some(IdentifierType::Email),
        "mobile" => Some(IdentifierType::Mobile),
        "customer" => Some(IdentifierType::Customer),
        _ => None,
    }
}

/// The value in the form that compares equal for the same customer: e-mail in
/// lower case, a mobile number's digits, other identifiers trimmed.
pub fn normalize(kind: IdentifierType, value: &str) -> Result<String, &'static str> {
    let value = value.trim();
    match kind {
        _ if value.is_empty() => Err("reqParamValue must not be empty."),
        _ if value.chars().count() > 256 => Err("reqParamValue must be at most 256 characters."),
        IdentifierType::Email if !is_well_formed_email(value) => {
            Err("reqParamValue is not a well-formed email address.")
        }
        IdentifierType::Email => Ok(kind.normalize(value).unwrap_or_default()),
        IdentifierType::Mobile => {
            let digits: String = value.chars().filter(char::is_ascii_digit).collect();
            let allowed = value
                .chars()
                .all(|c| c.is_ascii_digit() || " +-.()".contains(c));
            if allowed && (7..=15).contains(&digits.len()) {
                Ok(digits)
            } else {
                Err("reqParamValue is not a well-formed mobile number.")
            }
        }
        // The one normalization (`IdentifierType::normalize`), so the blind
        // index matches the one fulfilment computes from the rows it reads.
        IdentifierType::Account | IdentifierType::Gcrid | IdentifierType::Customer => {
            Ok(kind.normalize(value).unwrap_or_default())
        }
    }
}

impl RcdpRequest {
    /// What the audit trail records of a register or revoke: no value.
    pub fn details(&self) -> serde_json::Value {
        serde_json::json!({
            "reqType": self.kind.as_str(),
            "reqParam": self.identifier.kind.as_str(),
            "reqSource": self.source,
        })
    }
}

/// Who a request is about. `Debug` hides the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Identifier {
    /// Its kind.
    pub kind: IdentifierType,
    /// Its normalized value (personal data).
    pub value: String,
}

impl fmt::Debug for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identifier({}, <redacted>)", self.kind.as_str())
    }
}

/// A valid RegisterGdprRequest or RevokeGdprActions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcdpRequest {
    /// access or forget.
    pub kind: RequestKind,
    /// Who it is about.
    pub identifier: Identifier,
    /// reqSource, at most 10 characters.
    pub source: String,
    /// The tenant named by tenant_hash.
    pub tenant: String,
}

/// A valid GetGdprRequestStatus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusQuery {
    /// The tracking id asked about.
    pub tracking_id: i64,
    /// The tenant asking.
    pub tenant: String,
}

/// What the AMQP headers (or the payload) say besides the body.
#[derive(Debug, Clone, Copy, Default)]
pub struct RcdpHeaders<'a> {
    /// The identifier value.
    pub req_param_value: Option<&'a str>,
    /// The tenant.
    pub tenant_hash: Option<&'a str>,
}

fn field<'a>(payload: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    payload
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
        .filter(|value| !value.is_null())
}

fn text<'a>(payload: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    field(payload, name).and_then(Value::as_str)
}

/// The tenant, checked against the configured list (empty: any tenant).
fn tenant(
    payload: &Map<String, Value>,
    headers: RcdpHeaders<'_>,
    tenants: &[String],
    problems: &mut Vec<&'static str>,
) -> Option<String> {
    let tenant = headers.tenant_hash.or_else(|| text(payload, "tenant_hash"));
    match tenant.map(str::trim).filter(|t| !t.is_empty()) {
        None => {
            problems.push("tenant_hash is required (AMQP header tenant_hash).");
            None
        }
        Some(t) if has_control_character(t) => {
            problems.push("tenant_hash must not contain control characters.");
            None
        }
        Some(t) if !tenants.is_empty() && !tenants.iter().any(|known| known == t) => {
            problems.push("tenant_hash names no known tenant.");
            None
        }
        Some(t) => Some(t.to_owned()),
    }
}

/// Validates a register or revoke payload; `Err` is the error sentence.
pub fn parse_rcdp_request(
    payload: &Map<String, Value>,
    headers: RcdpHeaders<'_>,
    tenants: &[String],
) -> Result<RcdpRequest, String> {
    let mut problems = Vec::new();
    let tenant = tenant(payload, headers, tenants, &mut problems);
    let kind = match text(payload, "reqType").map(|t| t.trim().to_ascii_lowercase()) {
        None => {
            problems.push("reqType is required: access or forget.");
            None
        }
        Some(t) if t == "access" => Some(RequestKind::Access),
        Some(t) if t == "forget" => Some(RequestKind::Forget),
        Some(_) => {
            problems.push("reqType must be access or forget.");
            None
        }
    };
    let id_type = text(payload, "reqParam").and_then(req_param);
    if id_type.is_none() {
        problems.push("reqParam must be one of gcrid, email, mobile, customer.");
    }
    let source = match text(payload, "reqSource").map(str::trim) {
        None | Some("") => {
            problems.push("reqSource is required (at most 10 characters).");
            None
        }
        Some(s) if s.chars().count() > 10 => {
            problems.push("reqSource must be at most 10 characters.");
            None
        }
        Some(s) if has_control_character(s) => {
            problems.push("reqSource must not contain control characters.");
            None
        }
        Some(s) => Some(s.to_owned()),
    };
    let value = headers
        .req_param_value
        .or_else(|| text(payload, "reqParamValue"));
    let identifier = match (id_type, value) {
        (_, None) => {
            problems.push("reqParamValue is required (AMQP header reqParamValue).");
            None
        }
        (_, Some(value)) if has_control_character(value) => {
            problems.push("reqParamValue must not contain control characters.");
            None
        }
        (Some(kind), Some(value)) => match normalize(kind, value) {
            Ok(value) => Some(Identifier { kind, value }),
            Err(problem) => {
                problems.push(problem);
                None
            }
        },
        (None, Some(_)) => None,
    };
    match (kind, identifier, source, tenant) {
        (Some(kind), Some(identifier), Some(source), Some(tenant)) if problems.is_empty() => {
            Ok(RcdpRequest {
                kind,
                identifier,
                source,
                tenant,
            })
        }
        _ => Err(problems.join(" ")),
    }
}

/// Validates a status query; `Err` is the error sentence.
pub fn parse_status_query(
    payload: &Map<String, Value>,
    headers: RcdpHeaders<'_>,
    tenants: &[String],
) -> Result<StatusQuery, String> {
    let mut problems = Vec::new();
    let tenant = tenant(payload, headers, tenants, &mut problems);
    let tracking_id = match field(payload, "trackingId") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    if tracking_id.is_none() {
        problems.push("trackingId is required and must be a number.");
    }
    match (tracking_id, tenant) {
        (Some(tracking_id), Some(tenant)) if problems.is_empty() => Ok(StatusQuery {
            tracking_id,
            tenant,
        }),
        _ => Err(problems.join(" ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    const HEADERS: RcdpHeaders<'static> = RcdpHeaders {
        req_param_value: Some(" John.Smith@Example.com "),
        tenant_hash: Some("t1"),
    };

    #[test]
    fn a_register_body_with_header_values_is_valid_and_normalized() {
        let body =
            payload(json!({"reqType": "Access", "reqParam": "Email", "reqSource": "test_1"}));
        let request = parse_rcdp_request(&body, HEADERS, &[]).unwrap();
        assert_eq!(request.kind, RequestKind::Access);
        assert_eq!(request.identifier.value, "john.smith@example.com");
        assert_eq!(request.tenant, "t1");
    }

    #[test]
    fn every_problem_is_named_in_one_sentence_without_the_value() {
        let body = payload(
            json!({"reqType": "delete", "reqParam": "passport", "reqSource": "far-too-long-source"}),
        );
        let error = parse_rcdp_request(&body, RcdpHeaders::default(), &[]).unwrap_err();
        for part in [
            "tenant_hash is required",
            "reqType must be",
            "reqParam must be",
            "reqSource must be at most 10",
            "reqParamValue is required",
        ] {
            assert!(error.contains(part), "{error}");
        }
    }

    #[test]
    fn mobile_numbers_compare_by_digits_and_unknown_tenants_are_refused() {
        assert_eq!(
            normalize(IdentifierType::Mobile, "+1 (415) 234-7172").unwrap(),
            "14152347172"
        );
        assert!(normalize(IdentifierType::Mobile, "call me").is_err());
        let body = payload(json!({"reqType": "forget", "reqParam": "gcrId", "reqSource": "s"}));
        let error = parse_rcdp_request(&body, HEADERS, &["t2".to_owned()]).unwrap_err();
        assert_eq!(error, "tenant_hash names no known tenant.");
    }
}
