//! The server's STARTTLS configuration (RFC 3207), loaded from PEM files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

/// Why a certificate and key could not become a TLS server configuration.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ServerTlsError {
    /// A PEM file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The certificate PEM holds no certificate.
    #[error("no certificate found in {what}")]
    NoCertificate {
        /// The file or description of the input.
        what: String,
    },
    /// The key PEM holds no private key.
    #[error("no private key found in {what}")]
    NoKey {
        /// The file or description of the input.
        what: String,
    },
    /// rustls refused the pair (key does not match, unsupported algorithm, ...).
    #[error("unusable certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A rustls server configuration from a certificate chain and private key, both PEM.
pub fn server_tls_config(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, ServerTlsError> {
    from_pem(cert_pem, key_pem, "the certificate PEM", "the key PEM")
}

/// [`server_tls_config`] from files.
pub fn server_tls_config_from_files(
    cert: &Path,
    key: &Path,
) -> Result<Arc<rustls::ServerConfig>, ServerTlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| ServerTlsError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    from_pem(
        &read(cert)?,
        &read(key)?,
        &cert.display().to_string(),
        &key.display().to_string(),
    )
}

fn from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_what: &str,
    key_what: &str,
) -> Result<Arc<rustls::ServerConfig>, ServerTlsError> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cert_pem[..])
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(ServerTlsError::NoCertificate {
            what: cert_what.to_string(),
        });
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
        .ok()
        .flatten()
        .ok_or_else(|| ServerTlsError::NoKey {
            what: key_what.to_string(),
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_pem_names_what_is_missing() {
        let err = server_tls_config(b"", b"").unwrap_err();
        assert!(matches!(err, ServerTlsError::NoCertificate { .. }), "{err}");
    }
}
