//! Server specifications: one parser for every way a user names where mail goes
//! (DESIGN §5; Allegro's `mail-server`, Lasso's `-host -port -username -password -ssl
//! -timeout`).
//!
//! ```text
//! host                     host:port               [v6addr]:port
//! smtp://[user[:pass]@]host[:port][?starttls=required|opportunistic|off][&timeout=30s]
//! smtps://[user[:pass]@]host[:port][?timeout=30s]      implicit TLS, port 465 by default
//! program:/usr/sbin/sendmail -t                        a local program, no shell
//! ```
//!
//! Default port 25. STARTTLS is opportunistic unless `?starttls=` says otherwise. User name
//! and password are percent-decoded. A password never appears in `Debug` or `Display` output.
//!
//! `?tls_fingerprint=sha256:HEX` (64 hex digits, with or without colons, any case; what
//! `openssl x509 -noout -fingerprint -sha256` prints) pins the server's certificate: its
//! SHA-256 must be exactly that, and its chain and names are not checked — for a relay with
//! a self-signed certificate. A pin needs TLS: STARTTLS becomes required, and
//! `starttls=off` with a pin is an error.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

use crate::fingerprint::Fingerprint;

/// The well-known SMTP port.
pub const SMTP_PORT: u16 = 25;
/// The submissions port with implicit TLS (RFC 8314 §7.3).
pub const SMTPS_PORT: u16 = 465;

/// Where a message goes: an SMTP server or a local program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerSpec {
    /// An SMTP server.
    Smtp(SmtpSpec),
    /// A local program that reads the message on its standard input.
    Program(ProgramSpec),
}

/// How a connection is protected (RFC 3207 STARTTLS, RFC 8314 implicit TLS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Security {
    /// Never TLS (`?starttls=off`); credentials may then be sent in clear, because the user
    /// asked for exactly that.
    NoTls,
    /// STARTTLS when the server offers it, plaintext otherwise (the default, as in Postfix's
    /// `smtp_tls_security_level = may`). Credentials are never sent without TLS.
    OpportunisticStartTls,
    /// STARTTLS or fail (`?starttls=required`).
    RequiredStartTls,
    /// TLS from the first byte (`smtps://`).
    ImplicitTls,
}

/// A user name and password for SMTP AUTH. `Debug` prints the password as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name (authentication identity).
    pub username: String,
    /// The password; never logged.
    pub password: String,
}

impl Credentials {
    /// Credentials from a user name and password.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// An SMTP server to connect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpSpec {
    /// Host name or IP address (an IPv6 address without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// TLS policy.
    pub security: Security,
    /// Credentials for AUTH, if any.
    pub credentials: Option<Credentials>,
    /// A timeout that overrides every per-command timeout (Lasso's `-timeout`).
    pub timeout: Option<Duration>,
    /// The SHA-256 the server's certificate must have (`?tls_fingerprint=`); with it, TLS
    /// is required and the certificate's chain and names are not checked.
    pub tls_fingerprint: Option<Fingerprint>,
}

impl SmtpSpec {
    /// A spec for `host:port` with opportunistic STARTTLS and no credentials.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        SmtpSpec {
            host: host.into(),
            port,
            security: Security::OpportunisticStartTls,
            credentials: None,
            timeout: None,
            tls_fingerprint: None,
        }
    }
}

/// A local program and its arguments, run without a shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramSpec {
    /// The program (a path, or a name looked up in `PATH`).
    pub program: String,
    /// Its arguments, split shell-words style.
    pub args: Vec<String>,
}

