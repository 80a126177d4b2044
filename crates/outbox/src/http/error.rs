//! The one error type of the JSON API, and the extractors that turn axum's text
//! rejections into it.
//!
//! Every failure answers `{"error": "...", "field": "..."}` (`field` only when one input
//! field is at fault). Bad input is always a 4xx; a database failure is a 500 with a
//! generic message, its detail logged and never sent.

use axum::Json;
use axum::extract::FromRequestParts;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use outbox_queue::{OutboxError, StoreError};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The JSON body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What was wrong, in one line.
    pub error: String,
    /// The input field at fault (`subject`, `attachments`, `limit`, ...), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error answer: a status and an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body sent.
    pub body: ErrorBody,
}

impl ApiError {
    /// An error with no particular field.
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                error: error.into(),
                field: None,
            },
        }
    }

    /// An error that names the input field at fault.
    pub fn field(status: StatusCode, field: impl Into<String>, error: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                error: error.into(),
                field: Some(field.into()),
            },
        }
    }

    /// 422: a well-formed request whose content is invalid.
    pub fn invalid(field: impl Into<String>, error: impl Into<String>) -> Self {
        ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, field, error)
    }

    /// 401: no token, or not an accepted one.
    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or invalid token: send Authorization: Bearer TOKEN",
        )
    }

    /// 500 for a failure that is not the client's: the detail goes to the log only.
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "HTTP API: internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }

    /// A store error met while looking at one message (`{id}` in the path): an id that
    /// does not name a message, whatever its form, is 404.
    pub fn for_message(err: StoreError) -> Self {
        match err {
            StoreError::NotFound { id } | StoreError::InvalidId { id } => {
                ApiError::new(StatusCode::NOT_FOUND, format!("no message with id {id}"))
            }
            other => ApiError::from(other),
        }
    }
}

/// A JSON error that says when to try again: 429 (too many failed tokens from this
/// address) or 503 (every immediate-send slot or connection is busy).
pub fn retry_later(status: StatusCode, seconds: u64, error: impl Into<String>) -> Response {
    let mut response = ApiError::new(status, error).into_response();
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from(seconds),
    );
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // `retry_later` sets its own value over this one.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(1),
            );
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match &err {
            // Decided as 413: the request was understood, the message is just too big to
            // queue (it may be sent with `immediate: true`).
            StoreError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, err.to_string())
            }
            StoreError::NoRecipients => ApiError::invalid("to", err.to_string()),
            StoreError::LineTooLong(_) => ApiError::invalid("mime", err.to_string()),
            StoreError::InvalidRecipient { .. } => ApiError::invalid("to", err.to_string()),
            StoreError::InvalidSender { .. } => ApiError::invalid("from", err.to_string()),
            StoreError::InvalidSuppression { field, .. } => {
                ApiError::invalid(field.to_string(), err.to_string())
            }
            StoreError::InvalidCursor { .. } => ApiError::invalid("cursor", err.to_string()),
            StoreError::InvalidId { .. } | StoreError::NotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, err.to_string())
            }
            StoreError::IdempotencyConflict { .. } => {
                ApiError::field(StatusCode::CONFLICT, "Idempotency-Key", err.to_string())
            }
            // The database is busy or unreachable: nothing was stored, and the same
            // request will work once it answers again.
            _ if err.is_transient() => {
                tracing::warn!(error = %err, "HTTP API: the queue database is unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the queue database is unavailable: nothing was stored, try again",
                )
            }
            _ => ApiError::internal(&err),
        }
    }
}

impl From<OutboxError> for ApiError {
    fn from(err: OutboxError) -> Self {
        match err {
            OutboxError::Compose(err) => {
                ApiError::invalid(err.field().to_string(), err.to_string())
            }
            OutboxError::Relay(err) => ApiError::invalid("relay", format!("relay: {err}")),
            OutboxError::Store(err) => ApiError::from(err),
            err @ OutboxError::NoUnsubscribeLinks => {
                ApiError::invalid("list_unsubscribe", err.to_string())
            }
            // Only opening an Outbox sets up a transport; a request never does.
            err => ApiError::internal(&err),
        }
    }
}

/// Turns axum's JSON rejections into [`ApiError`]s: malformed JSON is 400, JSON of the
/// wrong shape (an unknown field, a wrong type) is 422 with serde's message, which names
/// the field, a body over the limit is 413.
pub(crate) fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(err) => {
            // serde's message ("unknown field `subjet`, expected one of ...") is the
            // useful part; axum wraps it in a prefix and puts the path in front.
            let detail = std::error::Error::source(&err)
                .map(ToString::to_string)
                .unwrap_or_else(|| err.body_text());
            let field = field_in_message(&detail);
            ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                body: ErrorBody {
                    error: detail,
                    field,
                },
            }
        }
        JsonRejection::JsonSyntaxError(err) => ApiError::new(
            StatusCode::BAD_REQUEST,
            std::error::Error::source(&err)
                .map(|source| format!("malformed JSON: {source}"))
                .unwrap_or_else(|| err.body_text()),
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: application/json",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body is over the size limit",
        ),
        other => ApiError::new(StatusCode::BAD_REQUEST, other.body_text()),
    }
}

/// The field a serde data error is about: the path axum puts in front (`to[0]: ...`,
/// `attachments[1].path: ...`), or the name in serde's `unknown field `x`` message.
fn field_in_message(message: &str) -> Option<String> {
    if let Some(rest) = message.split("unknown field `").nth(1) {
        return rest.split('`').next().map(str::to_string);
    }
    if let Some(rest) = message.split("missing field `").nth(1) {
        return rest.split('`').next().map(str::to_string);
    }
    let (path, _) = message.split_once(": ")?;
    let top = path.split(['.', '[']).next().filter(|name| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })?;
    Some(top.to_string())
}

/// `Query<T>` whose rejection is a 400 [`ApiError`] with serde's message.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    let detail = match &rejection {
        QueryRejection::FailedToDeserializeQueryString(err) => std::error::Error::source(err)
            .map(ToString::to_string)
            .unwrap_or_else(|| err.body_text()),
        other => other.body_text(),
    };
    let field = field_in_message(&detail);
    ApiError {
        status: StatusCode::BAD_REQUEST,
        body: ErrorBody {
            error: format!("query string: {detail}"),
            field,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_in_serde_messages() {
        assert_eq!(
            field_in_message("unknown field `subjet`, expected one of `from`, `to`").as_deref(),
            Some("subjet")
        );
        assert_eq!(
            field_in_message("attachments[0]: a part is ...").as_deref(),
            Some("attachments")
        );
        assert_eq!(
            field_in_message("send_at: \"x\" is not an RFC 3339 date-time").as_deref(),
            Some("send_at")
        );
        assert_eq!(field_in_message("invalid type: string"), None);
    }

    #[test]
    fn store_errors_hide_internals() {
        let err = ApiError::from(StoreError::Corrupt {
            what: "state",
            detail: "secret.rs".into(),
        });
        assert_eq!(err.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(err.body.error, "internal error");
        // A database that does not answer (or a worker thread that failed) is 503: the
        // client may try again, and learns nothing of the internals.
        let err = ApiError::from(StoreError::Worker("thread panicked at secret.rs".into()));
        assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!err.body.error.contains("secret"), "{err:?}");
        let response = err.into_response();
        assert_eq!(response.headers()[axum::http::header::RETRY_AFTER], "1");
        let err = ApiError::from(StoreError::TooLarge {
            size: 9_200_000,
            limit: 8_000_000,
        });
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(err.body.error.contains("8 MB queue limit"), "{err:?}");
    }
}
