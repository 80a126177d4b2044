//! An SMTP server (RFC 5321): Outbox's submission listener, and the peer of every
//! delivery test, with deterministic fault injection and connection counters.
//!
//! It speaks EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT, VRFY (252), HELP, STARTTLS
//! (RFC 3207), AUTH PLAIN/LOGIN (RFC 4954), and advertises PIPELINING (RFC 2920), SIZE
//! (RFC 1870), 8BITMIME (RFC 6152), ENHANCEDSTATUSCODES (RFC 2034) and SMTPUTF8 (RFC 6531).
//! Each connection runs in its own tokio task; messages go to a [`MessageSink`].
//!
//! Hostile input: only `CRLF.CRLF` ends message text, and a bare LF or CR anywhere gets
//! `521 5.5.2` and a closed connection (no SMTP smuggling). Limits, all off by default so the
//! server stays a permissive test peer, and set by the submission listener: connections in
//! all and per client address (refused at accept with `421`, holding nothing), commands and
//! error replies per session, failed AUTH per session and per client address.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use outbox_smtp::server::{Fault, MemorySink, Server, Stage};
//!
//! let sink = Arc::new(MemorySink::new());
//! let server = Server::builder()
//!     .sink(sink.clone())
//!     .fault(Fault::reply(Stage::Rcpt, 451, "4.3.0 try later").for_recipient("b@x.test").times(2))
//!     .bind("127.0.0.1:0")
//!     .await?;
//! println!("listening on {}", server.local_addr());
//! let first = sink.wait_for(1).await;
//! server.shutdown().await;
//! # Ok(()) }
//! ```

mod auth;
mod command;
mod fault;
mod limits;
mod lines;
mod session;
mod sink;
mod stats;
mod throttle;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

pub use auth::{Authenticator, Network, NetworkError, SaslError, StaticUsers, constant_time_eq};
pub use command::{Command, CommandError, Param, parse_command};
pub use fault::Stage;
#[cfg(any(test, feature = "testing"))]
pub use fault::{Fault, FaultAction};
// The connection counter, in all and per client address, for outbox's HTTP server too.
pub use limits::{Connections, Limits, Permit, Refusal};
pub use lines::{MAX_AUTH_LINE, MAX_COMMAND_LINE, MAX_TEXT_LINE};
pub use sink::{DeliverFuture, MemorySink, MessageSink, ReceivedEnvelope, ReceivedMessage};
pub use stats::ServerStats;
pub use throttle::{FailureThrottle, client_key};
pub use tls::{ServerTlsError, server_tls_config, server_tls_config_from_files};

#[cfg(any(test, feature = "testing"))]
use fault::FaultPlan;
use stats::Counters;

/// Why the server could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address as given.
        address: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Everything a connection needs, shared by all of them.
pub(crate) struct Shared {
    pub(crate) hostname: String,
    pub(crate) max_size: Option<u64>,
    pub(crate) max_recipients: usize,
    pub(crate) command_timeout: Duration,
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) authenticator: Option<Arc<dyn Authenticator>>,
    pub(crate) auth_requires_tls: bool,
    pub(crate) require_auth: bool,
    pub(crate) trusted_networks: Vec<Network>,
    pub(crate) sink: Arc<dyn MessageSink>,
    #[cfg(any(test, feature = "testing"))]
    pub(crate) faults: FaultPlan,
    pub(crate) counters: Counters,
    pub(crate) limits: Limits,
    pub(crate) connections: Arc<Connections>,
    /// Failed AUTH per client, when `auth_failures_per_client` is set.
    pub(crate) auth_failures: Option<FailureThrottle>,
}

/// Configures and starts a [`Server`]; every setting has a default suited to tests.
pub struct ServerBuilder {
    hostname: String,
    max_size: Option<u64>,
    max_recipients: usize,
    command_timeout: Duration,
    tls: Option<Arc<rustls::ServerConfig>>,
    authenticator: Option<Arc<dyn Authenticator>>,
    auth_requires_tls: bool,
    require_auth: bool,
    trusted_networks: Vec<Network>,
    sink: Option<Arc<dyn MessageSink>>,
    #[cfg(any(test, feature = "testing"))]
    faults: Vec<Fault>,
    limits: Limits,
    per_connection_stats: bool,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            hostname: "localhost".to_string(),
            max_size: None,
            // RFC 5321 §4.5.3.1.8: at least 100 recipients must be accepted; Postfix's
            // default is 1000.
            max_recipients: 1000,
            // RFC 5321 §4.5.3.2.7: a server should wait at least 5 minutes for a command.
            command_timeout: Duration::from_secs(300),
            tls: None,
            authenticator: None,
            auth_requires_tls: false,
            require_auth: false,
            trusted_networks: Vec::new(),
            sink: None,
            #[cfg(any(test, feature = "testing"))]
            faults: Vec::new(),
            limits: Limits::default(),
            per_connection_stats: true,
        }
    }
}

