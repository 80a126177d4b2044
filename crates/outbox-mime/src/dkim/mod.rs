//! DKIM signing (RFC 6376, RFC 8463): `rsa-sha256` and `ed25519-sha256`, relaxed/relaxed.
//!
//! A [`DkimSigner`] is one `[[dkim]]` entry: a domain, a selector, a key and the headers to
//! sign. [`DkimSigners`] holds them all and picks, per message, the entries whose domain is
//! the From domain or its closest configured parent; each of those adds one signature.
//!
//! Every listed header that is present is signed once more than it occurs ("over-signing",
//! RFC 6376 §8.15), so a copy added in transit breaks the signature. Bad input (no From, two
//! From fields, a From without a domain, a broken header) is never an error to deliver: the
//! message goes out unsigned and [`Unsigned`] says why.
//!
//! ```
//! use outbox_mime::dkim::{DkimKey, DkimSigner, DkimSigners};
//! # let pem = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/dkim/ed25519.pem"))?;
//! let key = DkimKey::from_pem(&pem)?;
//! let signers = DkimSigners::new(vec![DkimSigner::new("example.com", "s2026", key)]);
//! let message = b"From: a@example.com\r\nSubject: hi\r\n\r\nhello\r\n";
//! let signed = signers.sign(message, 1_700_000_000)?;
//! assert!(signed.starts_with(b"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod canon;
mod key;

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

pub use key::{Algorithm, DkimKey, KeyError, MIN_RSA_BITS};

/// The headers signed when an entry does not list its own (issue 11): those a receiver
/// shows or acts on. From is signed in any case.
pub const DEFAULT_HEADERS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// Longest line of the DKIM-Signature field, without its CRLF (RFC 5322 §2.1.1's "SHOULD").
const LINE_LIMIT: usize = 78;

/// One signing identity: `d=`, `s=`, a key and the headers to sign.
#[derive(Debug, Clone)]
pub struct DkimSigner {
    domain: String,
    selector: String,
    key: Arc<DkimKey>,
    headers: Vec<String>,
}

impl DkimSigner {
    /// A signer for `domain` (lowercased) with the [`DEFAULT_HEADERS`].
    pub fn new(domain: &str, selector: &str, key: DkimKey) -> DkimSigner {
        DkimSigner {
            domain: domain.trim().trim_end_matches('.').to_ascii_lowercase(),
            selector: selector.trim().to_string(),
            key: Arc::new(key),
            headers: DEFAULT_HEADERS.iter().map(|h| h.to_string()).collect(),
        }
    }

