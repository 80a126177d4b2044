//! The admin page's request handlers: login and logout, the queue view, one message,
//! and the remove / retry actions (one message, or every message a filter matches).

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Extension, Form, Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::SET_COOKIE;
use axum::response::{IntoResponse, Redirect, Response};
use outbox_queue::{ListFilter, StoreError};
use serde::Deserialize;
use time::OffsetDateTime;

use super::BULK_LIMIT;
use super::message_page::{MessageView, message_page};
use super::pages::{QueueView, error_page, login_page, queue_page, respond};
use super::params::QueueParams;
use super::preview::{RAW_LIMIT, first_html_part, raw_view};
use super::session::{Sessions, Viewer, clear_cookie, session_cookie};
use crate::http::AppState;

/// Messages per page of the queue view.
const PAGE_SIZE: u32 = 50;

/// What the last action did, carried in the redirect's query string. Only numbers and
/// fixed words travel there, so a crafted link cannot put text of its own on the page.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Notice {
    done: Option<String>,
    /// Recipients changed.
    n: Option<u64>,
    /// Messages acted on.
    m: Option<u64>,
    /// Set when a bulk action stopped at [`BULK_LIMIT`].
    capped: Option<u8>,
}

impl Notice {
    fn text(&self) -> Option<String> {
        let verb = match self.done.as_deref()? {
            "retried" => "Retried",
            "removed" => "Removed",
            _ => return None,
        };
        let n = self.n.unwrap_or(0);
        let m = self.m.unwrap_or(1);
        let mut text = format!(
            "{verb} {n} recipient{} of {m} message{}.",
            plural(n),
            plural(m)
        );
        if self.capped == Some(1) {
            text.push_str(&format!(
                " Stopped at {} messages: run it again for the rest.",
                super::pages::grouped(BULK_LIMIT as u64)
            ));
        }
        Some(text)
    }

    fn query(done: &str, recipients: u64, messages: u64, capped: bool) -> String {
        format!(
            "done={done}&n={recipients}&m={messages}{}",
            if capped { "&capped=1" } else { "" }
        )
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `GET /login`.
pub async fn login_form() -> Response {
    respond(StatusCode::OK, login_page(None))
}

/// The login form's field.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `POST /login`: a right token starts a session (cookie) and goes to the queue; a wrong
/// one gets the form again with 401.
pub async fn login(
    State(state): State<AppState>,
    Extension(sessions): Extension<Arc<Sessions>>,
    ConnectInfoIp(client): ConnectInfoIp,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    if let Some(wait) = state.throttle.blocked(client) {
        let mut page = error_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            &format!("Too many wrong tokens from this address. Try again in {wait} seconds."),
        );
        page.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, wait.into());
        return page;
    }
    let token = form.map(|Form(form)| form.token).unwrap_or_default();
    if !state.tokens.accepts(token.trim()) {
        state.throttle.failed(client, "admin login");
        return respond(
            StatusCode::UNAUTHORIZED,
            login_page(Some("That token is not accepted.")),
        );
    }
    let id = sessions.create();
    ([(SET_COOKIE, session_cookie(&id))], Redirect::to("/")).into_response()
}

/// The client address of a request (see [`crate::http::throttle::client_address`]).
pub struct ConnectInfoIp(pub std::net::IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ConnectInfoIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(ConnectInfoIp(crate::http::throttle::client_address(
            &parts.extensions,
        )))
    }
}

/// The CSRF field every admin POST carries.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CsrfForm {
    csrf: Option<String>,
}

/// `POST /logout`: ends the session and forgets the cookie.
pub async fn logout(
    viewer: Viewer,
    Extension(sessions): Extension<Arc<Sessions>>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let form = form.map(|Form(form)| form).unwrap_or_default();
    if !viewer.check_csrf(&sessions, form.csrf.as_deref()) {
        return csrf_refused();
    }
    if let Viewer::Session { id, .. } = &viewer {
        sessions.end(id);
    }
    ([(SET_COOKIE, clear_cookie())], Redirect::to("/login")).into_response()
}

