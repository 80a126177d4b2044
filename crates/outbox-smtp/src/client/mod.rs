//! The async SMTP client (RFC 5321), generic over its stream so tests can drive it through an
//! in-memory pipe ([`SmtpClient::with_stream`]) while real sessions run over TCP and TLS
//! ([`SmtpClient::connect`]).
//!
//! The raw interface of Lasso's `email_smtp` is public: [`SmtpClient::command`] sends a line
//! and returns the reply, [`SmtpClient::expect`] checks its code, [`SmtpClient::read_reply`]
//! reads a (multi-line) reply, [`SmtpClient::send`] runs a whole mail transaction and reports
//! each recipient's outcome, [`SmtpClient::quit`] closes. ([`SmtpClient::connect`] takes a URL
//! and the default config; [`SmtpClient::connect_with`] a parsed spec and a config.)
//!
//! ```no_run
//! use outbox_smtp::{ClientConfig, Envelope, RecipientOutcome, SmtpClient, SmtpSpec};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let spec = SmtpSpec::parse("smtp://127.0.0.1:2525?starttls=off")?;
//! let config = ClientConfig::new("outbox.example");
//! let mut client = SmtpClient::connect_with(&spec, &config).await?;
//! let envelope = Envelope::new("me@example.org", ["you@example.net"]);
//! let report = client.send(&envelope, b"Subject: hi\r\n\r\nHello\r\n").await?;
//! for (address, outcome) in report.outcomes() {
//!     if let RecipientOutcome::Sent(reply) = outcome {
//!         println!("{address} sent: {reply}");
//!     }
//! }
//! client.quit().await?;
//! # Ok(())
//! # }
//! ```

mod connect;
mod delivery;
mod session;
mod transaction;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub(crate) use connect::tcp_connect;
pub use connect::{AsyncStream, BoxedStream};
pub use delivery::{RcptOutcome, RecipientOutcome, RecipientReport, SendReport};
pub use transaction::Envelope;

use crate::ehlo::Capabilities;
use crate::error::ClientError;
use crate::reply::{Reply, parse_reply};
use crate::timeouts::Timeouts;
use crate::tls::{CertificateCheck, Protection, TlsConfig, TlsConfigError};

/// How the client introduces itself, how long it waits, and what it trusts.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The name sent with EHLO / HELO (RFC 5321 §4.1.1.1: the client's FQDN).
    pub helo_name: String,
    /// Per-command timeouts.
    pub timeouts: Timeouts,
    /// Trust anchors for TLS.
    pub tls: TlsConfig,
    /// The rustls configs built from `tls`, kept so each connection does not re-parse the
    /// root store.
    tls_cache: Arc<Mutex<TlsCache>>,
}

/// The rustls configs built so far: the verified one with the trust settings it was built
/// from, and the unverified one (which depends on nothing). Pinned configs are built per
/// connection: they hold no root store, and a pin is per relay.
#[derive(Debug, Default)]
struct TlsCache {
    verified: Option<(TlsConfig, Arc<rustls::ClientConfig>)>,
    unverified: Option<Arc<rustls::ClientConfig>>,
}

impl ClientConfig {
    /// A config with default timeouts and the webpki roots.
    pub fn new(helo_name: impl Into<String>) -> Self {
        ClientConfig {
            helo_name: helo_name.into(),
            timeouts: Timeouts::default(),
            tls: TlsConfig::default(),
            tls_cache: Arc::default(),
        }
    }

    /// The same config with these timeouts.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The same config with this TLS trust configuration.
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = tls;
        self
    }

    /// The rustls client configuration for [`ClientConfig::tls`], built once and reused.
    pub fn rustls_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
        self.rustls_config_for(&CertificateCheck::Verified)
    }

    /// The rustls client configuration that checks certificates as `check` says; the
    /// verified and unverified ones are built once and reused.
    pub fn rustls_config_for(
        &self,
        check: &CertificateCheck,
    ) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
        let mut cache = self
            .tls_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match check {
            CertificateCheck::Verified => {
                if let Some((tls, config)) = cache.verified.as_ref()
                    && *tls == self.tls
                {
                    return Ok(Arc::clone(config));
                }
                let config = self.tls.client_config()?;
                cache.verified = Some((self.tls.clone(), Arc::clone(&config)));
                Ok(config)
            }
            CertificateCheck::Unverified => {
                if let Some(config) = &cache.unverified {
                    return Ok(Arc::clone(config));
                }
                let config = self.tls.client_config_for(check)?;
                cache.unverified = Some(Arc::clone(&config));
                Ok(config)
            }
            CertificateCheck::Pinned(_) => self.tls.client_config_for(check),
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig::new("localhost")
    }
}

