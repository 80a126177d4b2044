//! `/api/v1/suppressions`: list, add and remove addresses that must not be mailed (for
//! one list, or every list). Behind the token like every API route; each bad value is a
//! 422 naming its field.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use outbox_queue::{NewSuppression, SuppressionFilter, SuppressionReason};
use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use super::body::JsonObject;
use super::error::{ApiError, ApiQuery, ErrorBody};
use super::openapi::schema;

/// The query string of `GET /api/v1/suppressions`.
#[derive(Debug, Default, Deserialize)]
pub struct SuppressionQuery {
    address: Option<String>,
    list: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// The query string of `DELETE /api/v1/suppressions/{address}`.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    list: Option<String>,
}

/// `GET /api/v1/suppressions`.
#[utoipa::path(
    get,
    path = "/api/v1/suppressions",
    tag = "suppressions",
    security(("bearer" = [])),
    params(
        ("address" = Option<String>, Query, description = "only this address"),
        ("list" = Option<String>, Query, description = "only this list (empty: the entries for every list)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "page size (default 50)"),
        ("cursor" = Option<String>, Query, description = "the `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "one page, by address then list", body = schema::SuppressionPage),
        (status = 400, description = "malformed query string", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 422, description = "a bad filter value; `field` names it", body = ErrorBody),
    )
)]
pub async fn list_suppressions(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<SuppressionQuery>,
) -> Result<Response, ApiError> {
    let non_empty = |value: Option<String>| value.filter(|v| !v.is_empty());
    let limit = super::api::page_limit(query.limit, SuppressionFilter::default().limit)?;
    let mut filter = SuppressionFilter::default();
    filter.address = non_empty(query.address);
    // `list=` (empty) selects the every-list entries; absent: every entry.
    filter.list = query.list;
    filter.limit = limit;
    filter.cursor = non_empty(query.cursor);
    let page = state.outbox.store().suppressions_list(filter).await?;
    Ok(Json(page).into_response())
}

/// `POST /api/v1/suppressions`.
#[utoipa::path(
    post,
    path = "/api/v1/suppressions",
    tag = "suppressions",
    security(("bearer" = [])),
    request_body(
        content = schema::NewSuppression,
        description = "The address, and optionally the list and the reason",
        example = json!({"address": "ann@example.net", "list": "weekly", "reason": "unsubscribed"})
    ),
    responses(
        (status = 201, description = "suppressed (also when it already was: the first `created_at` is kept, the reason is the new one)", body = schema::Suppression),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 408, description = "the body did not arrive within http.body_timeout", body = ErrorBody),
        (status = 413, description = "request body over the limit", body = ErrorBody),
        (status = 415, description = "a Content-Type that is not JSON", body = ErrorBody),
        (status = 422, description = "not a JSON object, an unknown field, or a bad value; `field` names it", body = ErrorBody),
    )
)]
pub async fn post_suppression(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let new = new_suppression(body)?;
    let stored = state.outbox.store().suppress(new).await?;
    Ok((StatusCode::CREATED, Json(stored)).into_response())
}

/// Checks a POST body field by field.
fn new_suppression(body: serde_json::Map<String, Value>) -> Result<NewSuppression, ApiError> {
    let mut new = NewSuppression::default();
    let mut address = None;
    for (field, value) in body {
        let text = |value: Value| match value {
            Value::String(text) => Ok(Some(text)),
            Value::Null if field != "address" => Ok(None),
            _ => Err(ApiError::invalid(
                field.clone(),
                format!("{field}: expected a string"),
            )),
        };
        match field.as_str() {
            "address" => address = text(value)?,
            "list" => new.list = text(value)?,
            "reason" => {
                if let Some(reason) = text(value)? {
                    new.reason = reason.parse::<SuppressionReason>().map_err(|_| {
                        ApiError::invalid(
                            "reason",
                            "reason: expected unsubscribed, bounced, complained or manual",
                        )
                    })?;
                }
            }
            _ => {
                return Err(ApiError::invalid(
                    field.clone(),
                    format!("unknown field {field:?} (expected address, list, reason)"),
                ));
            }
        }
    }
    new.address = address.ok_or_else(|| ApiError::invalid("address", "address: missing"))?;
    Ok(new)
}

/// `DELETE /api/v1/suppressions/{address}`.
#[utoipa::path(
    delete,
    path = "/api/v1/suppressions/{address}",
    tag = "suppressions",
    security(("bearer" = [])),
    params(
        ("address" = String, Path, description = "The address (percent-encoded)"),
        ("list" = Option<String>, Query, description = "the list of the entry to remove; absent or empty: the entry for every list"),
    ),
    responses(
        (status = 204, description = "removed; recipients already `suppressed` stay so"),
        (status = 400, description = "malformed query string", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 404, description = "no such entry", body = ErrorBody),
        (status = 422, description = "a bad address or list; `field` names it", body = ErrorBody),
    )
)]
pub async fn delete_suppression(
    State(state): State<AppState>,
    Path(address): Path<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let list = query.list.unwrap_or_default();
    let removed = state.outbox.store().unsuppress(&address, &list).await?;
    if !removed {
        let scope = if list.trim().is_empty() {
            "every list".to_string()
        } else {
            format!("list {:?}", list.trim())
        };
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{:?} is not suppressed for {scope}", address.trim()),
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
