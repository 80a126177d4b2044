//! Direct delivery to a recipient domain's mail hosts (RFC 5321 §5.1): hosts in MX order,
//! each host's addresses in order, falling back to the next on a connection failure, a
//! 4xx/5xx greeting or a failed EHLO. [`DirectDelivery::connect`] returns the first session
//! that opens; what the host then answers inside a transaction is the answer. A `421` to
//! MAIL, RCPT or DATA does not send the message on to the next host: Outbox's engine takes
//! it as the destination asking to slow down (a provider's rate limit covers all of its MX
//! hosts) and suspends the destination along its retry schedule (`[[shaping]]`).
//!
//! TLS is opportunistic and unauthenticated (RFC 7435, DESIGN §10): STARTTLS whenever the
//! host offers it, accepting whatever certificate it shows (self-signed, expired, for
//! another name — most MX certificates on port 25 would fail verification), and when
//! STARTTLS fails (refused, the handshake breaks, the connection drops) the same address is
//! tried once more without it, as Postfix does at `smtp_tls_security_level = may`.
//! Relays ([`SmtpClient::connect`]) stay verified.
//!
//! A domain with an MTA-STS policy in `enforce` mode (RFC 8461, [`crate::mta_sts`]) gets
//! mail only at the MX hosts its policy names, over TLS with a certificate verified for the
//! MX host name, and never in plaintext; a host that cannot do that is skipped, and with no
//! host left the delivery fails temporarily, saying why. In `testing` mode a host outside
//! the policy is logged and used as without a policy.

use std::net::SocketAddr;
use std::sync::Arc;

use thiserror::Error;

use crate::client::{BoxedStream, ClientConfig, SmtpClient, tcp_connect};
use crate::error::ClientError;
use crate::mta_sts::{MtaSts, Policy};
use crate::mx::{MxError, MxHost, MxResolver};
use crate::spec::Security;
use crate::tls::CertificateCheck;

/// The TLS probe of one MX address (`outbox mx DOMAIN --tls`), kept beside the delivery it
/// explains.
pub use crate::probe::{TlsProbe, probe_tls};

/// One failed try at one address of one mail host.
#[derive(Debug)]
pub struct HostAttempt {
    /// The MX host name.
    pub host: String,
    /// The address tried, when the host's addresses were found.
    pub addr: Option<SocketAddr>,
    /// Why it failed.
    pub error: HostFailure,
}

/// Why one address of a mail host could not take the message.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HostFailure {
    /// The host's addresses could not be found.
    #[error(transparent)]
    Resolve(#[from] MxError),
    /// The session could not be opened (connection, greeting, EHLO or TLS).
    #[error(transparent)]
    Smtp(#[from] ClientError),
    /// The domain's MTA-STS policy (`enforce`) does not name this host.
    #[error("{host} is not an MX host of the MTA-STS policy of {domain} (mx: {patterns})")]
    NotInPolicy {
        /// The host.
        host: String,
        /// The recipient domain.
        domain: String,
        /// The policy's `mx` patterns, comma-separated.
        patterns: String,
    },
}

/// Why direct delivery to a domain did not happen.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DirectError {
    /// The domain's mail hosts could not be found (null MX, no such domain, DNS trouble).
    #[error(transparent)]
    Mx(#[from] MxError),
    /// Every mail host was tried and none took the message.
    #[error("no mail host for {domain} took the message; last: {}", last_attempt(.attempts))]
    Unreachable {
        /// The recipient domain.
        domain: String,
        /// Every try, in order.
        attempts: Vec<HostAttempt>,
    },
}

fn last_attempt(attempts: &[HostAttempt]) -> String {
    match attempts.last() {
        Some(attempt) => match attempt.addr {
            Some(addr) => format!("{} [{}]: {}", attempt.host, addr.ip(), attempt.error),
            None => format!("{}: {}", attempt.host, attempt.error),
        },
        None => "no hosts".to_string(),
    }
}

impl DirectError {
    /// Whether trying again later may succeed. Unreachable hosts and DNS trouble are
    /// transient; a null MX or a missing domain is not.
    pub fn is_transient(&self) -> bool {
        match self {
            DirectError::Mx(error) => error.is_transient(),
            DirectError::Unreachable { .. } => true,
        }
    }

    /// Whether the recipients of this domain should fail now.
    pub fn is_permanent(&self) -> bool {
        !self.is_transient()
    }

    /// The SMTP reply behind the error, when there is one.
    pub fn reply(&self) -> Option<&crate::reply::Reply> {
        match self {
            DirectError::Unreachable { attempts, .. } => {
                attempts.last().and_then(|attempt| match &attempt.error {
                    HostFailure::Smtp(error) => error.reply(),
                    HostFailure::Resolve(_) | HostFailure::NotInPolicy { .. } => None,
                })
            }
            DirectError::Mx(_) => None,
        }
    }
}

/// A session opened with one of a domain's mail hosts.
pub struct MxSession {
    /// The client, greeted and past EHLO (and STARTTLS when offered). Whether the session
    /// is encrypted, and how the certificate was checked: [`SmtpClient::protection`].
    pub client: SmtpClient<BoxedStream>,
    /// The host that answered.
    pub host: MxHost,
    /// The address connected to.
    pub addr: SocketAddr,
    /// The hosts and addresses that failed before this one.
    pub failed: Vec<HostAttempt>,
    /// Why STARTTLS failed on a first connection to this address, when this session is the
    /// plaintext retry that followed; `None` when TLS was not tried or worked.
    pub starttls_failure: Option<ClientError>,
}

/// A session opened with one address of a mail host, opportunistic TLS done.
struct Opened {
    client: SmtpClient<BoxedStream>,
    starttls_failure: Option<ClientError>,
}

/// Direct delivery settings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DirectDelivery {
    /// The port of every MX host, implicit MX included (`[delivery] mx_port`, default 25).
    pub port: u16,
    /// The client's settings (HELO name, timeouts, extra trust anchors).
    pub client: ClientConfig,
    /// MTA-STS policy discovery (`[mta_sts] enabled`); `None`: policies are not looked up.
    pub mta_sts: Option<Arc<MtaSts>>,
}

