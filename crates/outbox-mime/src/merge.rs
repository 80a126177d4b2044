//! Mail merge (the seed's `email_token`, `-tokens`, `-merge` and `email_merge`): `#NAME#`
//! markers are replaced by values, per recipient, at delivery time. An unknown marker stays
//! as it is.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::encoding::{Charset, TransferEncoding};

/// Where merge values come from. Implemented by maps, slices of pairs, references and
/// `Option`s; a pair `(first, then)` looks in `first`, then in `then`, so the queue can
/// chain a recipient's merge values before the message's tokens without cloning either.
pub trait TokenLookup {
    /// The value for the token `name`, if there is one.
    fn token(&self, name: &str) -> Option<&str>;
}

impl TokenLookup for BTreeMap<String, String> {
    fn token(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl<S: BuildHasher> TokenLookup for HashMap<String, String, S> {
    fn token(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl<K: AsRef<str>, V: AsRef<str>> TokenLookup for [(K, V)] {
    fn token(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(key, _)| key.as_ref() == name)
            .map(|(_, value)| value.as_ref())
    }
}

impl<K: AsRef<str>, V: AsRef<str>> TokenLookup for Vec<(K, V)> {
    fn token(&self, name: &str) -> Option<&str> {
        self.as_slice().token(name)
    }
}

impl<T: TokenLookup + ?Sized> TokenLookup for &T {
    fn token(&self, name: &str) -> Option<&str> {
        (**self).token(name)
    }
}

impl<T: TokenLookup> TokenLookup for Option<T> {
    fn token(&self, name: &str) -> Option<&str> {
        self.as_ref().and_then(|inner| inner.token(name))
    }
}

impl<A: TokenLookup, B: TokenLookup> TokenLookup for (A, B) {
    fn token(&self, name: &str) -> Option<&str> {
        self.0.token(name).or_else(|| self.1.token(name))
    }
}

/// The marker for a token: `email_token("FirstName")` is `#FirstName#`.
pub fn email_token(name: &str) -> String {
    format!("#{name}#")
}

/// Longest token name a marker may carry.
const MAX_NAME: usize = 128;

/// Characters of a token name: letters, digits, `_`, `-`, `.`.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'
}

/// True when `name` can appear in a `#NAME#` marker.
pub fn is_token_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && name.bytes().all(is_name_byte)
}

/// The marker starting at `input[at]` (a `#`): its name and the index after its closing `#`.
fn marker_at(input: &[u8], at: usize) -> Option<(&str, usize)> {
    let rest = &input[at + 1..];
    let len = rest
        .iter()
        .take(MAX_NAME + 1)
        .position(|&b| !is_name_byte(b))?;
    if len == 0 || rest[len] != b'#' {
        return None;
    }
    let name = std::str::from_utf8(&rest[..len]).ok()?;
    Some((name, at + len + 2))
}

/// True when `text` holds something shaped like a marker (known or not).
pub fn contains_marker(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'#' && marker_at(bytes, i).is_some())
}

/// Replaces every marker whose token `values` knows; `emit` writes a value in the encoding
/// the context needs. `None` when nothing was replaced (so callers can keep their bytes).
pub(crate) fn replace_markers(
    input: &[u8],
    values: &impl TokenLookup,
    mut emit: impl FnMut(&str, &mut Vec<u8>),
) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 0;
    while let Some(found) = input[i..].iter().position(|&b| b == b'#') {
        let at = i + found;
        match marker_at(input, at) {
            Some((name, end)) => match values.token(name) {
                Some(value) => {
                    let buffer = out.get_or_insert_with(|| Vec::with_capacity(input.len() + 64));
                    buffer.extend_from_slice(&input[copied..at]);
                    emit(value, buffer);
                    copied = end;
                    i = end;
                }
                // An unknown marker stays; its closing `#` may open the next one.
                None => i = end - 1,
            },
            None => i = at + 1,
        }
    }
    let mut out = out?;
    out.extend_from_slice(&input[copied..]);
    Some(out)
}

