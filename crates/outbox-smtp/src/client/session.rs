//! Opening a session: greeting, EHLO with HELO fallback, STARTTLS, AUTH.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::SmtpClient;
use crate::auth::{self, Mechanism};
use crate::ehlo::Capabilities;
use crate::error::ClientError;
use crate::reply::Reply;
use crate::spec::Credentials;
use crate::tls::{Protection, fingerprint_mismatch, server_name};

impl<S: AsyncRead + AsyncWrite + Unpin> SmtpClient<S> {
    /// Reads the server's greeting, which must be 220 (RFC 5321 §4.3.1: a 554 greeting means
    /// "no service here").
    pub async fn read_greeting(&mut self) -> Result<Reply, ClientError> {
        let reply = self
            .read_reply_for("greeting", self.config.timeouts.greeting)
            .await?;
        if reply.code != 220 {
            return Err(ClientError::Rejected {
                command: "greeting".to_string(),
                reply,
            });
        }
        self.greeting = Some(reply.clone());
        Ok(reply)
    }

    /// Sends EHLO and records the capabilities; falls back to HELO when the server does not
    /// know EHLO (RFC 5321 §4.1.4: a 5xx to EHLO from an old server), in which case nothing is
    /// offered. Returns the reply that greeted us.
    pub async fn ehlo(&mut self) -> Result<Reply, ClientError> {
        let timeout = self.config.timeouts.ehlo;
        let line = format!("EHLO {}", self.config.helo_name);
        self.queue_line(&line, "EHLO name")?;
        self.flush("EHLO", timeout).await?;
        let reply = self.read_reply_for("EHLO", timeout).await?;
        if reply.is_success() {
            self.capabilities = Capabilities::from_ehlo(&reply);
            return Ok(reply);
        }
        if !reply.is_permanent() {
            return Err(ClientError::Rejected {
                command: "EHLO".to_string(),
                reply,
            });
        }
        let line = format!("HELO {}", self.config.helo_name);
        self.queue_line(&line, "HELO name")?;
        self.flush("HELO", timeout).await?;
        let reply = self.read_reply_for("HELO", timeout).await?;
        if !reply.is_success() {
            return Err(ClientError::Rejected {
                command: "HELO".to_string(),
                reply,
            });
        }
        self.capabilities = Capabilities::default();
        Ok(reply)
    }

    /// STARTTLS (RFC 3207): asks for TLS, checks the server's certificate as
    /// [`SmtpClient::certificate_check`] says (by default: verified for this client's host
    /// name), and sends EHLO again over TLS, as §4.2 requires (everything learned before
    /// TLS is forgotten). Bytes the server sent after its 220 are dropped unread: they came
    /// before encryption and could be an injection (CVE-2011-0411).
    pub async fn starttls(mut self) -> Result<SmtpClient<TlsStream<S>>, ClientError> {
        let timeout = self.config.timeouts.starttls;
        self.queue_line("STARTTLS", "command")?;
        self.flush("STARTTLS", timeout).await?;
        let reply = self.read_reply_for("STARTTLS", timeout).await?;
        if reply.code != 220 {
            return Err(ClientError::StartTlsUnavailable {
                host: self.host.clone(),
                reply: Some(reply),
            });
        }
        self.read_buf.clear();
        let mut client = self.handshake(timeout, "STARTTLS").await?;
        client.ehlo().await?;
        Ok(client)
    }

    /// Starts TLS after a STARTTLS command sent by hand (e.g. in an interactive session) got
    /// its 220: the handshake only, without the EHLO that [`SmtpClient::starttls`] sends.
    pub async fn tls_handshake(mut self) -> Result<SmtpClient<TlsStream<S>>, ClientError> {
        self.read_buf.clear();
        let timeout = self.config.timeouts.starttls;
        self.handshake(timeout, "STARTTLS").await
    }

