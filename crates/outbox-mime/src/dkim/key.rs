//! DKIM private keys: PEM files (PKCS#8 for RSA and Ed25519, PKCS#1 `RSA PRIVATE KEY` for
//! RSA), the signing itself, and the public key as published in DNS (`p=`).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use ring::signature::{self, Ed25519KeyPair, KeyPair as _, RsaKeyPair};

/// The smallest RSA key Outbox signs with (RFC 8301 §3.2 requires 1024, receivers such as
/// Gmail expect 2048).
pub const MIN_RSA_BITS: usize = 2048;

/// A DKIM signing algorithm (`a=` tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// `rsa-sha256` (RFC 6376 §3.3.1).
    RsaSha256,
    /// `ed25519-sha256` (RFC 8463).
    Ed25519Sha256,
}

impl Algorithm {
    /// The `a=` tag value: `rsa-sha256` or `ed25519-sha256`.
    pub fn tag(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "rsa-sha256",
            Algorithm::Ed25519Sha256 => "ed25519-sha256",
        }
    }

    /// The key type of the DNS record (`k=`): `rsa` or `ed25519`.
    pub fn key_type(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "rsa",
            Algorithm::Ed25519Sha256 => "ed25519",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

impl std::str::FromStr for Algorithm {
    type Err = KeyError;
    /// Accepts `rsa`, `rsa-sha256`, `ed25519` and `ed25519-sha256`.
    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s.to_ascii_lowercase().as_str() {
            "rsa" | "rsa-sha256" => Ok(Algorithm::RsaSha256),
            "ed25519" | "ed25519-sha256" => Ok(Algorithm::Ed25519Sha256),
            _ => Err(KeyError::UnknownAlgorithm(s.to_string())),
        }
    }
}

/// Why a key could not be used. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// No `-----BEGIN ...-----` / `-----END ...-----` block.
    #[error("not a PEM file (no BEGIN/END block)")]
    NotPem,
    /// The block between BEGIN and END is not valid base64.
    #[error("the PEM block is not valid base64")]
    BadBase64,
    /// A PEM block of a kind that is not a supported private key.
    #[error(
        "unsupported PEM block {0:?} (expected PRIVATE KEY or RSA PRIVATE KEY; encrypted keys are not supported)"
    )]
    UnsupportedBlock(String),
    /// An RSA key below [`MIN_RSA_BITS`].
    #[error("the RSA key has {bits} bits; DKIM keys need at least {MIN_RSA_BITS}")]
    RsaTooSmall {
        /// The key's modulus size.
        bits: usize,
    },
    /// The key's structure was refused.
    #[error("invalid {kind} key: {reason}")]
    Invalid {
        /// What the key looked like (`RSA`, `Ed25519`, `PKCS#8`).
        kind: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// An `algorithm` value that is not `rsa` or `ed25519`.
    #[error("unknown DKIM algorithm {0:?} (expected rsa or ed25519)")]
    UnknownAlgorithm(String),
    /// The configured algorithm differs from the key's.
    #[error("algorithm {configured} does not match the key, which is {actual}")]
    AlgorithmMismatch {
        /// The configured algorithm.
        configured: Algorithm,
        /// The key's algorithm.
        actual: Algorithm,
    },
    /// The signature could not be made (should not happen with a loaded key).
    #[error("signing failed")]
    SigningFailed,
}

/// A private key that signs DKIM signatures. `Debug` shows the algorithm only.
pub struct DkimKey {
    inner: KeyPair,
}

enum KeyPair {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl fmt::Debug for DkimKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DkimKey")
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

/// Ed25519's algorithm identifier (RFC 8410), as it appears in a PKCS#8 document.
const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

impl DkimKey {
    /// Reads a PEM private key: `PRIVATE KEY` (PKCS#8, RSA or Ed25519) or `RSA PRIVATE KEY`
    /// (PKCS#1). RSA keys under [`MIN_RSA_BITS`] bits are refused.
    pub fn from_pem(pem: &[u8]) -> Result<DkimKey, KeyError> {
        let (label, der) = pem_block(pem)?;
        match label.as_str() {
            "PRIVATE KEY" => {
                if contains(&der, ED25519_OID) {
                    Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
                        .map(|key| DkimKey {
                            inner: KeyPair::Ed25519(key),
                        })
                        .map_err(|e| rejected("Ed25519", &e))
                } else {
                    RsaKeyPair::from_pkcs8(&der)
                        .map_err(|e| rsa_rejected(&der, &e))
                        .and_then(rsa)
                }
            }
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der)
                .map_err(|e| rsa_rejected(&der, &e))
                .and_then(rsa),
            other => Err(KeyError::UnsupportedBlock(other.to_string())),
        }
    }

