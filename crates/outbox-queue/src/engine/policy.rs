//! Delivery decisions as pure functions: a reply becomes an outcome, an attempt count
//! becomes the next retry time, a message's own relay is allowed or refused. Table-tested;
//! the engine only applies them.

use std::time::Duration;

use time::OffsetDateTime;

use crate::Delivery;

use super::transport::{ErrorStage, Route, TransactionReport, TransportError};

/// What one reply (or failure) means for a recipient, before attempt limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx to end-of-data: accepted.
    Sent,
    /// 4xx, a network error, a timeout: try again later.
    Transient,
    /// 5xx (or a reply that is not SMTP at all): give up.
    Permanent,
    /// The message was sent in full, final dot included, and no reply came: the server
    /// may have taken it. Retried (at least once delivery, as Postfix does).
    Unknown,
    /// Nothing was tried for this recipient: the connection could not be set up for a
    /// reason that is not the recipient's (our configuration, the operator's relay). Due
    /// again after the route's pause; never counts as an attempt, so never fails it.
    NotAttempted,
}

impl Verdict {
    /// RFC 5321 §4.2.1: the first digit decides. Anything outside 2xx-5xx is a protocol
    /// violation; we treat it as permanent rather than retry forever.
    pub fn of_code(code: u16) -> Verdict {
        match code {
            200..=299 => Verdict::Sent,
            400..=499 => Verdict::Transient,
            _ => Verdict::Permanent,
        }
    }

    /// A failure that is not a reply: permanent or transient as the error says.
    pub fn of_error(err: &TransportError) -> Verdict {
        if err.permanent {
            Verdict::Permanent
        } else {
            Verdict::Transient
        }
    }
}

/// Longest reply text stored, in bytes.
pub const MAX_REPLY_LEN: usize = 1000;

/// A reply or error text as it may be stored and shown: control characters (NUL, CR, LF,
/// escape sequences, ...) become spaces, runs of spaces one, and it is cut to
/// [`MAX_REPLY_LEN`] bytes at a character boundary. The text comes from the network: a
/// server can put anything in it.
pub fn sanitize_reply(text: &str) -> String {
    let mut clean = String::with_capacity(text.len().min(MAX_REPLY_LEN));
    let mut space = false;
    for c in text.trim().chars() {
        let c = if c.is_control() { ' ' } else { c };
        if c == ' ' && space {
            continue;
        }
        space = c == ' ';
        if clean.len() + c.len_utf8() > MAX_REPLY_LEN - 3 {
            clean.truncate(clean.trim_end().len());
            clean.push_str("...");
            return clean;
        }
        clean.push(c);
    }
    clean.truncate(clean.trim_end().len());
    clean
}

/// The one place that decides what a transaction means for each of its `count`
/// recipients (in the order they were given): a verdict and the text to record.
///
/// - A recipient whose RCPT TO was refused gets that reply.
/// - An accepted recipient gets the reply to end-of-data (or to DATA, when DATA itself was
///   refused); it is sent only on a 2xx there (DESIGN §4). Accepted but no data reply at all
///   is a transient failure, never "sent".
/// - A failure before the whole message was sent delivered nothing: transient or
///   permanent as the error says.
/// - A failure after the final dot, before its reply, is [`Verdict::Unknown`].
pub fn transaction_outcomes(
    count: usize,
    result: &Result<TransactionReport, TransportError>,
) -> Vec<(Verdict, String)> {
    match result {
        Err(err) if err.stage == ErrorStage::AfterData => {
            let text = format!(
                "unknown: the connection failed after the end of data, before the server's reply ({}); \
                 the message may have been delivered, and will be sent again",
                err.message
            );
            vec![(Verdict::Unknown, text); count]
        }
        Err(err) => {
            vec![(Verdict::of_error(err), err.message.clone()); count]
        }
        Ok(report) => (0..count)
            .map(|index| match (report.recipients.get(index), &report.data) {
                (None, _) => (
                    Verdict::Transient,
                    "451 no reply to this recipient's RCPT TO".to_string(),
                ),
                (Some(rcpt), _) if !(200..300).contains(&rcpt.code) => {
                    (Verdict::of_code(rcpt.code), rcpt.text.clone())
                }
                (Some(_), Some(data)) => (Verdict::of_code(data.code), data.text.clone()),
                (Some(_), None) => (
                    Verdict::Transient,
                    "451 recipient accepted, but the message got no reply to end of data"
                        .to_string(),
                ),
            })
            .collect(),
    }
}

