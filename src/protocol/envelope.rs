//! The LCM envelope: `{"channel","topic","subtopic","source","data"|"message"}`.
//!
//! The documentation table puts the payload under `data`, its sample under
//! `message`; both are accepted, but not both at once, since we could not tell
//! which one the sender meant.

use serde_json::{Map, Value};

use super::{
    CONTROL_CHARACTER, ErrorCode, FieldFault, LCM_CHANNEL, LCM_TOPIC, Limits, Rejection,
    has_control_character,
};

/// A well-formed envelope; the payload is not validated yet.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// As sent (compared case-insensitively).
    pub channel: String,
    /// As sent (compared case-insensitively).
    pub topic: String,
    /// As sent (compared case-insensitively).
    pub subtopic: String,
    /// The sending application, optional (the sample omits it).
    pub source: Option<String>,
    /// The payload object, from `data` or `message`.
    pub payload: Map<String, Value>,
}

/// Parses the body into an envelope, or says why it cannot be one.
pub fn parse_envelope(body: &[u8], limits: Limits) -> Result<Envelope, Rejection> {
    if body.len() > limits.max_body_bytes {
        return Err(Rejection::new(
            ErrorCode::BodyTooLarge,
            format!(
                "body is {} bytes; the limit is {}",
                body.len(),
                limits.max_body_bytes
            ),
            vec![],
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Rejection::new(
            ErrorCode::EmptyBody,
            "body is empty",
            vec![],
        ));
    }
    // serde_json's messages quote no input, only line and column, so they are safe to return.
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        Rejection::new(
            ErrorCode::NotJson,
            format!("body is not valid UTF-8 JSON: {e}"),
            vec![],
        )
    })?;
    let Value::Object(mut object) = value else {
        return Err(Rejection::new(
            ErrorCode::NotAnObject,
            "body must be a JSON object (an LCM envelope)",
            vec![],
        ));
    };

    let mut faults = Vec::new();
    let channel = required_string(&object, "channel", &mut faults);
    let topic = required_string(&object, "topic", &mut faults);
    let subtopic = required_string(&object, "subtopic", &mut faults);
    let source = match object.get("source") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if has_control_character(s) => {
            faults.push(FieldFault::new("source", CONTROL_CHARACTER));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            faults.push(FieldFault::new("source", "must be a string"));
            None
        }
    };
    if let Some(channel) = &channel
        && !channel.eq_ignore_ascii_case(LCM_CHANNEL)
    {
        faults.push(FieldFault::new("channel", format!("must be {LCM_CHANNEL}")));
    }
    if let Some(topic) = &topic
        && !topic.eq_ignore_ascii_case(LCM_TOPIC)
    {
        faults.push(FieldFault::new("topic", format!("must be {LCM_TOPIC}")));
    }

    let payload = match (object.remove("data"), object.remove("message")) {
        (Some(Value::Object(p)), None) => Some(p),
        (None, Some(Value::Object(p))) => Some(p),
        (Some(_), Some(_)) => {
            faults.push(FieldFault::new(
                "data",
                "must not be sent together with message; send the payload under one key",
            ));
            None
        }
        (Some(_), None) => {
            faults.push(FieldFault::new("data", "must be an object"));
            None
        }
        (None, Some(_)) => {
            faults.push(FieldFault::new("message", "must be an object"));
            None
        }
        (None, None) => {
            faults.push(FieldFault::new(
                "data",
                "is missing (the payload goes under data or message)",
            ));
            None
        }
    };

    match (channel, topic, subtopic, payload) {
        (Some(channel), Some(topic), Some(subtopic), Some(payload)) if faults.is_empty() => {
            Ok(Envelope {
                channel,
                topic,
                subtopic,
                source,
                payload,
            })
        }
        _ => {
            let names: Vec<&str> = faults.iter().map(|f| f.field.as_str()).collect();
            let message = format!("the envelope is invalid: {}", names.join(", "));
            Err(Rejection::new(ErrorCode::InvalidEnvelope, message, faults))
        }
    }
}

fn required_string(
    object: &Map<String, Value>,
    key: &str,
    faults: &mut Vec<FieldFault>,
) -> Option<String> {
    match object.get(key) {
        None | Some(Value::Null) => {
            faults.push(FieldFault::new(key, "is missing"));
            None
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            faults.push(FieldFault::new(key, "must not be empty"));
            None
        }
        Some(Value::String(s)) if has_control_character(s) => {
            faults.push(FieldFault::new(key, CONTROL_CHARACTER));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            faults.push(FieldFault::new(key, "must be a string"));
            None
        }
    }
}