    /// A new Ed25519 key, as a PEM `PRIVATE KEY` (PKCS#8) document.
    pub fn generate_ed25519_pem() -> Result<String, KeyError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| KeyError::SigningFailed)?;
        Ok(pem_encode("PRIVATE KEY", pkcs8.as_ref()))
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self.inner {
            KeyPair::Rsa(_) => Algorithm::RsaSha256,
            KeyPair::Ed25519(_) => Algorithm::Ed25519Sha256,
        }
    }

    /// The public key as DKIM publishes it (the bytes of `p=`): for RSA the
    /// SubjectPublicKeyInfo DER (RFC 6376 §3.6.1), for Ed25519 the raw 32 bytes (RFC 8463 §4).
    pub fn public_key(&self) -> Vec<u8> {
        match &self.inner {
            KeyPair::Rsa(key) => rsa_spki(key.public_key().as_ref()),
            KeyPair::Ed25519(key) => key.public_key().as_ref().to_vec(),
        }
    }

    /// The TXT record to publish: `v=DKIM1; k=rsa|ed25519; p=BASE64`.
    pub fn dns_record(&self) -> String {
        format!(
            "v=DKIM1; k={}; p={}",
            self.algorithm().key_type(),
            STANDARD.encode(self.public_key())
        )
    }

    /// Does `published` (the decoded `p=` of a record) hold this key? For RSA both the
    /// SubjectPublicKeyInfo and the bare PKCS#1 RSAPublicKey forms are accepted.
    pub fn matches_public_key(&self, published: &[u8]) -> bool {
        match &self.inner {
            KeyPair::Rsa(key) => {
                let pkcs1 = key.public_key().as_ref();
                published == pkcs1 || published == rsa_spki(pkcs1).as_slice()
            }
            KeyPair::Ed25519(key) => published == key.public_key().as_ref(),
        }
    }

    /// Signs the canonicalized header data: RSASSA-PKCS1-v1_5 with SHA-256, or Ed25519 over
    /// the SHA-256 of the data (RFC 8463 §3).
    pub(crate) fn sign(&self, data: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.inner {
            KeyPair::Rsa(key) => {
                let mut signature = vec![0; key.public().modulus_len()];
                key.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    data,
                    &mut signature,
                )
                .map_err(|_| KeyError::SigningFailed)?;
                Ok(signature)
            }
            KeyPair::Ed25519(key) => {
                let hash = ring::digest::digest(&ring::digest::SHA256, data);
                Ok(key.sign(hash.as_ref()).as_ref().to_vec())
            }
        }
    }
}

fn rsa(key: RsaKeyPair) -> Result<DkimKey, KeyError> {
    let bits = key.public().modulus_len() * 8;
    if bits < MIN_RSA_BITS {
        return Err(KeyError::RsaTooSmall { bits });
    }
    Ok(DkimKey {
        inner: KeyPair::Rsa(key),
    })
}

fn rejected(kind: &'static str, err: &ring::error::KeyRejected) -> KeyError {
    KeyError::Invalid {
        kind,
        reason: err.to_string(),
    }
}

/// ring refuses RSA keys under 2048 bits as "TooSmall"; say how small, from the modulus.
fn rsa_rejected(der: &[u8], err: &ring::error::KeyRejected) -> KeyError {
    if err.to_string().contains("TooSmall") {
        return KeyError::RsaTooSmall {
            bits: rsa_modulus_bits(der).unwrap_or(0),
        };
    }
    rejected("RSA", err)
}

/// The modulus size of a DER RSA private key, PKCS#1 (`SEQUENCE { version, modulus, .. }`)
/// or PKCS#8 (`SEQUENCE { version, algorithm, OCTET STRING { PKCS#1 } }`). For the error
/// message only.
fn rsa_modulus_bits(der: &[u8]) -> Option<usize> {
    let (_, key, _) = der_read(der, 0x30)?;
    let (_, _version, rest) = der_read(key, 0x02)?;
    let modulus = match rest.first()? {
        0x02 => der_read(rest, 0x02)?.1,
        _ => {
            let (_, _algorithm, rest) = der_read(rest, 0x30)?;
            let (_, pkcs1, _) = der_read(rest, 0x04)?;
            let (_, key, _) = der_read(pkcs1, 0x30)?;
            let (_, _version, rest) = der_read(key, 0x02)?;
            der_read(rest, 0x02)?.1
        }
    };
    let first = modulus.iter().position(|&b| b != 0)?;
    Some((modulus.len() - first) * 8 - modulus[first].leading_zeros() as usize)
}