impl ServerBuilder {
    /// The name in the greeting and EHLO reply (default `localhost`).
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = hostname.into();
        self
    }

    /// The largest message accepted, advertised as `SIZE` (RFC 1870); larger messages get
    /// `552` while their text is read and discarded. Default: no limit.
    pub fn max_size(mut self, octets: u64) -> Self {
        self.max_size = Some(octets);
        self
    }

    /// The most recipients in one transaction (default 1000); more get `452 4.5.3`.
    pub fn max_recipients(mut self, n: usize) -> Self {
        self.max_recipients = n.max(1);
        self
    }

    /// How long to wait for each command or text line before closing with `421`.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Offer STARTTLS with this configuration (see [`server_tls_config`]).
    pub fn tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Offer AUTH PLAIN and LOGIN, checking credentials with `authenticator`.
    pub fn authenticator(mut self, authenticator: Arc<dyn Authenticator>) -> Self {
        self.authenticator = Some(authenticator);
        self
    }

    /// Offer AUTH only after STARTTLS, so passwords never cross the wire in clear.
    pub fn auth_requires_tls(mut self, yes: bool) -> Self {
        self.auth_requires_tls = yes;
        self
    }

    /// Refuse `MAIL` with `530 5.7.0` until the client has authenticated, unless its address
    /// is in `trusted` (the submission listener's policy: no open relay).
    pub fn require_auth(mut self, trusted: Vec<Network>) -> Self {
        self.require_auth = true;
        self.trusted_networks = trusted;
        self
    }

    /// Where accepted messages go (default: a new [`MemorySink`], see
    /// [`Server::memory_sink`]).
    pub fn sink(mut self, sink: Arc<dyn MessageSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// The most connections open at once (default: no limit). A connection over it is
    /// answered `421 4.7.0` and closed at once, without a task or a wait, so a flood of idle
    /// connections costs no more than this many sessions.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.limits.max_connections = Some(n.max(1));
        self
    }

    /// The most connections open at once from one client IP address (default: no limit;
    /// Postfix's anvil). Over it: `421 4.7.0` and close, so one address cannot take every
    /// place of [`ServerBuilder::max_connections`].
    pub fn max_connections_per_client(mut self, n: usize) -> Self {
        self.limits.max_connections_per_client = Some(n.max(1));
        self
    }

    /// The most commands a connection may send without a message being accepted (default:
    /// no limit); the count starts again after each accepted message. Over it: `421 4.7.0`
    /// and close.
    pub fn max_commands(mut self, n: u32) -> Self {
        self.limits.max_commands = Some(n.max(1));
        self
    }

    /// The most error replies (4xx and 5xx) a connection may get (default: no limit;
    /// Postfix's `smtpd_hard_error_limit`). Over it: `421 4.7.0` and close.
    pub fn max_errors(mut self, n: u32) -> Self {
        self.limits.max_errors = Some(n.max(1));
        self
    }

    /// The most failed AUTH attempts on one connection (default: no limit); the last one
    /// is answered `421 4.7.0` and the connection closed.
    pub fn max_auth_failures(mut self, n: u32) -> Self {
        self.limits.max_auth_failures = Some(n.max(1));
        self
    }

    /// Blocks a client address that failed AUTH `n` times within `window` (default: never):
    /// its connection is closed with `421 4.7.0`, and new connections from it are answered
    /// `421 4.7.0` and closed until fewer than `n` of its failures are within the window.
    pub fn auth_failures_per_client(mut self, n: u32, window: Duration) -> Self {
        self.limits.auth_failures_per_client = Some((n.max(1), window));
        self
    }

    /// Whether [`ServerStats::transactions_per_connection`] is kept (default: yes). It grows
    /// by one entry per connection, so a long-running server turns it off.
    pub fn per_connection_stats(mut self, keep: bool) -> Self {
        self.per_connection_stats = keep;
        self
    }

    /// Adds a fault rule; rules are tried in the order added (`testing` feature).
    #[cfg(any(test, feature = "testing"))]
    pub fn fault(mut self, fault: Fault) -> Self {
        self.faults.push(fault);
        self
    }

    /// Binds `address` (e.g. `127.0.0.1:0`) and starts accepting connections.
    pub async fn bind(self, address: &str) -> Result<Server, ServerError> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| ServerError::Bind {
                address: address.to_string(),
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            address: address.to_string(),
            source,
        })?;
        let memory = match self.sink {
            Some(_) => None,
            None => Some(Arc::new(MemorySink::new())),
        };
        let sink: Arc<dyn MessageSink> = match (self.sink, &memory) {
            (Some(sink), _) => sink,
            (None, Some(memory)) => memory.clone(),
            (None, None) => unreachable!("a memory sink is made when none is given"),
        };
        let shared = Arc::new(Shared {
            hostname: self.hostname,
            max_size: self.max_size,
            max_recipients: self.max_recipients,
            command_timeout: self.command_timeout,
            tls: self.tls,
            authenticator: self.authenticator,
            auth_requires_tls: self.auth_requires_tls,
            require_auth: self.require_auth,
            trusted_networks: self.trusted_networks,
            sink,
            #[cfg(any(test, feature = "testing"))]
            faults: FaultPlan::new(self.faults),
            counters: Counters::new(self.per_connection_stats),
            auth_failures: self
                .limits
                .auth_failures_per_client
                .map(|(n, window)| FailureThrottle::new(n, window)),
            limits: self.limits,
            connections: Arc::new(Connections::default()),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, shared.clone(), shutdown_rx));
        Ok(Server {
            local_addr,
            shared,
            memory,
            shutdown,
            task: Some(task),
        })
    }
}

