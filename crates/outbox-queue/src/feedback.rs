//! Feedback about delivered mail (migration 7): bounces (RFC 3464 delivery status
//! notifications, and plain-text non-delivery notices), delay notices, and complaints
//! (RFC 5965 feedback reports). Each report received is one row of the `feedback` table,
//! matched or not, and [`Store::record_feedback`](crate::Store::record_feedback) is the
//! one place that changes a recipient because of one:
//! - a bounce (`failed`) makes the recipient `bounced` and, with a permanent status
//!   (5.x.x), suppresses its address for every list with reason `bounced`;
//! - a complaint makes it `complained` and suppresses the address with reason
//!   `complained`;
//! - a delay notice (`delayed`) is recorded and changes nothing.
//!
//! A report that names no recipient (no VERP token that verifies) is kept with its text
//! for an operator to read (`outbox bounces list --unmatched`).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use time::OffsetDateTime;

use crate::{RecipientState, StoreError};

/// Longest report text kept for an unmatched or unparsed report, in bytes.
pub const MAX_KEPT_REPORT: usize = 64 * 1024;

/// Unmatched reports kept: anyone may send one (the bounce domain takes mail without AUTH),
/// so only the newest this many are kept (with their text, at most [`MAX_KEPT_REPORT`]
/// each: 64 MB in all); recording one more deletes the oldest.
pub const MAX_UNMATCHED_REPORTS: i64 = 1000;

/// The statement that keeps the newest [`MAX_UNMATCHED_REPORTS`] unmatched reports and
/// deletes the rest (by the partial index `feedback_unmatched`); `{p}` is the placeholder
/// bound to [`MAX_UNMATCHED_REPORTS`].
pub(crate) fn prune_unmatched_sql(p: &str) -> String {
    format!(
        "DELETE FROM feedback WHERE recipient_id IS NULL AND id <= \
           (SELECT id FROM feedback WHERE recipient_id IS NULL ORDER BY id DESC LIMIT 1 OFFSET {p})"
    )
}

/// Longest status, diagnostic or address stored, in bytes (longer ones are cut).
pub const MAX_FEEDBACK_TEXT: usize = 1000;

/// What a report says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum FeedbackKind {
    /// The message could not be delivered (`Action: failed`, or a plain-text notice).
    Bounce,
    /// Delivery is delayed (`Action: delayed`): recorded, no state change.
    Delay,
    /// The recipient reported the message as spam (ARF).
    Complaint,
}

impl FeedbackKind {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackKind::Bounce => "bounce",
            FeedbackKind::Delay => "delay",
            FeedbackKind::Complaint => "complaint",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Self, StoreError> {
        text.parse().map_err(|_| StoreError::Corrupt {
            what: "feedback kind",
            detail: text.to_string(),
        })
    }
}

impl fmt::Display for FeedbackKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FeedbackKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bounce" => Ok(FeedbackKind::Bounce),
            "delay" => Ok(FeedbackKind::Delay),
            "complaint" => Ok(FeedbackKind::Complaint),
            _ => Err(format!(
                "unknown feedback kind {s:?}: expected bounce, delay or complaint"
            )),
        }
    }
}

/// One report to record ([`Store::record_feedback`](crate::Store::record_feedback)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFeedback {
    /// What it says.
    pub kind: FeedbackKind,
    /// The form it came in: `dsn` (RFC 3464), `arf` (RFC 5965) or `text`.
    pub format: String,
    /// The recipient row its VERP token names (already verified), if any.
    pub recipient_id: Option<i64>,
    /// The `Message-ID` of the returned (or reported) message, with or without angle
    /// brackets: without a token, the recipient is found by it and `address` (or, when the
    /// message had a single recipient, by it alone).
    pub original_message_id: Option<String>,
    /// The address the report is about (Final-Recipient, Original-Recipient, or the
    /// complaint's original recipient), as reported.
    pub address: Option<String>,
    /// The enhanced status code (RFC 3463: `5.1.1`), or the best status found in a
    /// plain-text notice.
    pub status: Option<String>,
    /// The remote server's diagnostic (Diagnostic-Code), or the complaint's feedback type.
    pub diagnostic: Option<String>,
    /// The envelope sender of the report (empty for the null sender).
    pub sender: String,
    /// The report as received; kept (cut to [`MAX_KEPT_REPORT`]) only when it names no
    /// recipient.
    pub raw: Vec<u8>,
}