/// Reads one DER element with tag `tag`: (tag, contents, what follows).
fn der_read(der: &[u8], tag: u8) -> Option<(u8, &[u8], &[u8])> {
    if *der.first()? != tag {
        return None;
    }
    let first = usize::from(*der.get(1)?);
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let len = der
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
        (len, 2 + n)
    };
    let contents = der.get(header..header.checked_add(len)?)?;
    Some((tag, contents, &der[header + len..]))
}

/// Wraps a PKCS#1 RSAPublicKey in a SubjectPublicKeyInfo (RFC 5280 §4.1, RFC 3279 §2.3.1).
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier { rsaEncryption, NULL }
    const ALGORITHM: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bit_string = vec![0x00];
    bit_string.extend_from_slice(pkcs1);
    let mut body = ALGORITHM.to_vec();
    der_tlv(0x03, &bit_string, &mut body);
    let mut out = Vec::with_capacity(body.len() + 4);
    der_tlv(0x30, &body, &mut out);
    out
}

fn der_tlv(tag: u8, value: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(bytes.len() - 1);
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A PEM document: the base64 of `der` in 64-character lines between BEGIN and END.
fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The label and decoded contents of the first PEM block.
fn pem_block(pem: &[u8]) -> Result<(String, Vec<u8>), KeyError> {
    let text = String::from_utf8_lossy(pem);
    let mut lines = text.lines().map(str::trim);
    let label = lines
        .by_ref()
        .find_map(|line| line.strip_prefix("-----BEGIN ")?.strip_suffix("-----"))
        .ok_or(KeyError::NotPem)?
        .to_string();
    let end = format!("-----END {label}-----");
    let mut b64 = String::new();
    let mut ended = false;
    for line in lines {
        if line == end {
            ended = true;
            break;
        }
        if line.contains(':') {
            // RFC 1421 headers (Proc-Type: 4,ENCRYPTED): an encrypted legacy key.
            return Err(KeyError::UnsupportedBlock(format!("{label} (encrypted)")));
        }
        b64.push_str(line);
    }
    if !ended {
        return Err(KeyError::NotPem);
    }
    let der = STANDARD
        .decode(b64.as_bytes())
        .map_err(|_| KeyError::BadBase64)?;
    Ok((label, der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spki_wrapping_matches_openssl_for_a_short_key() {
        // DER lengths over 127 take the long form.
        let mut out = Vec::new();
        der_tlv(0x04, &[0; 300], &mut out);
        assert_eq!(&out[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let mut short = Vec::new();
        der_tlv(0x04, &[1, 2], &mut short);
        assert_eq!(short, [0x04, 0x02, 1, 2]);
    }

    #[test]
    fn pem_errors_are_clear() {
        assert_eq!(DkimKey::from_pem(b"hello").unwrap_err(), KeyError::NotPem);
        assert_eq!(
            DkimKey::from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .unwrap_err(),
            KeyError::UnsupportedBlock("CERTIFICATE".into())
        );
        assert_eq!(
            DkimKey::from_pem(b"-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n")
                .unwrap_err(),
            KeyError::BadBase64
        );
        assert!(matches!(
            DkimKey::from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .unwrap_err(),
            KeyError::Invalid { .. }
        ));
    }

    #[test]
    fn generated_ed25519_keys_load() {
        let pem = DkimKey::generate_ed25519_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let key = DkimKey::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(key.algorithm(), Algorithm::Ed25519Sha256);
        assert_eq!(key.public_key().len(), 32);
        assert!(key.dns_record().starts_with("v=DKIM1; k=ed25519; p="));
    }

    #[test]
    fn algorithm_names_parse() {
        assert_eq!("rsa".parse::<Algorithm>().unwrap(), Algorithm::RsaSha256);
        assert_eq!(
            "Ed25519".parse::<Algorithm>().unwrap(),
            Algorithm::Ed25519Sha256
        );
        assert!("dsa".parse::<Algorithm>().is_err());
    }
}
