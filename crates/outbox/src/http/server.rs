//! The HTTP/1.1 server loop of `outbox serve`, with the limits `axum::serve` does not
//! have:
//!
//! - `[http] header_timeout`: a client has this long to send a request's headers, counted
//!   from when the server starts waiting for them (a new connection, or the end of the
//!   previous answer on a kept-alive one), so a connection that sends nothing, half its
//!   headers, or sits idle between requests is closed after it (hyper's
//!   `header_read_timeout`, which starts as soon as a connection waits for a request).
//! - `[http] body_timeout`: once its headers are in, a request's whole body must arrive
//!   within this; a body that trickles in is cut off (the API answers 408), so a slow
//!   client cannot hold a connection for ever after sending its headers in time.
//! - `[http] max_connections`: connections open at once. One more is answered
//!   `503 {"error": ...}` with `Retry-After` and closed, so a flood of idle connections
//!   costs one file descriptor each for at most `header_timeout`, never the process's
//!   whole allowance.
//! - `[http] max_connections_per_client`: connections open at once from one client address
//!   (outbox-smtp's counter, as the submission listener's), so one address cannot take
//!   every slot and lock the others out; one more from it gets its own JSON 503 and close.
//!
//! Each request carries the client address as `ConnectInfo<SocketAddr>`, for the
//! throttling of failed tokens. Shutdown: stop accepting, let each connection finish its
//! current request, close idle ones at once.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use futures_util::StreamExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use outbox_smtp::server::{Connections, Refusal};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

/// What bounds the server's connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// See the module documentation.
    pub header_timeout: Duration,
    /// See the module documentation.
    pub body_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections served at once from one client address.
    pub max_connections_per_client: usize,
}

/// The error a request body gives when it did not arrive within `body_timeout`; the API
/// recognises it by this text to answer 408.
pub const BODY_TIMED_OUT: &str = "the request body did not arrive within http.body_timeout";

/// Refusals being written at once; beyond that an extra connection is closed without a
/// word, so refusing cannot itself pile up.
const MAX_REFUSING: usize = 64;

/// How long a refusal may take to write and to drain what the client sent.
const REFUSAL_TIME: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` until `shutdown` resolves, then waits for the open
/// connections to finish their current request.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let connections = Arc::new(Connections::default());
    let mut admission = outbox_smtp::server::Limits::default();
    admission.max_connections = Some(limits.max_connections.max(1));
    admission.max_connections_per_client = Some(limits.max_connections_per_client.max(1));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    // When each kind of refusal (all slots, one client's) was last logged.
    let mut last_warned: [Option<Instant>; 2] = [None, None];
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file descriptors, most likely: back off instead of spinning.
                    tracing::warn!(error = %err, "HTTP: cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        while tasks.try_join_next().is_some() {}
        let slot = match connections.admit(remote.ip(), &admission) {
            Ok(slot) => slot,
            Err(refusal) => {
                let kind = usize::from(refusal == Refusal::ClientBusy);
                if last_warned[kind].is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(
                        client = %remote,
                        max_connections = limits.max_connections,
                        max_connections_per_client = limits.max_connections_per_client,
                        "HTTP: {}; refusing new connections with 503",
                        match refusal {
                            Refusal::ClientBusy => "connection limit of one client reached",
                            _ => "connection limit reached",
                        }
                    );
                    last_warned[kind] = Some(Instant::now());
                }
                if let Ok(permit) = refusing.clone().try_acquire_owned() {
                    tasks.spawn(async move {
                        refuse(stream, refusal).await;
                        drop(permit);
                    });
                }
                continue;
            }
        };
        let router = router.clone();
        let closing = closing_rx.clone();
        tasks.spawn(async move {
            serve_connection(stream, remote, router, limits, closing).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    while tasks.join_next().await.is_some() {}
}

async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    router: Router,
    limits: Limits,
    mut closing: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(remote));
        let request = request.map(|body| with_deadline(Body::new(body), limits.body_timeout));
        router.clone().oneshot(request)
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = async { let _ = closing.wait_for(|closing| *closing).await; } => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = result {
        // A client that timed out or hung up is routine: debug, not warn.
        tracing::debug!(client = %remote, error = %err, "HTTP connection closed");
    }
}

/// `body`, ending in an error if it has not all arrived within `limit` from now.
fn with_deadline(body: Body, limit: Duration) -> Body {
    let deadline = tokio::time::Instant::now() + limit;
    let stream =
        futures_util::stream::unfold(Some(body.into_data_stream()), move |state| async move {
            let mut data = state?;
            match tokio::time::timeout_at(deadline, data.next()).await {
                Ok(Some(chunk)) => Some((chunk, Some(data))),
                Ok(None) => None,
                Err(_) => Some((Err(axum::Error::new(BODY_TIMED_OUT)), None)),
            }
        });
    Body::from_stream(stream)
}

/// Answers a connection over a limit with a JSON 503 and closes it.
async fn refuse(mut stream: TcpStream, refusal: Refusal) {
    let body = match refusal {
        Refusal::ClientBusy => {
            r#"{"error":"too many open connections from your address (http.max_connections_per_client): try again"}"#
        }
        _ => r#"{"error":"too many open connections (http.max_connections): try again"}"#,
    };
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_TIME, async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what the client sent before closing: closing with unread data makes the
        // kernel reset the connection, and the client could lose the answer.
        let mut sink = [0u8; 4096];
        let mut drained = 0usize;
        while drained < 64 * 1024 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
}
