//! The GetDataPrivacyStatusRequest payload: the eleven documented fields and their rules.
//!
//! Field names match case-insensitively (the sample sends `callid` for `CallId`), so
//! the payload is first canonicalised to the documented names; the rules then apply
//! to the canonical form, which is also what `schemas/privacy-request.schema.json`
//! describes. Every fault is collected so one error reply can name them all.

use std::fmt;
use std::sync::LazyLock;

use serde_json::{Map, Value};

use super::{CONTROL_CHARACTER, FieldFault, has_control_character};

/// The eleven documented fields, in documented order.
pub const FIELD_NAMES: [&str; 11] = [
    "CustomerName",
    "PhoneNumber",
    "OtherPhoneNumber",
    "EmailID",
    "OtherEmailID",
    "AgentComments",
    "AccountNumber",
    "CallId",
    "AgentID",
    "RequestType",
    "IsPseudonymize",
];

/// Undocumented but sent by the sample; recorded when it is a string.
const CUSTOMER_ID: &str = "CustomerID";

/// The only documented RequestType.
pub const ACCESS_TO_PI_DATA: &str = "Access to PI Data";

const MAX_TEXT_CHARS: usize = 256;
const MAX_PHONE_CHARS: usize = 32;
const MAX_EMAIL_CHARS: usize = 254;
const MAX_COMMENT_CHARS: usize = 4000;

/// What a field must hold.
#[derive(Clone, Copy)]
enum Rule {
    /// Non-blank text.
    RequiredText,
    /// A well-formed phone number.
    RequiredPhone,
    /// Empty, or a well-formed phone number.
    OptionalPhone,
    /// Empty, or a well-formed e-mail address.
    OptionalEmail,
    /// Any text, possibly empty.
    Comment,
    /// The documented request type.
    RequestType,
    /// A JSON boolean.
    Boolean,
}

fn rule_for(field: &str) -> Rule {
    match field {
        "PhoneNumber" => Rule::RequiredPhone,
        "OtherPhoneNumber" => Rule::OptionalPhone,
        "EmailID" | "OtherEmailID" => Rule::OptionalEmail,
        "AgentComments" => Rule::Comment,
        "RequestType" => Rule::RequestType,
        "IsPseudonymize" => Rule::Boolean,
        _ => Rule::RequiredText,
    }
}

/// A validated request. `Debug` shows no personal data.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivacyRequest {
    /// Personal data.
    pub customer_name: String,
    /// Personal data.
    pub phone_number: String,
    /// Personal data; may be empty.
    pub other_phone_number: String,
    /// Personal data; may be empty.
    pub email_id: String,
    /// Personal data; may be empty.
    pub other_email_id: String,
    /// Personal data; may be empty.
    pub agent_comments: String,
    /// The LCM key: the customer the request is about.
    pub account_number: String,
    /// The call during which the request was taken.
    pub call_id: String,
    /// The agent who took it.
    pub agent_id: String,
    /// As sent (the documented value is `Access to PI Data`).
    pub request_type: String,
    /// Whether the customer asked for pseudonymization.
    pub is_pseudonymize: bool,
    /// The sample's undocumented `CustomerID`, when sent as a string.
    pub customer_id: Option<String>,
}

impl fmt::Debug for PrivacyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivacyRequest")
            .field("customer_name", &"<redacted>")
            .field("phone_number", &"<redacted>")
            .field("email_id", &"<redacted>")
            .field("agent_comments", &"<redacted>")
            .field("call_id", &self.call_id)
            .field("agent_id", &self.agent_id)
            .field("is_pseudonymize", &self.is_pseudonymize)
            .finish_non_exhaustive()
    }
}

impl PrivacyRequest {
    /// The idempotency key used when a message has no `message_id`:
    /// CallId + AccountNumber + RequestType + IsPseudonymize, unambiguously joined.
    pub fn natural_key(&self) -> String {
        serde_json::json!([
            self.call_id.trim(),
            self.account_number.trim(),
            self.request_type.trim().to_ascii_lowercase(),
            self.is_pseudonymize
        ])
        .to_string()
    }
}