/// A running server. Dropping it stops accepting and closes idle connections; call
/// [`Server::shutdown`] to also wait for connections to finish.
pub struct Server {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    memory: Option<Arc<MemorySink>>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// A builder with test-friendly defaults.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The address the server listens on, with the port the OS chose for port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The in-memory sink made by the builder when no sink was given.
    pub fn memory_sink(&self) -> Option<Arc<MemorySink>> {
        self.memory.clone()
    }

    /// Adds a fault rule while the server runs; it applies from the next command on
    /// (`testing` feature).
    #[cfg(any(test, feature = "testing"))]
    pub fn inject(&self, fault: Fault) {
        self.shared.faults.add(fault);
    }

    /// A snapshot of the connection and transaction counters.
    pub fn stats(&self) -> ServerStats {
        self.shared.counters.snapshot()
    }

    /// Stops accepting, tells every connection to close (an idle one gets `421 4.3.2` at
    /// once; one in the middle of a message finishes that message first) and waits for them.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Resolves once shutdown has been asked for (at once if it already was).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send: drop it before anything else is awaited.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let permit = match admit(&shared, peer) {
                        Ok(permit) => permit,
                        Err(refusal) => {
                            refuse(stream, peer, refusal, &shared);
                            continue;
                        }
                    };
                    // Replies are small writes answered by the client's next command: without
                    // NODELAY, Nagle's algorithm would hold each one back for the peer's ACK.
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
                    }
                    let id = shared.counters.connection_opened();
                    let shared = shared.clone();
                    let shutdown = shutdown.clone();
                    connections.spawn(async move {
                        session::serve(stream, peer, id, &shared, shutdown).await;
                        shared.counters.connection_closed();
                        drop(permit);
                    });
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Takes a place for a new connection from `peer`, unless a limit says no.
///
/// A client in `trusted_networks` is never refused here for failed AUTH: it may submit
/// without AUTH, so one local program with a stale password (a cron job) must not lock out
/// every other local submitter. Its AUTH attempts stay throttled (`session/auth.rs`).
fn admit(shared: &Shared, peer: SocketAddr) -> Result<limits::Permit, Refusal> {
    let trusted = || {
        shared
            .trusted_networks
            .iter()
            .any(|n| n.contains(peer.ip()))
    };
    if let Some(throttle) = &shared.auth_failures
        && throttle.blocked(peer.ip(), Instant::now()).is_some()
        && !trusted()
    {
        return Err(Refusal::AuthBlocked);
    }
    shared.connections.admit(peer.ip(), &shared.limits)
}

/// Answers a connection over a limit with one `421` line and closes it at once. The write
/// does not wait: a reply that does not fit the socket buffer is dropped, never waited for,
/// so refused connections hold no file descriptor and no task.
fn refuse(stream: tokio::net::TcpStream, peer: SocketAddr, refusal: Refusal, shared: &Shared) {
    let host = &shared.hostname;
    let line = match refusal {
        Refusal::Busy => format!("421 4.7.0 {host} Error: too many connections\r\n"),
        Refusal::ClientBusy => {
            format!(
                "421 4.7.0 {host} Error: too many connections from {}\r\n",
                peer.ip()
            )
        }
        Refusal::AuthBlocked => format!(
            "421 4.7.0 {host} Error: too many failed authentication attempts, try again later\r\n"
        ),
    };
    let _ = stream.try_write(line.as_bytes());
    shared.counters.connection_refused();
    tracing::debug!(%peer, ?refusal, "connection refused");
    drop(stream);
}
