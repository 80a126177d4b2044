//! The HTTP side of `outbox serve`: the JSON API under `/api/v1`, the admin page at `/`,
//! `/metrics` and `/healthz`. Everything but `/healthz` needs a token from `[http] tokens`.

pub mod admin;
pub mod auth;

use std::sync::Arc;

use axum::Router;
use outbox_queue::Outbox;
use outbox_queue::engine::EngineMetrics;

use crate::config::Config;

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
}

impl AppState {
    /// State for a running server.
    pub fn new(outbox: Outbox, config: Arc<Config>, metrics: Arc<EngineMetrics>) -> Self {
        let tokens = auth::Tokens::new(config.http.tokens.clone());
        AppState {
            outbox,
            config,
            metrics,
            tokens,
        }
    }
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    Router::new().merge(admin::router()).with_state(state)
}