/// Which recipients of a transaction the recipient's server refused permanently itself: a
/// 5xx to its RCPT TO, or (accepted) a 5xx to the end of data. These are hard bounces for
/// the suppression list. A 4xx never is, nor a failure that is not a reply about the
/// recipient (a refused MAIL FROM, a null MX, a lost connection).
pub fn recipient_rejections(
    count: usize,
    result: &Result<TransactionReport, TransportError>,
) -> Vec<bool> {
    let Ok(report) = result else {
        return vec![false; count];
    };
    let permanent = |code: u16| (500..600).contains(&code);
    (0..count)
        .map(|index| match (report.recipients.get(index), &report.data) {
            (Some(rcpt), _) if permanent(rcpt.code) => true,
            (Some(rcpt), Some(data)) if (200..300).contains(&rcpt.code) => permanent(data.code),
            _ => false,
        })
        .collect()
}

/// Which recipients of a transaction go in the next one instead of being settled: those
/// refused with `452` (RFC 5321 §4.5.3.1.10: "too many recipients") when the server took
/// the message for others of the transaction. A 452 to every recipient, or a message the
/// server did not take, is an ordinary temporary failure: trying again on the same
/// connection would only repeat it.
pub fn carry_over(report: &TransactionReport) -> Vec<bool> {
    let delivered = report
        .data
        .as_ref()
        .is_some_and(|data| (200..300).contains(&data.code))
        && report
            .recipients
            .iter()
            .any(|rcpt| (200..300).contains(&rcpt.code));
    report
        .recipients
        .iter()
        .map(|rcpt| delivered && rcpt.code == 452)
        .collect()
}

/// What a failure to set up a connection means for every recipient waiting for `route`.
///
/// - Our own configuration (TLS files, a route that cannot be used) and anything on a
///   relay route (the operator's relay: a rejected login, a refused connection, a TLS
///   handshake) are [`Verdict::NotAttempted`]: the route pauses and the recipients wait;
///   they are never failed for it.
/// - The recipients' domain itself (it does not exist, a null MX, a program relay that is
///   not allowed) is permanent.
/// - An MX host that cannot be reached or refuses is transient or permanent as the error
///   says, like a reply (Postfix's behaviour).
pub fn connect_verdict(route: &Route, err: &TransportError) -> Verdict {
    match (err.stage, route) {
        (ErrorStage::Destination, _) => Verdict::of_error(err),
        (ErrorStage::Local, _) | (_, Route::Relay(_) | Route::ConfiguredRelay) => {
            Verdict::NotAttempted
        }
        (_, Route::Mx(_)) => Verdict::of_error(err),
    }
}

/// The retry schedule: `backoff[n-1]` after the n-th failed attempt, the last value
/// repeating; `jitter` in `[0, 1)` spreads retries over ±10 % so a burst of deferrals does
/// not come back as a burst.
pub fn retry_delay(attempts_made: u32, backoff: &[Duration], jitter: f64) -> Duration {
    let Some(last) = backoff.last() else {
        return Duration::ZERO;
    };
    let index = (attempts_made.max(1) as usize - 1).min(backoff.len() - 1);
    let base = backoff.get(index).unwrap_or(last);
    let factor = 0.9 + 0.2 * jitter.clamp(0.0, 1.0);
    base.mul_f64(factor)
}

/// Settles one recipient's attempt: the verdict, its reply text, and how many attempts it
/// has now made (this one included). Reaching `max_attempts` on a transient failure fails
/// the recipient: the seed's "if too many errors are encountered then the message send
/// will be cancelled". For [`Verdict::NotAttempted`], `attempts_made` is the route's count
/// of consecutive connection failures instead: it picks the pause from the same schedule.
/// The reply is sanitised ([`sanitize_reply`]) here, the one way into the store.
pub fn settle(
    verdict: Verdict,
    reply: String,
    attempts_made: u32,
    max_attempts: u32,
    backoff: &[Duration],
    now: OffsetDateTime,
    jitter: f64,
) -> Delivery {
    let reply = sanitize_reply(&reply);
    match verdict {
        Verdict::Sent => Delivery::Sent { reply },
        Verdict::Permanent => Delivery::Failed { reply },
        Verdict::NotAttempted => Delivery::NotAttempted {
            reply,
            next_attempt_at: now + retry_delay(attempts_made, backoff, jitter),
        },
        Verdict::Transient | Verdict::Unknown if attempts_made >= max_attempts => {
            Delivery::Failed {
                reply: format!("{reply} (cancelled after {attempts_made} attempts)"),
            }
        }
        Verdict::Transient => Delivery::Deferred {
            reply,
            next_attempt_at: now + retry_delay(attempts_made, backoff, jitter),
        },
        Verdict::Unknown => Delivery::Unknown {
            reply,
            next_attempt_at: now + retry_delay(attempts_made, backoff, jitter),
        },
    }
}

