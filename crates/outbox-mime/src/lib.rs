//! Message composition for Outbox: a message spec becomes MIME bytes.
//!
//! No network, no database: this crate turns an [`EmailSpec`] (addresses, subject, text and
//! HTML bodies, inline images, attachments, extra headers, merge tokens) into RFC 5322 / MIME
//! bytes, with the structures of the Lasso "Sending Email" seed:
//!
//! | given | structure |
//! | --- | --- |
//! | `text` | `text/plain` |
//! | `html` | `text/html` |
//! | `text` + `html` | `multipart/alternative` |
//! | `html_images` | the html becomes `multipart/related` (html + images) |
//! | `attachments` | `multipart/mixed` around all of the above |
//!
//! ```
//! use outbox_mime::{EmailSpec, email_token, merge_message};
//! use std::collections::BTreeMap;
//!
//! let message = EmailSpec::builder()
//!     .from("Outbox <noreply@example.com>")
//!     .to("\"Lee, Ann\" <ann@example.com>, bob@example.com")
//!     .subject(format!("Hello {}", email_token("First")))
//!     .text("Dear #First#,\nwelcome.\n")
//!     .build()?;
//! assert_eq!(message.recipients(), ["ann@example.com", "bob@example.com"]);
//!
//! // At delivery time, per recipient:
//! let ann = BTreeMap::from([("First".to_string(), "Ann".to_string())]);
//! let data = merge_message(message.data(), &ann);
//! assert!(String::from_utf8(data)?.contains("Subject: Hello Ann\r\n"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Lines end in CRLF and none exceeds 998 octets; `Date`, `Message-ID` and `MIME-Version` are
//! always written; a CR or LF inside any header value is an error (no header injection).
//!
//! DKIM signing (RSA-SHA256 and Ed25519-SHA256, RFC 6376 / RFC 8463) is in [`dkim`].
//!
//! # Stability
//!
//! [`ComposeOptions`] and the enums that gain variants (errors, [`TransferEncoding`],
//! [`Charset`], `dkim::Algorithm`) are `#[non_exhaustive]`: start from
//! `ComposeOptions::default()` and set fields; match the enums with a `_` arm.
//!
//! # Feature flags
//!
//! None.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod address;
mod body;
mod builder;
mod compose;
pub mod dkim;
mod encoding;
mod error;
pub mod feedback;
mod file;
mod header;
mod long_lines;
mod merge;
mod mime_merge;
mod part;
mod spec;

pub use address::{Address, AddressError, parse_address, parse_address_list, split_address_list};
pub use builder::EmailBuilder;
pub use compose::{
    ComposeOptions, Message, compose, compose_part, compose_part_with, compose_with,
};
pub use encoding::{
    Charset, TransferEncoding, UnknownCharset, UnknownTransferEncoding, base64_lines_into,
};
pub use error::ComposeError;
pub use file::{DEFAULT_MAX_FILE_SIZE, FileError, read_bounded, read_file};
pub use long_lines::{LineLengthError, MAX_LINE, fit_line_length, has_long_line};
pub use merge::{
    TokenLookup, contains_marker, email_token, is_token_name, merge, merge_message, merge_text,
};
pub use part::Part;
pub use spec::{EmailSpec, PartSource, Priority, UnknownPriority};