/// An SMTP client session over a stream `S`.
pub struct SmtpClient<S> {
    stream: S,
    /// Bytes read but not yet parsed into replies.
    read_buf: Vec<u8>,
    /// Commands written but not yet flushed: one flush per pipelined group.
    write_buf: Vec<u8>,
    config: ClientConfig,
    capabilities: Capabilities,
    /// The server's name, for TLS and error messages.
    host: String,
    /// How a TLS handshake checks the server's certificate.
    certificate_check: CertificateCheck,
    /// What protects the session now.
    protection: Protection,
    /// The server's 220 greeting, once read.
    greeting: Option<Reply>,
}

impl<S> std::fmt::Debug for SmtpClient<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpClient")
            .field("host", &self.host)
            .field("protection", &self.protection)
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> SmtpClient<S> {
    /// A client over an already connected stream; nothing is read or sent yet. Call
    /// [`SmtpClient::read_greeting`] and [`SmtpClient::ehlo`] next (or use
    /// [`SmtpClient::connect`], which does the whole opening).
    pub fn with_stream(stream: S, host: impl Into<String>, config: ClientConfig) -> Self {
        SmtpClient {
            stream,
            read_buf: Vec::with_capacity(4096),
            write_buf: Vec::with_capacity(4096),
            config,
            capabilities: Capabilities::default(),
            host: host.into(),
            certificate_check: CertificateCheck::Verified,
            protection: Protection::Plaintext,
            greeting: None,
        }
    }

    /// What the server offered in its last EHLO reply (nothing after HELO).
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// The server's greeting, once [`SmtpClient::read_greeting`] has read it.
    pub fn greeting(&self) -> Option<&Reply> {
        self.greeting.as_ref()
    }

    /// The same client, checking the server's certificate as `check` says in the TLS
    /// handshake to come (STARTTLS or implicit TLS). The default is
    /// [`CertificateCheck::Verified`].
    pub fn with_certificate_check(mut self, check: CertificateCheck) -> Self {
        self.certificate_check = check;
        self
    }

    /// How a TLS handshake checks (or checked) the server's certificate.
    pub fn certificate_check(&self) -> &CertificateCheck {
        &self.certificate_check
    }

    /// Whether the session is encrypted.
    pub fn is_tls(&self) -> bool {
        self.protection.is_tls()
    }

    /// What protects the session: plaintext, or TLS with a verified, pinned or unchecked
    /// certificate — for logs and delivery records.
    pub fn protection(&self) -> Protection {
        self.protection
    }

    /// The server's name as given at connect time.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The client's configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The connection itself, for a caller that takes it over (the TLS probe's own
    /// handshake); unread input is dropped.
    pub(crate) fn into_stream(self) -> S {
        self.stream
    }

    /// The same session over another stream type (e.g. boxed); buffers and state move along.
    pub fn map_stream<T>(self, f: impl FnOnce(S) -> T) -> SmtpClient<T> {
        SmtpClient {
            stream: f(self.stream),
            read_buf: self.read_buf,
            write_buf: self.write_buf,
            config: self.config,
            capabilities: self.capabilities,
            host: self.host,
            certificate_check: self.certificate_check,
            protection: self.protection,
            greeting: self.greeting,
        }
    }

    /// Sends one command line and returns the server's reply, whatever its code. The line
    /// must not contain CR or LF; the client adds CRLF.
    pub async fn command(&mut self, line: &str) -> Result<Reply, ClientError> {
        let name = command_name(line);
        self.queue_line(line, "command")?;
        self.flush(&name, self.config.timeouts.command).await?;
        self.read_reply_for(&name, self.config.timeouts.command)
            .await
    }

    /// Sends one command line and checks that the reply has the expected code; any other
    /// code is a [`ClientError::Rejected`] carrying the reply.
    pub async fn expect(&mut self, line: &str, code: u16) -> Result<Reply, ClientError> {
        let reply = self.command(line).await?;
        if reply.code == code {
            Ok(reply)
        } else {
            Err(ClientError::Rejected {
                command: command_name(line),
                reply,
            })
        }
    }

    /// Reads one (possibly multi-line) reply, waiting at most the `command` timeout.
    pub async fn read_reply(&mut self) -> Result<Reply, ClientError> {
        self.read_reply_for("reply", self.config.timeouts.command)
            .await
    }

    /// Writes raw bytes as they are and flushes them (for message text typed in an
    /// interactive session; [`SmtpClient::send`] does its own dot-stuffing).
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.write_buf.extend_from_slice(bytes);
        self.flush("DATA", self.config.timeouts.data_block).await
    }

    /// Appends a command line to the write buffer after checking it cannot smuggle a second
    /// command (no CR, LF or NUL).
    fn queue_line(&mut self, line: &str, what: &'static str) -> Result<(), ClientError> {
        if line.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err(ClientError::InvalidInput {
                what,
                value: line.to_string(),
            });
        }
        tracing::trace!(host = %self.host, "C: {}", redact(line));
        self.write_buf.extend_from_slice(line.as_bytes());
        self.write_buf.extend_from_slice(b"\r\n");
        Ok(())
    }

    /// Writes the buffered bytes and flushes the stream, within `limit`.
    async fn flush(&mut self, command: &str, limit: Duration) -> Result<(), ClientError> {
        let stream = &mut self.stream;
        let buf = &self.write_buf;
        let result = tokio::time::timeout(limit, async {
            stream.write_all(buf).await?;
            stream.flush().await
        })
        .await;
        self.write_buf.clear();
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(io_error(command, source)),
            Err(_) => Err(ClientError::Timeout {
                command: command.to_string(),
                after: limit,
            }),
        }
    }

    /// Reads until one complete reply is buffered, within `limit`.
    async fn read_reply_for(
        &mut self,
        command: &str,
        limit: Duration,
    ) -> Result<Reply, ClientError> {
        let stream = &mut self.stream;
        let buf = &mut self.read_buf;
        let result = tokio::time::timeout(limit, async {
            loop {
                match parse_reply(buf) {
                    Ok(Some((reply, used))) => {
                        buf.drain(..used);
                        return Ok(reply);
                    }
                    Ok(None) => {}
                    Err(source) => {
                        return Err(ClientError::BadReply {
                            command: command.to_string(),
                            source,
                        });
                    }
                }
                buf.reserve(4096);
                match stream.read_buf(buf).await {
                    Ok(0) => {
                        return Err(ClientError::Closed {
                            command: command.to_string(),
                        });
                    }
                    Ok(_) => {}
                    Err(source) => return Err(io_error(command, source)),
                }
            }
        })
        .await;
        match result {
            Ok(Ok(reply)) => {
                tracing::trace!(host = %self.host, "S: {reply}");
                Ok(reply)
            }
            Ok(Err(err)) => Err(err),
            Err(_) => Err(ClientError::Timeout {
                command: command.to_string(),
                after: limit,
            }),
        }
    }
}