/// The reply recorded for each recipient of a message whose stored relay is a program
/// while `[delivery] allow_program_relay` is false.
pub const PROGRAM_RELAY_DISABLED: &str =
    "program relays on a message are disabled ([delivery] allow_program_relay)";

/// True when a relay spec names a program. Decided the way `ServerSpec::parse` decides it
/// (leading white space trimmed, the scheme in any case), so no spelling that would run a
/// program is missed, and one that does not parse as a program is still caught.
pub fn is_program_relay(spec: &str) -> bool {
    spec.trim_start()
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("program:"))
}

/// Whether the engine may open `route`: `Some(reason)` when it may not. A relay stored on
/// a message is data, and anyone who can write the queue database can write it (a local
/// user of `outbox sendmail`, for one); the engine runs with the service's rights. So a
/// stored `program:` relay runs only when the operator opted in. The configured relay
/// (`Route::ConfiguredRelay`) is the operator's own and always allowed.
pub fn route_refusal(route: &Route, allow_program_relay: bool) -> Option<&'static str> {
    match route {
        Route::Relay(spec) if !allow_program_relay && is_program_relay(spec) => {
            Some(PROGRAM_RELAY_DISABLED)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::transport::ReplyText;
    use super::*;

    #[test]
    fn recipients_refused_as_too_many_go_in_the_next_transaction() {
        let reply = |code: u16| ReplyText {
            code,
            text: format!("{code} x"),
        };
        let report = |codes: &[u16], data: Option<u16>| TransactionReport {
            recipients: codes.iter().map(|code| reply(*code)).collect(),
            data: data.map(reply),
        };
        assert_eq!(
            carry_over(&report(&[250, 250, 452, 452], Some(250))),
            [false, false, true, true]
        );
        assert_eq!(
            carry_over(&report(&[452, 452], None)),
            [false, false],
            "none taken"
        );
        assert_eq!(
            carry_over(&report(&[250, 452], Some(451))),
            [false, false],
            "message refused"
        );
        assert_eq!(
            carry_over(&report(&[250, 451, 550], Some(250))),
            [false, false, false],
            "only 452"
        );
    }

    #[test]
    fn program_relays_on_a_message_need_the_opt_in() {
        let programs = [
            "program:/usr/bin/touch /tmp/x",
            "PROGRAM:/bin/true",
            "  Program: /bin/true",
            "\tprogram:",
            "program:'unbalanced",
        ];
        for spec in programs {
            let route = Route::Relay(spec.into());
            assert!(is_program_relay(spec), "{spec:?}");
            assert_eq!(
                route_refusal(&route, false),
                Some(PROGRAM_RELAY_DISABLED),
                "{spec:?}"
            );
            assert_eq!(route_refusal(&route, true), None, "{spec:?}");
        }
        for spec in [
            "smtp://127.0.0.1:2525",
            "relay.example:587",
            "smtps://u:p@relay.example",
            "programs.example:25",
            "",
        ] {
            assert!(!is_program_relay(spec), "{spec:?}");
            assert_eq!(route_refusal(&Route::Relay(spec.into()), false), None);
        }
        // The operator's relay (a program or not) and MX routes are never refused.
        assert_eq!(route_refusal(&Route::ConfiguredRelay, false), None);
        assert_eq!(route_refusal(&Route::Mx("example.com".into()), false), None);
    }

    fn minutes(list: &[u64]) -> Vec<Duration> {
        list.iter().map(|m| Duration::from_secs(m * 60)).collect()
    }

    fn reply(code: u16) -> ReplyText {
        ReplyText {
            code,
            text: format!("{code} text"),
        }
    }

    fn report(rcpts: &[u16], data: Option<u16>) -> Result<TransactionReport, TransportError> {
        Ok(TransactionReport {
            recipients: rcpts.iter().copied().map(reply).collect(),
            data: data.map(reply),
        })
    }

    fn failure(stage: ErrorStage, permanent: bool) -> Result<TransactionReport, TransportError> {
        Err(TransportError::new(stage, "connection reset", permanent))
    }

    /// Hard bounces for the suppression list: a 5xx about the recipient itself only.
    #[test]
    fn only_a_5xx_to_rcpt_or_to_end_of_data_is_a_hard_bounce() {
        let cases = [
            (
                report(&[550, 250, 451], Some(250)),
                vec![true, false, false],
            ),
            (report(&[250, 250], Some(554)), vec![true, true]),
            (report(&[250, 550], Some(452)), vec![false, true]),
            (report(&[550, 550], None), vec![true, true]),
            (report(&[250], None), vec![false]),
            // A refused MAIL FROM, a null MX, a lost connection: not about the recipient.
            (failure(ErrorStage::Transaction, true), vec![false, false]),
            (failure(ErrorStage::Destination, true), vec![false, false]),
            (failure(ErrorStage::AfterData, false), vec![false, false]),
        ];
        for (result, expected) in cases {
            assert_eq!(
                recipient_rejections(expected.len(), &result),
                expected,
                "{result:?}"
            );
        }
        // Fewer replies than recipients: the missing ones are not rejections.
        assert_eq!(
            recipient_rejections(2, &report(&[550], None)),
            [true, false]
        );
    }

    /// Every way a transaction can end, and what each recipient gets: the one table of
    /// DESIGN §4 (sent only after the 250 to end-of-data).
    #[test]
    fn each_exchange_maps_to_one_outcome_per_recipient() {
        use Verdict::*;
        type Case = (
            &'static str,
            usize,
            Result<TransactionReport, TransportError>,
            Vec<(Verdict, &'static str)>,
        );
        let cases: Vec<Case> = vec![
            (
                "all accepted",
                2,
                report(&[250, 250], Some(250)),
                vec![(Sent, "250 text"); 2],
            ),
            (
                "one refused",
                2,
                report(&[550, 250], Some(250)),
                vec![(Permanent, "550 text"), (Sent, "250 text")],
            ),
            (
                "one busy",
                2,
                report(&[450, 250], Some(250)),
                vec![(Transient, "450 text"), (Sent, "250 text")],
            ),
            (
                "data refused for good",
                1,
                report(&[250], Some(554)),
                vec![(Permanent, "554 text")],
            ),
            (
                "data deferred",
                2,
                report(&[250, 550], Some(451)),
                vec![(Transient, "451 text"), (Permanent, "550 text")],
            ),
            (
                "DATA itself refused",
                1,
                report(&[250], Some(503)),
                vec![(Permanent, "503 text")],
            ),
            (
                "all refused, no DATA",
                2,
                report(&[550, 551], None),
                vec![(Permanent, "550 text"), (Permanent, "551 text")],
            ),
            (
                "accepted but no data reply",
                1,
                report(&[250], None),
                vec![(
                    Transient,
                    "451 recipient accepted, but the message got no reply to end of data",
                )],
            ),
            (
                "missing RCPT reply",
                2,
                report(&[250], Some(250)),
                vec![
                    (Sent, "250 text"),
                    (Transient, "451 no reply to this recipient's RCPT TO"),
                ],
            ),
            (
                "dropped before the dot",
                2,
                failure(ErrorStage::Transaction, false),
                vec![(Transient, "connection reset"); 2],
            ),
            (
                "refused MAIL FROM",
                1,
                failure(ErrorStage::Transaction, true),
                vec![(Permanent, "connection reset")],
            ),
        ];
        for (name, count, result, expected) in cases {
            let got = transaction_outcomes(count, &result);
            let got: Vec<(Verdict, &str)> = got.iter().map(|(v, t)| (*v, t.as_str())).collect();
            assert_eq!(got, expected, "{name}");
        }
        // Dropped after the final dot: unknown for everyone, never sent, never failed.
        let got = transaction_outcomes(3, &failure(ErrorStage::AfterData, false));
        assert_eq!(got.len(), 3);
        for (verdict, text) in got {
            assert_eq!(verdict, Unknown);
            assert!(
                text.starts_with("unknown: ") && text.contains("connection reset"),
                "{text}"
            );
        }
    }

    #[test]
    fn connection_failures_never_fail_relay_recipients() {
        use Verdict::*;
        let relay = Route::Relay("smtp://relay.example:587".into());
        let mx = Route::Mx("example.com".into());
        let err = |stage, permanent| TransportError::new(stage, "x", permanent);
        for (route, stage, permanent, verdict) in [
            // A 535 after a rotated password, a refused or timed-out relay, a bad CA file.
            (&relay, ErrorStage::Connect, true, NotAttempted),
            (&relay, ErrorStage::Connect, false, NotAttempted),
            (
                &Route::ConfiguredRelay,
                ErrorStage::Connect,
                true,
                NotAttempted,
            ),
            (&relay, ErrorStage::Local, true, NotAttempted),
            (&mx, ErrorStage::Local, true, NotAttempted),
            // MX hosts answer like servers do; the domain's own DNS is final.
            (&mx, ErrorStage::Connect, false, Transient),
            (&mx, ErrorStage::Connect, true, Permanent),
            (&mx, ErrorStage::Destination, true, Permanent),
            (&mx, ErrorStage::Destination, false, Transient),
            (&relay, ErrorStage::Destination, true, Permanent),
        ] {
            assert_eq!(
                connect_verdict(route, &err(stage, permanent)),
                verdict,
                "{route} {stage:?} permanent={permanent}"
            );
        }
    }

    #[test]
    fn replies_are_sanitised_before_they_are_stored() {
        assert_eq!(sanitize_reply("250 ok"), "250 ok");
        assert_eq!(
            sanitize_reply("451\0 try\r\nlater\x1b[31m"),
            "451 try later [31m"
        );
        assert_eq!(sanitize_reply("  550   a\t\tb  "), "550 a b");
        let long = format!("550 {}", "é".repeat(2000));
        let clean = sanitize_reply(&long);
        assert!(clean.len() <= MAX_REPLY_LEN, "{}", clean.len());
        assert!(clean.ends_with("..."));
        let stored = settle(
            Verdict::Transient,
            "421\0 bye".into(),
            1,
            5,
            &[],
            OffsetDateTime::UNIX_EPOCH,
            0.5,
        );
        assert_eq!(stored.reply(), "421 bye");
    }

    #[test]
    fn unknown_and_not_attempted_settle_as_retries() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let backoff = minutes(&[1, 5]);
        let settle =
            |verdict, attempts| settle(verdict, "x".into(), attempts, 3, &backoff, now, 0.5);
        assert_eq!(
            settle(Verdict::Unknown, 1),
            Delivery::Unknown {
                reply: "x".into(),
                next_attempt_at: now + Duration::from_secs(60)
            }
        );
        assert!(matches!(
            settle(Verdict::Unknown, 3),
            Delivery::Failed { .. }
        ));
        // Not an attempt: however many failures, never failed.
        assert_eq!(
            settle(Verdict::NotAttempted, 9),
            Delivery::NotAttempted {
                reply: "x".into(),
                next_attempt_at: now + Duration::from_secs(300)
            }
        );
    }

    #[test]
    fn codes() {
        for (code, verdict) in [
            (250, Verdict::Sent),
            (251, Verdict::Sent),
            (421, Verdict::Transient),
            (451, Verdict::Transient),
            (452, Verdict::Transient),
            (500, Verdict::Permanent),
            (550, Verdict::Permanent),
            (554, Verdict::Permanent),
            (199, Verdict::Permanent),
            (600, Verdict::Permanent),
        ] {
            assert_eq!(Verdict::of_code(code), verdict, "{code}");
        }
    }

    #[test]
    fn backoff_steps_then_repeats_the_last() {
        let backoff = minutes(&[1, 5, 15, 60, 240]);
        let at = |n| retry_delay(n, &backoff, 0.5);
        assert_eq!(at(1), Duration::from_secs(60));
        assert_eq!(at(2), Duration::from_secs(300));
        assert_eq!(at(5), Duration::from_secs(240 * 60));
        assert_eq!(at(9), Duration::from_secs(240 * 60));
        assert_eq!(retry_delay(1, &[], 0.5), Duration::ZERO);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let backoff = minutes(&[10]);
        assert_eq!(retry_delay(1, &backoff, 0.0), Duration::from_secs(540));
        assert_eq!(retry_delay(1, &backoff, 1.0), Duration::from_secs(660));
        assert_eq!(retry_delay(1, &backoff, 7.0), Duration::from_secs(660));
    }

    #[test]
    fn settling() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let backoff = minutes(&[1, 5]);
        let settle =
            |verdict, attempts| settle(verdict, "451 busy".into(), attempts, 3, &backoff, now, 0.5);
        assert!(matches!(settle(Verdict::Sent, 1), Delivery::Sent { .. }));
        assert!(matches!(
            settle(Verdict::Permanent, 1),
            Delivery::Failed { .. }
        ));
        assert_eq!(
            settle(Verdict::Transient, 2),
            Delivery::Deferred {
                reply: "451 busy".into(),
                next_attempt_at: now + Duration::from_secs(300)
            }
        );
        match settle(Verdict::Transient, 3) {
            Delivery::Failed { reply } => {
                assert!(reply.starts_with("451 busy"), "{reply}");
                assert!(reply.contains("cancelled after 3 attempts"), "{reply}");
            }
            other => panic!("{other:?}"),
        }
    }
}
