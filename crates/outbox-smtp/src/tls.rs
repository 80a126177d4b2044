//! The client's TLS configuration: certificates are verified against the webpki (Mozilla)
//! roots plus the extra trust anchors of `[tls] ca_file`, a PEM file.
//!
//! A certificate in `ca_file` is also trusted as it is when the server presents exactly
//! that certificate: the usual self-signed relay certificate (`openssl req -x509`) is its
//! own issuer, which webpki refuses as an end entity (`CaUsedAsEndEntity`). The operator
//! who put that exact certificate in the file asked for it to be trusted; the handshake's
//! signatures are still verified, and any other certificate still needs a chain.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore};
use serde::{Deserialize, Serialize};

/// What the client trusts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// A PEM file of extra CA certificates to trust besides the webpki roots.
    pub ca_file: Option<PathBuf>,
}

/// Why a TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
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

    /// Builds the rustls client configuration: webpki roots, plus every certificate in the
    /// CA file. A CA file without any certificate is an error, not an empty addition.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let mut exact = Vec::new();
        if let Some(path) = &self.ca_file {
            exact = add_pem_file(&mut roots, path)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let invalid = |reason: String| TlsConfigError::Invalid {
            path: self.ca_file.clone().unwrap_or_default(),
            reason,
        };
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|err| invalid(err.to_string()))?;
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| invalid(err.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(CaFileVerifier { webpki, exact }))
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
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

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
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