    /// Runs the TLS client handshake on the current stream (implicit TLS or after STARTTLS).
    pub(crate) async fn handshake(
        self,
        timeout: std::time::Duration,
        during: &str,
    ) -> Result<SmtpClient<TlsStream<S>>, ClientError> {
        let config = self.config.rustls_config_for(&self.certificate_check)?;
        let name = server_name(&self.host)?;
        let connector = TlsConnector::from(Arc::clone(&config));
        let SmtpClient {
            stream,
            mut read_buf,
            write_buf,
            config,
            host,
            certificate_check,
            greeting,
            ..
        } = self;
        let tls = match tokio::time::timeout(timeout, connector.connect(name, stream)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(source)) => {
                return Err(match fingerprint_mismatch(&source) {
                    Some(mismatch) => ClientError::FingerprintMismatch {
                        host,
                        expected: mismatch.expected,
                        actual: mismatch.actual,
                    },
                    None => ClientError::Tls { host, source },
                });
            }
            Err(_) => {
                return Err(ClientError::Timeout {
                    command: format!("{during} TLS handshake"),
                    after: timeout,
                });
            }
        };
        read_buf.clear();
        Ok(SmtpClient {
            stream: tls,
            read_buf,
            write_buf,
            config,
            capabilities: Capabilities::default(),
            host,
            protection: Protection::after_handshake(&certificate_check),
            certificate_check,
            greeting,
        })
    }

    /// AUTH (RFC 4954) with the strongest mechanism both sides speak (CRAM-MD5, then PLAIN,
    /// then LOGIN). Credentials are only sent over TLS, unless `allow_plaintext` says the
    /// user asked for a connection without it (`?starttls=off`): the Postfix rule of never
    /// sending a password in clear unless told to.
    pub async fn authenticate(
        &mut self,
        credentials: &Credentials,
        allow_plaintext: bool,
    ) -> Result<Mechanism, ClientError> {
        if !self.is_tls() && !allow_plaintext {
            return Err(ClientError::AuthWithoutTls {
                host: self.host.clone(),
            });
        }
        let Some(mechanism) = Mechanism::choose(&self.capabilities.auth) else {
            let offered: Vec<&str> = self.capabilities.auth.iter().map(|m| m.name()).collect();
            return Err(ClientError::NoAuthMechanism {
                host: self.host.clone(),
                offered: if offered.is_empty() {
                    "none".to_string()
                } else {
                    offered.join(" ")
                },
            });
        };
        let Credentials { username, password } = credentials;
        let reply = match mechanism {
            Mechanism::Plain => {
                let line = format!("AUTH PLAIN {}", auth::plain_response(username, password));
                self.auth_step(&line, mechanism).await?
            }
            Mechanism::Login => {
                self.auth_challenge("AUTH LOGIN", mechanism).await?;
                self.auth_challenge(&auth::login_response(username), mechanism)
                    .await?;
                self.auth_step(&auth::login_response(password), mechanism)
                    .await?
            }
            Mechanism::CramMd5 => {
                let challenge = self.auth_challenge("AUTH CRAM-MD5", mechanism).await?;
                let text = challenge.lines.first().map(String::as_str).unwrap_or("");
                let response = auth::cram_md5_response(username, password, text)?;
                self.auth_step(&response, mechanism).await?
            }
        };
        if reply.code != 235 {
            return Err(ClientError::AuthRejected { mechanism, reply });
        }
        Ok(mechanism)
    }

    /// Sends one AUTH line (never logged in clear) and returns the reply.
    async fn auth_step(&mut self, line: &str, mechanism: Mechanism) -> Result<Reply, ClientError> {
        let timeout = self.config.timeouts.auth;
        if line.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err(ClientError::InvalidInput {
                what: "AUTH data",
                value: "***".to_string(),
            });
        }
        tracing::trace!(host = %self.host, "C: AUTH {mechanism} ***");
        self.write_buf.extend_from_slice(line.as_bytes());
        self.write_buf.extend_from_slice(b"\r\n");
        self.flush("AUTH", timeout).await?;
        self.read_reply_for("AUTH", timeout).await
    }

    /// An AUTH step that must be answered by a 334 challenge.
    async fn auth_challenge(
        &mut self,
        line: &str,
        mechanism: Mechanism,
    ) -> Result<Reply, ClientError> {
        let reply = self.auth_step(line, mechanism).await?;
        if reply.code != 334 {
            return Err(ClientError::AuthRejected { mechanism, reply });
        }
        Ok(reply)
    }
}
