//! The session's STARTTLS (RFC 3207) and AUTH PLAIN / LOGIN (RFC 4954, RFC 4616) commands.

use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt};

use super::{FaultOutcome, Flow, Io, Session, reply};
use crate::server::auth::{decode_response, parse_plain};
use crate::server::fault::Stage;
use crate::server::lines::{
    Line, MAX_AUTH_LINE, ends_with_crlf, has_bare_cr, read_line, trim_line_end,
};

impl Session<'_> {
    /// STARTTLS (RFC 3207 §4).
    pub(super) async fn starttls<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io<S>,
    ) -> std::io::Result<Flow> {
        if self.shared.tls.is_none() {
            self.send(io, &reply(502, "5.5.1 STARTTLS not offered"))
                .await?;
            return Ok(Flow::Continue);
        }
        if self.tls {
            self.send(io, &reply(503, "5.5.1 TLS already active"))
                .await?;
            return Ok(Flow::Continue);
        }
        if let FaultOutcome::Done(flow) = self.fault(io, Stage::StartTls, None, &[]).await? {
            return Ok(flow);
        }
        // Commands pipelined after STARTTLS were sent in clear and must not be acted on
        // inside TLS (the plaintext command injection of CVE-2011-0411): drop them.
        let buffered = io.buffer().len();
        if buffered > 0 {
            tracing::debug!(peer = %self.peer, buffered, "discarding input pipelined after STARTTLS");
            io.consume(buffered);
        }
        self.send(io, &reply(220, "2.0.0 Ready to start TLS"))
            .await?;
        Ok(Flow::StartTls)
    }

    /// AUTH PLAIN / LOGIN (RFC 4954 §4, RFC 4616).
    pub(super) async fn auth<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io<S>,
        mechanism: &str,
        initial: Option<String>,
    ) -> std::io::Result<Flow> {
        let refusal = if self.shared.authenticator.is_none() {
            Some(reply(502, "5.5.1 AUTH not offered"))
        } else if !self.extended {
            Some(reply(503, "5.5.1 Send EHLO first"))
        } else if self.authenticated.is_some() {
            Some(reply(503, "5.5.1 Already authenticated"))
        } else if self.transaction.is_some() {
            Some(reply(
                503,
                "5.5.1 AUTH not allowed during a mail transaction",
            ))
        } else if !self.auth_offered() {
            Some(reply(
                538,
                "5.7.11 Encryption required for requested authentication mechanism",
            ))
        } else if mechanism != "PLAIN" && mechanism != "LOGIN" {
            Some(reply(504, "5.5.4 Unrecognized authentication type"))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            self.send(io, &refusal).await?;
            return Ok(Flow::Continue);
        }
        // An address blocked by failures on another connection gets no more tries here.
        if let Some(throttle) = &self.shared.auth_failures
            && throttle.blocked(self.peer.ip(), Instant::now()).is_some()
        {
            let text = format!(
                "4.7.0 {} Error: too many failed authentication attempts, try again later",
                self.shared.hostname
            );
            self.send(io, &reply(421, text)).await?;
            return Ok(Flow::Close);
        }
        if let FaultOutcome::Done(flow) = self.fault(io, Stage::Auth, None, &[]).await? {
            return Ok(flow);
        }
        let credentials = if mechanism == "PLAIN" {
            let Some(response) = self.response(io, initial, "").await? else {
                return Ok(Flow::Close);
            };
            response.and_then(|r| {
                let decoded = decode_response(&r).map_err(|e| e.to_string())?;
                let (authzid, user, password) = parse_plain(&decoded).map_err(|e| e.to_string())?;
                Ok((
                    authzid.map(str::to_string),
                    user.to_string(),
                    password.to_string(),
                ))
            })
        } else {
            // "Username:" and "Password:" in base64, as every LOGIN client expects.
            let Some(user) = self.response(io, initial, "VXNlcm5hbWU6").await? else {
                return Ok(Flow::Close);
            };
            match user.and_then(|u| decode_response(&u).map_err(|e| e.to_string())) {
                Err(error) => Err(error),
                Ok(user) => {
                    let Some(password) = self.response(io, None, "UGFzc3dvcmQ6").await? else {
                        return Ok(Flow::Close);
                    };
                    password
                        .and_then(|p| decode_response(&p).map_err(|e| e.to_string()))
                        .map(|password| (None, user, password))
                }
            }
        };
        let answer = match credentials {
            Err(problem) => reply(501, format!("5.5.2 {problem}")),
            Ok((authzid, user, password)) => {
                let authenticator = self.shared.authenticator.as_ref();
                if authenticator
                    .is_some_and(|a| a.authenticate(authzid.as_deref(), &user, &password))
                {
                    self.authenticated = Some(user);
                    reply(235, "2.7.0 Authentication successful")
                } else if self.auth_failed(mechanism) {
                    let text = format!(
                        "4.7.0 {} Error: too many failed authentication attempts",
                        self.shared.hostname
                    );
                    self.send(io, &reply(421, text)).await?;
                    return Ok(Flow::Close);
                } else {
                    reply(535, "5.7.8 Authentication credentials invalid")
                }
            }
        };
        self.send(io, &answer).await?;
        Ok(Flow::Continue)
    }

    /// Counts and logs one failed AUTH (with the client's address, never what it sent);
    /// true when a limit is now reached and the connection must close.
    fn auth_failed(&mut self, mechanism: &str) -> bool {
        self.auth_failures = self.auth_failures.saturating_add(1);
        let peer = self.peer.ip();
        tracing::warn!(client = %peer, mechanism, failures = self.auth_failures, "SMTP AUTH failed");
        let limits = &self.shared.limits;
        let address_blocked = self
            .shared
            .auth_failures
            .as_ref()
            .is_some_and(|throttle| throttle.record(peer, Instant::now()));
        if address_blocked {
            tracing::warn!(client = %peer, "too many failed SMTP AUTH attempts from this address: blocked for a while");
        }
        address_blocked
            || limits
                .max_auth_failures
                .is_some_and(|max| self.auth_failures >= max)
    }

    /// The client's next SASL response: the initial response when given, else a `334`
    /// challenge and the line that answers it. `None` when the connection closed; an inner
    /// `Err` when the client cancelled with `*` or sent an over-long line.
    async fn response<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut Io<S>,
        initial: Option<String>,
        challenge: &str,
    ) -> std::io::Result<Option<Result<String, String>>> {
        if let Some(initial) = initial {
            return Ok(Some(Ok(initial)));
        }
        self.send(io, &reply(334, challenge)).await?;
        io.flush().await?;
        let mut line = Vec::new();
        let read = tokio::time::timeout(
            self.shared.command_timeout,
            read_line(io, &mut line, MAX_AUTH_LINE),
        )
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "AUTH response timed out")
        })??;
        Ok(match read {
            Line::Eof => None,
            Line::TooLong => Some(Err("response too long".to_string())),
            Line::Complete if !ends_with_crlf(&line) || has_bare_cr(&line) => {
                // As in the command loop: a bare LF ends the session (smtpd_forbid_bare_newline),
                // so no reader of this stream can take its next bytes as a command.
                let text = format!("5.5.2 {} Error: bare <LF> received", self.shared.hostname);
                self.send(io, &reply(521, text)).await?;
                None
            }
            Line::Complete => {
                let text = String::from_utf8_lossy(trim_line_end(&line))
                    .trim()
                    .to_string();
                if text == "*" {
                    Some(Err("authentication cancelled".to_string()))
                } else {
                    Some(Ok(text))
                }
            }
        })
    }
}
