//! Per-command client timeouts (RFC 5321 §4.5.3.2), one serde struct with named defaults and
//! human-readable durations (`"5m"`, `"30s"`) so a config file can fill it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long the client waits at each step of a session. The defaults are RFC 5321
/// §4.5.3.2's minimums; `connect`, `ehlo`, `starttls`, `auth`, `rset` and `quit`, which the
/// RFC does not name, take values in the same spirit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Timeouts {
    /// TCP connect (and the TLS handshake of implicit TLS).
    #[serde(with = "humantime_serde")]
    pub connect: Duration,
    /// The 220 greeting (§4.5.3.2.1: 5 minutes).
    #[serde(with = "humantime_serde")]
    pub greeting: Duration,
    /// EHLO / HELO.
    #[serde(with = "humantime_serde")]
    pub ehlo: Duration,
    /// STARTTLS and its TLS handshake.
    #[serde(with = "humantime_serde")]
    pub starttls: Duration,
    /// Each step of AUTH.
    #[serde(with = "humantime_serde")]
    pub auth: Duration,
    /// MAIL FROM (§4.5.3.2.2: 5 minutes).
    #[serde(with = "humantime_serde")]
    pub mail_from: Duration,
    /// Each RCPT TO (§4.5.3.2.3: 5 minutes).
    #[serde(with = "humantime_serde")]
    pub rcpt_to: Duration,
    /// The 354 after DATA (§4.5.3.2.4: 2 minutes).
    #[serde(with = "humantime_serde")]
    pub data_init: Duration,
    /// Each block of message data written (§4.5.3.2.5: 3 minutes).
    #[serde(with = "humantime_serde")]
    pub data_block: Duration,
    /// The reply to the final `.` (§4.5.3.2.6: 10 minutes).
    #[serde(with = "humantime_serde")]
    pub data_term: Duration,
    /// RSET.
    #[serde(with = "humantime_serde")]
    pub rset: Duration,
    /// QUIT.
    #[serde(with = "humantime_serde")]
    pub quit: Duration,
    /// Any other command sent through the raw interface.
    #[serde(with = "humantime_serde")]
    pub command: Duration,
}

/// The named defaults, in one place.
pub mod defaults {
    use std::time::Duration;

    /// TCP connect: 30 seconds.
    pub const CONNECT: Duration = Duration::from_secs(30);
    /// Greeting: 5 minutes (RFC 5321 §4.5.3.2.1).
    pub const GREETING: Duration = Duration::from_secs(5 * 60);
    /// EHLO: 5 minutes, as for the greeting.
    pub const EHLO: Duration = Duration::from_secs(5 * 60);
    /// STARTTLS with its handshake: 2 minutes.
    pub const STARTTLS: Duration = Duration::from_secs(2 * 60);
    /// AUTH steps: 2 minutes.
    pub const AUTH: Duration = Duration::from_secs(2 * 60);
    /// MAIL FROM: 5 minutes (RFC 5321 §4.5.3.2.2).
    pub const MAIL_FROM: Duration = Duration::from_secs(5 * 60);
    /// RCPT TO: 5 minutes (RFC 5321 §4.5.3.2.3).
    pub const RCPT_TO: Duration = Duration::from_secs(5 * 60);
    /// DATA initiation: 2 minutes (RFC 5321 §4.5.3.2.4).
    pub const DATA_INIT: Duration = Duration::from_secs(2 * 60);
    /// Data block: 3 minutes (RFC 5321 §4.5.3.2.5).
    pub const DATA_BLOCK: Duration = Duration::from_secs(3 * 60);
    /// DATA termination: 10 minutes (RFC 5321 §4.5.3.2.6).
    pub const DATA_TERM: Duration = Duration::from_secs(10 * 60);
    /// RSET: 2 minutes.
    pub const RSET: Duration = Duration::from_secs(2 * 60);
    /// QUIT: 1 minute.
    pub const QUIT: Duration = Duration::from_secs(60);
    /// Other commands: 5 minutes.
    pub const COMMAND: Duration = Duration::from_secs(5 * 60);
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: defaults::CONNECT,
            greeting: defaults::GREETING,
            ehlo: defaults::EHLO,
            starttls: defaults::STARTTLS,
            auth: defaults::AUTH,
            mail_from: defaults::MAIL_FROM,
            rcpt_to: defaults::RCPT_TO,
            data_init: defaults::DATA_INIT,
            data_block: defaults::DATA_BLOCK,
            data_term: defaults::DATA_TERM,
            rset: defaults::RSET,
            quit: defaults::QUIT,
            command: defaults::COMMAND,
        }
    }
}

