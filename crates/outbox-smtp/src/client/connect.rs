//! Opening a real connection: resolve, TCP connect with a timeout and TCP_NODELAY, implicit
//! TLS or STARTTLS as the spec says, greeting, EHLO, AUTH.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{ClientConfig, SmtpClient};
use crate::error::ClientError;
use crate::spec::{Credentials, Security, SmtpSpec};
use crate::timeouts::Timeouts;
use crate::tls::CertificateCheck;

/// A stream the client can run over: anything readable, writable and sendable.
pub trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncStream for T {}

/// The stream type of a connected client, plain or TLS: one type whatever the route took.
pub type BoxedStream = Box<dyn AsyncStream>;

impl SmtpClient<BoxedStream> {
    /// Connects to the server `url` names (`smtp://user:pw@relay.example.com:587?starttls=required`,
    /// `smtps://relay:465`, `relay.example.com`; the forms of [`crate::ServerSpec::parse`]) and
    /// opens the session, with the default [`ClientConfig`] (EHLO name `localhost`, the RFC 5321
    /// §4.5.3.2 timeouts, the system's and webpki's trust anchors). [`SmtpClient::connect_with`]
    /// takes a parsed spec and a config of your own.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), outbox_smtp::ClientError> {
    /// use outbox_smtp::{Envelope, SmtpClient};
    ///
    /// let mut client = SmtpClient::connect("smtp://127.0.0.1:2525?starttls=off").await?;
    /// let envelope = Envelope::new("me@example.org", ["you@example.net"]);
    /// let report = client.send(&envelope, b"Subject: hi\r\n\r\nHello\r\n").await?;
    /// assert!(report.all_sent());
    /// client.quit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        let spec = SmtpSpec::parse(url)?;
        SmtpClient::connect_with(&spec, &ClientConfig::default()).await
    }

    /// Connects to the server a spec names and opens the session: TCP (each resolved address
    /// in turn, each within the connect timeout), implicit TLS for `smtps://`, the greeting,
    /// EHLO, STARTTLS as the spec's [`Security`] says, then AUTH when the spec has
    /// credentials. The spec's `timeout=` replaces every per-command timeout. The server's
    /// certificate is verified, or compared with the spec's `tls_fingerprint` (which makes
    /// STARTTLS required).
    pub async fn connect_with(spec: &SmtpSpec, config: &ClientConfig) -> Result<Self, ClientError> {
        let config = config_for(spec, config);
        let target = format!("{}:{}", display_host(&spec.host), spec.port);
        let limit = config.timeouts.connect;
        let addrs: Vec<SocketAddr> = match tokio::time::timeout(
            limit,
            tokio::net::lookup_host((spec.host.as_str(), spec.port)),
        )
        .await
        {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(source)) => {
                return Err(ClientError::Resolve {
                    host: spec.host.clone(),
                    source,
                });
            }
            Err(_) => {
                return Err(ClientError::Timeout {
                    command: format!("resolving {}", spec.host),
                    after: limit,
                });
            }
        };
        let mut last_error = None;
        for addr in addrs {
            match tcp_connect(addr, &target, &config).await {
                Ok(tcp) => {
                    return open(
                        tcp,
                        &spec.host,
                        spec.security,
                        spec.tls_fingerprint
                            .map_or(CertificateCheck::Verified, CertificateCheck::Pinned),
                        spec.credentials.as_ref(),
                        config,
                    )
                    .await;
                }
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| ClientError::Resolve {
            host: spec.host.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
        }))
    }

    /// Connects to one socket address and opens the session, verifying TLS certificates for
    /// `tls_name` — for MX delivery, where the host name comes from DNS and the address was
    /// chosen by the caller (MTA-STS `enforce`: [`Security::RequiredStartTls`]).
    pub async fn connect_addr(
        addr: SocketAddr,
        tls_name: &str,
        security: Security,
        credentials: Option<&Credentials>,
        config: &ClientConfig,
    ) -> Result<Self, ClientError> {
        Self::connect_addr_checked(
            addr,
            tls_name,
            security,
            CertificateCheck::Verified,
            credentials,
            config,
        )
        .await
    }

    /// [`SmtpClient::connect_addr`], checking the server's certificate as `check` says
    /// instead of always verifying it.
    pub async fn connect_addr_checked(
        addr: SocketAddr,
        tls_name: &str,
        security: Security,
        check: CertificateCheck,
        credentials: Option<&Credentials>,
        config: &ClientConfig,
    ) -> Result<Self, ClientError> {
        let tcp = tcp_connect(addr, &addr.to_string(), config).await?;
        open(tcp, tls_name, security, check, credentials, config.clone()).await
    }
}

fn config_for(spec: &SmtpSpec, config: &ClientConfig) -> ClientConfig {
    let mut config = config.clone();
    if let Some(limit) = spec.timeout {
        config.timeouts = Timeouts::uniform(limit);
    }
    config
}

fn display_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// TCP connect within the connect timeout, with TCP_NODELAY; `target` names the server in
/// errors.
pub(crate) async fn tcp_connect(
    addr: SocketAddr,
    target: &str,
    config: &ClientConfig,
) -> Result<TcpStream, ClientError> {
    let limit = config.timeouts.connect;
    let tcp = match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(source)) => {
            return Err(ClientError::Connect {
                addr: target.to_string(),
                source,
            });
        }
        Err(_) => {
            return Err(ClientError::Timeout {
                command: format!("connect to {target}"),
                after: limit,
            });
        }
    };
    // Without it, Nagle's algorithm holds each small command back waiting for an ACK:
    // pipelined sessions crawl (lettre drops from thousands of messages a second to ~100).
    tcp.set_nodelay(true)
        .map_err(|source| ClientError::Connect {
            addr: target.to_string(),
            source,
        })?;
    Ok(tcp)
}

/// Greeting, EHLO, TLS and AUTH on a fresh TCP connection.
async fn open(
    tcp: TcpStream,
    host: &str,
    security: Security,
    check: CertificateCheck,
    credentials: Option<&Credentials>,
    config: ClientConfig,
) -> Result<SmtpClient<BoxedStream>, ClientError> {
    let connect_limit = config.timeouts.connect;
    let client = SmtpClient::with_stream(tcp, host, config).with_certificate_check(check);
    let mut client: SmtpClient<BoxedStream> = match security {
        Security::ImplicitTls => {
            let mut client = client.handshake(connect_limit, "connect").await?;
            client.read_greeting().await?;
            client.ehlo().await?;
            client.map_stream(|s| Box::new(s) as BoxedStream)
        }
        Security::NoTls => {
            let mut client = client;
            client.read_greeting().await?;
            client.ehlo().await?;
            client.map_stream(|s| Box::new(s) as BoxedStream)
        }
        Security::OpportunisticStartTls | Security::RequiredStartTls => {
            let mut client = client;
            client.read_greeting().await?;
            client.ehlo().await?;
            if client.capabilities().starttls {
                client
                    .starttls()
                    .await?
                    .map_stream(|s| Box::new(s) as BoxedStream)
            } else if security == Security::RequiredStartTls
                || matches!(check, CertificateCheck::Pinned(_))
            {
                return Err(ClientError::StartTlsUnavailable {
                    host: host.to_string(),
                    reply: None,
                });
            } else {
                client.map_stream(|s| Box::new(s) as BoxedStream)
            }
        }
    };
    if let Some(credentials) = credentials {
        client
            .authenticate(credentials, security == Security::NoTls)
            .await?;
    }
    Ok(client)
}