/// `GET /`: the queue, newest first, filtered and paged.
pub async fn queue(
    viewer: Viewer,
    State(state): State<AppState>,
    Query(params): Query<QueueParams>,
    Query(notice): Query<Notice>,
) -> Response {
    let filter = match params.to_filter(PAGE_SIZE) {
        Ok(filter) => filter,
        Err(bad) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Bad filter",
                &format!("{}: {}", bad.field, bad.reason),
            );
        }
    };
    let store = state.outbox.store();
    let loaded = tokio::try_join!(
        store.list(filter),
        store.counts(),
        store.suspensions(OffsetDateTime::now_utc()),
    );
    let (page, counts, suspensions) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => return store_error(error),
    };
    let view = QueueView {
        viewer: &viewer,
        params: &params,
        counts,
        page: &page,
        suspensions: &suspensions,
        notice: notice.text(),
    };
    respond(StatusCode::OK, queue_page(&view))
}

/// The most events the message page shows (the oldest first).
const MESSAGE_EVENTS: u32 = 1000;

/// `GET /messages/{id}`: recipients, delivery log, events and their webhook deliveries,
/// preview, raw MIME.
pub async fn message(
    viewer: Viewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(notice): Query<Notice>,
) -> Response {
    let store = state.outbox.store();
    let mut events = outbox_queue::EventFilter::default();
    events.message_id = Some(id.clone());
    events.limit = MESSAGE_EVENTS;
    let loaded = tokio::try_join!(
        store.summary(&id),
        store.detail(&id),
        store.attempts(&id),
        store.message_body(&id),
        store.events(events),
    );
    let (summary, detail, attempts, body, events) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => return store_error(error),
    };
    let event_ids: Vec<i64> = events.items.iter().map(|e| e.id).collect();
    let deliveries = match store.event_deliveries(&event_ids).await {
        Ok(deliveries) => deliveries,
        Err(error) => return store_error(error),
    };
    let html = first_html_part(&body.data);
    let raw = raw_view(&body.data, RAW_LIMIT);
    let view = MessageView {
        viewer: &viewer,
        summary: &summary,
        detail: &detail,
        attempts: &attempts,
        events: &events.items,
        more_events: events.next_cursor.is_some(),
        deliveries: &deliveries,
        html: html.as_deref(),
        raw: &raw,
        notice: notice.text(),
    };
    respond(StatusCode::OK, message_page(&view))
}

/// The fields of a one-message action form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ActionForm {
    csrf: Option<String>,
    /// `queue` to go back to the queue view; anything else returns to the message.
    back: Option<String>,
}

/// What an action does to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Retry,
    Remove,
}

impl Action {
    fn done(self) -> &'static str {
        match self {
            Action::Retry => "retried",
            Action::Remove => "removed",
        }
    }

    async fn apply(self, state: &AppState, id: &str) -> Result<u64, StoreError> {
        let store = state.outbox.store();
        match self {
            Action::Retry => {
                let count = store.retry(id, OffsetDateTime::now_utc()).await?;
                // The engine may be asleep until a later due time: wake it up.
                store.enqueued().notify_one();
                Ok(count)
            }
            Action::Remove => store.remove(id).await,
        }
    }
}

/// `POST /messages/{id}/retry`.
pub async fn retry(
    viewer: Viewer,
    State(state): State<AppState>,
    Extension(sessions): Extension<Arc<Sessions>>,
    Path(id): Path<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    act(Action::Retry, viewer, state, &sessions, id, form).await
}

/// `POST /messages/{id}/remove`.
pub async fn remove(
    viewer: Viewer,
    State(state): State<AppState>,
    Extension(sessions): Extension<Arc<Sessions>>,
    Path(id): Path<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    act(Action::Remove, viewer, state, &sessions, id, form).await
}

