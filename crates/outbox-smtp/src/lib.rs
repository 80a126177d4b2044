//! The SMTP side of Outbox: an async client, a server (submission listener and test sink),
//! server specifications, MX lookup and the sendmail-program transport.
//!
//! This crate knows bytes, not MIME.
