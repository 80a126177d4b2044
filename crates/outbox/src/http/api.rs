//! The JSON API under `/api/v1` (DESIGN §6): queue messages, look at them, remove and
//! retry them. Each handler is documented for the OpenAPI document in `openapi.rs`.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use outbox_mime::{ComposeOptions, EmailSpec};
use outbox_queue::{ListFilter, MessageStatus, Priority, RequestKey, StoreError, prepare_with};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::AppState;
use super::attachments::{confine_batch_paths, confine_paths};
use super::auth::TokenId;
use super::body::{BatchBody, SpecBody};
use super::error::{ApiError, ApiQuery, ErrorBody, retry_later};
use super::openapi::schema;
use super::spec_checks::check_spec;
use crate::config::Config;
use crate::message_args::{compose_options, unqueued_limit};

/// The request header that makes a POST idempotent.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Longest accepted `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Largest page of `GET /api/v1/messages` (the store's own limit).
const MAX_LIMIT: u32 = 1000;

/// A list route's `limit` query parameter: absent or empty gives `default`; anything but a
/// number from 1 to [`MAX_LIMIT`] is a 422 naming `limit`.
pub(super) fn page_limit(text: Option<String>, default: u32) -> Result<u32, ApiError> {
    match text.filter(|text| !text.is_empty()) {
        None => Ok(default),
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid(
                "limit",
                format!("limit: expected a number from 1 to {MAX_LIMIT}, got {text:?}"),
            )),
        },
    }
}

/// How messages posted over HTTP are composed: files named by `path` are read up to
/// `[delivery] max_message_size` for the queue, and for an `immediate` send (which bypasses
/// the queue) up to the larger of it and the composer's default, as `send --now` does.
/// `confine_paths` checks the same files with `stat` first; this bounds the read itself.
pub(super) fn http_compose_options(config: &Config, immediate: bool) -> ComposeOptions {
    let limit = config.delivery.max_message_size.0;
    compose_options(if immediate {
        unqueued_limit(limit)
    } else {
        limit
    })
}

/// What a POST answers for a queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Queued {
    /// The message id.
    pub id: String,
    /// Its status now: `queued` for a new message.
    pub status: MessageStatus,
}

/// One recipient's result of an `immediate` send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImmediateRecipient {
    /// The envelope address.
    pub address: String,
    /// True when the server accepted the message for this recipient.
    pub accepted: bool,
    /// The server's reply (starting with its code), or the error.
    pub reply: String,
}

/// What a POST with `immediate: true` answers: nothing is queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Immediate {
    /// `sent` when every recipient was accepted, else `error`.
    pub status: MessageStatus,
    /// Per recipient, in envelope order.
    pub recipients: Vec<ImmediateRecipient>,
}

/// What DELETE and retry answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changed {
    /// The message id.
    pub id: String,
    /// How many recipients were removed (DELETE) or made due again (retry).
    pub recipients: u64,
    /// The message's status afterwards.
    pub status: MessageStatus,
}

