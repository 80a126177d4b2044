//! The idempotency columns of a message row, shared by both backends (schema migration 2).

use crate::model::RequestKey;
use crate::prepare::PreparedMessage;

/// What a message row stores about its idempotency key.
pub(crate) struct KeyColumns<'a> {
    /// The key, if any.
    pub key: Option<&'a str>,
    /// Whose key: a hash of the token for the HTTP API, empty for other callers.
    pub scope: &'a str,
    /// The hash of the request the key came with (none for other callers).
    pub hash: Option<&'a str>,
    /// The message's place in its request.
    pub index: i64,
}

impl<'a> KeyColumns<'a> {
    /// Message `index` of a request with `request`'s key, or, without one, the message's
    /// own key in the empty scope.
    pub fn of(request: Option<&'a RequestKey>, message: &'a PreparedMessage, index: usize) -> Self {
        match request {
            Some(request) => KeyColumns {
                key: Some(&request.key),
                scope: &request.scope,
                hash: Some(&request.request_hash),
                index: i64::try_from(index).unwrap_or(i64::MAX),
            },
            None => KeyColumns {
                key: message.idempotency_key.as_deref(),
                scope: "",
                hash: None,
                index: 0,
            },
        }
    }
}
