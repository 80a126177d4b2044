//! VERP return paths (`[bounces] domain`): each delivery's envelope sender names the
//! recipient row it was for, so the bounce that comes back to it says whose address
//! failed, whatever the bouncing server writes in its report.
//!
//! The return path is `bounces+TOKEN@DOMAIN`. TOKEN is the recipient row id followed by a
//! truncated HMAC-SHA256 of it (80 bits, keyed by `[bounces] secret`), in lowercase
//! base32 (RFC 4648 §6 alphabet, no padding):
//! - only `a-z` and `2-7`: a dot-atom local part (RFC 5321 §4.1.2) with nothing to quote;
//! - read case-insensitively, because some servers lowercase (or uppercase) local parts;
//! - about 21 characters for a queue of a million recipients, far under the 64 octets of
//!   a local part (RFC 5321 §4.5.3.1.1).
//!
//! A token that does not verify (forged, tampered, another installation's) names nothing:
//! [`Verp::recipient`] returns `None`, and the bounce is kept as unmatched.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The local part before the `+`.
pub const VERP_PREFIX: &str = "bounces";

/// Bytes of the MAC kept in a token (80 bits).
const MAC_LEN: usize = 10;

/// The signer and reader of VERP return paths for one bounce domain.
#[derive(Clone)]
pub struct Verp {
    domain: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for Verp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verp")
            .field("domain", &self.domain)
            .field("key", &"***")
            .finish()
    }
}

impl Verp {
    /// A signer for `domain` (stored lowercase) with the secret `key`.
    pub fn new(domain: &str, key: &[u8]) -> Verp {
        Verp {
            domain: domain.trim().trim_end_matches('.').to_ascii_lowercase(),
            key: key.to_vec(),
        }
    }

    /// The bounce domain, lowercase.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// True when `address` is at the bounce domain (any local part), case-insensitively.
    pub fn is_bounce_address(&self, address: &str) -> bool {
        address.rsplit_once('@').is_some_and(|(_, domain)| {
            domain
                .trim_end_matches('.')
                .eq_ignore_ascii_case(&self.domain)
        })
    }

    /// The envelope sender of a delivery to recipient row `recipient_id`.
    pub fn return_path(&self, recipient_id: i64) -> String {
        format!("{VERP_PREFIX}+{}@{}", self.token(recipient_id), self.domain)
    }

    /// The token of a recipient row: base32(MAC || id as minimal big-endian bytes).
    pub fn token(&self, recipient_id: i64) -> String {
        let id = id_bytes(recipient_id);
        let mut raw = self.mac(&id).to_vec();
        raw.extend_from_slice(&id);
        base32_encode(&raw)
    }

    /// The recipient row a return path (or a bare token) names, when its MAC verifies;
    /// `None` for anything else. The domain must be the bounce domain when one is given.
    /// Case-insensitive throughout.
    pub fn recipient(&self, address: &str) -> Option<i64> {
        let address = address.trim().trim_start_matches('<').trim_end_matches('>');
        let local = match address.rsplit_once('@') {
            Some((local, domain)) => {
                if !domain
                    .trim_end_matches('.')
                    .eq_ignore_ascii_case(&self.domain)
                {
                    return None;
                }
                local
            }
            None => address,
        };
        let token = match local.split_once('+') {
            Some((prefix, token)) if prefix.eq_ignore_ascii_case(VERP_PREFIX) => token,
            Some(_) => return None,
            None => local,
        };
        self.verify(token)
    }