    /// Replaces the headers to sign; From is added when missing (RFC 6376 §5.4 requires it),
    /// and duplicates (case-insensitive) are dropped.
    pub fn with_headers<I, S>(mut self, headers: I) -> DkimSigner
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut list: Vec<String> = vec!["From".into()];
        for header in headers {
            let header: String = header.into();
            let header = header.trim().to_string();
            if !header.is_empty() && !list.iter().any(|h| h.eq_ignore_ascii_case(&header)) {
                list.push(header);
            }
        }
        self.headers = list;
        self
    }

    /// The signing domain (`d=`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The selector (`s=`).
    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// The key's algorithm (`a=`).
    pub fn algorithm(&self) -> Algorithm {
        self.key.algorithm()
    }

    /// The headers this signer signs (when present).
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// The key.
    pub fn key(&self) -> &DkimKey {
        &self.key
    }

    /// Does this entry cover mail from `domain` (equal, or a subdomain of it)?
    fn covers(&self, domain: &str) -> bool {
        domain == self.domain
            || domain
                .strip_suffix(self.domain.as_str())
                .is_some_and(|rest| rest.ends_with('.'))
    }

    /// The `DKIM-Signature` field (folded, with its final CRLF) for a message already split.
    fn signature_field(
        &self,
        fields: &[canon::HeaderField<'_>],
        body: &[u8],
        timestamp: u64,
    ) -> Result<Vec<u8>, KeyError> {
        let body_hash = STANDARD.encode(canon::relaxed_body_hash(body));
        // h=: each listed header present, once more than it occurs (over-signing).
        let mut signed_names: Vec<&str> = Vec::new();
        for name in &self.headers {
            let count = fields
                .iter()
                .filter(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
                .count();
            if count > 0 {
                signed_names.extend(std::iter::repeat_n(name.as_str(), count + 1));
            }
        }
        // The data to sign: the signed fields, bottom-up per name (RFC 6376 §5.4.2), then
        // this field with an empty b= and no final CRLF (§3.7).
        let mut data = Vec::with_capacity(1024);
        let mut used = vec![false; fields.len()];
        for name in &signed_names {
            let instance = fields
                .iter()
                .enumerate()
                .rev()
                .find(|(i, f)| !used[*i] && f.name.eq_ignore_ascii_case(name.as_bytes()));
            if let Some((i, field)) = instance {
                used[i] = true;
                canon::relaxed_header(field.raw, &mut data);
            }
        }
        let mut folder = Folder::new("DKIM-Signature:");
        folder.atom(&format!("v=1; a={};", self.algorithm().tag()), true);
        folder.atom("c=relaxed/relaxed;", true);
        folder.atom(&format!("d={};", self.domain), true);
        folder.atom(&format!("s={};", self.selector), true);
        folder.atom(&format!("t={timestamp};"), true);
        let mut names = signed_names.iter().peekable();
        let mut first = true;
        while let Some(name) = names.next() {
            let sep = if names.peek().is_some() { ":" } else { ";" };
            let piece = if first {
                format!("h={name}{sep}")
            } else {
                format!("{name}{sep}")
            };
            folder.atom(&piece, first);
            first = false;
        }
        folder.atom("bh=", true);
        folder.breakable(&body_hash);
        folder.text(";");
        folder.atom("b=", true);
        let unsigned = folder.clone().finish();
        let mut canonical = Vec::with_capacity(unsigned.len());
        canon::relaxed_header(&unsigned, &mut canonical);
        canonical.truncate(canonical.len() - 2);
        data.extend_from_slice(&canonical);
        let signature = STANDARD.encode(self.key.sign(&data)?);
        folder.breakable(&signature);
        let mut field = folder.finish();
        field.extend_from_slice(b"\r\n");
        Ok(field)
    }
}

/// Builds a header field in lines of at most [`LINE_LIMIT`] characters, breaking with
/// CRLF + TAB only where RFC 6376 allows folding whitespace.
#[derive(Clone)]
struct Folder {
    out: Vec<u8>,
    line: usize,
}

impl Folder {
    fn new(name: &str) -> Folder {
        Folder {
            out: name.as_bytes().to_vec(),
            line: name.len(),
        }
    }

    fn fold(&mut self) {
        self.out.extend_from_slice(b"\r\n\t");
        self.line = 1;
    }

    /// Adds `text` unbroken, after a space when `spaced`; folds first if it would not fit.
    fn atom(&mut self, text: &str, spaced: bool) {
        let needed = text.len() + usize::from(spaced);
        if self.line + needed > LINE_LIMIT && self.line > 1 {
            self.fold();
        } else if spaced {
            self.out.push(b' ');
            self.line += 1;
        }
        self.text(text);
    }

    /// Adds `text` exactly, on the current line.
    fn text(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.line += text.len();
    }

    /// Adds base64 text that may be broken anywhere (FWS is allowed inside b= and bh=).
    fn breakable(&mut self, mut text: &str) {
        while !text.is_empty() {
            // Leave room for a `;` after the value.
            let room = LINE_LIMIT.saturating_sub(self.line + 1);
            if room == 0 {
                self.fold();
                continue;
            }
            let take = room.min(text.len());
            self.text(&text[..take]);
            text = &text[take..];
        }
    }

    fn finish(self) -> Vec<u8> {
        self.out
    }
}

/// Why a message goes out unsigned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unsigned {
    /// No `[[dkim]]` entry covers the From domain.
    #[error("no [[dkim]] entry for {domain}")]
    NoEntry {
        /// The From domain.
        domain: String,
    },
    /// The message has no From field.
    #[error("the message has no From header")]
    NoFrom,
    /// The message has more than one From field.
    #[error("the message has {count} From headers")]
    SeveralFrom {
        /// How many.
        count: usize,
    },
    /// The From field holds no address with a domain.
    #[error("the From header has no domain")]
    FromWithoutDomain,
    /// A header line is neither a field nor a continuation.
    #[error("the message header is malformed (a line without a colon)")]
    MalformedHeader,
    /// The key could not sign.
    #[error("signing with d={domain} s={selector} failed: {error}")]
    Failed {
        /// The entry's domain.
        domain: String,
        /// The entry's selector.
        selector: String,
        /// Why.
        error: KeyError,
    },
}

