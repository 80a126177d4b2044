//! SASL mechanisms for SMTP AUTH (RFC 4954): the encodings of PLAIN (RFC 4616), LOGIN
//! (draft-murchison-sasl-login) and CRAM-MD5 (RFC 2195), and the choice among them.
//!
//! Sans-I/O: these functions turn credentials and server challenges into the base64 lines a
//! client sends; the client decides when to send them.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};

/// The SASL mechanisms this crate speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Mechanism {
    /// LOGIN: user name and password in two base64 round trips, in clear.
    Login,
    /// PLAIN: user name and password in one base64 string, in clear (RFC 4616).
    Plain,
    /// CRAM-MD5: an HMAC-MD5 of a server challenge; the password never crosses the wire
    /// (RFC 2195).
    CramMd5,
}

impl Mechanism {
    /// Every mechanism, strongest first: the order in which [`Mechanism::choose`] prefers
    /// them. CRAM-MD5 keeps the password off the wire; PLAIN needs one round trip less than
    /// LOGIN.
    pub const PREFERENCE: [Mechanism; 3] = [Mechanism::CramMd5, Mechanism::Plain, Mechanism::Login];

    /// The mechanism's SASL name, as in `AUTH PLAIN`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Login => "LOGIN",
            Mechanism::Plain => "PLAIN",
            Mechanism::CramMd5 => "CRAM-MD5",
        }
    }

    /// The mechanism with this SASL name (case-insensitive), if this crate speaks it.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::PREFERENCE
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// The strongest of `offered` this crate speaks, or `None` when none fits.
    pub fn choose(offered: &[Mechanism]) -> Option<Mechanism> {
        Mechanism::PREFERENCE
            .into_iter()
            .find(|m| offered.contains(m))
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a server challenge could not be answered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthEncodingError {
    /// The 334 challenge text is not valid base64.
    #[error("the server's AUTH challenge is not valid base64: {challenge:?}")]
    BadChallenge {
        /// The challenge as received, cut to 100 characters.
        challenge: String,
    },
}

/// The PLAIN initial response (RFC 4616 §2): base64 of `authzid NUL authcid NUL passwd`, with
/// an empty authorization identity (act as the user logged in).
pub fn plain_response(username: &str, password: &str) -> String {
    let mut raw = Vec::with_capacity(username.len() + password.len() + 2);
    raw.push(0);
    raw.extend_from_slice(username.as_bytes());
    raw.push(0);
    raw.extend_from_slice(password.as_bytes());
    BASE64.encode(raw)
}

/// A LOGIN response: the base64 of the user name or the password, whichever the server's
/// prompt asks for (the client sends the user name first, then the password).
pub fn login_response(value: &str) -> String {
    BASE64.encode(value.as_bytes())
}

/// The CRAM-MD5 response (RFC 2195 §2) to the base64 `challenge` text of a 334 reply:
/// base64 of `username SP hex(HMAC-MD5(password, challenge))`.
pub fn cram_md5_response(
    username: &str,
    password: &str,
    challenge: &str,
) -> Result<String, AuthEncodingError> {
    let decoded = BASE64.decode(challenge.trim().as_bytes()).map_err(|_| {
        AuthEncodingError::BadChallenge {
            challenge: challenge.chars().take(100).collect(),
        }
    })?;
    // HMAC accepts keys of any length, so this never fails.
    let mut mac = Hmac::<md5::Md5>::new_from_slice(password.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(&decoded);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(BASE64.encode(format!("{username} {hex}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_follows_rfc_4616() {
        // RFC 4616 §4 example: authcid "tim", password "tanstaaftanstaaf", empty authzid.
        assert_eq!(
            BASE64
                .decode(plain_response("tim", "tanstaaftanstaaf"))
                .unwrap(),
            b"\0tim\0tanstaaftanstaaf"
        );
        assert_eq!(plain_response("user", "pass"), "AHVzZXIAcGFzcw==");
    }

    #[test]
    fn login_is_base64_of_each_value() {
        assert_eq!(login_response("user"), "dXNlcg==");
        assert_eq!(login_response("pass"), "cGFzcw==");
    }

    #[test]
    fn cram_md5_matches_rfc_2195_test_vector() {
        // RFC 2195 §2: challenge <1896.697170952@postoffice.reston.mci.net>, user tim,
        // secret tanstaaftanstaaf -> "tim b913a602c7eda7a495b4e6e7334d3890".
        let challenge = BASE64.encode("<1896.697170952@postoffice.reston.mci.net>");
        let response = cram_md5_response("tim", "tanstaaftanstaaf", &challenge).unwrap();
        assert_eq!(
            BASE64.decode(response).unwrap(),
            b"tim b913a602c7eda7a495b4e6e7334d3890"
        );
        assert_eq!(
            challenge,
            "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"
        );
    }

    #[test]
    fn bad_challenge_is_an_error() {
        assert!(matches!(
            cram_md5_response("u", "p", "not base64!"),
            Err(AuthEncodingError::BadChallenge { .. })
        ));
    }

    #[test]
    fn strongest_offered_mechanism_wins() {
        use Mechanism::*;
        assert_eq!(Mechanism::choose(&[Login, Plain, CramMd5]), Some(CramMd5));
        assert_eq!(Mechanism::choose(&[Login, Plain]), Some(Plain));
        assert_eq!(Mechanism::choose(&[Login]), Some(Login));
        assert_eq!(Mechanism::choose(&[]), None);
        assert_eq!(Mechanism::from_name("cram-md5"), Some(CramMd5));
        assert_eq!(Mechanism::from_name("XOAUTH2"), None);
    }
}
