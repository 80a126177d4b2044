//! The bodies of `POST /api/v1/messages` and `/batch`: read whole (within the body
//! limit), checked to be JSON objects, parsed, and hashed for `Idempotency-Key`.
//!
//! JSON is accepted with `Content-Type: application/json` (or any `+json` type), with no
//! Content-Type at all, and with `application/x-www-form-urlencoded`, which is what
//! `curl -d @message.json` sends: the body is still parsed as JSON, never as a form. Any
//! other type is 415.
//!
//! A message must be a JSON object: serde would otherwise take an array as the fields in
//! order (`["app@example.com", ...]`), which no client means and no field name checks.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use outbox_mime::EmailSpec;
use sha2::{Digest, Sha256};

use super::error::{ApiError, json_rejection};

/// One message, and the hash of the request it came in.
#[derive(Debug)]
pub struct SpecBody {
    pub spec: EmailSpec,
    pub hash: String,
}

/// A batch of messages, and the hash of the request they came in.
#[derive(Debug)]
pub struct BatchBody {
    pub specs: Vec<EmailSpec>,
    pub hash: String,
}

impl<S: Send + Sync> FromRequest<S> for SpecBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = json_bytes(req, state).await?;
        let spec = parse_object(&bytes)?;
        Ok(SpecBody {
            spec,
            hash: request_hash("message", &bytes),
        })
    }
}

impl<S: Send + Sync> FromRequest<S> for BatchBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = json_bytes(req, state).await?;
        let Json(items) =
            Json::<Vec<serde_json::Value>>::from_bytes(&bytes).map_err(json_rejection)?;
        let mut specs = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            // Each item goes through the same parser as a single message, so its errors
            // name the field the same way, prefixed with its index.
            let text = serde_json::to_vec(&item).map_err(|err| ApiError::internal(&err))?;
            let spec = parse_object(&text).map_err(|err| super::api::in_batch(index, err))?;
            specs.push(spec);
        }
        Ok(BatchBody {
            specs,
            hash: request_hash("batch", &bytes),
        })
    }
}

/// The body, if its content type is one that carries JSON; 413 over the limit.
async fn json_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    if let Some(value) = req.headers().get(CONTENT_TYPE) {
        let accepted = value.to_str().is_ok_and(accepts_content_type);
        if !accepted {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected Content-Type: application/json",
            ));
        }
    }
    Bytes::from_request(req, state).await.map_err(|rejection| {
        let text = rejection.body_text();
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body is over the size limit",
            )
        } else if text.contains(super::server::BODY_TIMED_OUT) {
            ApiError::new(StatusCode::REQUEST_TIMEOUT, super::server::BODY_TIMED_OUT)
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, text)
        }
    })
}

/// `application/json`, `application/*+json`, or the form type curl's `-d` sends.
fn accepts_content_type(value: &str) -> bool {
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence == "application/x-www-form-urlencoded"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A request body that must be one JSON object, for routes that check each field by hand
/// (so that a bad one is a 422 naming it). Read like the message bodies: same content
/// types, size limit and timeout.
pub struct JsonObject(pub serde_json::Map<String, serde_json::Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = json_bytes(req, state).await?;
        let Json(value) = Json::<serde_json::Value>::from_bytes(&bytes).map_err(json_rejection)?;
        match value {
            serde_json::Value::Object(map) => Ok(JsonObject(map)),
            _ => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "expected a JSON object",
            )),
        }
    }
}

/// One message from JSON that must be an object.
fn parse_object(bytes: &[u8]) -> Result<EmailSpec, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "expected a JSON object for the message, got an array \
             (POST several messages to /api/v1/messages/batch)",
        ));
    }
    Json::<EmailSpec>::from_bytes(bytes)
        .map(|Json(spec)| spec)
        .map_err(json_rejection)
}

/// SHA-256 of what the request asked for, so a repeated `Idempotency-Key` can be told
/// apart from the same key with another request.
fn request_hash(kind: &str, bytes: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(kind.as_bytes());
    hash.update([0]);
    hash.update(bytes);
    hex(&hash.finalize())
}

/// Lowercase hex of some bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_that_carry_json() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/x-www-form-urlencoded",
            "application/merge-patch+json",
        ] {
            assert!(accepts_content_type(ok), "{ok}");
        }
        for refused in ["text/plain", "multipart/form-data; boundary=x", ""] {
            assert!(!accepts_content_type(refused), "{refused}");
        }
    }

    #[test]
    fn arrays_are_not_messages() {
        let err = parse_object(br#" ["app@example.com", ["a@b.test"], [], [], "s"]"#).unwrap_err();
        assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(err.body.error.contains("JSON object"), "{err:?}");
        assert!(parse_object(br#"{"from": "a@b.test"}"#).is_ok());
    }
}