/// What [`Store::record_feedback`](crate::Store::record_feedback) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedbackApplied {
    /// The `feedback` row.
    pub id: i64,
    /// The message of the recipient it matched.
    pub message_id: Option<String>,
    /// The recipient address it matched.
    pub recipient: Option<String>,
    /// The state the recipient was put in; `None` when nothing changed (a delay, an
    /// unmatched report, a recipient already removed or suppressed).
    pub state: Option<RecipientState>,
    /// True when the address was added to the suppression list.
    pub suppressed: bool,
}

/// One stored report (`outbox bounces list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedbackRecord {
    /// The row id (ascending with arrival).
    pub id: i64,
    /// When it was received (RFC 3339).
    #[serde(serialize_with = "crate::timefmt::serialize")]
    pub received_at: OffsetDateTime,
    /// What it said.
    pub kind: FeedbackKind,
    /// `dsn`, `arf` or `text`.
    pub format: String,
    /// The message of the matched recipient.
    pub message_id: Option<String>,
    /// The matched recipient row.
    pub recipient_id: Option<i64>,
    /// The address it is about.
    pub address: Option<String>,
    /// The status code.
    pub status: Option<String>,
    /// The diagnostic text.
    pub diagnostic: Option<String>,
    /// The state it put the recipient in, if any.
    pub applied: Option<String>,
    /// The report's envelope sender.
    pub sender: String,
    /// Bytes of report text kept (for unmatched reports).
    pub kept_bytes: u64,
}

/// Which reports [`Store::feedback_list`](crate::Store::feedback_list) returns, newest
/// first.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FeedbackFilter {
    /// Only those that matched no recipient.
    pub unmatched: bool,
    /// Only those about this message.
    pub message_id: Option<String>,
    /// At most this many (1..=1000).
    pub limit: u32,
    /// Only rows with an id below this one (the last id of the previous page).
    pub before: Option<i64>,
}

impl Default for FeedbackFilter {
    fn default() -> Self {
        FeedbackFilter {
            unmatched: false,
            message_id: None,
            limit: 50,
            before: None,
        }
    }
}

/// The state a report puts a recipient in, and whether its address is suppressed (and
/// why): the feedback rules of issue 12, one pure function for both backends.
pub(crate) fn verdict(feedback: &NewFeedback) -> (Option<RecipientState>, Option<&'static str>) {
    match feedback.kind {
        FeedbackKind::Delay => (None, None),
        FeedbackKind::Complaint => (Some(RecipientState::Complained), Some("complained")),
        FeedbackKind::Bounce => {
            let permanent = feedback
                .status
                .as_deref()
                .is_some_and(|status| status.trim_start().starts_with('5'));
            (
                Some(RecipientState::Bounced),
                permanent.then_some("bounced"),
            )
        }
    }
}

/// The states a report may move a recipient out of: a `bounced` report overrides a
/// delivered or failed state (and a waiting one: the address is dead), never `removed`,
/// `suppressed`, `sending` (a worker holds it) or a complaint; a complaint overrides a
/// bounce too.
pub(crate) fn from_states(state: RecipientState) -> &'static str {
    match state {
        RecipientState::Complained => {
            "('sent', 'failed', 'deferred', 'queued', 'bounced', 'complained')"
        }
        _ => "('sent', 'failed', 'deferred', 'queued', 'bounced')",
    }
}

