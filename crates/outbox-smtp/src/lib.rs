//! The SMTP side of Outbox: an async client, a server (submission listener and test sink),
//! server specifications, MX lookup, MTA-STS policy discovery ([`mta_sts`]) and the
//! sendmail-program transport.
//!
//! This crate knows bytes, not MIME.

// Sans-I/O protocol pieces (client side, reused by the server).
pub mod auth;
pub mod dot;
pub mod ehlo;
pub mod reply;

pub use auth::Mechanism;
pub use ehlo::Capabilities;
pub use reply::{EnhancedCode, Reply, ReplyClass, ReplyError};
pub mod spec;
pub use spec::{Credentials, ProgramSpec, Security, ServerSpec, SmtpSpec, SpecError};
pub mod fingerprint;
pub mod timeouts;
pub mod tls;
pub use fingerprint::{Fingerprint, FingerprintError};
pub use timeouts::Timeouts;
pub use tls::{CertificateCheck, Protection, TlsConfig, TlsConfigError};

// The client and the program transport.
pub mod client;
pub mod error;
pub mod program;
pub use client::{
    BoxedStream, ClientConfig, Delivery, Outcome, RcptOutcome, RecipientReport, SmtpClient,
};
pub use error::ClientError;
pub use program::ProgramError;
pub mod direct;
pub mod mta_sts;
pub mod mx;
pub mod probe;
pub mod server;
/// The throttle on failed credential checks per client address, used by the SMTP listener
/// (failed AUTH) and by the HTTP API of `outbox` (failed tokens and admin logins), so both
/// count the same way: a sliding window per client, IPv6 clients by their /64 (see
/// [`client_key`]), an injectable clock and a bounded table.
pub use server::{FailureThrottle, client_key};
