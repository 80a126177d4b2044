//! `GET /api/v1/bounces`: the bounces, delay notices and complaints received at the bounce
//! domain (issue 12), newest first. Behind the token like every API route; each bad value
//! is a 422 naming its field.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use outbox_queue::FeedbackFilter;
use serde::Deserialize;

use super::AppState;
use super::error::{ApiError, ApiQuery, ErrorBody};
use super::openapi::schema;

/// The query string of `GET /api/v1/bounces`.
#[derive(Debug, Default, Deserialize)]
pub struct BounceQuery {
    unmatched: Option<String>,
    message: Option<String>,
    limit: Option<String>,
    before: Option<String>,
}

/// `GET /api/v1/bounces`.
#[utoipa::path(
    get,
    path = "/api/v1/bounces",
    tag = "bounces",
    security(("bearer" = [])),
    params(
        ("unmatched" = Option<bool>, Query, description = "`true`: only the reports that named no recipient"),
        ("message" = Option<String>, Query, description = "only the reports about this message"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "page size (default 50)"),
        ("before" = Option<i64>, Query, description = "only reports older than this id (the last `id` of the previous page)"),
    ),
    responses(
        (status = 200, description = "reports, newest first", body = Vec<schema::FeedbackRecord>),
        (status = 400, description = "malformed query string", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 422, description = "a bad filter value; `field` names it", body = ErrorBody),
    )
)]
pub async fn list_bounces(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<BounceQuery>,
) -> Result<Response, ApiError> {
    let limit = super::api::page_limit(query.limit, FeedbackFilter::default().limit)?;
    let unmatched = match query.unmatched.as_deref() {
        None | Some("" | "false" | "0") => false,
        Some("true" | "1") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "unmatched",
                format!("unmatched: expected true or false, got {:?}", shown(other)),
            ));
        }
    };
    let before = match query.before.as_deref().filter(|t| !t.is_empty()) {
        None => None,
        Some(text) => Some(text.parse::<i64>().map_err(|_| {
            ApiError::invalid(
                "before",
                format!("before: expected a report id, got {:?}", shown(text)),
            )
        })?),
    };
    let mut filter = FeedbackFilter::default();
    filter.unmatched = unmatched;
    filter.message_id = query.message.filter(|m| !m.is_empty());
    filter.limit = limit;
    filter.before = before;
    let items = state.outbox.store().feedback_list(filter).await?;
    Ok(Json(items).into_response())
}

/// A query value as shown in an error: at most 64 characters.
fn shown(text: &str) -> String {
    text.chars().take(64).collect()
}