/// `POST /api/v1/messages`.
#[utoipa::path(
    post,
    path = "/api/v1/messages",
    tag = "messages",
    security(("bearer" = [])),
    request_body(
        content = schema::EmailSpec,
        description = "The message (DESIGN §2)",
        example = json!({
            "from": "App <app@example.com>",
            "to": ["ann@example.net"],
            "subject": "Welcome",
            "text": "Hello #NAME#",
            "tokens": {"NAME": "Ann"},
            "attachments": [{"name": "hello.txt", "content_base64": "aGVsbG8K"}]
        })
    ),
    params(
        ("Idempotency-Key" = Option<String>, Header,
         description = "Per token: the same key with the same body answers 200 with the first message's id and queues nothing; with another body, 409 (1 to 255 visible ASCII characters)"),
    ),
    responses(
        (status = 202, description = "queued", body = schema::Queued),
        (status = 200, description = "a repeated Idempotency-Key with the same body: the first message; or, with `immediate: true`, the per-recipient results", body = schema::PostAnswer),
        (status = 400, description = "malformed JSON or header", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 408, description = "the body did not arrive within http.body_timeout", body = ErrorBody),
        (status = 409, description = "the Idempotency-Key was used with a different body; `field` is `Idempotency-Key`", body = ErrorBody),
        (status = 413, description = "request body over the limit, or message over max_message_size", body = ErrorBody),
        (status = 415, description = "a Content-Type that is not JSON (none, application/json, application/*+json and application/x-www-form-urlencoded are read as JSON)", body = ErrorBody),
        (status = 422, description = "invalid message, not a JSON object, or a `relay` (refused unless [http] allow_relay; `program:` always); `field` names the field", body = ErrorBody),
        (status = 503, description = "`immediate: true` while every immediate slot (delivery.max_connections) is busy, or the queue database does not answer (nothing was stored); see `Retry-After`", body = ErrorBody),
    )
)]
pub async fn post_message(
    State(state): State<AppState>,
    Extension(token): Extension<TokenId>,
    headers: HeaderMap,
    SpecBody { mut spec, hash }: SpecBody,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    check_spec(&spec, &state.config)?;
    confine_paths(&mut spec, &state.config).await?;
    if spec.immediate {
        return send_immediately(&state, &spec).await;
    }
    let message = prepare_with(&spec, &http_compose_options(&state.config, false))?;
    let store = state.outbox.store();
    let enqueued = match key {
        Some(key) => store
            .enqueue_keyed(vec![message], request_key(key, &token, hash))
            .await?
            .pop()
            .ok_or_else(|| ApiError::internal(&"enqueue returned nothing"))?,
        None => store.enqueue(message).await?,
    };
    if enqueued.existing {
        let status = store.status(&enqueued.id).await?;
        let body = Queued {
            id: enqueued.id,
            status,
        };
        return Ok((StatusCode::OK, Json(body)).into_response());
    }
    state.api_metrics.add_enqueued(1);
    let body = Queued {
        id: enqueued.id,
        status: MessageStatus::Queued,
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// `immediate: true`: delivers now, holding one of `delivery.max_connections` slots; when
/// all are busy the answer is 503 at once rather than one more connection.
async fn send_immediately(state: &AppState, spec: &EmailSpec) -> Result<Response, ApiError> {
    let Ok(_slot) = state.immediate.clone().try_acquire_owned() else {
        return Ok(retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            1,
            "every immediate-send slot is busy (delivery.max_connections): \
             try again, or queue the message",
        ));
    };
    let results = state
        .outbox
        .send_now_with(spec, &http_compose_options(&state.config, true))
        .await?;
    let status = if results.iter().all(|r| r.accepted) {
        MessageStatus::Sent
    } else {
        MessageStatus::Error
    };
    let recipients = results
        .into_iter()
        .map(|r| ImmediateRecipient {
            address: r.address,
            accepted: r.accepted,
            reply: r.reply,
        })
        .collect();
    Ok((StatusCode::OK, Json(Immediate { status, recipients })).into_response())
}

/// `POST /api/v1/messages/batch`.
#[utoipa::path(
    post,
    path = "/api/v1/messages/batch",
    tag = "messages",
    security(("bearer" = [])),
    request_body(
        content = Vec<schema::EmailSpec>,
        description = "One or more messages, queued in one transaction: all or none. `immediate` is not allowed here.",
        example = json!([
            {"from": "app@example.com", "to": "ann@example.net", "subject": "One", "text": "1"},
            {"from": "app@example.com", "to": "bob@example.org", "subject": "Two", "text": "2", "priority": "high"}
        ])
    ),
    params(
        ("Idempotency-Key" = Option<String>, Header,
         description = "Covers the whole batch, per token: the same key with the same body answers 200 with the same ids; with another body, 409"),
    ),
    responses(
        (status = 202, description = "all queued, in the order given", body = Vec<schema::Queued>),
        (status = 200, description = "a repeated Idempotency-Key with the same body: the first ids, with their current status", body = Vec<schema::Queued>),
        (status = 400, description = "malformed JSON or header", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 408, description = "the body did not arrive within http.body_timeout", body = ErrorBody),
        (status = 409, description = "the Idempotency-Key was used with a different body; `field` is `Idempotency-Key`", body = ErrorBody),
        (status = 413, description = "request body over the limit, or a message over max_message_size", body = ErrorBody),
        (status = 415, description = "a Content-Type that is not JSON", body = ErrorBody),
        (status = 422, description = "an invalid message (or one that is not a JSON object); `field` is `[INDEX].FIELD`", body = ErrorBody),
    )
)]
pub async fn post_batch(
    State(state): State<AppState>,
    Extension(token): Extension<TokenId>,
    headers: HeaderMap,
    BatchBody { mut specs, hash }: BatchBody,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    if specs.is_empty() {
        return Err(ApiError::invalid("[]", "the batch holds no message"));
    }
    // Before any message is composed: the files of the whole batch count against one limit.
    confine_batch_paths(&mut specs, &state.config).await?;
    let mut messages = Vec::with_capacity(specs.len());
    for (index, spec) in specs.iter_mut().enumerate() {
        let at = |err: ApiError| in_batch(index, err);
        if spec.immediate {
            return Err(at(ApiError::invalid(
                "immediate",
                "immediate: not allowed in a batch (POST the message alone)",
            )));
        }
        check_spec(spec, &state.config).map_err(at)?;
        let options = http_compose_options(&state.config, false);
        messages.push(prepare_with(spec, &options).map_err(|err| at(err.into()))?);
    }
    let store = state.outbox.store();
    // One key covers the whole batch.
    let enqueued = match key {
        Some(key) => {
            store
                .enqueue_keyed(messages, request_key(key, &token, hash))
                .await?
        }
        None => store.enqueue_batch(messages).await?,
    };
    let repeated = enqueued.iter().all(|e| e.existing);
    let mut body = Vec::with_capacity(enqueued.len());
    for e in enqueued {
        let status = if e.existing {
            store.status(&e.id).await?
        } else {
            MessageStatus::Queued
        };
        body.push(Queued { id: e.id, status });
    }
    if repeated {
        return Ok((StatusCode::OK, Json(body)).into_response());
    }
    state.api_metrics.add_enqueued(body.len() as u64);
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// Prefixes the field of an error about one message of a batch with its index.
pub(super) fn in_batch(index: usize, mut err: ApiError) -> ApiError {
    let field = err.body.field.take().unwrap_or_default();
    err.body.field = Some(if field.is_empty() {
        format!("[{index}]")
    } else {
        format!("[{index}].{field}")
    });
    err.body.error = format!("message [{index}]: {}", err.body.error);
    err
}

/// A request's key, scoped to its token (by the token's hash, never the token).
fn request_key(key: String, token: &TokenId, request_hash: String) -> RequestKey {
    RequestKey {
        key,
        scope: token.0.clone(),
        request_hash,
    }
}

/// The `Idempotency-Key` header, checked.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "Idempotency-Key",
            format!(
                "Idempotency-Key: expected 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
            ),
        )
    };
    let key = value.to_str().map_err(|_| invalid())?.trim();
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY
        || !key.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err(invalid());
    }
    Ok(Some(key.to_string()))
}

