//! Mail for the bounce domain (`[bounces] domain`) and the complaints address
//! (`[complaints] address`): bounces and feedback reports, taken from anyone without AUTH,
//! never queued for delivery, read ([`outbox_mime::feedback`]) and applied to the
//! recipient their VERP token names ([`Store::record_feedback`]).

use outbox_mime::feedback::{RecipientReport, Report, ReportFormat, parse_report};
use outbox_queue::{FeedbackKind, NewFeedback, Store, Verp};
use outbox_smtp::Reply;

use crate::config::Config;

/// Default largest report taken, in bytes.
pub const DEFAULT_MAX_REPORT_SIZE: u64 = 1024 * 1024;

/// Which recipients are feedback, and how to read their tokens.
#[derive(Debug, Clone)]
pub struct FeedbackAddresses {
    verp: Option<Verp>,
    complaints: Option<String>,
    max_size: u64,
}

impl FeedbackAddresses {
    /// From `[bounces]` and `[complaints]`; `None` when neither is configured.
    pub fn from_config(config: &Config) -> Option<FeedbackAddresses> {
        let verp = config.bounces.verp();
        let complaints = config
            .complaints
            .address
            .as_ref()
            .map(|a| a.trim().to_ascii_lowercase());
        (verp.is_some() || complaints.is_some()).then(|| FeedbackAddresses {
            verp,
            complaints,
            max_size: config
                .bounces
                .max_report_size
                .map_or(DEFAULT_MAX_REPORT_SIZE, |size| size.0),
        })
    }

    /// True for an address at the bounce domain, or the complaints address.
    pub fn is_feedback(&self, address: &str) -> bool {
        self.verp
            .as_ref()
            .is_some_and(|verp| verp.is_bounce_address(address))
            || self
                .complaints
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case(address.trim()))
    }

    /// Reads one report sent to `recipients` (feedback addresses) by `sender`, and
    /// records it. A report over the size limit is refused (552); a store failure is a
    /// temporary refusal (451), so the reporting server tries again.
    pub async fn receive(
        &self,
        store: &dyn Store,
        sender: &str,
        recipients: &[String],
        data: &[u8],
    ) -> Result<(), Reply> {
        if data.len() as u64 > self.max_size {
            return Err(Reply::new(
                552,
                ["5.3.4 Report too large for the bounce address"],
            ));
        }
        let recipient_id = self.recipient_id(recipients, data);
        let feedback = feedback_of(&parse_report(data), recipient_id, sender, data);
        match store.record_feedback(feedback).await {
            Ok(applied) => {
                tracing::info!(
                    feedback = applied.id,
                    message = applied.message_id.as_deref().unwrap_or("-"),
                    state = applied.state.map_or("-", |s| s.as_str()),
                    suppressed = applied.suppressed,
                    "feedback report recorded"
                );
                Ok(())
            }
            Err(err) => {
                tracing::warn!(error = %err, "feedback report not recorded");
                Err(Reply::new(
                    451,
                    ["4.3.0 Queue unavailable, try again later"],
                ))
            }
        }
    }

    /// The recipient row named by the first VERP token that verifies: in the envelope
    /// recipients (the return path the bounce came back to), else in the report's text (a
    /// complaint's `Original-Mail-From`, a returned message's `Return-Path`).
    fn recipient_id(&self, recipients: &[String], data: &[u8]) -> Option<i64> {
        let verp = self.verp.as_ref()?;
        recipients
            .iter()
            .find_map(|r| verp.recipient(r))
            .or_else(|| verp.find_in(data))
    }
}

/// What a report says, as the store records it. A DSN's first `failed` block (else its
/// first `delayed` block) is the one applied: a VERP return path names one recipient. A
/// DSN with only success notices (`delivered`, `relayed`, `expanded`) is recorded as
/// changing nothing. A DSN without recipient blocks, and anything that is not a DSN or an
/// ARF report, is read as a plain-text bounce with the best status found.
pub fn feedback_of(
    report: &Report,
    recipient_id: Option<i64>,
    sender: &str,
    data: &[u8],
) -> NewFeedback {
    let mut feedback = NewFeedback {
        kind: FeedbackKind::Bounce,
        format: report.format.as_str().to_string(),
        recipient_id,
        original_message_id: report.original_message_id.clone(),
        address: None,
        status: None,
        diagnostic: None,
        sender: sender.to_string(),
        raw: data.to_vec(),
    };
    match report.format {
        ReportFormat::Arf => {
            let complaint = report.complaint.clone().unwrap_or_default();
            feedback.kind = FeedbackKind::Complaint;
            feedback.address = complaint.original_rcpt_to;
            feedback.diagnostic = Some(complaint.feedback_type);
        }
        ReportFormat::Dsn => {
            let pick = |action: &str| report.recipients.iter().find(|r| r.action == action);
            match pick("failed")
                .map(|r| (FeedbackKind::Bounce, r))
                .or_else(|| pick("delayed").map(|r| (FeedbackKind::Delay, r)))
            {
                Some((kind, block)) => {
                    let RecipientReport {
                        status,
                        diagnostic,
                        final_recipient,
                        original_recipient,
                        ..
                    } = block.clone();
                    feedback.kind = kind;
                    feedback.address = original_recipient.or(final_recipient);
                    feedback.status = status;
                    feedback.diagnostic = diagnostic;
                }
                // Only success notices (delivered, relayed, expanded): recorded, and
                // nothing changes, as for a delay.
                None if !report.recipients.is_empty() => {
                    feedback.kind = FeedbackKind::Delay;
                    let block = &report.recipients[0];
                    feedback.address = block.final_recipient.clone();
                    feedback.status = block.status.clone();
                    feedback.diagnostic = Some(format!("action {}", block.action));
                }
                None => {
                    feedback.format = ReportFormat::Text.as_str().to_string();
                    feedback.status = outbox_mime::feedback::best_status(data);
                }
            }
        }
        // Plain text, or a format this parser will know later.
        _ => feedback.status = report.text_status.clone(),
    }
    feedback
}
