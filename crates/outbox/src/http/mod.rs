//! The HTTP side of `outbox serve`: the JSON API under `/api/v1`, the admin page at `/`,
//! `/metrics` and `/healthz`. Everything but `/healthz` needs a token from `[http] tokens`.
//!
//! The routes and their answers are described in `docs/http-api.md` and by the OpenAPI
//! document served at `/api/v1/openapi.json` (see [`openapi`]).

pub mod admin;
pub mod api;
mod attachments;
pub mod auth;
mod body;
pub mod bounces;
pub mod error;
pub mod events;
pub mod metrics;
pub mod openapi;
pub mod server;
mod spec_checks;
pub mod suppressions;
pub mod throttle;
pub mod unsubscribe;

#[cfg(test)]
mod api_tests;
#[cfg(test)]
mod security_tests;
#[cfg(test)]
mod suppressions_tests;
#[cfg(test)]
mod unsubscribe_tests;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use outbox_queue::Outbox;
use outbox_queue::engine::EngineMetrics;

use crate::config::Config;
use error::ApiError;
use metrics::ApiMetrics;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The queue and the means to send.
    pub outbox: Outbox,
    /// The configuration `serve` started with.
    pub config: Arc<Config>,
    /// The engine's counters, for `/metrics`.
    pub metrics: Arc<EngineMetrics>,
    /// Accepted Bearer tokens.
    pub tokens: auth::Tokens,
    /// What the API counts itself, for `/metrics`.
    pub api_metrics: Arc<ApiMetrics>,
    /// Failed token checks per client address (`[http] throttle_exempt` excepted).
    pub throttle: Arc<throttle::AuthThrottle>,
    /// Slots for `immediate` sends: `delivery.max_connections` at once, so the network
    /// cannot open connections without bound by posting them.
    pub immediate: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// State for a running server.
    pub fn new(outbox: Outbox, config: Arc<Config>, metrics: Arc<EngineMetrics>) -> Self {
        let tokens = auth::Tokens::new(config.http.tokens.clone());
        let throttle = Arc::new(throttle::AuthThrottle::new(
            config.http.max_auth_failures,
            config.http.auth_failure_window.0,
            config.http.throttle_exempt_networks(),
        ));
        let immediate = Arc::new(tokio::sync::Semaphore::new(
            config.delivery.max_connections.max(1),
        ));
        AppState {
            outbox,
            config,
            metrics,
            tokens,
            api_metrics: Arc::default(),
            throttle,
            immediate,
        }
    }
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    let limit = body_limit(state.config.delivery.max_message_size.0);
    let protected = Router::new()
        .route(
            "/api/v1/messages",
            post(api::post_message).get(api::list_messages),
        )
        .route("/api/v1/messages/batch", post(api::post_batch))
        .route(
            "/api/v1/messages/{id}",
            get(api::get_message).delete(api::delete_message),
        )
        .route("/api/v1/messages/{id}/retry", post(api::retry_message))
        .route(
            "/api/v1/suppressions",
            get(suppressions::list_suppressions).post(suppressions::post_suppression),
        )
        .route(
            "/api/v1/suppressions/{address}",
            axum::routing::delete(suppressions::delete_suppression),
        )
        .route("/api/v1/bounces", get(bounces::list_bounces))
        .route("/api/v1/events", get(events::list_events))
        .route("/api/v1/openapi.json", get(openapi::openapi_json))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/{*rest}", any(unknown_route))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(DefaultBodyLimit::max(limit));
    // One-click unsubscribe: the signed link is the credential, no token.
    let unsubscribe = Router::new().route(
        "/u/{token}",
        get(unsubscribe::confirm_page)
            .post(unsubscribe::unsubscribe)
            .layer(DefaultBodyLimit::max(unsubscribe::MAX_BODY)),
    );
    Router::new()
        .route("/healthz", get(metrics::healthz))
        .merge(unsubscribe)
        .merge(protected)
        .merge(admin::router())
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// A known path with a method it does not take: 405 in the API's error shape (axum's
/// own 405 has an empty body). `Allow` is still set by the router.
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}

/// The largest request body the API reads: a message of `max_message_size` whose
/// attachments travel as base64 inside JSON (4/3 of the bytes, plus escaping), with room
/// for the rest of the spec. Bigger bodies get 413 before they are read whole.
pub fn body_limit(max_message_size: u64) -> usize {
    let limit = max_message_size.saturating_mul(14) / 10 + 64 * 1024;
    usize::try_from(limit).unwrap_or(usize::MAX)
}

/// Any other path under `/api/v1`: 404 in the API's error shape.
async fn unknown_route(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        format!("no such API route: {}", uri.path()),
    )
}

/// Lets a request through only with `Authorization: Bearer TOKEN` for an accepted token
/// (the handlers get its [`auth::TokenId`]); an address with too many failures gets 429
/// before its token is even looked at.
async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let client = throttle::client_address(request.extensions());
    if let Some(wait) = state.throttle.blocked(client) {
        return error::retry_later(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            wait,
            format!("too many failed tokens from this address: try again in {wait}s"),
        );
    }
    let token = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .filter(|value| state.tokens.accepts_header(value))
        .and_then(auth::TokenId::from_header);
    let Some(token) = token else {
        if state.tokens.is_empty() {
            tracing::warn!("refused an API request: [http] tokens is empty");
        }
        state.throttle.failed(client, "HTTP API");
        return ApiError::unauthorized().into_response();
    };
    request.extensions_mut().insert(token);
    next.run(request).await
}
