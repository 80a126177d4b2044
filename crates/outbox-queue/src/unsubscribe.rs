//! One-click unsubscribe (RFC 8058, RFC 2369): signed links that name a recipient and a
//! list, and the headers that carry them.
//!
//! A message queued with [`NewMessage::list_unsubscribe`](crate::NewMessage) gets, per
//! recipient, at delivery:
//!
//! ```text
//! List-Unsubscribe: <https://mail.example.com/u/TOKEN>, <mailto:unsubscribe@example.com?subject=unsubscribe%20TOKEN>
//! List-Unsubscribe-Post: List-Unsubscribe=One-Click
//! ```
//!
//! TOKEN is `base64url(address "\n" list "\n" message_id) "." base64url(HMAC-SHA256(key,
//! label || payload))`: it names the recipient, the list and the message it came in, in the
//! clear (an unsubscribe link is not a secret from the person it was mailed to), and cannot
//! be made for another address or list without the key. The HTTP server answers `POST /u/TOKEN` by suppressing that address
//! for that list ([`Unsubscribe::verify`] first).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

use crate::suppression::{normalise_address, normalise_list};

/// What a token's MAC covers before the payload: a key used for something else one day
/// (VERP return paths, say) never makes a valid unsubscribe token.
const LABEL: &[u8] = b"outbox unsubscribe v1\0";

/// The shortest secret accepted, in octets.
pub const MIN_SECRET_LEN: usize = 16;

/// The longest token [`Unsubscribe::verify`] reads: a 256-octet address and a 256-octet
/// list, base64url, plus the MAC, with room to spare.
const MAX_TOKEN_LEN: usize = 1024;

/// The longest `base_url`: a link must fit a header line with its token.
const MAX_BASE_URL_LEN: usize = 512;

/// The value of the `List-Unsubscribe-Post` header (RFC 8058 §3.1).
pub const ONE_CLICK: &str = "List-Unsubscribe=One-Click";

/// `[unsubscribe]` settings that cannot produce working links.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum UnsubscribeConfigError {
    /// `base_url` is not an absolute http(s) URL that can go in a header.
    #[error(
        "base_url {0:?}: must be an absolute https:// (or http://) URL of at most 512 octets, \
         without spaces, quotes, angle brackets, commas, a query or a fragment"
    )]
    BaseUrl(String),
    /// `secret` is too short to key the MAC.
    #[error("secret: must be at least {MIN_SECRET_LEN} octets (it is {0})")]
    ShortSecret(usize),
    /// `mailto` is not a plain address.
    #[error("mailto {0:?}: must be a plain address (local@domain), without a display name")]
    Mailto(String),
}

/// A token that is not one of ours: malformed, cut, tampered with, or signed with another
/// secret. Says nothing more, on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("not a valid unsubscribe token")]
pub struct BadToken;

/// What a valid token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubscribeRequest {
    /// The recipient, normalised as the suppression list stores it.
    pub address: String,
    /// The list, normalised (never empty: a token never unsubscribes from everything).
    pub list: String,
    /// The message whose link it is, when known (recorded with the suppression).
    pub message_id: Option<String>,
}

/// Signs and checks unsubscribe tokens and writes the headers (`[unsubscribe]`).
#[derive(Clone)]
pub struct Unsubscribe {
    base_url: String,
    mailto: Option<String>,
    key: Hmac<Sha256>,
}

impl std::fmt::Debug for Unsubscribe {
    /// Never shows the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unsubscribe")
            .field("base_url", &self.base_url)
            .field("mailto", &self.mailto)
            .finish_non_exhaustive()
    }
}

impl Unsubscribe {
    /// Links under `base_url` (`BASE_URL/u/TOKEN`; a trailing `/` is dropped), tokens keyed
    /// by `secret`, and a second `mailto:` URI when `mailto` is given.
    pub fn new(
        base_url: &str,
        secret: &[u8],
        mailto: Option<&str>,
    ) -> Result<Self, UnsubscribeConfigError> {
        let base_url = check_base_url(base_url)?;
        if secret.len() < MIN_SECRET_LEN {
            return Err(UnsubscribeConfigError::ShortSecret(secret.len()));
        }
        let mailto = mailto.map(check_mailto).transpose()?;
        let key = Hmac::<Sha256>::new_from_slice(secret)
            .map_err(|_| UnsubscribeConfigError::ShortSecret(secret.len()))?;
        Ok(Unsubscribe {
            base_url,
            mailto,
            key,
        })
    }

