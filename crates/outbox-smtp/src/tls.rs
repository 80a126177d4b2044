//! The client's TLS configuration: certificates are verified against the webpki (Mozilla)
//! roots plus the extra trust anchors of `[tls] ca_file`, a PEM file.
//!
//! A certificate in `ca_file` is also trusted as it is when the server presents exactly
//! that certificate: the usual self-signed relay certificate (`openssl req -x509`) is its
//! own issuer, which webpki refuses as an end entity (`CaUsedAsEndEntity`). The operator
//! who put that exact certificate in the file asked for it to be trusted; the handshake's
//! signatures are still verified, and any other certificate still needs a chain.
//!
//! Two other checks exist for the cases where the web PKI does not apply
//! ([`CertificateCheck`]): MX delivery without MTA-STS encrypts without authenticating
//! (RFC 7435 opportunistic security: any certificate is accepted, as Postfix's
//! `smtp_tls_security_level = may` does), and a server spec may pin the server's
//! certificate by its SHA-256 fingerprint. Both still verify the handshake's signatures, so
//! the peer must hold the private key of the certificate it shows.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore};
use serde::{Deserialize, Serialize};

use crate::fingerprint::Fingerprint;

/// How the server's certificate is checked in a TLS handshake.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateCheck {
    /// A chain to the webpki roots or a `[tls] ca_file` anchor (or exactly a certificate of
    /// `ca_file`), valid now, for the server's name. The default, and what relays get.
    #[default]
    Verified,
    /// Any certificate: expired, self-signed, for another name (RFC 7435 opportunistic
    /// security, for MX hosts without an MTA-STS policy). The session is encrypted against
    /// passive eavesdropping, not authenticated.
    Unverified,
    /// The server's end-entity certificate must have exactly this SHA-256 fingerprint
    /// (`?tls_fingerprint=`); its chain, dates and names are not looked at.
    Pinned(Fingerprint),
}

/// What protects an open SMTP session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protection {
    /// No TLS.
    Plaintext,
    /// TLS with a certificate that was not checked ([`CertificateCheck::Unverified`]).
    TlsUnverified,
    /// TLS with a certificate verified for the server's name.
    TlsVerified,
    /// TLS with the certificate the server spec pins.
    TlsPinned,
}

impl Protection {
    /// Whether the session is encrypted.
    pub fn is_tls(self) -> bool {
        self != Protection::Plaintext
    }

    /// Whether the server was authenticated: a verified or pinned certificate.
    pub fn is_authenticated(self) -> bool {
        matches!(self, Protection::TlsVerified | Protection::TlsPinned)
    }

    /// The protection a successful handshake with `check` gives.
    pub fn after_handshake(check: &CertificateCheck) -> Protection {
        match check {
            CertificateCheck::Verified => Protection::TlsVerified,
            CertificateCheck::Unverified => Protection::TlsUnverified,
            CertificateCheck::Pinned(_) => Protection::TlsPinned,
        }
    }
}

impl std::fmt::Display for Protection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protection::Plaintext => "plaintext",
            Protection::TlsUnverified => "TLS (certificate not verified)",
            Protection::TlsVerified => "TLS (certificate verified)",
            Protection::TlsPinned => "TLS (pinned certificate)",
        })
    }
}

/// The server's certificate did not have the pinned fingerprint. Carried inside the rustls
/// error out of the handshake, and turned into `ClientError::FingerprintMismatch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the certificate's fingerprint is {actual}, not the pinned tls_fingerprint {expected}")]
pub struct FingerprintMismatch {
    /// The pin of the server spec.
    pub expected: Fingerprint,
    /// The fingerprint of the certificate the server presented.
    pub actual: Fingerprint,
}

/// What the client trusts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsConfig {
    /// A PEM file of extra CA certificates to trust besides the webpki roots.
    pub ca_file: Option<PathBuf>,
}

/// Why a TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// The CA file cannot be read.
    #[error("cannot read CA file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The CA file has no certificate, or one that is not valid.
    #[error("invalid CA file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A host name that cannot be a TLS server name.
    #[error("{name:?} is not a valid TLS server name")]
    ServerName {
        /// The name.
        name: String,
    },
}

impl TlsConfig {
    /// A config that also trusts the certificates in `ca_file`.
    pub fn with_ca_file(ca_file: impl Into<PathBuf>) -> Self {
        TlsConfig {
            ca_file: Some(ca_file.into()),
        }
    }