impl DirectDelivery {
    /// Direct delivery to `port` with these client settings, without MTA-STS.
    pub fn new(port: u16, client: ClientConfig) -> Self {
        DirectDelivery {
            port,
            client,
            mta_sts: None,
        }
    }

    /// The same, honouring recipient domains' MTA-STS policies.
    pub fn with_mta_sts(mut self, mta_sts: Arc<MtaSts>) -> Self {
        self.mta_sts = Some(mta_sts);
        self
    }

    /// Opens a session with the first mail host of `domain` that greets with 220 and
    /// completes EHLO (and, under an enforced MTA-STS policy, verified TLS).
    pub async fn connect(
        &self,
        resolver: &dyn MxResolver,
        domain: &str,
    ) -> Result<MxSession, DirectError> {
        let hosts = resolver.mx_hosts(domain).await?;
        let policy = self.policy(domain).await;
        self.connect_from(resolver, domain, &hosts, policy.as_deref(), Vec::new())
            .await
    }

    /// The domain's MTA-STS policy when it restricts or reports anything (`enforce` or
    /// `testing`); `None` without one or with MTA-STS off.
    async fn policy(&self, domain: &str) -> Option<Arc<Policy>> {
        let lookup = self.mta_sts.as_ref()?.policy(domain).await;
        tracing::debug!(%domain, policy = %lookup, "MTA-STS");
        lookup
            .policy
            .filter(|policy| policy.mode != crate::mta_sts::Mode::None)
    }

    async fn connect_from(
        &self,
        resolver: &dyn MxResolver,
        domain: &str,
        hosts: &[MxHost],
        policy: Option<&Policy>,
        mut failed: Vec<HostAttempt>,
    ) -> Result<MxSession, DirectError> {
        for host in hosts {
            let enforced = match policy {
                Some(policy) if !policy.matches(&host.host) => {
                    let not_in_policy = HostFailure::NotInPolicy {
                        host: host.host.clone(),
                        domain: domain.to_string(),
                        patterns: policy.mx.join(", "),
                    };
                    if policy.is_enforced() {
                        tracing::warn!(%domain, error = %not_in_policy, "MTA-STS enforce: host skipped");
                        failed.push(HostAttempt {
                            host: host.host.clone(),
                            addr: None,
                            error: not_in_policy,
                        });
                        continue;
                    }
                    tracing::warn!(%domain, error = %not_in_policy, "MTA-STS testing: would skip this host; delivering");
                    false
                }
                Some(policy) => policy.is_enforced(),
                None => false,
            };
            let addresses = match resolver.host_addresses(&host.host).await {
                Ok(addresses) => addresses,
                Err(error) => {
                    failed.push(HostAttempt {
                        host: host.host.clone(),
                        addr: None,
                        error: error.into(),
                    });
                    continue;
                }
            };
            for ip in addresses {
                let addr = SocketAddr::new(ip, self.port);
                let opened = if enforced {
                    self.open_verified(addr, &host.host).await
                } else {
                    self.open_opportunistic(addr, &host.host).await
                };
                match opened {
                    Ok(Opened {
                        client,
                        starttls_failure,
                    }) => {
                        return Ok(MxSession {
                            client,
                            host: host.clone(),
                            addr,
                            failed,
                            starttls_failure,
                        });
                    }
                    Err(error) => {
                        tracing::debug!(host = %host.host, %addr, %error, "MX host failed");
                        failed.push(HostAttempt {
                            host: host.host.clone(),
                            addr: Some(addr),
                            error: error.into(),
                        });
                    }
                }
            }
        }
        Err(DirectError::Unreachable {
            domain: domain.to_string(),
            attempts: failed,
        })
    }