/// Why a server spec was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The spec is empty.
    #[error("server spec is empty")]
    Empty,
    /// A `scheme:` other than smtp, smtps and program.
    #[error(
        "unknown server spec scheme {scheme:?} (expected smtp://, smtps://, program: or host[:port])"
    )]
    UnknownScheme {
        /// The scheme as written.
        scheme: String,
    },
    /// The host part is missing or has characters a host name cannot have.
    #[error("invalid host {host:?} in server spec")]
    InvalidHost {
        /// The host as written.
        host: String,
    },
    /// The port is not a number from 1 to 65535.
    #[error("invalid port {port:?} in server spec (expected 1 to 65535)")]
    InvalidPort {
        /// The port as written.
        port: String,
    },
    /// A query parameter this parser does not know.
    #[error(
        "unknown parameter {name:?} in server spec (known: starttls, timeout, tls_fingerprint)"
    )]
    UnknownParameter {
        /// The parameter name.
        name: String,
    },
    /// A known parameter with a value it cannot take.
    #[error(
        "invalid value {value:?} for {name} in server spec{}",
        expected_hint(name)
    )]
    InvalidParameter {
        /// The parameter name.
        name: String,
        /// The value as written.
        value: String,
    },
    /// `smtps://` with `?starttls=`: implicit TLS has no STARTTLS.
    #[error("smtps:// uses implicit TLS; it takes no starttls parameter")]
    StartTlsWithImplicitTls,
    /// `?tls_fingerprint=` with `?starttls=off`: without TLS there is no certificate to pin.
    #[error("tls_fingerprint pins the TLS certificate, and starttls=off turns TLS off")]
    FingerprintWithoutTls,
    /// A user name or password with a bad `%` escape or not UTF-8 once decoded.
    #[error("invalid percent-encoding in the {part} of the server spec")]
    InvalidPercentEncoding {
        /// `user name` or `password`.
        part: &'static str,
    },
    /// A URL path (`smtp://host/path`) or fragment, which means nothing here.
    #[error("unexpected {what} in server spec: {text:?}")]
    Unexpected {
        /// What was found (`path`, `fragment`).
        what: &'static str,
        /// The text found.
        text: String,
    },
    /// `program:` with no program, or quotes that do not close.
    #[error("invalid program in server spec: {reason}")]
    InvalidProgram {
        /// What is wrong.
        reason: String,
    },
    /// `user:pass@host` without a scheme: credentials only go in an `smtp://` or `smtps://`
    /// URL. The text is not repeated, since it holds a password.
    #[error("a user name and password need the smtp:// or smtps:// form (smtp://user:pass@host)")]
    CredentialsWithoutScheme,
    /// A `program:` spec where an SMTP server is needed ([`SmtpSpec::parse`]).
    #[error(
        "a program: spec names a program, not an SMTP server (expected smtp://, smtps:// or host:port)"
    )]
    NotSmtp,
}

fn expected_hint(name: &str) -> &'static str {
    match name {
        "starttls" => " (expected required, opportunistic or off)",
        "timeout" => " (expected seconds or a duration like 30s, 2m)",
        "tls_fingerprint" => {
            " (expected sha256: and 64 hex digits, colons between pairs allowed, \
             as openssl x509 -noout -fingerprint -sha256 prints it)"
        }
        _ => "",
    }
}

impl SmtpSpec {
    /// Parses an SMTP server spec (`smtp://`, `smtps://`, `host[:port]`); a `program:` spec
    /// is [`SpecError::NotSmtp`]. See [`ServerSpec::parse`] for the forms.
    pub fn parse(text: &str) -> Result<SmtpSpec, SpecError> {
        match ServerSpec::parse(text)? {
            ServerSpec::Smtp(spec) => Ok(spec),
            ServerSpec::Program(_) => Err(SpecError::NotSmtp),
        }
    }
}

impl std::str::FromStr for SmtpSpec {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<SmtpSpec, SpecError> {
        SmtpSpec::parse(text)
    }
}

impl ServerSpec {
    /// Parses a server spec; see the module documentation for the forms.
    pub fn parse(text: &str) -> Result<ServerSpec, SpecError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SpecError::Empty);
        }
        if let Some(command) = strip_prefix_ignore_case(text, "program:") {
            return parse_program(command).map(ServerSpec::Program);
        }
        if let Some(rest) = strip_prefix_ignore_case(text, "smtp://") {
            return parse_url(rest, false).map(ServerSpec::Smtp);
        }
        if let Some(rest) = strip_prefix_ignore_case(text, "smtps://") {
            return parse_url(rest, true).map(ServerSpec::Smtp);
        }
        if let Some((scheme, _)) = text.split_once(':')
            && text[scheme.len()..].starts_with("://")
        {
            return Err(SpecError::UnknownScheme {
                scheme: scheme.to_string(),
            });
        }
        if text.contains('@') {
            return Err(SpecError::CredentialsWithoutScheme);
        }
        let (host, port) = parse_host_port(text, SMTP_PORT)?;
        Ok(ServerSpec::Smtp(SmtpSpec::new(host, port)))
    }
}

