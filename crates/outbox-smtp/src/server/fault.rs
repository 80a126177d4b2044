//! Deterministic fault injection: "reply X to command Y for matching recipients N times",
//! dropped connections and stalls, so delivery tests can exercise every failure path.
//!
//! Only [`Stage`] is always compiled (the session names its stages with it); the rules are
//! behind the `testing` cargo feature, so a production listener neither carries nor consults
//! them.

#[cfg(any(test, feature = "testing"))]
use std::sync::Mutex;
#[cfg(any(test, feature = "testing"))]
use std::time::Duration;

#[cfg(any(test, feature = "testing"))]
use crate::reply::Reply;

/// The point in a session where a fault can fire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// Before the greeting: a reply here replaces the `220` greeting.
    Connect,
    /// `EHLO` or `HELO`.
    Ehlo,
    /// `MAIL FROM`.
    Mail,
    /// `RCPT TO`; recipient matching uses the command's address.
    Rcpt,
    /// The `DATA` command itself (instead of `354`).
    Data,
    /// The end of the message text (instead of the final `250`); the message is not given to
    /// the sink when a reply fault fires here.
    EndOfData,
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `STARTTLS`.
    StartTls,
    /// `AUTH`.
    Auth,
}

/// What a fault does when it fires.
#[cfg(any(test, feature = "testing"))]
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultAction {
    /// Send this reply instead of the normal one; a `421` reply also closes the connection
    /// (RFC 5321 §3.8).
    Reply(Reply),
    /// Close the connection without replying.
    Drop,
    /// Say nothing for this long, then go on as normal.
    Stall(Duration),
    /// During DATA (a rule at [`Stage::Data`]), send `354`, then close the connection once
    /// this many octets of text have arrived.
    DropMidData {
        /// Octets of message text to read before closing.
        after_bytes: u64,
    },
    /// At [`Stage::StartTls`]: answer `220`, then send bytes that are no TLS record and close,
    /// so the client's handshake fails (a broken TLS stack on the server's side).
    BreakTls,
}

/// One fault rule, built with the constructors and then narrowed with
/// [`Fault::for_recipient`], [`Fault::for_sender`] and [`Fault::times`].
///
/// ```
/// use outbox_smtp::server::{Fault, Stage};
/// // "451 to RCPT for b@x.test twice, then accept"
/// let fault = Fault::reply(Stage::Rcpt, 451, "4.3.0 try again later")
///     .for_recipient("b@x.test")
///     .times(2);
/// ```
#[cfg(any(test, feature = "testing"))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    stage: Stage,
    action: FaultAction,
    recipient: Option<String>,
    sender: Option<String>,
    times: Option<u32>,
}

#[cfg(any(test, feature = "testing"))]
impl Fault {
    /// Reply `code text` at `stage` instead of the normal reply. `text` may start with an
    /// enhanced status code.
    pub fn reply(stage: Stage, code: u16, text: impl Into<String>) -> Fault {
        Fault::new(stage, FaultAction::Reply(Reply::new(code, [text.into()])))
    }

    /// Close the connection at `stage` without replying.
    pub fn drop_connection(stage: Stage) -> Fault {
        Fault::new(stage, FaultAction::Drop)
    }

    /// Stay silent for `delay` at `stage`, then reply normally.
    pub fn stall(stage: Stage, delay: Duration) -> Fault {
        Fault::new(stage, FaultAction::Stall(delay))
    }

    /// Close the connection in the middle of the message text, after `after_bytes` octets.
    pub fn drop_mid_data(after_bytes: u64) -> Fault {
        Fault::new(Stage::Data, FaultAction::DropMidData { after_bytes })
    }

    /// Answer STARTTLS with `220`, then break the handshake: garbage, then a closed
    /// connection.
    pub fn break_tls() -> Fault {
        Fault::new(Stage::StartTls, FaultAction::BreakTls)
    }

    fn new(stage: Stage, action: FaultAction) -> Fault {
        Fault {
            stage,
            action,
            recipient: None,
            sender: None,
            times: None,
        }
    }

