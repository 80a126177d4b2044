//! SHA-256 certificate fingerprints, for pinning a relay's certificate in its server spec
//! (`?tls_fingerprint=sha256:HEX`).
//!
//! Written as `openssl x509 -noout -fingerprint -sha256` prints them (`AB:CD:...`, colons
//! between bytes) or as plain hex, in any case, after `sha256:`.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// The SHA-256 digest of a certificate's DER encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

/// Why a fingerprint could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FingerprintError {
    /// The text does not start with `sha256:`.
    #[error("a fingerprint starts with sha256: (as in sha256:AB:CD:...)")]
    MissingAlgorithm,
    /// After `sha256:`, not 32 bytes of hex (with or without colons between them).
    #[error(
        "a SHA-256 fingerprint is 64 hex digits, optionally with a colon between each pair \
         (openssl x509 -noout -fingerprint -sha256 prints it)"
    )]
    InvalidHex,
}

impl Fingerprint {
    /// The fingerprint of a certificate, from its DER bytes.
    pub fn of(der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(der).into())
    }

    /// A fingerprint from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Fingerprint {
        Fingerprint(bytes)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses `sha256:HEX`: 64 hex digits, any case, either all pairs separated by colons
    /// or none. `sha256:` itself is case-insensitive.
    pub fn parse(text: &str) -> Result<Fingerprint, FingerprintError> {
        let hex = text
            .get(..7)
            .filter(|prefix| prefix.eq_ignore_ascii_case("sha256:"))
            .map(|_| &text[7..])
            .ok_or(FingerprintError::MissingAlgorithm)?;
        let digits: Vec<u8> = if hex.contains(':') {
            // Colons only between pairs: "AB:CD:...", never "ABC:D" or "AB::CD".
            let pairs: Vec<&str> = hex.split(':').collect();
            if pairs.iter().any(|pair| pair.len() != 2) {
                return Err(FingerprintError::InvalidHex);
            }
            pairs.concat().into_bytes()
        } else {
            hex.as_bytes().to_vec()
        };
        if digits.len() != 64 {
            return Err(FingerprintError::InvalidHex);
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            *byte = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
        }
        Ok(Fingerprint(bytes))
    }
}

fn hex_value(digit: u8) -> Result<u8, FingerprintError> {
    match digit {
        b'0'..=b'9' => Ok(digit - b'0'),
        b'a'..=b'f' => Ok(digit - b'a' + 10),
        b'A'..=b'F' => Ok(digit - b'A' + 10),
        _ => Err(FingerprintError::InvalidHex),
    }
}

/// `sha256:AB:CD:...`, the way openssl prints it, so an operator can compare them by eye.
impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        for (i, byte) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = FingerprintError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Fingerprint::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";

    #[test]
    fn plain_and_colon_hex_in_any_case() {
        let plain = Fingerprint::parse(&format!("sha256:{HEX}")).unwrap();
        assert_eq!(plain.as_bytes()[0..2], [0x00, 0x11]);
        assert_eq!(plain.as_bytes()[31], 0xff);
        let colons: Vec<String> = HEX
            .as_bytes()
            .chunks(2)
            .map(|pair| String::from_utf8(pair.to_vec()).unwrap())
            .collect();
        let colons = format!("SHA256:{}", colons.join(":").to_lowercase());
        assert_eq!(Fingerprint::parse(&colons).unwrap(), plain);
        assert_eq!(plain.to_string().parse::<Fingerprint>().unwrap(), plain);
        assert!(plain.to_string().starts_with("sha256:00:11:22:"));
        assert!(plain.to_string().ends_with(":EE:FF"));
    }

    #[test]
    fn anything_else_is_refused() {
        use FingerprintError::*;
        for (text, want) in [
            (HEX.to_string(), MissingAlgorithm),
            (format!("sha1:{HEX}"), MissingAlgorithm),
            ("sha256:".to_string(), InvalidHex),
            (format!("sha256:{}", &HEX[..62]), InvalidHex),
            (format!("sha256:{HEX}00"), InvalidHex),
            (format!("sha256:{}g", &HEX[..63]), InvalidHex),
            (format!("sha256:{}:{}", &HEX[..3], &HEX[3..]), InvalidHex),
            (format!("sha256::{}", &HEX), InvalidHex),
            ("sha256:é".to_string(), InvalidHex),
        ] {
            assert_eq!(Fingerprint::parse(&text), Err(want), "{text}");
        }
    }

    #[test]
    fn of_der_is_sha256() {
        // SHA-256 of the empty string.
        assert_eq!(
            Fingerprint::of(b"").to_string().replace(':', ""),
            "sha256E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
        );
    }
}
