//! Reading the reports that come back about delivered mail: delivery status
//! notifications (RFC 3464: `multipart/report; report-type=delivery-status`), feedback
//! reports (RFC 5965, ARF: `multipart/report; report-type=feedback-report`), and the
//! plain-text non-delivery notices of servers that send neither.
//!
//! Every byte is hostile: the report is cut to [`MAX_REPORT_SIZE`] before it is read, at
//! most [`MAX_RECIPIENTS`] per-recipient blocks and [`MAX_FIELD_LEN`] bytes per field are
//! kept, and nothing here panics (a property test feeds it arbitrary bytes). MIME is read
//! by `mail-parser`; the fields of the `message/delivery-status` and
//! `message/feedback-report` parts (RFC 3464 §2, RFC 5965 §3.5) by [`report_fields`].

use mail_parser::{MessageParser, MimeHeaders, PartType};

/// Bytes of a report read at most; the rest is ignored.
pub const MAX_REPORT_SIZE: usize = 1024 * 1024;

/// Per-recipient blocks of a delivery status notification read at most.
pub const MAX_RECIPIENTS: usize = 100;

/// Bytes kept of one field value.
pub const MAX_FIELD_LEN: usize = 1000;

/// Fields read from one status part at most.
const MAX_FIELDS: usize = 2000;

/// The form a report came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReportFormat {
    /// RFC 3464 delivery status notification.
    Dsn,
    /// RFC 5965 feedback report.
    Arf,
    /// Anything else: a plain-text notice, or a report whose status part is missing.
    Text,
}

impl ReportFormat {
    /// `dsn`, `arf` or `text`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportFormat::Dsn => "dsn",
            ReportFormat::Arf => "arf",
            ReportFormat::Text => "text",
        }
    }
}

/// One per-recipient block of a delivery status notification (RFC 3464 §2.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecipientReport {
    /// `Action`, lowercase: failed, delayed, delivered, relayed or expanded.
    pub action: String,
    /// `Status`: the enhanced status code (`5.1.1`), when it is one.
    pub status: Option<String>,
    /// `Diagnostic-Code` without its type (`smtp; `): the remote server's reply.
    pub diagnostic: Option<String>,
    /// `Final-Recipient` without its address type.
    pub final_recipient: Option<String>,
    /// `Original-Recipient` without its address type.
    pub original_recipient: Option<String>,
}

/// What a feedback report (RFC 5965 §3.5) says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComplaintReport {
    /// `Feedback-Type`, lowercase: abuse, fraud, virus, other, not-spam...
    pub feedback_type: String,
    /// `Original-Rcpt-To`: the complaining recipient, when the reporter says.
    pub original_rcpt_to: Option<String>,
    /// `Original-Mail-From`: the envelope sender of the reported message.
    pub original_mail_from: Option<String>,
}

/// A report as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The form it came in.
    pub format: ReportFormat,
    /// The per-recipient blocks of a DSN (empty otherwise).
    pub recipients: Vec<RecipientReport>,
    /// The complaint of an ARF report.
    pub complaint: Option<ComplaintReport>,
    /// The Message-ID of the returned (or reported) message, when it came back.
    pub original_message_id: Option<String>,
    /// For a plain-text notice: the best status found in its text (an enhanced status
    /// code, else a reply code), permanent ones first.
    pub text_status: Option<String>,
}

/// Reads a report. Never fails: what is not a DSN or ARF report is [`ReportFormat::Text`]
/// with the best status found in its text.
pub fn parse_report(data: &[u8]) -> Report {
    let data = &data[..data.len().min(MAX_REPORT_SIZE)];
    let mut report = Report {
        format: ReportFormat::Text,
        recipients: Vec::new(),
        complaint: None,
        original_message_id: None,
        text_status: None,
    };
    if let Some(message) = MessageParser::default().parse(data) {
        for part in &message.parts {
            let Some(content_type) = part.content_type() else {
                continue;
            };
            let ctype = content_type.ctype().to_ascii_lowercase();
            let subtype = content_type
                .subtype()
                .map(str::to_ascii_lowercase)
                .unwrap_or_default();
            match (ctype.as_str(), subtype.as_str()) {
                ("message", "delivery-status" | "global-delivery-status")
                    if report.format != ReportFormat::Arf =>
                {
                    report.format = ReportFormat::Dsn;
                    report.recipients = recipient_blocks(part.contents());
                }
                ("message", "feedback-report") if report.format != ReportFormat::Dsn => {
                    report.format = ReportFormat::Arf;
                    report.complaint = Some(complaint(part.contents()));
                }
                ("message", "rfc822" | "global") => {
                    if let PartType::Message(returned) = &part.body {
                        report.original_message_id = report
                            .original_message_id
                            .take()
                            .or_else(|| returned.message_id().map(|id| bounded(id.to_string())));
                    }
                }
                ("text", "rfc822-headers" | "global-headers") => {
                    let headers = MessageParser::default().parse_headers(part.contents());
                    if let Some(id) = headers.as_ref().and_then(|h| h.message_id()) {
                        report.original_message_id = Some(bounded(id.to_string()));
                    }
                }
                _ => {}
            }
        }
    }
    if report.format == ReportFormat::Text {
        report.text_status = best_status(data);
    }
    report
}

