//! Reply bodies: the LCM envelope of the seed's sample response, payload under `message`.
//!
//! Success is `{"response": "<id>"}`; failure is `{"response": null, "error": {...}}`
//! built from a [`Rejection`], which holds no personal data.

use serde::Serialize;
use serde_json::{Value, json};

use super::{
    Envelope, FieldFault, GET_DATA_PRIVACY_STATUS, GET_GDPR_REQUEST_STATUS, REGISTER_GDPR_REQUEST,
    REQUEST_SUBTOPICS, REVOKE_GDPR_ACTIONS, Rejection, SET_DATA_PRIVACY_STATUS,
};

/// Where a reply goes on the topic exchange: `<channel>.<topic>.<subtopic>`.
///
/// Channel and topic echo the request's spelling, so a sender listening on
/// `LCM.WebService.SetDataPrivacyStatusResponse` hears the answer to its
/// `LCM.WebService.GetDataPrivacyStatusRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyRoute {
    /// Request channel, as sent.
    pub channel: String,
    /// Request topic, as sent.
    pub topic: String,
    /// The reply subtopic.
    pub subtopic: String,
    /// Which family of payloads the reply carries.
    pub shape: ReplyShape,
}

/// The two reply payload families: the LCM agent flow's and the RCDP documents'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyShape {
    /// `{"response": ...}`.
    Lcm,
    /// `{"status": "OK", ...}` or `{"error": "..."}`.
    Rcdp,
}

fn shape_of(request_subtopic: &str) -> ReplyShape {
    let rcdp = [
        REGISTER_GDPR_REQUEST,
        REVOKE_GDPR_ACTIONS,
        GET_GDPR_REQUEST_STATUS,
    ];
    if rcdp
        .iter()
        .any(|s| s.eq_ignore_ascii_case(request_subtopic))
    {
        ReplyShape::Rcdp
    } else {
        ReplyShape::Lcm
    }
}

impl ReplyRoute {
    /// The reply route for a parsed envelope.
    pub fn for_envelope(envelope: &Envelope) -> Self {
        Self {
            channel: envelope.channel.clone(),
            topic: envelope.topic.clone(),
            subtopic: reply_subtopic(&envelope.subtopic),
            shape: shape_of(&envelope.subtopic),
        }
    }

    /// The reply route read off a delivery's routing key, used when the body is too
    /// broken to say; only for a three-part key naming a known request subtopic.
    pub fn from_routing_key(routing_key: &str) -> Option<Self> {
        let mut parts = routing_key.split('.');
        let (channel, topic, subtopic) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some()
            || channel.is_empty()
            || topic.is_empty()
            || !REQUEST_SUBTOPICS
                .iter()
                .any(|known| known.eq_ignore_ascii_case(subtopic))
        {
            return None;
        }
        Some(Self {
            channel: channel.to_owned(),
            topic: topic.to_owned(),
            subtopic: reply_subtopic(subtopic),
            shape: shape_of(subtopic),
        })
    }

    /// The AMQP routing key of the reply.
    pub fn routing_key(&self) -> String {
        format!("{}.{}.{}", self.channel, self.topic, self.subtopic)
    }
}

fn reply_subtopic(request_subtopic: &str) -> String {
    if request_subtopic.eq_ignore_ascii_case(GET_DATA_PRIVACY_STATUS) {
        SET_DATA_PRIVACY_STATUS.to_owned()
    } else {
        format!("{request_subtopic}Response")
    }
}

/// `{"response": "<id>"}`.
pub fn success_payload(request_id: &str) -> Value {
    json!({ "response": request_id })
}

/// The error reply for a rejection: `{"response": null, "error": {"code",
/// "message", "fields"}}` for the LCM flow, `{"error": "..."}` for RCDP.
pub fn failure_payload(rejection: &Rejection) -> Value {
    if rejection
        .route
        .as_ref()
        .is_some_and(|r| r.shape == ReplyShape::Rcdp)
    {
        return rcdp_error(&rejection.message);
    }
    lcm_error(
        rejection.code.as_str(),
        &rejection.message,
        &rejection.fields,
    )
}

/// `{"response": null, "error": {"code", "message", "fields"}}`, the LCM flow's
/// error body.
pub fn lcm_error(code: &str, message: &str, fields: &[FieldFault]) -> Value {
    json!({
        "response": null,
        "error": { "code": code, "message": message, "fields": fields }
    })
}

/// `{"error": "..."}`, the RCDP documents' error body.
pub fn rcdp_error(message: &str) -> Value {
    json!({ "error": message })
}

#[derive(Serialize)]
struct ReplyEnvelope<'a, P: Serialize + ?Sized> {
    channel: &'a str,
    topic: &'a str,
    subtopic: &'a str,
    source: &'a str,
    message: &'a P,
}

/// The full reply body, keys in the order of the seed's sample response.
pub fn reply_body<P: Serialize + ?Sized>(route: &ReplyRoute, source: &str, payload: &P) -> Vec<u8> {
    serde_json::to_vec(&ReplyEnvelope {
        channel: &route.channel,
        topic: &route.topic,
        subtopic: &route.subtopic,
        source,
        message: payload,
    })
    .expect("a reply envelope always serialises")
}