/// A server spec or URL as written, with the password replaced by `***`
/// (`smtp://user:***@host`), for error messages about text that did not parse. Everything
/// up to the last `@` after `://` is user information, as [`ServerSpec::parse`] reads it;
/// a bare `user:pass@host` loses everything before the `@`.
pub fn redact(text: &str) -> String {
    redact_query_password(&redact_userinfo(text))
}

fn redact_userinfo(text: &str) -> String {
    let Some(at) = text.rfind('@') else {
        return text.to_string();
    };
    match text.find("://") {
        Some(scheme_end) if scheme_end + 3 <= at => {
            let userinfo = &text[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &text[..scheme_end + 3], &text[at..]),
                None => text.to_string(),
            }
        }
        _ if text
            .get(..8)
            .is_some_and(|p| p.eq_ignore_ascii_case("program:")) =>
        {
            text.to_string()
        }
        _ => format!("***{}", &text[at..]),
    }
}

/// `?password=...` (libpq URLs take one there too) becomes `?password=***`.
fn redact_query_password(text: &str) -> String {
    let Some(query_start) = text.find('?') else {
        return text.to_string();
    };
    let (head, query) = text.split_at(query_start + 1);
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if name.eq_ignore_ascii_case("password") => format!("{name}=***"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{head}{}", pairs.join("&"))
}

impl FromStr for ServerSpec {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ServerSpec::parse(text)
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

fn parse_program(command: &str) -> Result<ProgramSpec, SpecError> {
    let words = shell_words::split(command).map_err(|err| SpecError::InvalidProgram {
        reason: err.to_string(),
    })?;
    let mut words = words.into_iter();
    let program = words.next().ok_or_else(|| SpecError::InvalidProgram {
        reason: "no program named after program:".to_string(),
    })?;
    Ok(ProgramSpec {
        program,
        args: words.collect(),
    })
}

fn parse_url(rest: &str, implicit_tls: bool) -> Result<SmtpSpec, SpecError> {
    // The userinfo ends at the last '@' of the whole spec, before the query and fragment
    // are split off: a password may contain a raw '@', '?', '#' or '/', and no error below
    // may quote any part of it. (No host, port or parameter value contains an '@'.)
    let (userinfo, rest) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    if let Some((_, fragment)) = rest.split_once('#') {
        return Err(SpecError::Unexpected {
            what: "fragment",
            text: fragment.to_string(),
        });
    }
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let authority = match before_query.split_once('/') {
        Some((authority, "")) => authority,
        Some((_, path)) => {
            return Err(SpecError::Unexpected {
                what: "path",
                text: format!("/{path}"),
            });
        }
        None => before_query,
    };
    let default_port = if implicit_tls { SMTPS_PORT } else { SMTP_PORT };
    let (host, port) = parse_host_port(authority, default_port)?;
    let mut spec = SmtpSpec::new(host, port);
    spec.security = if implicit_tls {
        Security::ImplicitTls
    } else {
        Security::OpportunisticStartTls
    };
    if let Some(userinfo) = userinfo {
        let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        spec.credentials = Some(Credentials {
            username: percent_decode(user, "user name")?,
            password: percent_decode(pass, "password")?,
        });
    }
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let invalid = || SpecError::InvalidParameter {
            name: name.to_string(),
            value: value.to_string(),
        };
        match name.to_ascii_lowercase().as_str() {
            "starttls" => {
                if implicit_tls {
                    return Err(SpecError::StartTlsWithImplicitTls);
                }
                spec.security = match value.to_ascii_lowercase().as_str() {
                    "required" => Security::RequiredStartTls,
                    "opportunistic" => Security::OpportunisticStartTls,
                    "off" => Security::NoTls,
                    _ => return Err(invalid()),
                };
            }
            "timeout" => spec.timeout = Some(parse_timeout(value).ok_or_else(invalid)?),
            "tls_fingerprint" => {
                spec.tls_fingerprint = Some(Fingerprint::parse(value).map_err(|_| invalid())?);
            }
            _ => {
                return Err(SpecError::UnknownParameter {
                    name: name.to_string(),
                });
            }
        }
    }
    if spec.tls_fingerprint.is_some() && spec.security == Security::NoTls {
        return Err(SpecError::FingerprintWithoutTls);
    }
    Ok(spec)
}

/// Seconds (`30`) or a humantime duration (`30s`, `2m`); zero is refused.
fn parse_timeout(value: &str) -> Option<Duration> {
    let duration = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(value).ok()?,
    };
    (!duration.is_zero()).then_some(duration)
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address.
fn parse_host_port(text: &str, default_port: u16) -> Result<(String, u16), SpecError> {
    let invalid_host = || SpecError::InvalidHost {
        host: text.to_string(),
    };
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or_else(invalid_host)?;
        let addr: Ipv6Addr = inside.parse().map_err(|_| invalid_host())?;
        let port = match after {
            "" => default_port,
            _ => parse_port(after.strip_prefix(':').ok_or_else(invalid_host)?)?,
        };
        return Ok((addr.to_string(), port));
    }
    if text.matches(':').count() > 1 {
        // Only a bare IPv6 address has several colons; it cannot carry a port.
        let addr: Ipv6Addr = text.parse().map_err(|_| invalid_host())?;
        return Ok((addr.to_string(), default_port));
    }
    let (host, port) = match text.split_once(':') {
        Some((host, port)) => (host, parse_port(port)?),
        None => (text, default_port),
    };
    if !is_valid_host(host) {
        return Err(SpecError::InvalidHost {
            host: host.to_string(),
        });
    }
    Ok((host.to_string(), port))
}