/// The per-recipient blocks of a `message/delivery-status` body (RFC 3464 §2.1: the
/// per-message fields, a blank line, then one block per recipient).
fn recipient_blocks(body: &[u8]) -> Vec<RecipientReport> {
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_REPORT_SIZE)]);
    let mut recipients = Vec::new();
    for block in blocks(&text) {
        if recipients.len() >= MAX_RECIPIENTS {
            break;
        }
        let fields = report_fields(block);
        let get = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let (Some(action), final_recipient) = (get("Action"), get("Final-Recipient")) else {
            continue;
        };
        recipients.push(RecipientReport {
            action: action.trim().to_ascii_lowercase(),
            status: get("Status").and_then(enhanced_status),
            diagnostic: get("Diagnostic-Code").map(|v| bounded(without_type(v).to_string())),
            final_recipient: final_recipient.map(|v| bounded(without_type(v).to_string())),
            original_recipient: get("Original-Recipient")
                .map(|v| bounded(without_type(v).to_string())),
        });
    }
    recipients
}

/// The fields of a `message/feedback-report` body.
fn complaint(body: &[u8]) -> ComplaintReport {
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_REPORT_SIZE)]);
    let fields = report_fields(&text);
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| {
                bounded(
                    v.trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_string(),
                )
            })
    };
    ComplaintReport {
        feedback_type: get("Feedback-Type")
            .map(|t| t.to_ascii_lowercase())
            .unwrap_or_else(|| "abuse".to_string()),
        original_rcpt_to: get("Original-Rcpt-To"),
        original_mail_from: get("Original-Mail-From"),
    }
}

/// The blocks of a status body: runs of lines separated by blank lines.
fn blocks(text: &str) -> impl Iterator<Item = &str> {
    text.split("\r\n\r\n")
        .flat_map(|chunk| chunk.split("\n\n"))
        .filter(|block| !block.trim().is_empty())
}

/// The `Name: value` fields of a header-like block, continuation lines unfolded (RFC 5322
/// §2.2.3), at most 2 000 fields of [`MAX_FIELD_LEN`] bytes each. Lines that are
/// not fields are skipped.
pub fn report_fields(block: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in block.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut()
                && value.len() < MAX_FIELD_LEN
            {
                value.push(' ');
                value.push_str(line.trim());
                *value = bounded(std::mem::take(value));
            }
            continue;
        }
        if fields.len() >= MAX_FIELDS {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()) {
                fields.push((name.to_string(), bounded(value.trim().to_string())));
            }
        }
    }
    fields
}

/// A value cut to [`MAX_FIELD_LEN`] bytes at a character boundary.
fn bounded(mut text: String) -> String {
    if text.len() > MAX_FIELD_LEN {
        let mut end = MAX_FIELD_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// A typed value (`rfc822; bob@example.com`, `smtp; 550 ...`) without its type.
fn without_type(value: &str) -> &str {
    match value.split_once(';') {
        Some((kind, rest)) if !kind.trim().contains(char::is_whitespace) => rest.trim(),
        _ => value.trim(),
    }
}

/// The enhanced status code (RFC 3463 §2: `class.subject.detail`, class 2, 4 or 5,
/// subject and detail of 1-3 digits) at the start of a `Status` value.
fn enhanced_status(value: &str) -> Option<String> {
    let token = value.split_whitespace().next()?;
    is_enhanced_status(token).then(|| token.to_string())
}

fn is_enhanced_status(token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(class), Some(subject), Some(detail), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    matches!(class, "2" | "4" | "5")
        && [subject, detail]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The best status in a plain-text notice: the first permanent enhanced status code,
/// else a permanent reply code (`550`), else a temporary enhanced code, else a temporary
/// reply code. Only the first [`MAX_REPORT_SIZE`] bytes are read.
pub fn best_status(data: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&data[..data.len().min(MAX_REPORT_SIZE)]);
    let words = || {
        text.split(|c: char| {
            c.is_whitespace() || matches!(c, '(' | ')' | '<' | '>' | ',' | ';' | '"' | '[' | ']')
        })
        .map(|w| w.trim_end_matches([':', '.', '-']))
    };
    let enhanced = |class: char| {
        words()
            .find(|w| w.starts_with(class) && is_enhanced_status(w))
            .map(str::to_string)
    };
    let code = |class: u8| {
        words()
            .find(|w| {
                w.len() == 3
                    && w.as_bytes()[0] == class
                    && w.bytes().all(|b| b.is_ascii_digit())
                    && w.as_bytes()[1] <= b'5'
            })
            .map(str::to_string)
    };
    enhanced('5')
        .or_else(|| code(b'5'))
        .or_else(|| enhanced('4'))
        .or_else(|| code(b'4'))
}

#[cfg(test)]
mod tests;
