//! Exit statuses: the one place that decides what number a failure becomes.

use std::fmt;

/// sysexits.h: command line usage error.
pub const EX_USAGE: u8 = 64;
/// sysexits.h: data format error.
pub const EX_DATAERR: u8 = 65;
/// sysexits.h: internal software error.
pub const EX_SOFTWARE: u8 = 70;
/// sysexits.h: temporary failure; the caller may retry.
pub const EX_TEMPFAIL: u8 = 75;

/// A failure that asks for a particular exit status instead of the default 1.
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl Exit {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Exit {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// The exit status for an error: the one an [`Exit`] in its chain asks for, else 1.
pub fn code_for(err: &anyhow::Error) -> u8 {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<Exit>())
        .map_or(1, |exit| exit.code)
}

/// True when the queue refused the message as over `max_message_size`.
pub fn is_too_large(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<outbox_queue::StoreError>(),
            Some(outbox_queue::StoreError::TooLarge { .. })
        ) || matches!(
            cause.downcast_ref::<outbox_queue::OutboxError>(),
            Some(outbox_queue::OutboxError::Store(
                outbox_queue::StoreError::TooLarge { .. }
            ))
        )
    })
}

/// The error and its causes on one line, as `outer: inner: root`; line breaks inside a
/// message (a multi-line SMTP reply, a program's stderr) are folded so stderr stays one line.
///
/// A cause whose text is already part of what is shown is left out: many error types
/// quote their source in their own message (`SQLite: {0}`) *and* report it as the source,
/// and anyhow's `{:#}` would then print the same words two or three times.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if part.trim().is_empty() || text.contains(part.trim()) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text.split(['\r', '\n'])
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_in_the_chain_sets_the_code() {
        let err = anyhow::Error::new(Exit::new(EX_TEMPFAIL, "queue busy")).context("sendmail");
        assert_eq!(code_for(&err), EX_TEMPFAIL);
        assert_eq!(code_for(&anyhow::anyhow!("plain")), 1);
    }

    #[test]
    fn each_cause_appears_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("SQLite: {0}")]
        struct Quoting(#[source] std::io::Error);
        let io = std::io::Error::other("disk I/O error");
        let err = anyhow::Error::new(Quoting(io)).context("cannot queue");
        assert_eq!(one_line(&err), "cannot queue: SQLite: disk I/O error");
    }

    #[test]
    fn multi_line_errors_become_one_line() {
        let err = anyhow::anyhow!("550-first line\r\n550 second line\n").context("RCPT TO refused");
        assert_eq!(
            one_line(&err),
            "RCPT TO refused: 550-first line 550 second line"
        );
    }
}
