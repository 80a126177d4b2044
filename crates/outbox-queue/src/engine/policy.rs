//! Delivery decisions as pure functions: a reply becomes an outcome, an attempt count
//! becomes the next retry time. Table-tested; the engine only applies them.

use std::time::Duration;

use time::OffsetDateTime;

use crate::Delivery;

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

#[cfg(test)]
mod tests {
    use super::*;

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
