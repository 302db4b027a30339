//! The bus contract, as pure functions: bytes in, a typed request or a rejection out,
//! and reply bodies back to bytes.
//!
//! Nothing here does I/O, logs, or knows about AMQP or SQL, so every rule of
//! `SPEC.md` can be tested as a table of fixtures. The worker feeds it the delivery
//! body and routing key and acts on the verdict.

mod envelope;
mod privacy_request;
mod rcdp;
mod rejection;
mod reply;

pub use envelope::{Envelope, parse_envelope};
pub use privacy_request::{
    FIELD_NAMES, PrivacyRequest, canonical_field_name, canonicalize_payload, is_well_formed_email,
    is_well_formed_phone, validate_privacy_request,
};
pub use rcdp::{
    Identifier, RcdpHeaders, RcdpRequest, StatusQuery, normalize, parse_rcdp_request,
    parse_status_query,
};
pub use rejection::{ErrorCode, FieldFault, Rejection};
pub use reply::{
    ReplyRoute, ReplyShape, failure_payload, lcm_error, rcdp_error, reply_body, success_payload,
};

/// The channel every request must name (compared case-insensitively).
pub const LCM_CHANNEL: &str = "LCM";
/// The topic every request must name; `Webservice` and `WebService` both occur.
pub const LCM_TOPIC: &str = "Webservice";
/// The agent application's request for a customer's personal information.
pub const GET_DATA_PRIVACY_STATUS: &str = "GetDataPrivacyStatusRequest";
/// The reply subtopic for [`GET_DATA_PRIVACY_STATUS`].
pub const SET_DATA_PRIVACY_STATUS: &str = "SetDataPrivacyStatusResponse";
/// RCDP: register an access or forget request.
pub const REGISTER_GDPR_REQUEST: &str = "RegisterGdprRequest";
/// RCDP: revoke a pending request.
pub const REVOKE_GDPR_ACTIONS: &str = "RevokeGdprActions";
/// Ask for a request's status by tracking id.
pub const GET_GDPR_REQUEST_STATUS: &str = "GetGdprRequestStatus";
/// The announcement of a request's change of status.
pub const GDPR_REQUEST_STATUS_CHANGED: &str = "GdprRequestStatusChanged";
/// Every request subtopic the worker handles.
pub const REQUEST_SUBTOPICS: [&str; 4] = [
    GET_DATA_PRIVACY_STATUS,
    REGISTER_GDPR_REQUEST,
    REVOKE_GDPR_ACTIONS,
    GET_GDPR_REQUEST_STATUS,
];

/// Whether `text` holds a control character other than tab, line feed and
/// carriage return (C0, DEL and C1). Such text is refused in every field: it
/// has no business in a name or an identifier, and PostgreSQL cannot store NUL.
pub fn has_control_character(text: &str) -> bool {
    text.chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}

/// The fault named for a field holding a control character.
pub const CONTROL_CHARACTER: &str =
    "must not contain control characters (only tab, line feed and carriage return)";

/// A status change as announced on the bus: what it says, no link and no
/// personal data.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusChanged<'a> {
    /// The request id (tracking id).
    pub tracking_id: i64,
    /// `access` or `forget`.
    pub req_type: &'a str,
    /// The new status.
    pub request_status: &'a str,
    /// The request's opaque tenant id (`Keys::tenant_id`), never the
    /// tenant_hash that authorises status queries.
    pub tenant: &'a str,
    /// When it changed (RFC 3339, UTC).
    pub updated_at: String,
}

impl StatusChanged<'_> {
    /// Its routing key on the exchange.
    pub fn routing_key() -> String {
        format!("{LCM_CHANNEL}.{LCM_TOPIC}.{GDPR_REQUEST_STATUS_CHANGED}")
    }

    /// The LCM envelope that carries it, under `message`.
    pub fn body(&self, source: &str) -> Vec<u8> {
        let route = ReplyRoute {
            channel: LCM_CHANNEL.into(),
            topic: LCM_TOPIC.into(),
            subtopic: GDPR_REQUEST_STATUS_CHANGED.into(),
            shape: ReplyShape::Lcm,
        };
        reply_body(&route, source, self)
    }
}

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

/// What a valid message asks for.
#[derive(Debug, Clone)]
pub enum Operation {
    /// An agent's GetDataPrivacyStatusRequest.
    Lcm(PrivacyRequest),
    /// RegisterGdprRequest.
    Register(RcdpRequest),
    /// RevokeGdprActions.
    Revoke(RcdpRequest),
    /// GetGdprRequestStatus.
    Status(StatusQuery),
}

/// A request that passed every check, with where its reply goes.
#[derive(Debug, Clone)]
pub struct ValidRequest {
    /// Reply routing (channel/topic echoed as the sender spelled them).
    pub route: ReplyRoute,
    /// The envelope's `source`, the sending application.
    pub source: Option<String>,
    /// What it asks for.
    pub operation: Operation,
}

/// What parsing needs besides the body.
#[derive(Debug, Clone, Copy, Default)]
pub struct ParseContext<'a> {
    /// Body limits.
    pub limits: Limits,
    /// RCDP values carried in AMQP headers.
    pub headers: RcdpHeaders<'a>,
    /// Known tenants; empty accepts any.
    pub tenants: &'a [String],
}

/// Parses and validates one delivery body.
///
/// `routing_key` is only used to address an error reply when the body is too broken
/// to say where the reply should go.
pub fn parse_request(
    body: &[u8],
    routing_key: &str,
    context: ParseContext<'_>,
) -> Result<ValidRequest, Rejection> {
    let fallback = ReplyRoute::from_routing_key(routing_key);
    let envelope =
        parse_envelope(body, context.limits).map_err(|r| r.with_route(fallback.clone()))?;
    let route = ReplyRoute::for_envelope(&envelope);
    let subtopic = REQUEST_SUBTOPICS
        .iter()
        .find(|known| known.eq_ignore_ascii_case(&envelope.subtopic));
    let rcdp = |result: Result<Operation, String>| {
        result.map_err(|message| {
            Rejection::new(ErrorCode::InvalidRequest, message, vec![])
                .with_route(Some(route.clone()))
        })
    };
    let (headers, tenants) = (context.headers, context.tenants);
    let operation = match subtopic.copied() {
        Some(GET_DATA_PRIVACY_STATUS) => validate_privacy_request(&envelope.payload)
            .map(Operation::Lcm)
            .map_err(|faults| Rejection::invalid_request(faults).with_route(Some(route.clone())))?,
        Some(REGISTER_GDPR_REQUEST) => {
            rcdp(parse_rcdp_request(&envelope.payload, headers, tenants).map(Operation::Register))?
        }
        Some(REVOKE_GDPR_ACTIONS) => {
            rcdp(parse_rcdp_request(&envelope.payload, headers, tenants).map(Operation::Revoke))?
        }
        Some(GET_GDPR_REQUEST_STATUS) => {
            rcdp(parse_status_query(&envelope.payload, headers, tenants).map(Operation::Status))?
        }
        _ => {
            return Err(Rejection::new(
                ErrorCode::UnknownSubtopic,
                format!(
                    "subtopic is not one this worker handles; expected one of {}",
                    REQUEST_SUBTOPICS.join(", ")
                ),
                vec![FieldFault::new("subtopic", "is not a known operation")],
            )
            .with_route(Some(route)));
        }
    };
    Ok(ValidRequest {
        route,
        source: envelope.source,
        operation,
    })
}
