//! A TLS probe of one mail host address, for `outbox mx DOMAIN --tls`: does it offer
//! STARTTLS, and would its certificate pass verification for the MX name (what MTA-STS
//! `enforce` requires, RFC 8461 §4.2)? Delivery itself does not need a valid certificate
//! (RFC 7435), so this says why a domain under an enforced policy defers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls::CertificateError;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::TlsConnector;

use crate::client::{ClientConfig, SmtpClient, tcp_connect};
use crate::error::ClientError;
use crate::tls::{config_with_verifier, server_name};

/// What a TLS probe of one address found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsProbe {
    /// Whether the host offered STARTTLS in its EHLO reply.
    pub starttls: bool,
    /// Whether the certificate is valid for the MX name (web PKI roots and `[tls] ca_file`,
    /// as a relay's is checked), with the reason when not (expired, self-signed, wrong
    /// name, ...). `None` when no certificate was seen: no STARTTLS, or a failure first.
    pub certificate: Option<Result<(), String>>,
    /// What failed, when something did: connection, greeting, EHLO, STARTTLS refused, the
    /// handshake, EHLO over TLS.
    pub error: Option<String>,
}

impl TlsProbe {
    fn failed(starttls: bool, error: impl std::fmt::Display) -> TlsProbe {
        TlsProbe {
            starttls,
            certificate: None,
            error: Some(error.to_string()),
        }
    }
}

/// Connects to `addr`, EHLOs, and when STARTTLS is offered, runs the handshake checking the
/// certificate for `mx_name` as [`crate::CertificateCheck::Verified`] would — but going on
/// when the check fails, so a broken handshake and an invalid certificate are told apart.
/// Ends with EHLO over TLS and QUIT. Each step waits at most its timeout of `config`.
/// Never fails: every problem is in the result.
pub async fn probe_tls(addr: SocketAddr, mx_name: &str, config: &ClientConfig) -> TlsProbe {
    let mut client = match open(addr, mx_name, config).await {
        Ok(client) => client,
        Err(error) => return TlsProbe::failed(false, error),
    };
    if !client.capabilities().starttls {
        let _ = client.quit().await;
        return TlsProbe {
            starttls: false,
            certificate: None,
            error: None,
        };
    }
    let limit = config.timeouts.starttls;
    match client.command("STARTTLS").await {
        Ok(reply) if reply.code == 220 => {}
        Ok(reply) => return TlsProbe::failed(true, format!("STARTTLS refused: {reply}")),
        Err(error) => return TlsProbe::failed(true, error),
    }
    let verifier = match config.tls.verifier() {
        Ok(verifier) => Arc::new(Recording::new(verifier)),
        Err(error) => return TlsProbe::failed(true, error),
    };
    let (tls, name) = match (config_with_verifier(verifier.clone()), server_name(mx_name)) {
        (Ok(tls), Ok(name)) => (tls, name),
        (Err(error), _) | (_, Err(error)) => return TlsProbe::failed(true, error),
    };
    let handshake = TlsConnector::from(tls).connect(name, client.into_stream());
    let stream = match tokio::time::timeout(limit, handshake).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(source)) => {
            let error = ClientError::Tls {
                host: mx_name.to_string(),
                source,
            };
            return TlsProbe {
                certificate: verifier.outcome(),
                ..TlsProbe::failed(true, error)
            };
        }
        Err(_) => {
            let error = ClientError::Timeout {
                command: "STARTTLS TLS handshake".to_string(),
                after: limit,
            };
            return TlsProbe::failed(true, error);
        }
    };
    let certificate = verifier.outcome();
    let mut client = SmtpClient::with_stream(stream, mx_name, config.clone());
    let error = match client.ehlo().await {
        Ok(_) => {
            let _ = client.quit().await;
            None
        }
        Err(error) => Some(format!("EHLO over TLS failed: {error}")),
    };
    TlsProbe {
        starttls: true,
        certificate,
        error,
    }
}

/// TCP, greeting, EHLO.
async fn open(
    addr: SocketAddr,
    mx_name: &str,
    config: &ClientConfig,
) -> Result<SmtpClient<tokio::net::TcpStream>, ClientError> {
    let tcp = tcp_connect(addr, &addr.to_string(), config).await?;
    let mut client = SmtpClient::with_stream(tcp, mx_name, config.clone());
    client.read_greeting().await?;
    client.ehlo().await?;
    Ok(client)
}

/// Runs the verified check, remembers its verdict, and lets the handshake go on either way
/// (the handshake signatures are still checked).
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn ServerCertVerifier>,
    verdict: Mutex<Option<Result<(), String>>>,
}

impl Recording {
    fn new(inner: Arc<dyn ServerCertVerifier>) -> Recording {
        Recording {
            inner,
            verdict: Mutex::new(None),
        }
    }

    fn outcome(&self) -> Option<Result<(), String>> {
        self.verdict
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map(|_| ())
            .map_err(|error| why_invalid(&error));
        *self
            .verdict
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(verdict);
        Ok(ServerCertVerified::assertion())
    }

    crate::tls::delegate_signature_checks!(inner);
}

/// Why a certificate failed verification, in an operator's words.
pub fn why_invalid(error: &rustls::Error) -> String {
    let rustls::Error::InvalidCertificate(error) = error else {
        return error.to_string();
    };
    match error {
        // webpki's CaUsedAsEndEntity reaches rustls as an "other" error shown by its name.
        CertificateError::Other(other) if other.0.to_string() == "CaUsedAsEndEntity" => {
            "self-signed (a CA certificate used as the server's own)".to_string()
        }
        CertificateError::UnknownIssuer => {
            "not issued by a trusted CA (self-signed, or an issuer missing from the web PKI \
             roots and [tls] ca_file)"
                .to_string()
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            format!("expired ({error})")
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            format!("not valid yet ({error})")
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!("wrong name ({error})")
        }
        CertificateError::Revoked => "revoked".to_string(),
        other => format!("invalid ({other})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_the_problem() {
        let why = |e: CertificateError| why_invalid(&rustls::Error::InvalidCertificate(e));
        assert!(why(CertificateError::UnknownIssuer).contains("not issued by a trusted CA"));
        assert!(why(CertificateError::Expired).starts_with("expired"));
        assert!(why(CertificateError::NotValidForName).starts_with("wrong name"));
        assert!(why(CertificateError::BadSignature).starts_with("invalid"));
        assert_eq!(
            why_invalid(&rustls::Error::DecryptError),
            rustls::Error::DecryptError.to_string()
        );
    }
}