    /// The token for `address` on `list`, both normalised first (so that the link of
    /// `Ann@Example.org` suppresses what the suppression list matches), sent in message
    /// `message_id`.
    pub fn token(&self, address: &str, list: &str, message_id: Option<&str>) -> String {
        let address = normalise_address(address).unwrap_or_else(|_| address.to_string());
        let list = normalise_list(list).unwrap_or_else(|_| list.to_string());
        let message_id = message_id.unwrap_or("");
        let payload = format!("{address}\n{list}\n{message_id}");
        let mac = self.mac(payload.as_bytes()).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload.as_bytes()),
            URL_SAFE_NO_PAD.encode(mac)
        )
    }

    /// The link for `address` on `list` in message `message_id`: `BASE_URL/u/TOKEN`.
    pub fn link(&self, address: &str, list: &str, message_id: Option<&str>) -> String {
        format!(
            "{}/u/{}",
            self.base_url,
            self.token(address, list, message_id)
        )
    }

    /// What `token` names, when it is one of ours; the MAC is compared in constant time.
    pub fn verify(&self, token: &str) -> Result<UnsubscribeRequest, BadToken> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(BadToken);
        }
        let (payload, mac) = token.split_once('.').ok_or(BadToken)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| BadToken)?;
        let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| BadToken)?;
        self.mac(&payload)
            .verify_slice(&mac)
            .map_err(|_| BadToken)?;
        let payload = String::from_utf8(payload).map_err(|_| BadToken)?;
        let mut fields = payload.split('\n');
        let (Some(address), Some(list), Some(message_id), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(BadToken);
        };
        // Signed by us, so these were normalised when signed; checked again all the same.
        let address = normalise_address(address).map_err(|_| BadToken)?;
        let list = normalise_list(list).map_err(|_| BadToken)?;
        let id_ok = message_id.len() <= 64 && message_id.bytes().all(|b| b.is_ascii_alphanumeric());
        if list.is_empty() || !id_ok {
            return Err(BadToken);
        }
        let message_id = (!message_id.is_empty()).then(|| message_id.to_string());
        Ok(UnsubscribeRequest {
            address,
            list,
            message_id,
        })
    }

    /// The two header lines (CRLF-terminated) for `address` on `list` in `message_id`.
    pub fn headers(&self, address: &str, list: &str, message_id: Option<&str>) -> String {
        let token = self.token(address, list, message_id);
        let mut value = format!("<{}/u/{token}>", self.base_url);
        if let Some(mailto) = &self.mailto {
            // Folded before the second URI: each line stays far under 998 octets.
            value.push_str(&format!(
                ",\r\n <mailto:{mailto}?subject=unsubscribe%20{token}>"
            ));
        }
        format!("List-Unsubscribe: {value}\r\nList-Unsubscribe-Post: {ONE_CLICK}\r\n")
    }

    /// `data` with the headers for `address` on `list` in `message_id` added at the end of
    /// its header section (before the blank line; at the end of a message without a body).
    pub fn add_headers(
        &self,
        data: &[u8],
        address: &str,
        list: &str,
        message_id: Option<&str>,
    ) -> Vec<u8> {
        let headers = self.headers(address, list, message_id);
        let at = header_end(data);
        let mut out = Vec::with_capacity(data.len() + headers.len() + 2);
        out.extend_from_slice(&data[..at]);
        if at > 0 && !data[..at].ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(headers.as_bytes());
        out.extend_from_slice(&data[at..]);
        out
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.key.clone();
        mac.update(LABEL);
        mac.update(payload);
        mac
    }
}

/// Where the header section ends: the offset of the blank line (just after the last
/// header's CRLF), or the end of the data when there is none.
fn header_end(data: &[u8]) -> usize {
    if data.starts_with(b"\r\n") {
        return 0;
    }
    memchr::memmem::find(data, b"\r\n\r\n").map_or(data.len(), |at| at + 2)
}

fn check_base_url(url: &str) -> Result<String, UnsubscribeConfigError> {
    let bad = || UnsubscribeConfigError::BaseUrl(url.to_string());
    let trimmed = url.trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .ok_or_else(bad)?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty()
        || trimmed.len() > MAX_BASE_URL_LEN
        || trimmed.chars().any(|c| {
            c.is_whitespace()
                || c.is_control()
                || !c.is_ascii()
                || matches!(c, '<' | '>' | '"' | ',' | '?' | '#' | '\\')
        })
    {
        return Err(bad());
    }
    Ok(trimmed.to_string())
}

