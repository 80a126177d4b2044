//! `outbox serve`: the background sender, the HTTP API and admin page, and (when
//! configured) the SMTP submission listener, in one process until Ctrl-C or SIGTERM.

use std::sync::Arc;

use anyhow::Context;
use outbox_queue::engine::RunMode;
use tokio::sync::watch;

use crate::cli::Globals;
use crate::http::{self, AppState};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {}

pub async fn run(globals: &Globals, _args: ServeArgs) -> anyhow::Result<()> {
    let config = Arc::new(globals.config()?);
    // Before anything is claimed: a signal from now on stops the service, never kills it.
    let shutdown = crate::app::shutdown_signal();
    let outbox = crate::app::outbox(&config).await?;
    let engine = outbox.engine();

    // One signal, seen by every part.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {} (http.listen)", config.http.listen))?;
    let address = listener.local_addr()?;
    if config.http.tokens.is_empty() {
        tracing::warn!("http.tokens is empty: the API and admin page refuse every request");
    }
    warn_short_tokens(&config.http.tokens);
    let state = AppState::new(outbox.clone(), config.clone(), engine.metrics());
    let app = http::app(state);
    tracing::info!(%address, "HTTP API and admin page listening");
    let limits = http::server::Limits {
        header_timeout: config.http.header_timeout.0,
        body_timeout: config.http.body_timeout.0,
        max_connections: config.http.max_connections,
        max_connections_per_client: config.http.max_connections_per_client,
    };
    let http = tokio::spawn(http::server::serve(
        listener,
        app,
        limits,
        stopped(stop_rx.clone()),
    ));

    // The submission listener stops accepting on the same signal, then lets open
    // transactions finish (their messages are committed or refused, never half-queued).
    let smtp = crate::listener::start(&config, outbox.store().clone())
        .await?
        .map(|server| {
            let stop = stopped(stop_rx.clone());
            tokio::spawn(async move {
                stop.await;
                server.shutdown().await;
            })
        });

    let delivery = engine.run(RunMode::Forever, stopped(stop_rx.clone()));
    tokio::pin!(delivery);
    let result = tokio::select! {
        result = &mut delivery => result.map_err(anyhow::Error::from),
        _ = shutdown => {
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
            delivery.await.map_err(anyhow::Error::from)
        }
    };
    let _ = stop_tx.send(true);
    if let Some(smtp) = smtp {
        smtp.await.context("SMTP listener task")?;
    }
    http.await.context("HTTP server task")?;
    result
}

/// Tokens shorter than this are guessable enough to deserve a warning at start.
const SHORT_TOKEN: usize = 16;

/// Warns about each short token by its place in the list, never by its value.
fn warn_short_tokens(tokens: &[String]) {
    for (index, token) in tokens.iter().enumerate() {
        let length = token.chars().count();
        if length < SHORT_TOKEN {
            tracing::warn!(
                "http.tokens[{index}] is only {length} characters long: \
                 use at least {SHORT_TOKEN} random characters"
            );
        }
    }
}
