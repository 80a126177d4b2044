//! Bearer tokens, compared in constant time so a wrong guess says nothing about how close
//! it was.

use std::sync::Arc;

/// The tokens `[http] tokens` accepts.
#[derive(Clone, Default)]
pub struct Tokens {
    accepted: Arc<Vec<String>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured)", self.accepted.len())
    }
}

impl Tokens {
    /// The accepted tokens; empty tokens are ignored (they would let anyone in).
    pub fn new(tokens: Vec<String>) -> Self {
        Tokens {
            accepted: Arc::new(tokens.into_iter().filter(|t| !t.is_empty()).collect()),
        }
    }

    /// True when no token is configured: nothing but `/healthz` can be reached.
    pub fn is_empty(&self) -> bool {
        self.accepted.is_empty()
    }

    /// True when `candidate` is one of the accepted tokens. Every token is compared in
    /// full, whatever the outcome, so timing reveals neither a match nor a prefix.
    pub fn accepts(&self, candidate: &str) -> bool {
        let mut found = false;
        for token in self.accepted.iter() {
            found |= constant_time_eq(token.as_bytes(), candidate.as_bytes());
        }
        found
    }

    /// The token in an `Authorization: Bearer TOKEN` header value, if valid.
    pub fn accepts_header(&self, header: &str) -> bool {
        let Some((scheme, token)) = header.trim().split_once(' ') else {
            return false;
        };
        scheme.eq_ignore_ascii_case("bearer") && self.accepts(token.trim())
    }
}

/// Which token a request came with, as stored beside its idempotency keys: a SHA-256 of
/// the token, never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenId(pub String);

impl TokenId {
    /// The id of a token.
    pub fn of(token: &str) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(b"outbox-token\0")
            .chain_update(token.as_bytes())
            .finalize();
        TokenId(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The id of the token in an `Authorization: Bearer TOKEN` value.
    pub fn from_header(header: &str) -> Option<Self> {
        let (_, token) = header.trim().split_once(' ')?;
        Some(TokenId::of(token.trim()))
    }
}

pub use outbox_smtp::server::constant_time_eq;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let tokens = Tokens::new(vec!["s3cret-token".into(), String::new()]);
        assert!(tokens.accepts("s3cret-token"));
        assert!(!tokens.accepts("s3cret-toke"));
        assert!(!tokens.accepts("s3cret-token2"));
        assert!(!tokens.accepts(""));
        assert!(tokens.accepts_header("Bearer s3cret-token"));
        assert!(tokens.accepts_header("bearer  s3cret-token "));
        assert!(!tokens.accepts_header("Basic s3cret-token"));
        assert!(!tokens.accepts_header("s3cret-token"));
        assert!(!Tokens::new(vec![String::new()]).accepts(""));
        let id = TokenId::from_header("Bearer  s3cret-token ").unwrap();
        assert_eq!(id, TokenId::of("s3cret-token"));
        assert_eq!(id.0.len(), 64);
        assert!(!id.0.contains("s3cret"));
        assert_ne!(id, TokenId::of("other-token"));
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"\xff"));
    }
}