    /// Opens a session with one address of an MX host: greeting, EHLO, then STARTTLS
    /// without certificate checks when offered (RFC 7435). When STARTTLS fails, one more
    /// connection to the same address goes on in plaintext (RFC 7435 §6: a failed
    /// opportunistic upgrade must not stop the mail).
    async fn open_opportunistic(
        &self,
        addr: SocketAddr,
        host: &str,
    ) -> Result<Opened, ClientError> {
        let client = self.open_plain(addr, host).await?;
        if !client.capabilities().starttls {
            return Ok(Opened {
                client: client.map_stream(|s| Box::new(s) as BoxedStream),
                starttls_failure: None,
            });
        }
        let error = match client
            .with_certificate_check(CertificateCheck::Unverified)
            .starttls()
            .await
        {
            Ok(client) => {
                return Ok(Opened {
                    client: client.map_stream(|s| Box::new(s) as BoxedStream),
                    starttls_failure: None,
                });
            }
            Err(error) if retry_without_tls(&error) => error,
            Err(error) => return Err(error),
        };
        tracing::warn!(%host, %addr, %error, "STARTTLS failed; retrying once without TLS (RFC 7435)");
        let client = self.open_plain(addr, host).await?;
        Ok(Opened {
            client: client.map_stream(|s| Box::new(s) as BoxedStream),
            starttls_failure: Some(error),
        })
    }

    /// Opens a session with one address of an MX host under an enforced MTA-STS policy:
    /// STARTTLS required, the certificate verified for the MX host name (web PKI roots and
    /// `[tls] ca_file`), and no plaintext retry.
    async fn open_verified(&self, addr: SocketAddr, host: &str) -> Result<Opened, ClientError> {
        let client =
            SmtpClient::connect_addr(addr, host, Security::RequiredStartTls, None, &self.client)
                .await?;
        Ok(Opened {
            client,
            starttls_failure: None,
        })
    }

    /// TCP connect, greeting and EHLO, nothing more.
    async fn open_plain(
        &self,
        addr: SocketAddr,
        host: &str,
    ) -> Result<SmtpClient<tokio::net::TcpStream>, ClientError> {
        let tcp = tcp_connect(addr, &addr.to_string(), &self.client).await?;
        let mut client = SmtpClient::with_stream(tcp, host, self.client.clone());
        client.read_greeting().await?;
        client.ehlo().await?;
        Ok(client)
    }
}

/// Every way STARTTLS can fail sends the plaintext retry — a 4xx/5xx to STARTTLS, a broken
/// handshake, a connection lost or stalled during it, an EHLO over TLS that fails — except a
/// `421`: the host is closing the service (RFC 5321 §3.8) and the next host is tried.
fn retry_without_tls(error: &ClientError) -> bool {
    !matches!(error.reply(), Some(reply) if reply.code == 421)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::Reply;

    #[test]
    fn which_starttls_failures_retry_in_plaintext() {
        let refused = |code| ClientError::StartTlsUnavailable {
            host: "mx.a.test".into(),
            reply: Some(Reply::new(code, ["no"])),
        };
        assert!(retry_without_tls(&refused(454)));
        assert!(retry_without_tls(&refused(502)));
        assert!(!retry_without_tls(&refused(421)));
        assert!(retry_without_tls(&ClientError::Tls {
            host: "mx.a.test".into(),
            source: std::io::Error::other("bad record"),
        }));
        assert!(retry_without_tls(&ClientError::Closed {
            command: "STARTTLS".into()
        }));
        let ehlo_closing = ClientError::Rejected {
            command: "EHLO".into(),
            reply: Reply::new(421, ["bye"]),
        };
        assert!(!retry_without_tls(&ehlo_closing));
    }
}