/// Replaces markers in a string with plain values.
pub fn merge_text(text: &str, values: &impl TokenLookup) -> String {
    match replace_markers(text.as_bytes(), values, |v, out| {
        out.extend_from_slice(v.as_bytes())
    }) {
        Some(bytes) => String::from_utf8(bytes).unwrap_or_else(|_| text.to_string()),
        None => text.to_string(),
    }
}

/// `email_merge`: replaces the markers in `data` with `tokens`, each value written in
/// `charset` (default UTF-8) and encoded with `transfer_encoding` (default: as is).
///
/// When `data` is a MIME message or part (a header block with `MIME-Version` or
/// `Content-Type`), it is merged part by part as [`merge_message`] does, each value encoded
/// for its own part, and `charset`/`transfer_encoding` are not used.
pub fn merge(
    data: &[u8],
    tokens: &impl TokenLookup,
    charset: Option<Charset>,
    transfer_encoding: Option<TransferEncoding>,
) -> Vec<u8> {
    if crate::mime_merge::looks_like_mime(data) {
        return merge_message(data, tokens);
    }
    let charset = charset.unwrap_or(Charset::Utf8);
    let replaced = replace_markers(data, tokens, |value, out| {
        let bytes = charset.encode_lossy(value);
        match transfer_encoding {
            None | Some(TransferEncoding::SevenBit | TransferEncoding::EightBit) => {
                out.extend_from_slice(&bytes);
            }
            Some(TransferEncoding::QuotedPrintable) => {
                out.extend_from_slice(&quoted_printable::encode(&bytes));
            }
            Some(TransferEncoding::Base64) => {
                out.extend_from_slice(STANDARD.encode(&bytes).as_bytes());
            }
        }
    });
    replaced.unwrap_or_else(|| data.to_vec())
}

/// Merges a composed message for one recipient: markers are replaced in the header fields
/// (as encoded-words when needed, RFC 2047) and in every text part that is not an attachment (decoded, replaced and
/// re-encoded with the part's charset and transfer encoding); other parts are copied as
/// they are. Bytes without any known marker come back unchanged.
pub fn merge_message(mime: &[u8], values: &impl TokenLookup) -> Vec<u8> {
    crate::mime_merge::merge_entity(mime, values, true).unwrap_or_else(|| mime.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn known_markers_are_replaced_unknown_kept() {
        let tokens = map(&[("First", "Ann"), ("Last", "Lee")]);
        assert_eq!(email_token("First"), "#First#");
        assert_eq!(
            merge_text("Dear #First# #Last#, #Other# ## # #First#!", &tokens),
            "Dear Ann Lee, #Other# ## # Ann!"
        );
        assert_eq!(merge_text("#Unknown#First#", &tokens), "#UnknownAnn");
    }

    #[test]
    fn chained_lookup_prefers_the_recipient() {
        let defaults = map(&[("First", "Friend"), ("Last", "")]);
        let ann = map(&[("First", "Ann")]);
        assert_eq!(merge_text("#First#|#Last#", &(&ann, &defaults)), "Ann|");
        let none: Option<&BTreeMap<String, String>> = None;
        assert_eq!(merge_text("#First#", &(none, &defaults)), "Friend");
        let pairs = vec![("First", "Bo")];
        assert_eq!(merge_text("#First#", &pairs), "Bo");
    }

    #[test]
    fn values_are_encoded_for_the_context() {
        let tokens = map(&[("N", "Jörg")]);
        assert_eq!(
            merge(
                b"Hi #N#",
                &tokens,
                None,
                Some(TransferEncoding::QuotedPrintable)
            ),
            b"Hi J=C3=B6rg"
        );
        assert_eq!(
            merge(b"Hi #N#", &tokens, Some(Charset::Latin1), None),
            b"Hi J\xf6rg"
        );
        assert_eq!(
            merge(b"Hi #N#", &tokens, None, Some(TransferEncoding::Base64)),
            b"Hi SsO2cmc="
        );
        assert!(contains_marker("a #B# c") && !contains_marker("a # b"));
    }
}
