//! Server-side SMTP AUTH (RFC 4954) for the PLAIN (RFC 4616) and LOGIN mechanisms, and the
//! trusted-network test that lets some clients submit without authenticating.

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use thiserror::Error;

/// Checks credentials presented with `AUTH`.
pub trait Authenticator: Send + Sync {
    /// Whether `username` with `password` may submit mail. `authzid` is the PLAIN
    /// authorization identity when the client sent one (RFC 4616 §2), else `None`.
    fn authenticate(&self, authzid: Option<&str>, username: &str, password: &str) -> bool;
}

/// A fixed table of user names and passwords (the listener's `users` setting).
///
/// Passwords are kept as keyed digests (HMAC-MD5 under a key made at construction, used only
/// to compare): a check costs the same whether the user exists, how long the password is, or
/// how much of a guess was right.
#[derive(Clone)]
pub struct StaticUsers {
    key: [u8; 32],
    users: HashMap<String, PasswordDigest>,
    /// Compared against when the user does not exist, so that case takes the same time.
    unknown: PasswordDigest,
}

type PasswordDigest = [u8; 16];

impl StaticUsers {
    /// A table from `(user, password)` pairs.
    pub fn new<I, U, P>(users: I) -> StaticUsers
    where
        I: IntoIterator<Item = (U, P)>,
        U: Into<String>,
        P: Into<String>,
    {
        let key: [u8; 32] = rand::random();
        let unknown: [u8; 32] = rand::random();
        let mut table = StaticUsers {
            key,
            users: HashMap::new(),
            unknown: [0; 16],
        };
        table.unknown = table.digest(&unknown);
        table.users = users
            .into_iter()
            .map(|(u, p)| {
                let digest = table.digest(p.into().as_bytes());
                (u.into(), digest)
            })
            .collect();
        table
    }

    fn digest(&self, password: &[u8]) -> PasswordDigest {
        use hmac::{Hmac, Mac};
        let mut mac =
            Hmac::<md5::Md5>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(password);
        mac.finalize().into_bytes().into()
    }
}

impl std::fmt::Debug for StaticUsers {
    // User names only: neither the key nor the digests.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticUsers")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Authenticator for StaticUsers {
    fn authenticate(&self, authzid: Option<&str>, username: &str, password: &str) -> bool {
        // Acting for another identity is not supported: the authzid, if any, must be the user.
        let identity_ok = authzid.is_none_or(|id| id == username);
        let known = self.users.get(username);
        let expected = known.unwrap_or(&self.unknown);
        let password_ok = constant_time_eq(expected, &self.digest(password.as_bytes()));
        identity_ok && known.is_some() && password_ok
    }
}

/// Compares two byte strings in time that depends only on their lengths (for tokens,
/// passwords and CSRF values).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        difference |= usize::from(x ^ y);
    }
    difference == 0
}

/// Why an AUTH exchange failed on the client's side (reply 501, RFC 4954 §4).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SaslError {
    /// The response is not valid base64.
    #[error("the SASL response is not valid base64")]
    Base64,
    /// The decoded response is not UTF-8.
    #[error("the SASL response is not UTF-8 text")]
    NotText,
    /// A PLAIN response is not `authzid NUL authcid NUL passwd`.
    #[error("the PLAIN response is not authzid\\0user\\0password")]
    PlainShape,
}

/// Decodes one base64 SASL response; `=` is the empty response (RFC 4954 §4).
pub fn decode_response(encoded: &str) -> Result<String, SaslError> {
    if encoded == "=" {
        return Ok(String::new());
    }
    let bytes = BASE64
        .decode(encoded.trim())
        .map_err(|_| SaslError::Base64)?;
    String::from_utf8(bytes).map_err(|_| SaslError::NotText)
}

/// The credentials in a decoded PLAIN response (RFC 4616 §2): `(authzid, user, password)`.
pub fn parse_plain(decoded: &str) -> Result<(Option<&str>, &str, &str), SaslError> {
    let mut parts = decoded.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::PlainShape);
    };
    if user.is_empty() {
        return Err(SaslError::PlainShape);
    }
    Ok(((!authzid.is_empty()).then_some(authzid), user, password))
}

/// A network in CIDR notation (`127.0.0.0/8`, `::1/128`; a bare address is a /32 or /128),
/// as in the listener's `trusted_networks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

/// A `trusted_networks` entry that is not `ADDRESS[/PREFIX]`.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("invalid network {text:?}: expected ADDRESS or ADDRESS/PREFIX")]
pub struct NetworkError {
    /// The text as given.
    pub text: String,
}

impl Network {
    /// Whether `ip` is inside this network. An IPv4 address also matches in its IPv4-mapped
    /// IPv6 form, as a dual-stack listener reports it.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Network {
    type Err = NetworkError;

    fn from_str(text: &str) -> Result<Network, NetworkError> {
        let error = || NetworkError {
            text: text.to_string(),
        };
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let address: IpAddr = address.parse().map_err(|_| error())?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix.parse::<u8>().map_err(|_| error())?,
            None => max,
        };
        if prefix > max {
            return Err(error());
        }
        Ok(Network { address, prefix })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_with_and_without_authzid() {
        let decoded = decode_response(&BASE64.encode("\0app\0secret")).unwrap();
        assert_eq!(parse_plain(&decoded).unwrap(), (None, "app", "secret"));
        assert_eq!(
            parse_plain("boss\0app\0pw").unwrap(),
            (Some("boss"), "app", "pw")
        );
        assert_eq!(parse_plain("app\0secret"), Err(SaslError::PlainShape));
        assert_eq!(decode_response("!!"), Err(SaslError::Base64));
        assert_eq!(decode_response("=").unwrap(), "");
    }

    #[test]
    fn static_users() {
        let users = StaticUsers::new([("app", "pw")]);
        assert!(users.authenticate(None, "app", "pw"));
        assert!(users.authenticate(Some("app"), "app", "pw"));
        assert!(!users.authenticate(Some("root"), "app", "pw"));
        assert!(!users.authenticate(None, "app", "pw2"));
        assert!(!users.authenticate(None, "other", "pw"));
        assert!(!users.authenticate(None, "app", ""));
        assert!(!users.authenticate(None, "", ""));
        // An empty password is a password like any other.
        let empty = StaticUsers::new([("blank", "")]);
        assert!(empty.authenticate(None, "blank", ""));
        assert!(!empty.authenticate(None, "blank", " "));
        // Debug shows user names, never passwords or their digests.
        let debug = format!("{users:?}");
        assert!(debug.contains("app") && !debug.contains("pw"), "{debug}");
    }

    #[test]
    fn constant_time_comparison_by_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"\xff"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn networks() {
        let net: Network = "127.0.0.0/8".parse().unwrap();
        assert!(net.contains("127.1.2.3".parse().unwrap()));
        assert!(net.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!net.contains("10.0.0.1".parse().unwrap()));
        let one: Network = "::1".parse().unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        assert!(!one.contains("::2".parse().unwrap()));
        let all: Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        for bad in ["127.0.0.1/33", "nonsense", "10.0.0.0/x"] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
    }
}