    /// The rustls client configuration for `check`: [`TlsConfig::client_config`] for
    /// verified sessions; the unverified and pinned checks do not read the CA file.
    pub fn client_config_for(
        &self,
        check: &CertificateCheck,
    ) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
        let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        let verifier: Arc<dyn ServerCertVerifier> = match check {
            CertificateCheck::Verified => return self.client_config(),
            CertificateCheck::Unverified => Arc::new(CertificateKey {
                pin: None,
                algorithms,
            }),
            CertificateCheck::Pinned(pin) => Arc::new(CertificateKey {
                pin: Some(*pin),
                algorithms,
            }),
        };
        config_with_verifier(verifier)
    }

    /// Builds the rustls client configuration: webpki roots, plus every certificate in the
    /// CA file. A CA file without any certificate is an error, not an empty addition.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
        config_with_verifier(self.verifier()?)
    }

    /// The verifier of [`CertificateCheck::Verified`]: webpki roots and the CA file.
    pub(crate) fn verifier(&self) -> Result<Arc<dyn ServerCertVerifier>, TlsConfigError> {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let mut exact = Vec::new();
        if let Some(path) = &self.ca_file {
            exact = add_pem_file(&mut roots, path)?;
        }
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(|err| TlsConfigError::Invalid {
            path: self.ca_file.clone().unwrap_or_default(),
            reason: err.to_string(),
        })?;
        Ok(Arc::new(CaFileVerifier { webpki, exact }))
    }
}

/// A rustls client configuration (ring, TLS 1.2 and 1.3) around a certificate verifier.
pub(crate) fn config_with_verifier(
    verifier: Arc<dyn ServerCertVerifier>,
) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|err| TlsConfigError::Invalid {
        path: PathBuf::new(),
        reason: err.to_string(),
    })?
    .dangerous()
    .with_custom_certificate_verifier(verifier)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Webpki verification, plus: a server certificate that is byte for byte one of the
/// certificates of `ca_file` is trusted (see the module docs).
#[derive(Debug)]
struct CaFileVerifier {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    exact: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for CaFileVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => Ok(verified),
            Err(_)
                if self
                    .exact
                    .iter()
                    .any(|cert| cert.as_ref() == end_entity.as_ref()) =>
            {
                Ok(ServerCertVerified::assertion())
            }
            Err(err) => Err(err),
        }
    }

    delegate_signature_checks!(webpki);
}

/// Checks only the server's key: any certificate (RFC 7435's opportunistic TLS) or, with a
/// pin, the one whose SHA-256 is pinned. Chain, name and dates are not looked at; the
/// handshake signatures are still checked, against the certificate's key.
#[derive(Debug)]
struct CertificateKey {
    pin: Option<Fingerprint>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for CertificateKey {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(pin) = self.pin else {
            return Ok(ServerCertVerified::assertion());
        };
        let actual = Fingerprint::of(end_entity.as_ref());
        if actual == pin {
            return Ok(ServerCertVerified::assertion());
        }
        let mismatch = FingerprintMismatch {
            expected: pin,
            actual,
        };
        Err(rustls::CertificateError::Other(rustls::OtherError(Arc::new(mismatch))).into())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The three signature methods of a [`ServerCertVerifier`] that wraps another (`$inner`),
/// passed through: a wrapper changes only how the certificate itself is judged.
macro_rules! delegate_signature_checks {
    ($inner:ident) => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.$inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.$inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.$inner.supported_verify_schemes()
        }
    };
}
pub(crate) use delegate_signature_checks;

/// The pin mismatch inside a failed handshake's error, if that is why it failed.
pub(crate) fn fingerprint_mismatch(error: &std::io::Error) -> Option<FingerprintMismatch> {
    let rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) =
        error.get_ref()?.downcast_ref::<rustls::Error>()?
    else {
        return None;
    };
    other.0.downcast_ref::<FingerprintMismatch>().copied()
}

/// Adds every certificate of the PEM file to `roots`; returns them, for exact matches.
fn add_pem_file(
    roots: &mut RootCertStore,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let pem = std::fs::read(path).map_err(|source| TlsConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |reason: String| TlsConfigError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let mut added = Vec::new();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|err| invalid(err.to_string()))?;
        roots
            .add(cert.clone())
            .map_err(|err| invalid(format!("certificate not usable as a trust anchor: {err}")))?;
        added.push(cert);
    }
    if added.is_empty() {
        return Err(invalid("no PEM certificate found".to_string()));
    }
    Ok(added)
}

/// The TLS server name for a host: an IP address or a DNS name (a trailing dot removed).
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsConfigError> {
    let name = host.strip_suffix('.').unwrap_or(host);
    ServerName::try_from(name.to_string()).map_err(|_| TlsConfigError::ServerName {
        name: host.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_builds() {
        TlsConfig::default().client_config().unwrap();
    }

    #[test]
    fn missing_and_empty_ca_files_are_errors() {
        let err = TlsConfig::with_ca_file("/nonexistent/ca.pem")
            .client_config()
            .unwrap_err();
        assert!(matches!(err, TlsConfigError::Read { .. }));
        assert!(err.to_string().contains("/nonexistent/ca.pem"));
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = TlsConfig::with_ca_file(&empty).client_config().unwrap_err();
        assert!(matches!(err, TlsConfigError::Invalid { .. }), "{err}");
    }

    #[test]
    fn server_names() {
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("::1").is_ok());
        assert!(server_name("mx.example.test.").is_ok());
        assert!(server_name("bad name").is_err());
    }
}