/// The documented name a payload key stands for, if any.
pub fn canonical_field_name(key: &str) -> Option<&'static str> {
    FIELD_NAMES
        .iter()
        .chain(std::iter::once(&CUSTOMER_ID))
        .find(|name| name.eq_ignore_ascii_case(key))
        .copied()
}

/// Renames documented fields to their documented spelling; other keys are kept as
/// they are. A field sent twice under different spellings is a fault.
pub fn canonicalize_payload(payload: &Map<String, Value>) -> (Map<String, Value>, Vec<FieldFault>) {
    let mut canonical = Map::new();
    let mut faults = Vec::new();
    for (key, value) in payload {
        let name = canonical_field_name(key).map_or_else(|| key.clone(), str::to_owned);
        if canonical.insert(name.clone(), value.clone()).is_some() {
            faults.push(FieldFault::new(
                name,
                "is given more than once (field names compare case-insensitively)",
            ));
        }
    }
    (canonical, faults)
}

/// Validates a payload, returning every fault in documented order.
pub fn validate_privacy_request(
    payload: &Map<String, Value>,
) -> Result<PrivacyRequest, Vec<FieldFault>> {
    let (canonical, mut duplicates) = canonicalize_payload(payload);
    let mut faults = Vec::new();
    for field in FIELD_NAMES {
        if let Some(problem) = check_field(rule_for(field), canonical.get(field)) {
            faults.push(FieldFault::new(field, problem));
        }
    }
    if let Some(Value::String(id)) = canonical.get(CUSTOMER_ID)
        && has_control_character(id)
    {
        faults.push(FieldFault::new(CUSTOMER_ID, CONTROL_CHARACTER));
    }
    for duplicate in duplicates.drain(..) {
        if !faults.iter().any(|f| f.field == duplicate.field) {
            faults.push(duplicate);
        }
    }
    if !faults.is_empty() {
        let order = |f: &FieldFault| FIELD_NAMES.iter().position(|n| *n == f.field);
        faults.sort_by_key(order);
        return Err(faults);
    }
    let text = |field: &str| match canonical.get(field) {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    Ok(PrivacyRequest {
        customer_name: text("CustomerName"),
        phone_number: text("PhoneNumber"),
        other_phone_number: text("OtherPhoneNumber"),
        email_id: text("EmailID"),
        other_email_id: text("OtherEmailID"),
        agent_comments: text("AgentComments"),
        account_number: text("AccountNumber"),
        call_id: text("CallId"),
        agent_id: text("AgentID"),
        request_type: text("RequestType"),
        is_pseudonymize: canonical.get("IsPseudonymize") == Some(&Value::Bool(true)),
        customer_id: match canonical.get(CUSTOMER_ID) {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        },
    })
}

/// The problem with one field's value, if any.
fn check_field(rule: Rule, value: Option<&Value>) -> Option<String> {
    let value = match value {
        None | Some(Value::Null) => return Some("is missing".into()),
        Some(v) => v,
    };
    if let Rule::Boolean = rule {
        return (!value.is_boolean()).then(|| "must be a boolean (true or false)".into());
    }
    let Value::String(text) = value else {
        return Some("must be a string".into());
    };
    if has_control_character(text) {
        return Some(CONTROL_CHARACTER.into());
    }
    let too_long = |max: usize| {
        (text.chars().count() > max).then(|| format!("must be at most {max} characters"))
    };
    match rule {
        Rule::RequiredText => too_long(MAX_TEXT_CHARS)
            .or_else(|| text.trim().is_empty().then(|| "must not be empty".into())),
        Rule::RequiredPhone if text.is_empty() => Some("must not be empty".into()),
        Rule::RequiredPhone | Rule::OptionalPhone => too_long(MAX_PHONE_CHARS).or_else(|| {
            (!text.is_empty() && !is_well_formed_phone(text))
                .then(|| "is not a well-formed phone number".into())
        }),
        Rule::OptionalEmail => too_long(MAX_EMAIL_CHARS).or_else(|| {
            (!text.is_empty() && !is_well_formed_email(text))
                .then(|| "is not a well-formed e-mail address".into())
        }),
        Rule::Comment => too_long(MAX_COMMENT_CHARS),
        Rule::RequestType => (!text.trim().eq_ignore_ascii_case(ACCESS_TO_PI_DATA))
            .then(|| format!("must be \"{ACCESS_TO_PI_DATA}\"")),
        Rule::Boolean => None,
    }
}

/// A phone number: an optional `+`, digit groups separated by single spaces, dots or
/// hyphens, and 7 to 15 digits in all (E.164 allows at most 15).
pub fn is_well_formed_phone(text: &str) -> bool {
    let body = text.strip_prefix('+').unwrap_or(text);
    let digits = body.bytes().filter(u8::is_ascii_digit).count();
    (7..=15).contains(&digits)
        && body
            .split([' ', '.', '-'])
            .all(|group| !group.is_empty() && group.bytes().all(|b| b.is_ascii_digit()))
}

/// The JSON Schema `idn-email` format (RFC 6531: UTF-8 in the local part and
/// the domain), one `@` between non-empty parts and no whitespace (the
/// library alone lets an empty local part through), checked by the same library that checks the
/// schema, so the worker and `schemas/` cannot disagree about addresses.
pub fn is_well_formed_email(text: &str) -> bool {
    static EMAIL: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
        jsonschema::options()
            .should_validate_formats(true)
            .build(&serde_json::json!({"type": "string", "format": "idn-email", "pattern": "^[^\\s@]+@[^\\s@]+$"}))
            .expect("the e-mail format schema is valid")
    });
    EMAIL.is_valid(&Value::String(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_need_seven_to_fifteen_digits_in_simple_groups() {
        assert!(is_well_formed_phone("14152347172"));
        assert!(is_well_formed_phone("+44 20 7946 0958"));
        assert!(is_well_formed_phone("415-234-7172"));
        assert!(!is_well_formed_phone("123456"));
        assert!(!is_well_formed_phone("1234567890123456"));
        assert!(!is_well_formed_phone("415--234-7172"));
        assert!(!is_well_formed_phone("call me 4152347"));
        assert!(!is_well_formed_phone("+"));
    }

    #[test]
    fn email_addresses_are_checked_by_the_schema_format() {
        assert!(is_well_formed_email("john.smith@example.com"));
        // RFC 6531: UTF-8 in the local part and the domain.
        assert!(is_well_formed_email("josé.núñez@correo.es"));
        assert!(is_well_formed_email("用户@例子.广告"));
        assert!(is_well_formed_email("ÉLODIE.DUPONT@EXEMPLE.FR"));
        assert!(!is_well_formed_email("josé núñez@correo.es"));
        assert!(!is_well_formed_email("@例子.广告"));
        assert!(!is_well_formed_email("john.smith"));
        assert!(!is_well_formed_email("john@@example.com"));
    }

    #[test]
    fn debug_output_redacts_personal_data() {
        let request = PrivacyRequest {
            customer_name: "Zed Secretname".into(),
            phone_number: "14155550100".into(),
            other_phone_number: String::new(),
            email_id: "zed@example.com".into(),
            other_email_id: String::new(),
            agent_comments: "private".into(),
            account_number: "1".into(),
            call_id: "c".into(),
            agent_id: "a".into(),
            request_type: ACCESS_TO_PI_DATA.into(),
            is_pseudonymize: false,
            customer_id: None,
        };
        let shown = format!("{request:?}");
        for secret in ["Zed", "14155550100", "zed@example.com", "private"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