fn check_mailto(address: &str) -> Result<String, UnsubscribeConfigError> {
    let bad = || UnsubscribeConfigError::Mailto(address.to_string());
    let (local, domain) = address.rsplit_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || domain.is_empty()
        || address.len() > 254
        || address.chars().any(|c| {
            c.is_whitespace()
                || c.is_control()
                || !c.is_ascii()
                || matches!(c, '<' | '>' | '"' | ',' | '?' | '&' | '%' | '#')
        })
    {
        return Err(bad());
    }
    Ok(address.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(mailto: Option<&str>) -> Unsubscribe {
        Unsubscribe::new(
            "https://mail.example.com/",
            b"0123456789abcdef0123456789abcdef",
            mailto,
        )
        .unwrap()
    }

    #[test]
    fn a_token_names_its_address_and_list_normalised() {
        let links = links(None);
        let token = links.token(" Ann@Example.ORG ", "News@Example.com", Some("01ABC"));
        let request = links.verify(&token).unwrap();
        assert_eq!(request.address, "ann@example.org");
        assert_eq!(request.list, "news@example.com");
        assert_eq!(request.message_id.as_deref(), Some("01ABC"));
        assert_eq!(
            links.link("ann@example.org", "news@example.com", Some("01ABC")),
            format!("https://mail.example.com/u/{token}")
        );
        let token = links.token("ann@example.org", "news", None);
        assert_eq!(links.verify(&token).unwrap().message_id, None);
    }

    #[test]
    fn a_token_cannot_be_forged_or_turned_into_another_address() {
        let links = links(None);
        let token = links.token("ann@example.org", "news", None);
        let (_, mac) = token.split_once('.').unwrap();
        // Another address with the MAC of the first.
        let forged = format!(
            "{}.{mac}",
            URL_SAFE_NO_PAD.encode("bob@example.org\nnews\n")
        );
        assert_eq!(links.verify(&forged), Err(BadToken));
        // Every single-character change of the token.
        for at in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(bytes).unwrap();
            if changed != token {
                assert_eq!(links.verify(&changed), Err(BadToken), "{changed}");
            }
        }
        // Another secret.
        let other = Unsubscribe::new("https://mail.example.com", &[7; 32], None).unwrap();
        assert_eq!(other.verify(&token), Err(BadToken));
        for junk in ["", ".", "abc", "a.b", &"x".repeat(5000), "%%.%%"] {
            assert_eq!(links.verify(junk), Err(BadToken), "{junk}");
        }
    }

    #[test]
    fn a_signed_payload_without_a_list_is_refused() {
        let links = links(None);
        let token = links.token("ann@example.org", "", None);
        assert_eq!(links.verify(&token), Err(BadToken));
    }

    #[test]
    fn headers_go_at_the_end_of_the_header_section() {
        let links = links(Some("unsubscribe@example.com"));
        let data = b"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n";
        let out =
            String::from_utf8(links.add_headers(data, "ann@example.org", "news", Some("01M")))
                .unwrap();
        let token = links.token("ann@example.org", "news", Some("01M"));
        assert_eq!(
            out,
            format!(
                "From: a@example.com\r\nSubject: hi\r\n\
                 List-Unsubscribe: <https://mail.example.com/u/{token}>,\r\n \
                 <mailto:unsubscribe@example.com?subject=unsubscribe%20{token}>\r\n\
                 List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nbody\r\n"
            )
        );
        // A message of headers only.
        let out = links.add_headers(b"Subject: hi\r\n", "ann@example.org", "news", None);
        assert!(out.starts_with(b"Subject: hi\r\nList-Unsubscribe: <https://"));
        assert!(out.ends_with(b"One-Click\r\n"));
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        let secret = [1u8; 32];
        for url in [
            "mail.example.com",
            "ftp://x",
            "https://",
            "https://x/a b",
            "https://x/?a=1",
            "https://x/<",
            "https://x,y",
        ] {
            assert_eq!(
                Unsubscribe::new(url, &secret, None).unwrap_err(),
                UnsubscribeConfigError::BaseUrl(url.to_string())
            );
        }
        assert_eq!(
            Unsubscribe::new("https://x", b"short", None).unwrap_err(),
            UnsubscribeConfigError::ShortSecret(5)
        );
        for mailto in ["nobody", "Ann <a@x>", "a@x?subject=hi", "@x", "a@"] {
            assert!(matches!(
                Unsubscribe::new("https://x", &secret, Some(mailto)).unwrap_err(),
                UnsubscribeConfigError::Mailto(_)
            ));
        }
        let debug = format!(
            "{:?}",
            Unsubscribe::new("https://x", &secret, None).unwrap()
        );
        assert!(!debug.contains("key:"), "{debug}");
    }
}
