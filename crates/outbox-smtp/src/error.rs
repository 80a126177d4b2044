//! The client's errors: typed, with structured fields, and classed transient (try again later)
//! or permanent (do not repeat unchanged).

use std::time::Duration;

use crate::auth::{AuthEncodingError, Mechanism};
use crate::fingerprint::Fingerprint;
use crate::reply::{Reply, ReplyError};
use crate::tls::TlsConfigError;

/// Everything that can go wrong in an SMTP client session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server URL given to [`crate::SmtpClient::connect`] does not parse.
    #[error("invalid SMTP server URL: {0}")]
    Url(#[from] crate::spec::SpecError),
    /// The host name did not resolve.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// TCP connect failed: refused, unreachable, reset.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// `host:port` or the socket address tried.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A step of the session took longer than its timeout.
    #[error("timeout after {} waiting for the reply to {command}", humantime::format_duration(*after))]
    Timeout {
        /// The command (or `connect`, `greeting`, `data block`).
        command: String,
        /// The limit that ran out.
        after: Duration,
    },
    /// The TLS handshake failed (untrusted or invalid certificate, protocol mismatch).
    #[error("TLS handshake with {host} failed: {source}")]
    Tls {
        /// The server name verified.
        host: String,
        /// The handshake error.
        source: std::io::Error,
    },
    /// The server's certificate is not the one the server spec pins (`?tls_fingerprint=`).
    #[error(
        "TLS certificate of {host} does not match the pinned tls_fingerprint: \
         the server presented {actual}, the server spec pins {expected}"
    )]
    FingerprintMismatch {
        /// The server.
        host: String,
        /// The pinned fingerprint.
        expected: Fingerprint,
        /// The fingerprint of the certificate the server presented.
        actual: Fingerprint,
    },
    /// The TLS configuration could not be built (bad CA file, bad server name).
    #[error(transparent)]
    TlsConfig(#[from] TlsConfigError),
    /// STARTTLS was required but the server does not offer it, or refused it.
    #[error("{host} does not offer STARTTLS, and the server spec requires it{}", reply_suffix(.reply))]
    StartTlsUnavailable {
        /// The server.
        host: String,
        /// The server's reply to STARTTLS, when it refused it.
        reply: Option<Reply>,
    },
    /// Credentials are given but the connection is not encrypted.
    #[error(
        "refusing to send credentials to {host} without TLS (it offers no STARTTLS); \
         add ?starttls=off to the server spec to allow it"
    )]
    AuthWithoutTls {
        /// The server.
        host: String,
    },
    /// The server offers no AUTH mechanism this client speaks.
    #[error(
        "{host} offers no usable AUTH mechanism (offered: {offered}; supported: CRAM-MD5, PLAIN, LOGIN)"
    )]
    NoAuthMechanism {
        /// The server.
        host: String,
        /// The EHLO AUTH line's mechanisms this client knows, or `none`.
        offered: String,
    },
    /// The server rejected the credentials (RFC 4954 §6: 535 permanent, 454 transient).
    #[error("AUTH {mechanism} rejected: {reply}")]
    AuthRejected {
        /// The mechanism tried.
        mechanism: Mechanism,
        /// The server's reply.
        reply: Reply,
    },
    /// The server's AUTH challenge could not be answered.
    #[error(transparent)]
    AuthEncoding(#[from] AuthEncodingError),
    /// A command got a reply other than the one the protocol needs.
    #[error("{command} rejected: {reply}")]
    Rejected {
        /// The command, without arguments (`MAIL FROM`, `EHLO`, `greeting`).
        command: String,
        /// The server's reply.
        reply: Reply,
    },
    /// The server's bytes are not an SMTP reply (malformed, oversized).
    #[error("bad reply to {command}: {source}")]
    BadReply {
        /// The command the reply answered.
        command: String,
        /// What is wrong with it.
        source: ReplyError,
    },
    /// The server closed the connection.
    #[error("connection closed by the server during {command}")]
    Closed {
        /// The command in progress (`DATA` when it closed mid-message).
        command: String,
    },
    /// Reading or writing the connection failed.
    #[error("I/O error during {command}: {source}")]
    Io {
        /// The command in progress.
        command: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The message is larger than the server's SIZE limit (RFC 1870 §6).
    #[error("message of {size} bytes exceeds the server's SIZE limit of {limit} bytes")]
    MessageTooBig {
        /// The message size.
        size: u64,
        /// The server's limit.
        limit: u64,
    },
    /// Addresses need SMTPUTF8 (RFC 6531) and the server does not offer it.
    #[error("address {address:?} needs SMTPUTF8, which the server does not offer")]
    Utf8NotSupported {
        /// The non-ASCII address.
        address: String,
    },
    /// An address or command with characters that cannot go on the wire (CR, LF, `<`, `>`).
    #[error("invalid {what}: {value:?}")]
    InvalidInput {
        /// What was given (`sender address`, `recipient address`, `command`).
        what: &'static str,
        /// The value, as given.
        value: String,
    },
    /// `send` was called without recipients.
    #[error("no recipients given")]
    NoRecipients,
}

fn reply_suffix(reply: &Option<Reply>) -> String {
    match reply {
        Some(reply) => format!(" (STARTTLS answered {reply})"),
        None => String::new(),
    }
}

impl ClientError {
    /// Whether trying again later may succeed: network trouble, timeouts, TLS handshakes,
    /// 4xx replies. The engine defers on these.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Resolve { .. }
            | ClientError::Connect { .. }
            | ClientError::Timeout { .. }
            | ClientError::Tls { .. }
            | ClientError::FingerprintMismatch { .. }
            | ClientError::StartTlsUnavailable { .. }
            | ClientError::BadReply { .. }
            | ClientError::Closed { .. }
            | ClientError::Io { .. } => true,
            ClientError::Rejected { reply, .. } | ClientError::AuthRejected { reply, .. } => {
                reply.is_transient()
            }
            ClientError::TlsConfig(_)
            | ClientError::AuthWithoutTls { .. }
            | ClientError::NoAuthMechanism { .. }
            | ClientError::AuthEncoding(_)
            | ClientError::MessageTooBig { .. }
            | ClientError::Utf8NotSupported { .. }
            | ClientError::InvalidInput { .. }
            | ClientError::NoRecipients
            | ClientError::Url(_) => false,
        }
    }

    /// The opposite of [`ClientError::is_transient`]: repeating the same thing will fail again.
    pub fn is_permanent(&self) -> bool {
        !self.is_transient()
    }

    /// The server's reply behind this error, when there is one.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            ClientError::Rejected { reply, .. } | ClientError::AuthRejected { reply, .. } => {
                Some(reply)
            }
            ClientError::StartTlsUnavailable { reply, .. } => reply.as_ref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_the_reply_code() {
        let rejected = |code| ClientError::Rejected {
            command: "MAIL FROM".into(),
            reply: Reply::new(code, ["no"]),
        };
        assert!(rejected(451).is_transient());
        assert!(rejected(550).is_permanent());
        let auth = |code| ClientError::AuthRejected {
            mechanism: Mechanism::Plain,
            reply: Reply::new(code, ["5.7.8 bad"]),
        };
        assert!(auth(535).is_permanent());
        assert!(auth(454).is_transient());
        assert!(
            ClientError::Timeout {
                command: "DATA".into(),
                after: Duration::from_secs(180),
            }
            .is_transient()
        );
        assert!(ClientError::NoRecipients.is_permanent());
    }

    #[test]
    fn timeout_message_names_command_and_limit() {
        let err = ClientError::Timeout {
            command: "RCPT TO".into(),
            after: Duration::from_secs(300),
        };
        assert_eq!(
            err.to_string(),
            "timeout after 5m waiting for the reply to RCPT TO"
        );
    }
}
