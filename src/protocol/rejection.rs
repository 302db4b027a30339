//! Why a message was refused, in a form that is safe to send back and to log.
//!
//! A rejection names fields by their documented names and says what is wrong with
//! them, never what they contained: error replies and logs must not repeat personal
//! data.

use serde::Serialize;

use super::ReplyRoute;

/// Machine-readable reason for a rejection; the `error.code` of a failure reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body exceeds the configured limit.
    BodyTooLarge,
    /// The body is empty.
    EmptyBody,
    /// The body is not UTF-8 JSON.
    NotJson,
    /// The body is JSON but not an object.
    NotAnObject,
    /// The envelope's own fields are missing or of the wrong type.
    InvalidEnvelope,
    /// The subtopic names no operation this worker handles.
    UnknownSubtopic,
    /// The payload's fields break the documented rules.
    InvalidRequest,
}

impl ErrorCode {
    /// The code as it appears on the wire and in parking headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BodyTooLarge => "body_too_large",
            Self::EmptyBody => "empty_body",
            Self::NotJson => "not_json",
            Self::NotAnObject => "not_an_object",
            Self::InvalidEnvelope => "invalid_envelope",
            Self::UnknownSubtopic => "unknown_subtopic",
            Self::InvalidRequest => "invalid_request",
        }
    }
}

/// One field at fault: its documented name and the problem, without its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldFault {
    /// Documented name, e.g. `PhoneNumber`, or an envelope key such as `channel`.
    pub field: String,
    /// What is wrong, e.g. `is missing`.
    pub problem: String,
}

impl FieldFault {
    /// Builds a fault.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// A message that can never succeed: answered with an error and parked.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// Reason code.
    pub code: ErrorCode,
    /// One human sentence.
    pub message: String,
    /// Every field at fault, in documented order.
    pub fields: Vec<FieldFault>,
    /// Where the error reply goes on the topic exchange, when that can be told.
    pub route: Option<Box<ReplyRoute>>,
}

impl Rejection {
    /// Builds a rejection with no reply route yet.
    pub fn new(code: ErrorCode, message: impl Into<String>, fields: Vec<FieldFault>) -> Self {
        Self {
            code,
            message: message.into(),
            fields,
            route: None,
        }
    }

    /// A payload that breaks field rules.
    pub fn invalid_request(fields: Vec<FieldFault>) -> Self {
        let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
        let message = format!(
            "{} field{} at fault: {}",
            fields.len(),
            if fields.len() == 1 { " is" } else { "s are" },
            names.join(", ")
        );
        Self::new(ErrorCode::InvalidRequest, message, fields)
    }

    /// Sets where the error reply goes.
    pub fn with_route(mut self, route: Option<ReplyRoute>) -> Self {
        self.route = route.map(Box::new);
        self
    }

    /// Names of the fields at fault, comma-separated, for parking headers.
    pub fn field_names(&self) -> String {
        let names: Vec<&str> = self.fields.iter().map(|f| f.field.as_str()).collect();
        names.join(",")
    }
}