/// The `last_reply` text of a recipient a report changed: `bounced: 5.1.1 DIAGNOSTIC`,
/// `complained: abuse`.
pub(crate) fn reply_text(state: RecipientState, feedback: &NewFeedback) -> String {
    let mut text = state.as_str().to_string();
    text.push(':');
    for part in [&feedback.status, &feedback.diagnostic]
        .into_iter()
        .flatten()
    {
        text.push(' ');
        text.push_str(part);
    }
    if feedback.status.is_none() && feedback.diagnostic.is_none() {
        text.push_str(" (no status given)");
    }
    crate::engine::policy::sanitize_reply(&text)
}

/// A text field as stored: control characters out, cut to [`MAX_FEEDBACK_TEXT`].
pub(crate) fn clean(text: &Option<String>) -> Option<String> {
    text.as_deref()
        .map(crate::engine::policy::sanitize_reply)
        .filter(|t| !t.is_empty())
}

/// The report text kept for a report that names no recipient.
pub(crate) fn kept(feedback: &NewFeedback, matched: bool) -> Option<Vec<u8>> {
    (!matched).then(|| feedback.raw[..feedback.raw.len().min(MAX_KEPT_REPORT)].to_vec())
}

/// Without a token: the Message-ID and address to look the recipient up by (the address
/// may be empty: a complaint whose reporter redacted it), when the report gives a
/// Message-ID.
pub(crate) fn by_message_id(feedback: &NewFeedback) -> Option<(String, String)> {
    let id = normalise_message_id(feedback.original_message_id.as_deref()?)?;
    let address = feedback
        .address
        .as_deref()
        .map(|a| {
            a.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    Some((id, address))
}

/// The recipient condition of the Message-ID lookup (`?2`: the address, lowercase, or
/// empty): that address, or any recipient when the address is empty; the caller takes
/// the match only when it is the one row (a redacted complaint about a message with
/// several recipients names none of them).
pub(crate) const BY_ADDRESS: &str = "(lower(r.address) = ?2 OR ?2 = '')";

/// `Some` of the only item, `None` for none or several.
pub(crate) trait ExactlyOne<T> {
    fn exactly_one(self) -> Option<T>;
}

impl<T, I: Iterator<Item = T>> ExactlyOne<T> for I {
    fn exactly_one(mut self) -> Option<T> {
        let first = self.next()?;
        self.next().is_none().then_some(first)
    }
}

/// Longest Message-ID stored or looked up, in bytes.
pub const MAX_MESSAGE_ID: usize = 998;

/// A Message-ID as stored and compared: trimmed, without angle brackets; `None` when empty
/// or longer than [`MAX_MESSAGE_ID`].
pub fn normalise_message_id(id: &str) -> Option<String> {
    let id = id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    (!id.is_empty() && id.len() <= MAX_MESSAGE_ID && !id.contains(char::is_control))
        .then(|| id.to_string())
}

/// The `Message-ID` of a message's header section (unfolded), reading at most its first
/// 64 KiB: stored at enqueue, so that a bounce or complaint without a token can be matched.
pub(crate) fn header_message_id(data: &[u8]) -> Option<String> {
    normalise_message_id(&crate::suppression::header_field(data, "message-id")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_read_from_the_header_only() {
        assert_eq!(
            header_message_id(b"From: a@x\r\nMessage-ID:\r\n <01ABC@x.test>\r\nSubject: s\r\n\r\nMessage-ID: <body@x>\r\n")
                .as_deref(),
            Some("01ABC@x.test")
        );
        assert_eq!(
            header_message_id(b"message-id: <a@b>\n\n").as_deref(),
            Some("a@b")
        );
        assert_eq!(
            header_message_id(b"Subject: s\r\n\r\nMessage-ID: <body@x>\r\n"),
            None
        );
        assert_eq!(header_message_id(b"Message-ID: <>\r\n\r\n"), None);
        assert_eq!(normalise_message_id(&"x".repeat(2000)), None);
    }
}