    /// The first return path of this domain in `text` whose token verifies (a complaint's
    /// `Original-Mail-From`, a returned message's `Return-Path`): its recipient id. At
    /// most 64 candidates are tried, so a report stuffed with fake ones costs little.
    pub fn find_in(&self, text: &[u8]) -> Option<i64> {
        let prefix = format!("{VERP_PREFIX}+");
        let lower = text.to_ascii_lowercase();
        let domain = self.domain.as_bytes();
        let mut from = 0;
        for _ in 0..64 {
            let at = find(&lower[from..], prefix.as_bytes())? + from;
            let start = at + prefix.len();
            let end = lower[start..]
                .iter()
                .position(|b| !(b.is_ascii_lowercase() || (b'2'..=b'7').contains(b)))
                .map_or(lower.len(), |n| start + n);
            from = end.max(start);
            let rest = &lower[end..];
            if rest.first() == Some(&b'@')
                && rest[1..].starts_with(domain)
                && rest
                    .get(1 + domain.len())
                    .is_none_or(|b| !(b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.'))
                && let Some(id) = std::str::from_utf8(&lower[start..end])
                    .ok()
                    .and_then(|token| self.verify(token))
            {
                return Some(id);
            }
        }
        None
    }

    /// The recipient id of a bare token, when its MAC verifies.
    pub fn verify(&self, token: &str) -> Option<i64> {
        // 10 bytes of MAC and at most 8 of id: 29 base32 characters at most.
        if token.is_empty() || token.len() > 29 {
            return None;
        }
        let raw = base32_decode(token)?;
        if raw.len() <= MAC_LEN || raw.len() > MAC_LEN + 8 {
            return None;
        }
        let (mac, id) = raw.split_at(MAC_LEN);
        // Only the canonical (minimal) encoding of an id is valid: one token per row.
        if id.len() > 1 && id[0] == 0 {
            return None;
        }
        let mut full = Hmac::<Sha256>::new_from_slice(&self.key).ok()?;
        full.update(b"outbox verp 1\0");
        full.update(id);
        full.verify_truncated_left(mac).ok()?;
        let mut value: u64 = 0;
        for &byte in id {
            value = (value << 8) | u64::from(byte);
        }
        i64::try_from(value).ok().filter(|id| *id > 0)
    }

    fn mac(&self, id: &[u8]) -> [u8; MAC_LEN] {
        // HMAC takes keys of any length: new_from_slice cannot fail.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(b"outbox verp 1\0");
        mac.update(id);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// An id as big-endian bytes without leading zero bytes (at least one byte).
fn id_bytes(id: i64) -> Vec<u8> {
    let bytes = id.max(0).to_be_bytes();
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(7);
    bytes[first..].to_vec()
}

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// RFC 4648 §6 base32, lowercase, without padding.
fn base32_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in data {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The inverse of [`base32_encode`], in either case; `None` for any other character or
/// for trailing bits that are not zero (so each byte string has one encoding).
fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let value = match c.to_ascii_lowercase() {
            c @ b'a'..=b'z' => c - b'a',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        buffer = (buffer << 5) | u32::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    if bits >= 5 || buffer != 0 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verp() -> Verp {
        Verp::new("Bounces.Example.TEST", b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn return_paths_name_their_recipient_in_any_case() {
        let verp = verp();
        for id in [1, 255, 256, 1_000_000, i64::MAX] {
            let path = verp.return_path(id);
            assert!(path.starts_with("bounces+"), "{path}");
            assert!(path.ends_with("@bounces.example.test"), "{path}");
            let local = path.split('@').next().unwrap();
            assert!(local.len() <= 64, "{path}");
            assert!(
                local[8..]
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)),
                "{path}"
            );
            assert_eq!(verp.recipient(&path), Some(id), "{path}");
            assert_eq!(
                verp.recipient(&path.to_ascii_uppercase()),
                Some(id),
                "{path}"
            );
            assert_eq!(verp.recipient(&format!("<{path}>")), Some(id), "{path}");
        }
        assert_eq!(
            verp.return_path(1_000_000).len(),
            "bounces+".len() + 21 + "@bounces.example.test".len()
        );
    }

    #[test]
    fn forged_and_tampered_tokens_name_nothing() {
        let verp = verp();
        let path = verp.return_path(42);
        let token = verp.token(42);
        // Another key.
        let other = Verp::new("bounces.example.test", b"another secret of some length!!");
        assert_eq!(other.recipient(&path), None);
        // Every single-character change.
        for i in 0..token.len() {
            for c in ALPHABET {
                let mut changed = token.clone().into_bytes();
                if changed[i] == *c {
                    continue;
                }
                changed[i] = *c;
                let changed = String::from_utf8(changed).unwrap();
                assert_eq!(verp.verify(&changed), None, "{changed}");
            }
        }
        // Another domain, another prefix, junk.
        assert_eq!(
            verp.recipient(&format!("bounces+{token}@elsewhere.test")),
            None
        );
        assert_eq!(
            verp.recipient(&format!("other+{token}@bounces.example.test")),
            None
        );
        for junk in [
            "",
            "bounces@bounces.example.test",
            "bounces+@bounces.example.test",
            "bounces+!!!@bounces.example.test",
            &"a".repeat(200),
        ] {
            assert_eq!(verp.recipient(junk), None, "{junk}");
        }
        // A truncated token.
        assert_eq!(verp.verify(&token[..token.len() - 1]), None);
    }

    #[test]
    fn return_paths_are_found_in_report_text() {
        let verp = verp();
        let path = verp.return_path(77).to_ascii_uppercase();
        let forged = "bounces+aaaaaaaaaaaaaaaaaaaaa@bounces.example.test";
        let text = format!(
            "Original-Mail-From: <{forged}>\r\nReturn-Path: <bounces+x@bounces.example.test.evil>\r\nX: <{path}>\r\n"
        );
        assert_eq!(verp.find_in(text.as_bytes()), Some(77));
        assert_eq!(verp.find_in(forged.as_bytes()), None);
        let elsewhere = verp
            .return_path(77)
            .replace("example.test", "example.test.evil");
        assert_eq!(verp.find_in(elsewhere.as_bytes()), None);
        assert_eq!(verp.find_in(b"bounces+"), None);
        assert_eq!(verp.find_in(b""), None);
    }

    #[test]
    fn base32_round_trips_and_refuses_non_canonical_text() {
        for data in [
            &b""[..],
            b"\0",
            b"f",
            b"fo",
            b"foo",
            b"foob",
            b"fooba",
            b"foobar",
        ] {
            let text = base32_encode(data);
            assert_eq!(base32_decode(&text).as_deref(), Some(data), "{text}");
        }
        assert_eq!(base32_encode(b"foobar"), "mzxw6ytboi");
        // "my" decodes "f" with non-zero trailing bits: not the canonical "ma".
        assert_eq!(base32_decode("ma").as_deref(), Some(&b"`"[..]));
        assert_eq!(base32_decode("mb"), None);
        assert_eq!(base32_decode("a1"), None);
    }
}
