//! The SMTP side of Outbox: an async SMTP client, an SMTP server, server URLs, MX lookup,
//! MTA-STS and direct delivery to a domain's MX hosts. This crate knows bytes, not MIME
//! (composing messages is `outbox-mime`).
//!
//! # Sending a message
//!
//! [`SmtpClient::connect`] takes a server URL and opens the session — TCP, the greeting,
//! EHLO, STARTTLS (or implicit TLS for `smtps://`), AUTH when the URL has a user name;
//! [`SmtpClient::send`] runs one mail transaction and reports every recipient's outcome:
//!
//! ```no_run
//! use outbox_smtp::{Envelope, RecipientOutcome, SmtpClient};
//!
//! # async fn demo() -> Result<(), outbox_smtp::ClientError> {
//! let mut client = SmtpClient::connect("smtp://user:pw@relay.example.com:587?starttls=required").await?;
//! let envelope = Envelope::new("me@example.org", ["you@example.net", "them@example.com"]);
//! let report = client
//!     .send(&envelope, b"From: me@example.org\r\nSubject: hi\r\n\r\nHello\r\n")
//!     .await?;
//! for (address, outcome) in report.outcomes() {
//!     match outcome {
//!         RecipientOutcome::Sent(reply) => println!("{address} sent: {reply}"),
//!         RecipientOutcome::Transient(reply) => println!("{address} deferred: {reply}"),
//!         RecipientOutcome::Permanent(reply) => println!("{address} failed: {reply}"),
//!         _ => {}
//!     }
//! }
//! client.quit().await?;
//! # Ok(()) }
//! ```
//!
//! A session stays open for further messages after `send`. The raw interface is public too:
//! [`SmtpClient::command`] sends a line and returns the reply, [`SmtpClient::expect`] checks
//! its code, [`SmtpClient::read_reply`] reads a (multi-line) reply.
//! [`SmtpClient::connect_with`] takes a parsed [`SmtpSpec`] and a [`ClientConfig`] (the EHLO
//! name, per-command [`Timeouts`], trust anchors); [`SmtpClient::with_stream`] drives the
//! client over any `AsyncRead + AsyncWrite` (an in-memory pipe in tests).
//!
//! # Server URLs
//!
//! [`ServerSpec::parse`] reads `smtp://[user:pass@]host[:port][?starttls=required|opportunistic|off&timeout=30s&tls_fingerprint=sha256:...]`,
//! `smtps://...` (implicit TLS, port 465), a bare `host[:port]`, and `program:/usr/sbin/sendmail -i`
//! (a sendmail-compatible program, [`program`]). [`SmtpSpec::parse`] takes only the SMTP forms.
//!
//! # Modules
//!
//! | module | what |
//! | --- | --- |
//! | [`server`] | an SMTP server (submission listener, test sinks): AUTH, STARTTLS, limits |
//! | [`mx`] | MX lookup (RFC 5321 §5.1) with a cache; a static resolver for tests |
//! | [`mta_sts`] | MTA-STS policy discovery and matching (RFC 8461) |
//! | [`direct`] | delivery to a domain's MX hosts in preference order, with MTA-STS |
//! | [`program`] | the sendmail-program transport |
//! | [`dot`] | dot-stuffing of message data (RFC 5321 §4.5.2) |
//!
//! # Stability
//!
//! Settings that grow ([`ClientConfig`], [`Timeouts`], [`TlsConfig`], `server::Limits`,
//! `mx::ResolverSettings`, `mta_sts::MtaStsSettings`, `direct::DirectDelivery`) are
//! `#[non_exhaustive]`: build them with their constructor or `Default::default()` and set
//! fields; errors and the enums that gain variants are too (match them with a `_` arm).
//! [`ServerSpec`] is not: code that connects must know every kind of server.
//!
//! # Feature flags
//!
//! | feature | default | what |
//! | --- | --- | --- |
//! | `testing` | off | fault injection in the server (`server::Fault`, `ServerBuilder::fault`, `Server::inject`) for delivery tests; without it the server carries no fault rules |
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod auth;
mod client;
mod ehlo;
mod error;
mod fingerprint;
mod reply;
mod spec;
mod timeouts;
mod tls;

pub mod direct;
pub mod dot;
pub mod mta_sts;
pub mod mx;
mod probe;
pub mod program;
pub mod server;

pub use auth::{AuthEncodingError, Mechanism, cram_md5_response, login_response, plain_response};
pub use client::{
    AsyncStream, BoxedStream, ClientConfig, Envelope, RcptOutcome, RecipientOutcome,
    RecipientReport, SendReport, SmtpClient,
};
pub use ehlo::Capabilities;
pub use error::ClientError;
pub use fingerprint::{Fingerprint, FingerprintError};
pub use reply::{
    EnhancedCode, MAX_REPLY_BYTES, MAX_REPLY_LINES, Reply, ReplyClass, ReplyError, parse_reply,
};
pub use spec::{
    Credentials, ProgramSpec, SMTP_PORT, SMTPS_PORT, Security, ServerSpec, SmtpSpec, SpecError,
    redact,
};
pub use timeouts::{Timeouts, defaults as timeout_defaults};
pub use tls::{
    CertificateCheck, FingerprintMismatch, Protection, TlsConfig, TlsConfigError, server_name,
};
