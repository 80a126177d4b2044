//! Embedding Outbox in a web application: an axum server whose handler queues a message,
//! with the delivery engine running in the same process until the server shuts down.
//!
//! ```text
//! cargo run -p outbox-queue --example axum_embed -- sqlite://outbox.db smtp://127.0.0.1:2525?starttls=off
//! curl -X POST 'http://127.0.0.1:3000/signup?email=ann@example.net'
//! ```
//!
//! Ctrl-C stops accepting requests, then the engine finishes its open transactions and gives
//! back what it had claimed; queued messages wait in the database for the next start.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use outbox_queue::{EmailSpec, Outbox};
use tokio::sync::watch;

/// The application: a signup endpoint that sends a welcome message.
fn app(outbox: Outbox) -> Router {
    Router::new()
        .route("/signup", post(signup))
        .with_state(outbox)
}

async fn signup(
    State(outbox): State<Outbox>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, (StatusCode, String)> {
    let Some(email) = query.get("email") else {
        return Err((StatusCode::UNPROCESSABLE_ENTITY, "email is required".into()));
    };
    let message = EmailSpec::builder()
        .from("welcome@example.com")
        .to(email.as_str())
        .subject("Welcome")
        .text("Thanks for signing up.\n")
        .into_spec();
    // Committed to the queue before the answer: the engine delivers it, now or after a
    // restart, even if this process dies right after answering.
    match outbox.send(&message).await {
        Ok(queued) => Ok(Json(serde_json::json!({ "id": queued.id }))),
        // A bad address is the client's mistake; anything else is ours.
        Err(outbox_queue::OutboxError::Compose(err)) => {
            Err((StatusCode::UNPROCESSABLE_ENTITY, err.to_string()))
        }
        Err(err) => Err((StatusCode::INTERNAL_SERVER_ERROR, err.to_string())),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(database), Some(relay)) = (args.next(), args.next()) else {
        return Err("usage: axum_embed DATABASE_URL RELAY_URL [LISTEN]".into());
    };
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:3000".into());
    let outbox = Outbox::builder(&database).relay(&relay).open().await?;

    let (stop, stopped) = watch::channel(false);
    let engine = {
        let outbox = outbox.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            outbox
                .run(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await
        })
    };

    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(outbox))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    let _ = stop.send(true);
    engine.await??;
    Ok(())
}
