//! `GET /api/v1/events`: the event log, oldest first, one page at a time (optionally one
//! message's). Behind the token like every API route; a bad value is a 422 naming its
//! field.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use outbox_queue::{EventFilter, StoreError};
use serde::Deserialize;

use super::AppState;
use super::error::{ApiError, ApiQuery, ErrorBody};
use super::openapi::schema;

/// The default page size of `GET /api/v1/events`.
const DEFAULT_LIMIT: u32 = 100;

/// The query string of `GET /api/v1/events`.
#[derive(Debug, Default, Deserialize)]
pub struct EventQuery {
    message: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /api/v1/events`.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    security(("bearer" = [])),
    params(
        ("message" = Option<String>, Query, description = "only this message's events (its id)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "page size (default 100)"),
        ("cursor" = Option<String>, Query, description = "the `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "one page, oldest first", body = schema::EventPage),
        (status = 400, description = "malformed query string", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 422, description = "a bad message id, limit or cursor; `field` names it", body = ErrorBody),
    )
)]
pub async fn list_events(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<EventQuery>,
) -> Result<Response, ApiError> {
    let non_empty = |value: Option<String>| value.filter(|v| !v.is_empty());
    let mut filter = EventFilter::default();
    filter.message_id = non_empty(query.message);
    filter.limit = super::api::page_limit(query.limit, DEFAULT_LIMIT)?;
    filter.cursor = non_empty(query.cursor);
    let page = state
        .outbox
        .store()
        .events(filter)
        .await
        .map_err(|err| match err {
            // A filter, not a resource: a bad id is a bad value, not a missing message.
            StoreError::InvalidId { .. } => ApiError::invalid("message", err.to_string()),
            other => ApiError::from(other),
        })?;
    Ok(Json(page).into_response())
}
