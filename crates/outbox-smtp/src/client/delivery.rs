//! What a mail transaction did, per recipient: the explicit outcome types the delivery engine
//! turns into recipient states.

use crate::reply::Reply;

/// The server's answer to one RCPT TO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RcptOutcome {
    /// 2xx: the server took the recipient; the DATA reply decides its fate.
    Accepted(Reply),
    /// Anything else: this recipient is not part of the transaction.
    Rejected(Reply),
}

impl RcptOutcome {
    /// The RCPT reply.
    pub fn reply(&self) -> &Reply {
        match self {
            RcptOutcome::Accepted(reply) | RcptOutcome::Rejected(reply) => reply,
        }
    }

    /// Whether the recipient was accepted.
    pub fn is_accepted(&self) -> bool {
        matches!(self, RcptOutcome::Accepted(_))
    }
}

/// One recipient of a transaction and the server's answer to its RCPT TO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientReport {
    /// The address as given to [`crate::SmtpClient::send`].
    pub address: String,
    /// The RCPT TO outcome.
    pub outcome: RcptOutcome,
}

/// The result of one mail transaction that got past MAIL FROM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendReport {
    /// Every recipient in the order given, with its RCPT outcome.
    pub recipients: Vec<RecipientReport>,
    /// The reply that ended the transaction: the reply to the final `.` — or the reply to
    /// DATA itself when the server refused to take data. `None` when every recipient was
    /// rejected, so no DATA was sent.
    pub data: Option<Reply>,
}

/// Where a reply leaves a recipient (RFC 5321 §4.2.1): 2xx sent, 4xx try again later, 5xx
/// give up.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecipientOutcome {
    /// The server took responsibility for the message (2xx to end of data).
    Sent(Reply),
    /// 4xx (or an unexpected intermediate reply): defer and retry.
    Transient(Reply),
    /// 5xx: the recipient fails.
    Permanent(Reply),
}

impl RecipientOutcome {
    /// Classifies a final reply: 2xx sent, 4xx transient, 5xx permanent. A 1xx or 3xx where a
    /// final reply belongs is a confused server: transient.
    pub fn classify(reply: &Reply) -> RecipientOutcome {
        match reply.code / 100 {
            2 => RecipientOutcome::Sent(reply.clone()),
            5 => RecipientOutcome::Permanent(reply.clone()),
            _ => RecipientOutcome::Transient(reply.clone()),
        }
    }

    /// The reply behind the outcome.
    pub fn reply(&self) -> &Reply {
        match self {
            RecipientOutcome::Sent(reply)
            | RecipientOutcome::Transient(reply)
            | RecipientOutcome::Permanent(reply) => reply,
        }
    }
}

impl SendReport {
    /// The outcome for each recipient, in order: a rejected RCPT decides on its own; an
    /// accepted one shares the transaction's final reply.
    pub fn outcomes(&self) -> Vec<(&str, RecipientOutcome)> {
        self.recipients
            .iter()
            .map(|rcpt| {
                let outcome = match (&rcpt.outcome, &self.data) {
                    (RcptOutcome::Rejected(reply), _) => RecipientOutcome::classify(reply),
                    (RcptOutcome::Accepted(_), Some(data)) => RecipientOutcome::classify(data),
                    // Accepted but no DATA cannot come out of `send`; never call it sent.
                    (RcptOutcome::Accepted(reply), None) => {
                        RecipientOutcome::Transient(reply.clone())
                    }
                };
                (rcpt.address.as_str(), outcome)
            })
            .collect()
    }

    /// How many recipients the server accepted at RCPT time.
    pub fn accepted(&self) -> usize {
        self.recipients
            .iter()
            .filter(|rcpt| rcpt.outcome.is_accepted())
            .count()
    }

    /// Whether every recipient ended `Sent`.
    pub fn all_sent(&self) -> bool {
        self.outcomes()
            .iter()
            .all(|(_, outcome)| matches!(outcome, RecipientOutcome::Sent(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16) -> Reply {
        Reply::new(code, ["x"])
    }

    #[test]
    fn classifier_table() {
        for (code, expected) in [
            (250, "sent"),
            (251, "sent"),
            (421, "transient"),
            (452, "transient"),
            (354, "transient"),
            (550, "permanent"),
            (554, "permanent"),
        ] {
            let got = match RecipientOutcome::classify(&reply(code)) {
                RecipientOutcome::Sent(_) => "sent",
                RecipientOutcome::Transient(_) => "transient",
                RecipientOutcome::Permanent(_) => "permanent",
            };
            assert_eq!(got, expected, "{code}");
        }
    }

    #[test]
    fn rejected_recipient_keeps_its_own_reply() {
        let delivery = SendReport {
            recipients: vec![
                RecipientReport {
                    address: "a@x".into(),
                    outcome: RcptOutcome::Accepted(reply(250)),
                },
                RecipientReport {
                    address: "b@x".into(),
                    outcome: RcptOutcome::Rejected(reply(550)),
                },
                RecipientReport {
                    address: "c@x".into(),
                    outcome: RcptOutcome::Rejected(reply(451)),
                },
            ],
            data: Some(reply(250)),
        };
        let outcomes = delivery.outcomes();
        assert!(matches!(outcomes[0], ("a@x", RecipientOutcome::Sent(_))));
        assert!(matches!(
            outcomes[1],
            ("b@x", RecipientOutcome::Permanent(_))
        ));
        assert!(matches!(
            outcomes[2],
            ("c@x", RecipientOutcome::Transient(_))
        ));
        assert_eq!(delivery.accepted(), 1);
        assert!(!delivery.all_sent());
    }

    #[test]
    fn data_rejection_applies_to_accepted_recipients() {
        let delivery = SendReport {
            recipients: vec![RecipientReport {
                address: "a@x".into(),
                outcome: RcptOutcome::Accepted(reply(250)),
            }],
            data: Some(reply(554)),
        };
        assert!(matches!(
            delivery.outcomes()[0].1,
            RecipientOutcome::Permanent(_)
        ));
    }
}
