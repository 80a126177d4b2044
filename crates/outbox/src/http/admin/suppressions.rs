//! The admin page's suppression list: `GET /suppressions` (filter, paging, an add form,
//! a remove button per entry), `POST /suppressions` (add) and
//! `POST /suppressions/remove`. Each POST carries the session's CSRF token like every
//! other admin form; the redirect after it carries only fixed words.

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Extension, Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use outbox_queue::{
    NewSuppression, StoreError, SuppressionFilter, SuppressionPage, SuppressionReason,
};
use serde::Deserialize;

use super::pages::{error_page, layout, respond, when};
use super::params::percent_encode;
use super::session::{Sessions, Viewer};
use crate::http::AppState;

/// Entries per page.
const PAGE_SIZE: u32 = 50;

/// The query string of `GET /suppressions`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SuppressionParams {
    address: String,
    list: String,
    cursor: String,
    /// What the last action did: `added`, `removed` or `absent`.
    done: String,
}

/// The add form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AddForm {
    csrf: Option<String>,
    address: String,
    list: String,
    reason: String,
}

/// A remove button's form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RemoveForm {
    csrf: Option<String>,
    address: String,
    list: String,
}

/// `GET /suppressions`.
pub async fn page(
    viewer: Viewer,
    State(state): State<AppState>,
    Query(params): Query<SuppressionParams>,
) -> Response {
    let non_empty = |text: &str| (!text.trim().is_empty()).then(|| text.trim().to_string());
    let mut filter = SuppressionFilter::default();
    filter.address = non_empty(&params.address);
    filter.list = non_empty(&params.list);
    filter.limit = PAGE_SIZE;
    filter.cursor = (!params.cursor.is_empty()).then(|| params.cursor.clone());
    match state.outbox.store().suppressions_list(filter).await {
        Ok(page) => respond(StatusCode::OK, suppressions_page(&viewer, &params, &page)),
        Err(error) => refused(error),
    }
}

/// `POST /suppressions`: add an address (for a list, or every list).
pub async fn add(
    viewer: Viewer,
    State(state): State<AppState>,
    Extension(sessions): Extension<Arc<Sessions>>,
    form: Result<Form<AddForm>, FormRejection>,
) -> Response {
    let form = form.map(|Form(form)| form).unwrap_or_default();
    if !viewer.check_csrf(&sessions, form.csrf.as_deref()) {
        return super::handlers::csrf_refused();
    }
    let reason = if form.reason.trim().is_empty() {
        SuppressionReason::Manual
    } else {
        match form.reason.parse() {
            Ok(reason) => reason,
            Err(error) => return refused(error),
        }
    };
    let mut new = NewSuppression::default();
    new.address = form.address;
    new.list = Some(form.list);
    new.reason = reason;
    new.message_id = None;
    match state.outbox.store().suppress(new).await {
        Ok(stored) => {
            tracing::info!(list = ?stored.list, reason = %stored.reason, "admin: address suppressed");
            Redirect::to("/suppressions?done=added").into_response()
        }
        Err(error) => refused(error),
    }
}

/// `POST /suppressions/remove`.
pub async fn remove(
    viewer: Viewer,
    State(state): State<AppState>,
    Extension(sessions): Extension<Arc<Sessions>>,
    form: Result<Form<RemoveForm>, FormRejection>,
) -> Response {
    let form = form.map(|Form(form)| form).unwrap_or_default();
    if !viewer.check_csrf(&sessions, form.csrf.as_deref()) {
        return super::handlers::csrf_refused();
    }
    match state
        .outbox
        .store()
        .unsuppress(&form.address, &form.list)
        .await
    {
        Ok(true) => Redirect::to("/suppressions?done=removed").into_response(),
        Ok(false) => Redirect::to("/suppressions?done=absent").into_response(),
        Err(error) => refused(error),
    }
}

/// Bad input: 400 naming the field; the database failing: 500 without details.
fn refused(error: StoreError) -> Response {
    match error {
        StoreError::InvalidSuppression { .. } => {
            error_page(StatusCode::BAD_REQUEST, "Not accepted", &error.to_string())
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

fn suppressions_page(
    viewer: &Viewer,
    params: &SuppressionParams,
    page: &SuppressionPage,
) -> Markup {
    let csrf = viewer.csrf();
    let notice = match params.done.as_str() {
        "added" => Some("Suppressed."),
        "removed" => Some("Removed from the suppression list."),
        "absent" => Some("That entry was not on the list."),
        _ => None,
    };
    let next = page.next_cursor.as_ref().map(|cursor| {
        format!(
            "/suppressions?address={}&list={}&cursor={}",
            percent_encode(params.address.trim()),
            percent_encode(params.list.trim()),
            percent_encode(cursor)
        )
    });
    layout(
        "Suppressions",
        Some(viewer),
        html! {
            h1 { "Suppression list" }
            p.muted { "Addresses that are not mailed: for one list (a message's " code { "list" }
                      ", by default its From address) or for every list. A suppressed recipient is \
                      stored " code { "suppressed" } " at enqueue, or when it is next due." }
            @if let Some(notice) = notice {
                p.notice { (notice) }
            }
            h2 { "Add" }
            form.filters method="post" action="/suppressions" {
                input type="hidden" name="csrf" value=(csrf);
                input type="email" name="address" placeholder="address" required;
                input type="text" name="list" placeholder="list (empty: every list)";
                select name="reason" {
                    @for reason in SuppressionReason::ALL {
                        option value=(reason.as_str()) selected[reason == SuppressionReason::Manual] { (reason.as_str()) }
                    }
                }
                button.primary type="submit" data-action="suppress" { "Suppress" }
            }
            h2 { "Entries" }
            form.filters method="get" action="/suppressions" {
                input type="text" name="address" placeholder="address" value=(params.address);
                input type="text" name="list" placeholder="list" value=(params.list);
                button type="submit" { "Filter" }
            }
            @if page.items.is_empty() {
                div.empty { "No suppressions." }
            } @else {
                table {
                    thead { tr { th { "Address" } th { "List" } th { "Reason" } th { "Since" } th { "Message" } th {} } }
                    tbody {
                        @for s in &page.items {
                            tr data-address=(s.address) {
                                td { (s.address) }
                                td { @if let Some(list) = &s.list { (list) } @else { span.muted { "every list" } } }
                                td { (s.reason.as_str()) }
                                td.when { (when(s.created_at)) }
                                td { @if let Some(id) = &s.message_id { (id) } }
                                td.actions {
                                    form method="post" action="/suppressions/remove" {
                                        input type="hidden" name="csrf" value=(csrf);
                                        input type="hidden" name="address" value=(s.address);
                                        input type="hidden" name="list" value=(s.list.as_deref().unwrap_or(""));
                                        button.danger type="submit" data-action="unsuppress" { "Remove" }
                                    }
                                }
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