    /// Fire only for this recipient (case-insensitive): at `RCPT` the command's address, at
    /// `DATA` and end of data any accepted recipient of the transaction.
    pub fn for_recipient(mut self, address: impl Into<String>) -> Fault {
        self.recipient = Some(address.into());
        self
    }

    /// Fire only for transactions from this sender (case-insensitive).
    pub fn for_sender(mut self, address: impl Into<String>) -> Fault {
        self.sender = Some(address.into());
        self
    }

    /// Fire this many times, then never again (the default is every time).
    pub fn times(mut self, n: u32) -> Fault {
        self.times = Some(n);
        self
    }

    /// The stage this fault fires at.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    fn matches(&self, stage: Stage, sender: Option<&str>, recipients: &[String]) -> bool {
        if self.stage != stage || self.times == Some(0) {
            return false;
        }
        if let Some(want) = &self.sender
            && !sender.is_some_and(|s| s.eq_ignore_ascii_case(want))
        {
            return false;
        }
        if let Some(want) = &self.recipient
            && !recipients.iter().any(|r| r.eq_ignore_ascii_case(want))
        {
            return false;
        }
        true
    }
}

/// The rules of one server, shared by all its connections. Rules are tried in the order they
/// were added; the first that matches fires and uses up one of its `times`.
#[derive(Debug, Default)]
#[cfg(any(test, feature = "testing"))]
pub(crate) struct FaultPlan {
    rules: Mutex<Vec<Fault>>,
}

#[cfg(any(test, feature = "testing"))]
impl FaultPlan {
    pub(crate) fn new(rules: Vec<Fault>) -> FaultPlan {
        FaultPlan {
            rules: Mutex::new(rules),
        }
    }

    pub(crate) fn add(&self, fault: Fault) {
        self.lock().push(fault);
    }

    /// The action to take at `stage`, if a rule fires.
    pub(crate) fn fire(
        &self,
        stage: Stage,
        sender: Option<&str>,
        recipients: &[String],
    ) -> Option<FaultAction> {
        let mut rules = self.lock();
        let rule = rules
            .iter_mut()
            .find(|rule| rule.matches(stage, sender, recipients))?;
        if let Some(times) = &mut rule.times {
            *times -= 1;
        }
        Some(rule.action.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Fault>> {
        // Each update is a single decrement or push, so a poisoned lock holds consistent data.
        self.rules
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(any(test, feature = "testing"))]
#[cfg(test)]
mod tests {
    use super::*;

    fn rcpt(address: &str) -> Vec<String> {
        vec![address.to_string()]
    }

    #[test]
    fn fires_n_times_for_the_matching_recipient_only() {
        let plan = FaultPlan::new(vec![
            Fault::reply(Stage::Rcpt, 451, "4.3.0 later")
                .for_recipient("b@x.test")
                .times(2),
        ]);
        assert_eq!(
            plan.fire(Stage::Rcpt, Some("a@y.test"), &rcpt("c@x.test")),
            None
        );
        assert_eq!(
            plan.fire(Stage::Mail, Some("a@y.test"), &rcpt("b@x.test")),
            None
        );
        for _ in 0..2 {
            let action = plan.fire(Stage::Rcpt, Some("a@y.test"), &rcpt("B@x.test"));
            assert!(matches!(action, Some(FaultAction::Reply(r)) if r.code == 451));
        }
        assert_eq!(
            plan.fire(Stage::Rcpt, Some("a@y.test"), &rcpt("b@x.test")),
            None
        );
    }

    #[test]
    fn first_matching_rule_wins_and_sender_filters() {
        let plan = FaultPlan::new(vec![
            Fault::reply(Stage::Mail, 421, "4.3.2 closing").for_sender("x@y.test"),
            Fault::drop_connection(Stage::Mail),
        ]);
        assert!(matches!(
            plan.fire(Stage::Mail, Some("x@y.test"), &[]),
            Some(FaultAction::Reply(_))
        ));
        assert_eq!(
            plan.fire(Stage::Mail, Some("z@y.test"), &[]),
            Some(FaultAction::Drop)
        );
    }
}
