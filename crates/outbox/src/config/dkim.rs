//! `[[dkim]]` entries (DESIGN §10): which domain signs with which selector and key.
//!
//! The file is checked when the configuration loads (names, algorithm); the keys themselves
//! are read by [`signers`], when `serve`, `deliver` and `send` start, so a command that
//! never delivers does not need them.

use std::path::PathBuf;

use anyhow::bail;
use outbox_mime::dkim::{Algorithm, DkimKey, DkimSigner, DkimSigners};
use serde::Deserialize;

/// One `[[dkim]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimEntry {
    /// The signing domain (`d=`): signs mail whose From domain is this or a subdomain.
    pub domain: String,
    /// The selector (`s=`): the key is published at `SELECTOR._domainkey.DOMAIN`.
    pub selector: String,
    /// A PEM private key: RSA (2048 bits or more) or Ed25519.
    pub key_file: PathBuf,
    /// `rsa` or `ed25519` (also `rsa-sha256`, `ed25519-sha256`): checked against the key.
    pub algorithm: Option<String>,
    /// The headers to sign, replacing the default list; From is always signed.
    pub headers: Option<Vec<String>>,
}

impl DkimEntry {
    /// Checks what needs no key file; an error names the entry (1-based).
    pub fn check(&self, index: usize) -> anyhow::Result<()> {
        let entry = index + 1;
        let domain = self.domain.trim().trim_end_matches('.');
        let label = |s: &str| {
            !s.is_empty()
                && s.split('.').all(|part| {
                    !part.is_empty()
                        && part
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                })
        };
        if !label(domain) {
            bail!(
                "configuration: dkim entry {entry}: domain {:?} is not a domain name",
                self.domain
            );
        }
        if !label(self.selector.trim()) {
            bail!(
                "configuration: dkim entry {entry}: selector {:?} is not a DNS label",
                self.selector
            );
        }
        if let Some(algorithm) = &self.algorithm {
            algorithm
                .parse::<Algorithm>()
                .map_err(|err| anyhow::anyhow!("configuration: dkim entry {entry}: {err}"))?;
        }
        let bad_header =
            |h: &&String| h.is_empty() || !h.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        if let Some(bad) = self.headers.iter().flatten().find(bad_header) {
            bail!("configuration: dkim entry {entry}: header {bad:?} is not a header name");
        }
        Ok(())
    }

    /// Loads the key and builds the signer. An error names the entry and the key file,
    /// never the key.
    pub fn signer(&self, index: usize) -> anyhow::Result<DkimSigner> {
        self.check(index)?;
        let entry = index + 1;
        let file = self.key_file.display();
        let pem = std::fs::read(&self.key_file).map_err(|err| {
            anyhow::anyhow!("configuration: dkim entry {entry}: cannot read key_file {file}: {err}")
        })?;
        let key = DkimKey::from_pem(&pem).map_err(|err| {
            anyhow::anyhow!("configuration: dkim entry {entry}: key_file {file}: {err}")
        })?;
        if let Some(algorithm) = &self.algorithm {
            let configured: Algorithm = algorithm.parse()?;
            if configured != key.algorithm() {
                bail!(
                    "configuration: dkim entry {entry}: key_file {file}: algorithm {} does not match the key, which is {}",
                    configured.key_type(),
                    key.algorithm().key_type()
                );
            }
        }
        let signer = DkimSigner::new(&self.domain, &self.selector, key);
        Ok(match &self.headers {
            Some(headers) => signer.with_headers(headers.iter().cloned()),
            None => signer,
        })
    }
}

/// Checks every entry without reading key files.
pub fn check(entries: &[DkimEntry]) -> anyhow::Result<()> {
    entries
        .iter()
        .enumerate()
        .try_for_each(|(index, entry)| entry.check(index))
}

/// Every entry's signer, keys loaded, in order.
pub fn signers(entries: &[DkimEntry]) -> anyhow::Result<DkimSigners> {
    let signers = entries
        .iter()
        .enumerate()
        .map(|(index, entry)| entry.signer(index))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(DkimSigners::new(signers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> String {
        format!(
            "{}/../outbox-mime/testdata/dkim/{name}",
            env!("CARGO_MANIFEST_DIR")
        )
    }

    fn entries(text: &str) -> anyhow::Result<Vec<DkimEntry>> {
        let config = crate::config::tests::parse(text)?;
        Ok(config.dkim)
    }

    #[test]
    fn entries_load_their_keys_and_headers() {
        let text = format!(
            "[[dkim]]\ndomain = \"Example.COM\"\nselector = \"s2026\"\nkey_file = {:?}\n\
             [[dkim]]\ndomain = \"example.com\"\nselector = \"ed\"\nkey_file = {:?}\n\
             algorithm = \"ed25519\"\nheaders = [\"Subject\", \"To\"]\n",
            testdata("rsa2048.pem"),
            testdata("ed25519.pem")
        );
        let signers = signers(&entries(&text).unwrap()).unwrap();
        let [rsa, ed] = signers.signers() else {
            panic!("two signers")
        };
        assert_eq!(rsa.to_string(), "d=example.com s=s2026 rsa-sha256");
        assert_eq!(ed.to_string(), "d=example.com s=ed ed25519-sha256");
        assert_eq!(ed.headers(), ["From", "Subject", "To"]);
    }

    #[test]
    fn bad_entries_are_named_without_key_material() {
        for (text, wanted) in [
            (
                "[[dkim]]\ndomain = \"example.com\"\nselector = \"a b\"\nkey_file = \"k\"".to_string(),
                "dkim entry 1: selector \"a b\" is not a DNS label".to_string(),
            ),
            (
                "[[dkim]]\ndomain = \"\"\nselector = \"s\"\nkey_file = \"k\"".into(),
                "dkim entry 1: domain \"\" is not a domain name".into(),
            ),
            (
                "[[dkim]]\ndomain = \"a.test\"\nselector = \"s\"\nkey_file = \"k\"\nalgorithm = \"dsa\"".into(),
                "unknown DKIM algorithm \"dsa\"".into(),
            ),
            (
                "[[dkim]]\ndomain = \"a.test\"\nselector = \"s\"\nkey_file = \"k\"\nkey = \"x\"".into(),
                "unknown field `key`".into(),
            ),
        ] {
            let err = format!("{:#}", crate::config::tests::parse(&text).unwrap_err());
            assert!(err.contains(&wanted), "{err}");
        }
        let load = |key_file: &str, algorithm: &str| {
            let text = format!(
                "[[dkim]]\ndomain = \"a.test\"\nselector = \"s\"\nkey_file = {key_file:?}\n{algorithm}"
            );
            format!("{:#}", signers(&entries(&text).unwrap()).unwrap_err())
        };
        let missing = load("/nonexistent/dkim.pem", "");
        assert!(
            missing.contains("cannot read key_file /nonexistent/dkim.pem"),
            "{missing}"
        );
        let small = load(&testdata("rsa1024.pem"), "");
        assert!(
            small.contains("rsa1024.pem: the RSA key has 1024 bits"),
            "{small}"
        );
        let mismatch = load(&testdata("ed25519.pem"), "algorithm = \"rsa\"");
        assert!(
            mismatch.contains("algorithm rsa does not match the key, which is ed25519"),
            "{mismatch}"
        );
        let not_pem = load(&format!("{}/Cargo.toml", env!("CARGO_MANIFEST_DIR")), "");
        assert!(not_pem.contains("not a PEM file"), "{not_pem}");
        for err in [missing, small, mismatch] {
            assert!(!err.contains("BEGIN"), "{err}");
        }
    }
}
