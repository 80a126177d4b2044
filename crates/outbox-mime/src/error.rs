//! Why a message could not be composed. Every variant names the spec field at fault, so the
//! CLI can print one line and the HTTP API can answer `{error, field}`.

use std::path::PathBuf;

use crate::address::AddressError;

/// A message spec that cannot become a message. None of these is transient: the same spec
/// fails the same way until it is corrected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ComposeError {
    /// A required field (`from`, `subject`) is missing or empty.
    #[error("missing {field}")]
    Missing {
        /// The spec field.
        field: &'static str,
    },
    /// No recipient in `to`, `cc` or `bcc`.
    #[error("missing recipient: give at least one address in to, cc or bcc")]
    NoRecipients,
    /// No `text`, `html` or attachment, and not `simple_form`.
    #[error("missing body: give text, html or an attachment (or use simple_form)")]
    NoBody,
    /// `simple_form` was asked for together with a body.
    #[error("{field} given with simple_form, which sends headers only")]
    BodyWithSimpleForm {
        /// The body field that was given.
        field: &'static str,
    },
    /// An address in a field does not parse.
    // The cause is part of the message (not a `source`), so that a one-line rendering of
    // the error chain does not say it twice.
    #[error("{field}: {error}")]
    Address {
        /// The spec field (`from`, `to`, `merge`, ...).
        field: &'static str,
        /// What is wrong with it.
        error: AddressError,
    },
    /// A field that takes one address holds several.
    #[error("{field}: expected one address, got {count}")]
    NotOneAddress {
        /// The spec field.
        field: &'static str,
        /// How many addresses it held.
        count: usize,
    },
    /// A file for an image or attachment cannot be used: unreadable, not a regular file,
    /// or over the size limit.
    #[error("{field}: {}: {error}", path.display())]
    UnreadableFile {
        /// `html_images` or `attachments`.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        error: crate::file::FileError,
    },
    /// A header value (or name) holds CR or LF: refused, so headers cannot be injected.
    #[error("{field}: line break inside a header value (header injection refused)")]
    HeaderInjection {
        /// The spec field or header name.
        field: String,
    },
    /// An extra header's name is not printable ASCII without `:` (RFC 5322 §2.2).
    #[error("headers: invalid header name {name:?}")]
    InvalidHeaderName {
        /// The name given.
        name: String,
    },
    /// A header line that stays over 998 octets (RFC 5322 §2.1.1) even when folded: a
    /// Message-ID or a single word too long for any line.
    #[error("{field}: header line longer than 998 octets cannot be folded")]
    HeaderTooLong {
        /// The header name.
        field: String,
    },
    /// An extra header that Outbox writes itself from a spec field.
    #[error("headers: {name} is set by the {field} field, not as an extra header")]
    ReservedHeader {
        /// The header name given.
        name: String,
        /// The spec field that sets it.
        field: &'static str,
    },
    /// `charset` names a charset Outbox cannot write.
    #[error("charset: {0}")]
    Charset(#[from] crate::encoding::UnknownCharset),
    /// A text part has characters the charset cannot represent.
    #[error("{field}: text cannot be written in {charset}")]
    Unrepresentable {
        /// `text`, `html`, ...
        field: &'static str,
        /// The charset asked for.
        charset: &'static str,
    },
    /// The transfer encoding asked for cannot carry a part (8-bit data in 7bit, long lines).
    #[error("transfer_encoding: {encoding} cannot carry {field}: {reason}")]
    TransferEncodingUnfit {
        /// The body field.
        field: &'static str,
        /// The encoding asked for.
        encoding: crate::TransferEncoding,
        /// Why not.
        reason: &'static str,
    },
    /// A content type that is not `type/subtype[; params]`.
    #[error("{field}: invalid content type {value:?}")]
    InvalidContentType {
        /// The spec field.
        field: &'static str,
        /// The value given.
        value: String,
    },
    /// `content_type` was given for a multipart message.
    #[error("content_type: only a single-part message can take a content type override")]
    ContentTypeOnMultipart,
    /// An image or attachment has no usable name (a path without a file name, an empty name).
    #[error("{field}: invalid part name {name:?}")]
    InvalidPartName {
        /// `html_images` or `attachments`.
        field: &'static str,
        /// The name.
        name: String,
    },
    /// A raw MIME part is not headers, a blank line and a body, or has a line over 998
    /// octets (RFC 5322 §2.1.1).
    #[error("{field}: raw MIME part {reason}")]
    InvalidRawPart {
        /// `attachments` or `html_images`.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// A token name that could not appear in a `#NAME#` marker.
    #[error("{field}: invalid token name {name:?}")]
    InvalidTokenName {
        /// `tokens` or `merge`.
        field: &'static str,
        /// The name.
        name: String,
    },
}

impl ComposeError {
    /// The spec field at fault (or, for an extra header, `headers`).
    pub fn field(&self) -> &str {
        match self {
            ComposeError::Missing { field }
            | ComposeError::BodyWithSimpleForm { field }
            | ComposeError::Address { field, .. }
            | ComposeError::NotOneAddress { field, .. }
            | ComposeError::UnreadableFile { field, .. }
            | ComposeError::Unrepresentable { field, .. }
            | ComposeError::InvalidContentType { field, .. }
            | ComposeError::InvalidPartName { field, .. }
            | ComposeError::InvalidRawPart { field, .. }
            | ComposeError::InvalidTokenName { field, .. } => field,
            ComposeError::NoRecipients => "to",
            ComposeError::NoBody => "text",
            ComposeError::HeaderInjection { field } => field,
            ComposeError::HeaderTooLong { .. } => "headers",
            ComposeError::InvalidHeaderName { .. } | ComposeError::ReservedHeader { .. } => {
                "headers"
            }
            ComposeError::Charset(_) => "charset",
            ComposeError::TransferEncodingUnfit { .. } => "transfer_encoding",
            ComposeError::ContentTypeOnMultipart => "content_type",
        }
    }

    /// Always true: a spec that fails to compose fails the same way every time.
    pub fn is_permanent(&self) -> bool {
        true
    }
}
