//! Message composition for Outbox: a message spec becomes MIME bytes.
//!
//! No network, no database: this crate turns an [`EmailSpec`]-shaped description of a
//! message (addresses, subject, text and HTML bodies, inline images, attachments, extra
//! headers, merge tokens) into RFC 5322 / MIME bytes.
