//! The admin page's feedback list: `GET /bounces` shows the bounces, delay notices and
//! complaints received at the bounce domain (issue 12), newest first, with a filter for
//! those that named no recipient; `GET /bounces/{id}` shows the text kept of such a
//! report (as plain text, never as HTML: it is whatever a stranger sent).

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use outbox_queue::{FeedbackFilter, FeedbackRecord, StoreError};
use serde::Deserialize;

use super::pages::{error_page, layout, respond, when};
use super::session::Viewer;
use crate::http::AppState;

/// Reports per page.
const PAGE_SIZE: u32 = 50;

/// The query string of `GET /bounces`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct BounceParams {
    /// `1`: only the reports that matched no recipient.
    unmatched: String,
    /// Only reports older than this id (the pager).
    before: String,
}

/// `GET /bounces`.
pub async fn page(
    viewer: Viewer,
    State(state): State<AppState>,
    Query(params): Query<BounceParams>,
) -> Response {
    let unmatched = params.unmatched == "1";
    let before = match params.before.trim() {
        "" => None,
        text => match text.parse::<i64>() {
            Ok(id) => Some(id),
            Err(_) => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "Not accepted",
                    "before: expected a report id",
                );
            }
        },
    };
    let mut filter = FeedbackFilter::default();
    filter.unmatched = unmatched;
    filter.message_id = None;
    filter.limit = PAGE_SIZE;
    filter.before = before;
    match state.outbox.store().feedback_list(filter).await {
        Ok(items) => respond(StatusCode::OK, bounces_page(&viewer, unmatched, &items)),
        Err(error) => database_error(&error),
    }
}

/// `GET /bounces/{id}`: the kept text of an unmatched report, as `text/plain`.
pub async fn raw(
    _viewer: Viewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error_page(StatusCode::NOT_FOUND, "Not found", "No such report.");
    };
    match state.outbox.store().feedback_raw(id).await {
        Ok(Some(raw)) => (
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CONTENT_DISPOSITION, "inline"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            String::from_utf8_lossy(&raw).into_owned(),
        )
            .into_response(),
        Ok(None) => error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "No text is kept for this report (no such report, or it matched a recipient).",
        ),
        Err(error) => database_error(&error),
    }
}

fn database_error(error: &StoreError) -> Response {
    tracing::error!(%error, "admin page: queue database");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Queue database error",
        "The queue database could not answer; the server log has the details.",
    )
}

fn bounces_page(viewer: &Viewer, unmatched: bool, items: &[FeedbackRecord]) -> Markup {
    let next = (items.len() as u32 == PAGE_SIZE)
        .then(|| items.last())
        .flatten()
        .map(|last| {
            format!(
                "/bounces?unmatched={}&before={}",
                if unmatched { "1" } else { "" },
                last.id
            )
        });
    layout(
        "Bounces",
        Some(viewer),
        html! {
            h1 { "Bounces and complaints" }
            p.muted { "Reports received at the bounce domain. A bounce makes its recipient "
                      code { "bounced" } " (a 5.x.x status also suppresses the address), a complaint "
                      code { "complained" } " (and suppresses it); a delay changes nothing. A report \
                      that named no recipient is kept with its text." }
            p {
                @if unmatched {
                    a href="/bounces" { "All reports" } " · " strong { "Unmatched only" }
                } @else {
                    strong { "All reports" } " · " a href="/bounces?unmatched=1" { "Unmatched only" }
                }
            }
            @if items.is_empty() {
                div.empty { "No reports." }
            } @else {
                table {
                    thead { tr { th { "#" } th { "Received" } th { "Kind" } th { "Status" } th { "Applied" }
                                 th { "Message" } th { "Address" } th { "Diagnostic" } } }
                    tbody {
                        @for f in items {
                            tr data-report=(f.id) {
                                td { (f.id) }
                                td.when { (when(f.received_at)) }
                                td { (f.kind.as_str()) " (" (f.format) ")" }
                                td { (f.status.as_deref().unwrap_or("")) }
                                td {
                                    @match (&f.applied, &f.message_id) {
                                        (Some(state), _) => { (state) }
                                        (None, Some(_)) => { span.muted { "no change" } }
                                        (None, None) => {
                                            span.muted { "unmatched" }
                                            @if f.kept_bytes > 0 {
                                                " " a href=(format!("/bounces/{}", f.id)) { "text" }
                                            }
                                        }
                                    }
                                }
                                td { @if let Some(id) = &f.message_id { a href=(format!("/messages/{id}")) { (id) } } }
                                td { (f.address.as_deref().unwrap_or("")) }
                                td { (f.diagnostic.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
            @if let Some(next) = next {
                div.pager { a href=(next) { "Next page" } }
            }
        },
    )
}
