//! Delivery decisions as pure functions: a reply becomes an outcome, an attempt count
//! becomes the next retry time, a message's own relay is allowed or refused. Table-tested;
//! the engine only applies them.

use std::time::Duration;

use time::OffsetDateTime;

use crate::Delivery;

use super::transport::Route;

/// What one reply (or failure) means for a recipient, before attempt limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: accepted.
    Sent,
    /// 4xx, a network error, a timeout: try again later.
    Transient,
    /// 5xx (or a reply that is not SMTP at all): give up.
    Permanent,
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
/// will be cancelled".
pub fn settle(
    verdict: Verdict,
    reply: String,
    attempts_made: u32,
    max_attempts: u32,
    backoff: &[Duration],
    now: OffsetDateTime,
    jitter: f64,
) -> Delivery {
    match verdict {
        Verdict::Sent => Delivery::Sent { reply },
        Verdict::Permanent => Delivery::Failed { reply },
        Verdict::Transient if attempts_made >= max_attempts => Delivery::Failed {
            reply: format!("{reply} (cancelled after {attempts_made} attempts)"),
        },
        Verdict::Transient => Delivery::Deferred {
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
    use super::*;

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