/// All configured signers; chooses the ones that apply to a message.
#[derive(Debug, Clone, Default)]
pub struct DkimSigners {
    signers: Vec<DkimSigner>,
}

impl DkimSigners {
    /// The signers of every `[[dkim]]` entry, in configuration order.
    pub fn new(signers: Vec<DkimSigner>) -> DkimSigners {
        DkimSigners { signers }
    }

    /// True when there are no entries (messages go out unsigned without looking at them).
    pub fn is_empty(&self) -> bool {
        self.signers.is_empty()
    }

    /// Every entry.
    pub fn signers(&self) -> &[DkimSigner] {
        &self.signers
    }

    /// The entries that will sign `message`: those whose domain is the From domain or its
    /// most specific configured parent (all entries with that same domain), or why none.
    pub fn plan(&self, message: &[u8]) -> Result<Vec<&DkimSigner>, Unsigned> {
        let (fields, _) = canon::split(message).map_err(|_| Unsigned::MalformedHeader)?;
        self.plan_fields(&fields)
    }

    fn plan_fields(&self, fields: &[canon::HeaderField<'_>]) -> Result<Vec<&DkimSigner>, Unsigned> {
        let domain = from_domain(fields)?;
        let best = self
            .signers
            .iter()
            .filter(|s| s.covers(&domain))
            .map(|s| s.domain.len())
            .max()
            .ok_or(Unsigned::NoEntry {
                domain: domain.clone(),
            })?;
        Ok(self
            .signers
            .iter()
            .filter(|s| s.domain.len() == best && s.covers(&domain))
            .collect())
    }

    /// `message` with one `DKIM-Signature` field prepended per applicable entry; `timestamp`
    /// (seconds since the epoch) becomes `t=`.
    pub fn sign(&self, message: &[u8], timestamp: u64) -> Result<Vec<u8>, Unsigned> {
        let (fields, body_start) = canon::split(message).map_err(|_| Unsigned::MalformedHeader)?;
        let signers = self.plan_fields(&fields)?;
        let body = message.get(body_start..).unwrap_or_default();
        let mut out = Vec::with_capacity(message.len() + 600 * signers.len());
        for signer in signers {
            let field = signer
                .signature_field(&fields, body, timestamp)
                .map_err(|error| Unsigned::Failed {
                    domain: signer.domain.clone(),
                    selector: signer.selector.clone(),
                    error,
                })?;
            out.extend_from_slice(&field);
        }
        out.extend_from_slice(message);
        Ok(out)
    }
}

impl fmt::Display for DkimSigner {
    /// `d=example.com s=s2026 rsa-sha256`, as `queue show` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "d={} s={} {}",
            self.domain,
            self.selector,
            self.algorithm()
        )
    }
}

/// The domain of the single From field's address, lowercased.
fn from_domain(fields: &[canon::HeaderField<'_>]) -> Result<String, Unsigned> {
    let mut from = fields
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case(b"From"));
    let field = from.next().ok_or(Unsigned::NoFrom)?;
    let extra = from.count();
    if extra > 0 {
        return Err(Unsigned::SeveralFrom { count: extra + 1 });
    }
    address_domain(&field.value()).ok_or(Unsigned::FromWithoutDomain)
}

/// The domain of a mailbox `Name <local@domain>` or `local@domain (comment)`: lenient, so
/// that encoded-word display names do not matter.
fn address_domain(value: &str) -> Option<String> {
    let spec = match (value.rfind('<'), value.rfind('>')) {
        (Some(open), Some(close)) if open < close => &value[open + 1..close],
        _ => value.split('(').next().unwrap_or_default(),
    };
    let (_, domain) = spec.trim().rsplit_once('@')?;
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let valid = !domain.is_empty()
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b >= 0x80);
    valid.then_some(domain)
}

#[cfg(test)]
mod tests;
