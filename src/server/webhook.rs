//! Receiving a webhook delivery: an axum extractor that hands the handler only deliveries
//! whose signature checks out.

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use super::signature::SignatureCheck;
use super::unverified_body::ReceiveError;
use crate::worker::events::Envelope;

/// GitHub caps payloads at 25 MB; anything larger is not from GitHub.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// When a body refused for want of room may be sent again: by then the bodies that took
/// the room have ended, one way or another (the request deadline).
const RETRY_AFTER_SECONDS: u64 = super::connections::REQUEST_TIMEOUT.as_secs();

/// A delivery whose `X-Hub-Signature-256` matched one of the configured secrets.
#[derive(Debug, Clone)]
pub struct VerifiedDelivery {
    /// `X-GitHub-Delivery`: the same on redeliveries.
    pub id: String,
    /// `X-GitHub-Event`.
    pub event: String,
    pub payload: Value,
    /// The fields of the payload every event may carry.
    pub envelope: Envelope,
    /// The body as received (the payload's exact bytes).
    pub body: String,
}

impl VerifiedDelivery {
    /// `payload.action`, if any.
    pub fn action(&self) -> Option<&str> {
        self.envelope.action.as_deref()
    }

    /// `payload.installation.id`, if any.
    pub fn installation_id(&self) -> Option<i64> {
        self.envelope.installation_id()
    }

    /// `payload.repository.full_name`, if any.
    pub fn repository(&self) -> Option<&str> {
        self.envelope.repository()
    }
}

/// The envelope of a payload: every field of it is read leniently (one of another type reads
/// as absent), so reading it never fails.
fn envelope_of(payload: &Value) -> Envelope {
    Envelope::deserialize(payload).unwrap_or_default()
}

fn refuse(status: StatusCode, reason: &str) -> Response {
    tracing::warn!(status = status.as_u16(), reason, "webhook delivery refused");
    (status, axum::Json(serde_json::json!({ "error": reason }))).into_response()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// GitHub's delivery ids are UUIDs; accept that shape and nothing that could surprise a log
/// or a query.
fn valid_delivery_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn valid_event(event: &str) -> bool {
    !event.is_empty()
        && event.len() <= 64
        && event
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl FromRequest<AppState> for VerifiedDelivery {
    type Rejection = Response;

    /// Counts every delivery received, and those refused, by event.
    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let metrics = crate::metrics::global();
        let event = header(request.headers(), "x-github-event").unwrap_or("");
        let event = crate::metrics::event_label(event);
        metrics.delivery(event, "received");
        let verified = VerifiedDelivery::verify(request, state).await;
        if verified.is_err() {
            metrics.delivery(event, "refused");
        }
        verified
    }
}

impl VerifiedDelivery {
    async fn verify(request: Request, state: &AppState) -> Result<Self, Response> {
        let headers = request.headers().clone();
        let check = SignatureCheck::new(&state.credentials().webhook_secrets);
        // What can be refused without the body is refused before reading it.
        if check.has_no_secret() {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                "WEBHOOK_SECRET is not set, so no delivery can be verified",
            ));
        }
        let Some(signature) = header(&headers, "x-hub-signature-256") else {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                "missing X-Hub-Signature-256",
            ));
        };
        if !super::signature::is_well_formed(signature) {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                "X-Hub-Signature-256 is not sha256= followed by 64 hex digits",
            ));
        }
        let declared = header(&headers, "content-length").and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|length| length > MAX_BODY_BYTES) {
            return Err(refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the body is larger than 25 MiB",
            ));
        }
        // The body is hashed as it arrives, held in memory only while the budget of
        // unverified bytes allows, and streamed to a temporary file otherwise. A client that
        // trickles its body is cut off by the request deadline (`connections`).
        let received = state
            .body_intake
            .receive(request.into_body(), declared, MAX_BODY_BYTES, check)
            .await;
        let unverified = match received {
            Ok(body) => body,
            Err(ReceiveError::TooLarge { .. }) => {
                return Err(refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the body is larger than 25 MiB",
                ));
            }
            Err(ReceiveError::Read(_)) => {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "the body could not be read",
                ));
            }
            Err(error) if error.is_lack_of_room() => {
                tracing::warn!(%error, "webhook delivery refused for want of room");
                let mut refused = refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the body does not fit in the room kept for unverified bodies now; redeliver it later",
                );
                refused.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from(RETRY_AFTER_SECONDS),
                );
                return Err(refused);
            }
            Err(error) => {
                tracing::error!(%error, "could not receive a webhook body");
                return Err(refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the body could not be received; redeliver it",
                ));
            }
        };
        let body = match unverified.verify(signature).await {
            Ok(Some(body)) => body,
            Ok(None) => {
                return Err(refuse(
                    StatusCode::UNAUTHORIZED,
                    "X-Hub-Signature-256 does not match the body with any configured secret",
                ));
            }
            Err(error) => {
                tracing::error!(%error, "could not read back a verified webhook body");
                return Err(refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the body could not be received; redeliver it",
                ));
            }
        };

        let Some(id) = header(&headers, "x-github-delivery").filter(|id| valid_delivery_id(id))
        else {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "missing or malformed X-GitHub-Delivery",
            ));
        };
        let Some(event) = header(&headers, "x-github-event").filter(|e| valid_event(e)) else {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "missing or malformed X-GitHub-Event",
            ));
        };
        let Ok(body) = String::from_utf8(body) else {
            return Err(refuse(StatusCode::BAD_REQUEST, "the body is not UTF-8"));
        };
        let payload: Value = match serde_json::from_str(&body) {
            Ok(payload @ Value::Object(_)) => payload,
            Ok(_) => {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "the body is not a JSON object",
                ));
            }
            Err(_) => {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "the body is not valid JSON",
                ));
            }
        };
        let envelope = envelope_of(&payload);
        Ok(VerifiedDelivery {
            id: id.to_owned(),
            event: event.to_owned(),
            payload,
            envelope,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_envelope_reads_fields_of_another_type_as_absent() {
        let envelope = envelope_of(&json!({
            "action": "created",
            "repository": {"full_name": "o/r"},
            "installation": {"id": 7},
        }));
        assert_eq!(envelope.action.as_deref(), Some("created"));
        assert_eq!(envelope.repository(), Some("o/r"));
        assert_eq!(envelope.installation_id(), Some(7));
        for odd in [
            json!({
                "action": 5,
                "repository": {"full_name": 7},
                "installation": {"id": "7"},
            }),
            json!({
                "action": null,
                "repository": ["o/r"],
                "installation": {"id": 7.5},
            }),
            json!({
                "action": ["created"],
                "repository": "o/r",
                "installation": {"id": u64::MAX},
            }),
        ] {
            let odd = envelope_of(&odd);
            assert_eq!(odd.action, None);
            assert_eq!(odd.repository(), None);
            assert_eq!(odd.installation_id(), None);
        }
        assert_eq!(envelope_of(&json!({})), Envelope::default());
    }
}