fn parse_port(text: &str) -> Result<u16, SpecError> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
        _ => Err(SpecError::InvalidPort {
            port: text.to_string(),
        }),
    }
}

/// A host name (RFC 1123 labels; `_` tolerated, non-ASCII letters allowed for IDNs) or an
/// IPv4 address.
fn is_valid_host(host: &str) -> bool {
    if host.parse::<IpAddr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').enumerate().all(|(i, label)| {
            // One trailing dot (a fully qualified name) is fine.
            (label.is_empty() && i > 0 && host.ends_with('.') && host.len() > 1)
                || (!label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '-' || c == '_'))
        })
        && !host.ends_with("..")
}

fn percent_decode(text: &str, part: &'static str) -> Result<String, SpecError> {
    let error = || SpecError::InvalidPercentEncoding { part };
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).ok_or_else(error)?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(error());
            }
            out.push(u8::from_str_radix(hex, 16).map_err(|_| error())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| error())
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The spec in its canonical form with the password shown as `***` — safe for logs and
/// error messages. (It parses back to the same spec except for the password.)
impl fmt::Display for ServerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerSpec::Smtp(spec) => spec.fmt(f),
            ServerSpec::Program(spec) => spec.fmt(f),
        }
    }
}

impl fmt::Display for SmtpSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.security {
            Security::ImplicitTls => "smtps",
            _ => "smtp",
        };
        write!(f, "{scheme}://")?;
        if let Some(credentials) = &self.credentials {
            write!(f, "{}:***@", percent_encode(&credentials.username))?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)?;
        } else {
            write!(f, "{}:{}", self.host, self.port)?;
        }
        let mut params = Vec::new();
        match self.security {
            Security::NoTls => params.push("starttls=off".to_string()),
            Security::RequiredStartTls => params.push("starttls=required".to_string()),
            Security::OpportunisticStartTls | Security::ImplicitTls => {}
        }
        if let Some(timeout) = self.timeout {
            params.push(format!("timeout={}", humantime::format_duration(timeout)));
        }
        if let Some(pin) = &self.tls_fingerprint {
            params.push(format!("tls_fingerprint={pin}"));
        }
        if !params.is_empty() {
            write!(f, "?{}", params.join("&"))?;
        }
        Ok(())
    }
}

impl fmt::Display for ProgramSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words: Vec<&str> = std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect();
        write!(f, "program:{}", shell_words::join(words))
    }
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
