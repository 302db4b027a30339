//! The bus contract, as pure functions: bytes in, a typed request or a rejection out,
//! and reply bodies back to bytes.
//!
//! Nothing here does I/O, logs, or knows about AMQP or SQL, so every rule of
//! `SPEC.md` can be tested as a table of fixtures. The worker feeds it the delivery
//! body and routing key and acts on the verdict.

mod envelope;
mod privacy_request;
mod rejection;
mod reply;

pub use envelope::{Envelope, PayloadKey, parse_envelope};
pub use privacy_request::{
    FIELD_NAMES, PrivacyRequest, canonical_field_name, canonicalize_payload, is_well_formed_email,
    is_well_formed_phone, validate_privacy_request,
};
pub use rejection::{ErrorCode, FieldFault, Rejection};
pub use reply::{ReplyRoute, failure_payload, reply_body, success_payload};

/// The channel every request must name (compared case-insensitively).
pub const LCM_CHANNEL: &str = "LCM";
/// The topic every request must name; `Webservice` and `WebService` both occur.
pub const LCM_TOPIC: &str = "Webservice";
/// The agent application's request for a customer's personal information.
pub const GET_DATA_PRIVACY_STATUS: &str = "GetDataPrivacyStatusRequest";
/// The reply subtopic for [`GET_DATA_PRIVACY_STATUS`].
pub const SET_DATA_PRIVACY_STATUS: &str = "SetDataPrivacyStatusResponse";

/// Limits applied before any parsing work is done.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bodies larger than this are refused unread.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
        }
    }
}

/// A request that passed every check, with where its reply goes.
#[derive(Debug, Clone)]
pub struct ValidRequest {
    /// Reply routing (channel/topic echoed as the sender spelled them).
    pub route: ReplyRoute,
    /// The envelope's `source`, the sending application.
    pub source: Option<String>,
    /// The validated payload.
    pub request: PrivacyRequest,
}

/// Parses and validates one delivery body.
///
/// `routing_key` is only used to address an error reply when the body is too broken
/// to say where the reply should go.
pub fn parse_request(
    body: &[u8],
    routing_key: &str,
    limits: Limits,
) -> Result<ValidRequest, Rejection> {
    let fallback = ReplyRoute::from_routing_key(routing_key);
    let envelope = parse_envelope(body, limits).map_err(|r| r.with_route(fallback.clone()))?;
    let route = ReplyRoute::for_envelope(&envelope);
    if !envelope
        .subtopic
        .eq_ignore_ascii_case(GET_DATA_PRIVACY_STATUS)
    {
        return Err(Rejection::new(
            ErrorCode::UnknownSubtopic,
            format!("subtopic is not one this worker handles; expected {GET_DATA_PRIVACY_STATUS}"),
            vec![FieldFault::new("subtopic", "is not a known operation")],
        )
        .with_route(Some(route)));
    }
    let request = validate_privacy_request(&envelope.payload)
        .map_err(|faults| Rejection::invalid_request(faults).with_route(Some(route.clone())))?;
    Ok(ValidRequest {
        route,
        source: envelope.source,
        request,
    })
}