impl Timeouts {
    /// Every timeout set to `limit` — a server spec's `timeout=` (Lasso's `-timeout`).
    pub fn uniform(limit: Duration) -> Self {
        Timeouts {
            connect: limit,
            greeting: limit,
            ehlo: limit,
            starttls: limit,
            auth: limit,
            mail_from: limit,
            rcpt_to: limit,
            data_init: limit,
            data_block: limit,
            data_term: limit,
            rset: limit,
            quit: limit,
            command: limit,
        }
    }

    /// The defaults with the connect timeout and one command timeout for every command
    /// (what `[delivery]` had before RFC 5321's named timeouts; prefer
    /// [`Timeouts::with_command`] over the defaults).
    pub fn from_config(connect: Duration, command: Duration) -> Self {
        Timeouts {
            connect,
            ..Timeouts::uniform(command)
        }
    }

    /// The same timeouts with `command` for every step RFC 5321 §4.5.3.2 does not name:
    /// EHLO/HELO, STARTTLS and its handshake, each AUTH step, RSET, QUIT and raw commands
    /// (`[delivery] command_timeout`). The named steps keep their values.
    pub fn with_command(self, command: Duration) -> Self {
        Timeouts {
            ehlo: command,
            starttls: command,
            auth: command,
            rset: command,
            quit: command,
            command,
            ..self
        }
    }
}

/// Serde for `Duration` as a humantime string (`"5m"`, `"1h 30m"`); also accepts a number of
/// seconds.
mod humantime_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(*value).to_string())
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(deserializer)? {
            Raw::Seconds(seconds) => Ok(Duration::from_secs(seconds)),
            Raw::Text(text) => humantime::parse_duration(&text).map_err(|err| {
                de::Error::custom(format!(
                    "invalid duration {text:?}: {err} (e.g. \"30s\", \"5m\")"
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_rfc_5321() {
        let t = Timeouts::default();
        assert_eq!(t.greeting, Duration::from_secs(300));
        assert_eq!(t.mail_from, Duration::from_secs(300));
        assert_eq!(t.rcpt_to, Duration::from_secs(300));
        assert_eq!(t.data_init, Duration::from_secs(120));
        assert_eq!(t.data_block, Duration::from_secs(180));
        assert_eq!(t.data_term, Duration::from_secs(600));
        assert_eq!(t.connect, Duration::from_secs(30));
    }

    #[test]
    fn with_command_leaves_the_named_steps_alone() {
        let short = Duration::from_millis(300);
        let t = Timeouts {
            greeting: short,
            ..Timeouts::default()
        }
        .with_command(Duration::from_secs(7));
        assert_eq!(t.greeting, short);
        assert_eq!(t.mail_from, defaults::MAIL_FROM);
        assert_eq!(t.data_term, defaults::DATA_TERM);
        for step in [t.ehlo, t.starttls, t.auth, t.rset, t.quit, t.command] {
            assert_eq!(step, Duration::from_secs(7));
        }
    }

    #[test]
    fn json_with_humantime_strings_and_defaults() {
        let t: Timeouts = serde_json::from_str(r#"{"connect": "5s", "data_term": 60}"#).unwrap();
        assert_eq!(t.connect, Duration::from_secs(5));
        assert_eq!(t.data_term, Duration::from_secs(60));
        assert_eq!(t.greeting, defaults::GREETING);
        let text = serde_json::to_string(&t).unwrap();
        assert!(text.contains(r#""connect":"5s""#), "{text}");
        assert_eq!(serde_json::from_str::<Timeouts>(&text).unwrap(), t);
    }

    #[test]
    fn bad_durations_and_unknown_keys_are_refused() {
        let err = serde_json::from_str::<Timeouts>(r#"{"connect": "soon"}"#).unwrap_err();
        assert!(err.to_string().contains("soon"), "{err}");
        assert!(serde_json::from_str::<Timeouts>(r#"{"conect": "5s"}"#).is_err());
    }
}