async fn act(
    action: Action,
    viewer: Viewer,
    state: AppState,
    sessions: &Sessions,
    id: String,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    let form = form.map(|Form(form)| form).unwrap_or_default();
    if !viewer.check_csrf(sessions, form.csrf.as_deref()) {
        return csrf_refused();
    }
    let changed = match action.apply(&state, &id).await {
        Ok(changed) => changed,
        Err(error) => return store_error(error),
    };
    tracing::info!(message = %id, action = action.done(), recipients = changed, "admin action");
    let query = Notice::query(action.done(), changed, 1, false);
    let target = match form.back.as_deref() {
        Some("queue") => format!("/?{query}"),
        // The id was found by the store, so it is a ULID: safe in a path.
        _ => format!("/messages/{id}?{query}"),
    };
    Redirect::to(&target).into_response()
}

/// The fields of the bulk-action form: the action, the filter, the CSRF token.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct BulkForm {
    csrf: Option<String>,
    action: String,
    status: String,
    priority: String,
    subject: String,
    domain: String,
}

/// `POST /bulk`: retry or remove every message the filter matches, newest first, at
/// most [`BULK_LIMIT`] of them.
pub async fn bulk(
    viewer: Viewer,
    State(state): State<AppState>,
    Extension(sessions): Extension<Arc<Sessions>>,
    form: Result<Form<BulkForm>, FormRejection>,
) -> Response {
    let form = form.map(|Form(form)| form).unwrap_or_default();
    if !viewer.check_csrf(&sessions, form.csrf.as_deref()) {
        return csrf_refused();
    }
    let action = match form.action.as_str() {
        "retry" => Action::Retry,
        "remove" => Action::Remove,
        other => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Unknown action",
                &format!("action: {other:?} is neither \"retry\" nor \"remove\""),
            );
        }
    };
    let params = QueueParams {
        status: form.status,
        priority: form.priority,
        subject: form.subject,
        domain: form.domain,
        cursor: String::new(),
    };
    let filter = match params.to_filter(1000) {
        Ok(filter) => filter,
        Err(bad) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Bad filter",
                &format!("{}: {}", bad.field, bad.reason),
            );
        }
    };
    let (ids, capped) = match matching_ids(&state, filter).await {
        Ok(found) => found,
        Err(error) => return store_error(error),
    };
    let mut changed = 0;
    for id in &ids {
        match action.apply(&state, id).await {
            Ok(count) => changed += count,
            // Removed meanwhile (purge): nothing left to act on.
            Err(StoreError::NotFound { .. }) => {}
            Err(error) => return store_error(error),
        }
    }
    tracing::info!(
        action = action.done(),
        messages = ids.len(),
        recipients = changed,
        capped,
        "admin bulk action"
    );
    let query = Notice::query(action.done(), changed, ids.len() as u64, capped);
    let back = params.href();
    let separator = if back.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{back}{separator}{query}")).into_response()
}

/// The ids of the messages a filter matches, at most [`BULK_LIMIT`], and whether more
/// matched. Ids are collected before anything changes, so acting on them cannot move
/// the paging cursor.
async fn matching_ids(
    state: &AppState,
    mut filter: ListFilter,
) -> Result<(Vec<String>, bool), StoreError> {
    let store = state.outbox.store();
    let mut ids = Vec::new();
    loop {
        let page = store.list(filter.clone()).await?;
        for item in page.items {
            if ids.len() == BULK_LIMIT {
                return Ok((ids, true));
            }
            ids.push(item.id);
        }
        match page.next_cursor {
            Some(cursor) => filter.cursor = Some(cursor),
            None => return Ok((ids, false)),
        }
    }
}

pub(super) fn csrf_refused() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "Refused",
        "The form's CSRF token is missing or wrong. Reload the page and try again.",
    )
}

fn store_error(error: StoreError) -> Response {
    match error {
        StoreError::NotFound { .. } | StoreError::InvalidId { .. } => {
            error_page(StatusCode::NOT_FOUND, "Not found", &error.to_string())
        }
        other => {
            tracing::error!(error = %other, "admin page: queue database");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Queue database error",
                "The queue database could not answer; the server log has the details.",
            )
        }
    }
}