/// `GET /api/v1/messages/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/messages/{id}",
    tag = "messages",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The message id")),
    responses(
        (status = 200, description = "the message, per recipient (the same object as `outbox status --json`)", body = schema::MessageDetail),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 404, description = "no such message", body = ErrorBody),
    )
)]
pub async fn get_message(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let detail = state
        .outbox
        .store()
        .detail(&id)
        .await
        .map_err(ApiError::for_message)?;
    Ok(Json(detail).into_response())
}

/// The query string of `GET /api/v1/messages`; every value is checked by hand so that a
/// bad one is a 422 that names it.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    priority: Option<String>,
    domain: Option<String>,
    q: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

impl ListQuery {
    fn into_filter(self) -> Result<ListFilter, ApiError> {
        let non_empty = |value: Option<String>| value.filter(|v| !v.is_empty());
        let status = non_empty(self.status)
            .map(|s| s.parse::<MessageStatus>())
            .transpose()
            .map_err(|err| ApiError::invalid("status", err))?;
        let priority = non_empty(self.priority)
            .map(|s| s.parse::<Priority>())
            .transpose()
            .map_err(|err| ApiError::invalid("priority", err.to_string()))?;
        let limit = page_limit(self.limit, ListFilter::default().limit)?;
        let mut list_filter = ListFilter::default();
        list_filter.status = status;
        list_filter.priority = priority;
        list_filter.domain = non_empty(self.domain);
        list_filter.subject = non_empty(self.q);
        list_filter.limit = limit;
        list_filter.cursor = non_empty(self.cursor);
        Ok(list_filter)
    }
}

