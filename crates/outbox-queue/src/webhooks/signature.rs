//! Standard Webhooks signatures: `webhook-signature: v1,BASE64(HMAC-SHA256(key,
//! "ID.TIMESTAMP.BODY"))`, where the key is the base64 part of a `whsec_` secret, or the
//! secret's own bytes when it has no such prefix.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of a Standard Webhooks secret whose rest is the base64 of the key.
pub const SECRET_PREFIX: &str = "whsec_";

/// A webhook's signing key. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

impl WebhookSecret {
    /// `whsec_BASE64` (the key is the decoded base64) or any other text (the key is its
    /// bytes). Refused: an empty secret, or a `whsec_` one whose rest is not base64 or
    /// is empty.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("the secret is empty".into());
        }
        match text.strip_prefix(SECRET_PREFIX) {
            Some(encoded) => {
                let key = STANDARD.decode(encoded).map_err(|err| {
                    format!("the part after {SECRET_PREFIX} is not base64: {err}")
                })?;
                if key.is_empty() {
                    return Err(format!("the key after {SECRET_PREFIX} is empty"));
                }
                Ok(WebhookSecret(key))
            }
            None => Ok(WebhookSecret(text.as_bytes().to_vec())),
        }
    }

    /// The `webhook-signature` value for one request.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference libraries.
    #[test]
    fn standard_webhooks_example() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            secret.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn raw_secrets_and_bad_ones() {
        let raw = WebhookSecret::parse("plain-secret").unwrap();
        assert_eq!(raw.0, b"plain-secret");
        assert!(WebhookSecret::parse("").is_err());
        assert!(WebhookSecret::parse("whsec_").is_err());
        assert!(WebhookSecret::parse("whsec_not base64!").is_err());
        assert_eq!(format!("{raw:?}"), "WebhookSecret(***)");
    }
}
