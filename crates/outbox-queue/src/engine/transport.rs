//! What the engine needs from the network, as two small traits: a [`Transport`] opens a
//! [`Connection`] for a [`Route`], and a connection carries SMTP transactions. The real
//! implementation ([`super::SmtpTransport`]) speaks SMTP through `outbox-smtp`; tests may
//! substitute their own.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::{RouteFilter, RouteKey};

/// A boxed future, so the traits stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where one connection goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Route {
    /// A message's own relay (a server spec).
    Relay(String),
    /// The configured relay, carrying every recipient without a per-message relay.
    ConfiguredRelay,
    /// The MX hosts of one domain.
    Mx(String),
}

impl Route {
    /// The connection a stored route key goes over, given whether a relay is configured.
    pub fn for_key(key: &RouteKey, relay_configured: bool) -> Route {
        match key {
            RouteKey::Relay(spec) => Route::Relay(spec.clone()),
            RouteKey::Mx(_) if relay_configured => Route::ConfiguredRelay,
            RouteKey::Mx(domain) => Route::Mx(domain.clone()),
        }
    }

    /// Which queued recipients a connection on this route may carry.
    pub fn filter(&self) -> RouteFilter {
        match self {
            Route::Relay(spec) => RouteFilter::Key(RouteKey::Relay(spec.clone())),
            Route::ConfiguredRelay => RouteFilter::AnyMx,
            Route::Mx(domain) => RouteFilter::Key(RouteKey::Mx(domain.clone())),
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Relay(spec) => write!(f, "relay {}", redact(spec)),
            Route::ConfiguredRelay => f.write_str("the configured relay"),
            Route::Mx(domain) => write!(f, "MX of {domain}"),
        }
    }
}

/// A URL or server spec with any password (in the user information or a `?password=`
/// parameter) replaced by `***`, for logs: the one redaction of `outbox_smtp`.
pub use outbox_smtp::redact;

/// A server's reply, reduced to what the queue stores: the code and the full text
/// (starting with the code, lines joined by spaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyText {
    /// The three-digit code.
    pub code: u16,
    /// `"250 2.0.0 Ok: queued as X"`.
    pub text: String,
}

/// The result of one transaction: a reply per recipient (RCPT TO), and the reply to the
/// end of data, when DATA was sent (it is not when every recipient was refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionReport {
    /// One reply per recipient, in the order given.
    pub recipients: Vec<ReplyText>,
    /// The reply to end-of-data; `None` when no recipient was accepted.
    pub data: Option<ReplyText>,
}

/// A failure that is not a reply to one recipient: the connection, TLS, DNS, a timeout,
/// a refused MAIL FROM, a program's exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportError {
    /// What happened, starting with the reply code when there was one.
    pub message: String,
    /// True when retrying cannot help (a null MX, a 5xx to MAIL FROM, a rejected login).
    pub permanent: bool,
    /// True when the connection cannot carry another transaction.
    pub connection_lost: bool,
    /// Where in the exchange it happened; decides what it means for the recipients
    /// ([`policy::transaction_outcomes`](super::policy::transaction_outcomes)).
    pub stage: ErrorStage,
    /// The server's reply behind the failure, when there was one (a `421` greeting, a
    /// refused MAIL FROM): a reply that says "slow down" suspends the destination.
    pub reply: Option<ReplyText>,
}

/// Where a [`TransportError`] happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorStage {
    /// Our own configuration: a CA file that cannot be read, a relay spec that does not
    /// parse, credentials that would go out in plaintext. Nothing reached a server.
    Local,
    /// Before any transaction: resolving, connecting, greeting, EHLO, TLS, AUTH. Says
    /// nothing about the recipients, except DNS answers about their domain
    /// ([`ErrorStage::Destination`]).
    Connect,
    /// The recipients' destination itself: their domain does not exist or publishes a null
    /// MX (RFC 7505), or the message's route may not be used (a program relay that is not
    /// allowed).
    Destination,
    /// Inside a transaction, before the whole message was sent: nothing was delivered.
    Transaction,
    /// After the final dot was sent, before its reply arrived: the server may or may not
    /// have taken the message (the outcome `unknown`).
    AfterData,
}

impl TransportError {
    /// A failure at `stage`.
    pub fn new(stage: ErrorStage, message: impl Into<String>, permanent: bool) -> Self {
        TransportError {
            message: message.into(),
            permanent,
            connection_lost: true,
            stage,
            reply: None,
        }
    }

    /// The same error, carrying the server's reply behind it.
    pub fn with_reply(mut self, reply: Option<ReplyText>) -> Self {
        self.reply = reply;
        self
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Opens connections.
pub trait Transport: Send + Sync + 'static {
    /// The MX host names a route reaches, for grouping routes into destinations
    /// ([`super::shaping`]): domains with the same hosts share one budget. `None` when the
    /// route is not an MX route or its hosts cannot be found now; the default.
    fn mx_hosts<'a>(&'a self, route: &'a Route) -> BoxFuture<'a, Option<Vec<String>>> {
        let _ = route;
        Box::pin(async { None })
    }

    /// Connects (and greets, starts TLS, authenticates) for this route.
    fn connect<'a>(
        &'a self,
        route: &'a Route,
    ) -> BoxFuture<'a, Result<Box<dyn Connection>, TransportError>>;
}

/// One open connection; transactions on it run one after another.
pub trait Connection: Send {
    /// The host this connection reached (`mx1.example.com:25`), for the attempts log.
    fn host(&self) -> String;

    /// One transaction: MAIL FROM, a RCPT TO per recipient, DATA. A refused recipient
    /// does not abort the others.
    fn send<'a>(
        &'a mut self,
        from: &'a str,
        recipients: &'a [&'a str],
        data: &'a [u8],
    ) -> BoxFuture<'a, Result<TransactionReport, TransportError>>;

    /// Says goodbye (QUIT) and closes.
    fn close(self: Box<Self>) -> BoxFuture<'static, ()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_follow_the_configured_relay() {
        let mx = RouteKey::Mx("example.com".into());
        assert_eq!(Route::for_key(&mx, false), Route::Mx("example.com".into()));
        assert_eq!(Route::for_key(&mx, true), Route::ConfiguredRelay);
        let own = RouteKey::Relay("smtp://relay:2525".into());
        assert_eq!(
            Route::for_key(&own, true),
            Route::Relay("smtp://relay:2525".into())
        );
        assert_eq!(Route::ConfiguredRelay.filter(), RouteFilter::AnyMx);
    }

    #[test]
    fn passwords_stay_out_of_route_names() {
        let route = Route::Relay("smtp://app:s3cret@relay.example:587".into());
        let shown = route.to_string();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("app:***@relay.example:587"), "{shown}");
    }
}