/// A connection reset or broken pipe is the server going away, said plainly.
fn io_error(command: &str, source: std::io::Error) -> ClientError {
    use std::io::ErrorKind::*;
    match source.kind() {
        BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof => ClientError::Closed {
            command: command.to_string(),
        },
        _ => ClientError::Io {
            command: command.to_string(),
            source,
        },
    }
}

/// The verb of a command line for messages: `MAIL FROM`, `RCPT TO`, `EHLO`.
fn command_name(line: &str) -> String {
    let mut words = line.split_whitespace();
    let first = words.next().unwrap_or("").to_ascii_uppercase();
    match first.as_str() {
        "MAIL" | "RCPT" => {
            let second = words.next().unwrap_or("");
            let second = second.split(':').next().unwrap_or("").to_ascii_uppercase();
            format!("{first} {second}")
        }
        _ => first,
    }
}

/// An AUTH line with its secret part removed, for logs.
fn redact(line: &str) -> &str {
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case("AUTH") {
        "AUTH ***"
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_names() {
        assert_eq!(command_name("MAIL FROM:<a@b> SIZE=1"), "MAIL FROM");
        assert_eq!(command_name("rcpt to:<a@b>"), "RCPT TO");
        assert_eq!(command_name("ehlo x"), "EHLO");
        assert_eq!(command_name(""), "");
        assert_eq!(redact("AUTH PLAIN AHVzZXIAcGFzcw=="), "AUTH ***");
    }
}