/// `GET /api/v1/messages`.
#[utoipa::path(
    get,
    path = "/api/v1/messages",
    tag = "messages",
    security(("bearer" = [])),
    params(
        ("status" = Option<schema::Status>, Query, description = "only messages with this status"),
        ("priority" = Option<schema::PriorityName>, Query, description = "only messages with this priority"),
        ("domain" = Option<String>, Query, description = "only messages with a recipient at this domain"),
        ("q" = Option<String>, Query, description = "only messages whose subject contains this text"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "page size (default 50)"),
        ("cursor" = Option<String>, Query, description = "the `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "one page, newest first", body = schema::MessagePage),
        (status = 400, description = "malformed query string", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 422, description = "a bad filter value; `field` names it", body = ErrorBody),
    )
)]
pub async fn list_messages(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let filter = query.into_filter()?;
    let page = state
        .outbox
        .store()
        .list(filter)
        .await
        .map_err(|err| match err {
            // The only id in a listing request is the cursor.
            StoreError::InvalidId { id } => ApiError::invalid(
                "cursor",
                format!("cursor: {id:?} is not a next_cursor this API gave"),
            ),
            other => ApiError::from(other),
        })?;
    Ok(Json(page).into_response())
}

/// `DELETE /api/v1/messages/{id}`.
#[utoipa::path(
    delete,
    path = "/api/v1/messages/{id}",
    tag = "messages",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The message id")),
    responses(
        (status = 200, description = "every recipient not yet sent or failed is now `removed`", body = schema::Changed),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 404, description = "no such message", body = ErrorBody),
    )
)]
pub async fn delete_message(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let store = state.outbox.store();
    let recipients = store.remove(&id).await.map_err(ApiError::for_message)?;
    let status = store.status(&id).await.map_err(ApiError::for_message)?;
    Ok(Json(Changed {
        id,
        recipients,
        status,
    })
    .into_response())
}

/// `POST /api/v1/messages/{id}/retry`.
#[utoipa::path(
    post,
    path = "/api/v1/messages/{id}/retry",
    tag = "messages",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The message id")),
    responses(
        (status = 200, description = "deferred and failed recipients are due now", body = schema::Changed),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 404, description = "no such message", body = ErrorBody),
    )
)]
pub async fn retry_message(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let store = state.outbox.store();
    let recipients = store
        .retry(&id, OffsetDateTime::now_utc())
        .await
        .map_err(ApiError::for_message)?;
    let status = store.status(&id).await.map_err(ApiError::for_message)?;
    Ok(Json(Changed {
        id,
        recipients,
        status,
    })
    .into_response())
}
