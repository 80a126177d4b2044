//! The admin page of `outbox serve`: server-rendered HTML, no script, nothing loaded
//! from elsewhere.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /` | the queue, newest first: counts by status, filters (status, priority, subject, recipient domain), paging, bulk actions |
//! | `GET /messages/{id}` | recipients and their states, the delivery log, an HTML preview in a sandboxed frame, the raw MIME |
//! | `POST /messages/{id}/retry`, `POST /messages/{id}/remove` | one message |
//! | `POST /bulk` | retry or remove every message a filter matches, at most [`BULK_LIMIT`] at once |
//! | `GET /suppressions`, `POST /suppressions`, `POST /suppressions/remove` | the suppression list: filter, page, add, remove |
//! | `GET /bounces`, `GET /bounces/{id}` | bounces and complaints received; the text of an unmatched one |
//! | `GET /login`, `POST /login`, `POST /logout` | sessions |
//!
//! (`/u/{token}`, the one-click unsubscribe page, is public: see [`crate::http::unsubscribe`].)
//!
//! Access: a session cookie from the login form (any token of `[http] tokens`), or an
//! `Authorization: Bearer TOKEN` header for scripts. Without either, every page
//! redirects to `/login`. Every POST from a session carries the session's CSRF token
//! (see [`session`]); a missing or wrong one gets 403.

mod bounces;
mod handlers;
mod message_page;
pub(in crate::http) mod pages;
mod params;
mod preview;
pub mod session;
mod suppressions;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::Router;
use axum::extract::Extension;
use axum::routing::{get, post};

use super::AppState;
use session::Sessions;

/// The most messages one bulk action touches; the page says so, and the operator runs it
/// again for the rest.
pub const BULK_LIMIT: usize = 10_000;

/// The admin routes, with a fresh session table (sessions live as long as the process).
pub fn router() -> Router<AppState> {
    router_with(Arc::new(Sessions::default()))
}

/// The admin routes over a given session table.
pub fn router_with(sessions: Arc<Sessions>) -> Router<AppState> {
    Router::new()
        .route("/", get(handlers::queue))
        .route("/messages/{id}", get(handlers::message))
        .route("/messages/{id}/retry", post(handlers::retry))
        .route("/messages/{id}/remove", post(handlers::remove))
        .route("/bulk", post(handlers::bulk))
        .route(
            "/suppressions",
            get(suppressions::page).post(suppressions::add),
        )
        .route("/suppressions/remove", post(suppressions::remove))
        .route("/bounces", get(bounces::page))
        .route("/bounces/{id}", get(bounces::raw))
        .route("/login", get(handlers::login_form).post(handlers::login))
        .route("/logout", post(handlers::logout))
        .layer(Extension(sessions))
}
