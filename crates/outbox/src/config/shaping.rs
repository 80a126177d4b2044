//! `[[shaping]]` entries and the `[delivery]` shaping defaults (DESIGN §10): limits per
//! destination — a set of MX hosts — matched by recipient domain or by MX host suffix.

use anyhow::bail;
use outbox_queue::engine::shaping::{OnReply, Rate, ShapingMatch, ShapingRule};
use regex::{Regex, RegexBuilder};
use serde::Deserialize;

use super::units::HumanDuration;

/// A rate such as `"20/s"`, `"300/min"`, `"1000/h"`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "String")]
pub struct RateSetting(pub Rate);

impl TryFrom<String> for RateSetting {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse().map(RateSetting)
    }
}

/// Largest compiled size of an `on_reply` pattern: patterns are linear-time (no
/// backtracking), and this bounds their memory.
const MAX_PATTERN_BYTES: usize = 1 << 20;

/// A regular expression (Rust `regex` syntax) matched against a reply.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct Pattern(pub Regex);

impl TryFrom<String> for Pattern {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        RegexBuilder::new(&text)
            .size_limit(MAX_PATTERN_BYTES)
            .build()
            .map(Pattern)
            .map_err(|err| format!("on_reply pattern {text:?}: {err}"))
    }
}

/// One `on_reply` entry: `{ pattern = "(?i)too many connections", suspend = "10m" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnReplyEntry {
    pub pattern: Pattern,
    pub suspend: HumanDuration,
}

/// One `[[shaping]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShapingEntry {
    /// Recipients of exactly this domain.
    pub domain: Option<String>,
    /// Domains whose MX hosts end with this suffix (`.google.com`).
    pub mx_suffix: Option<String>,
    pub max_connections: Option<usize>,
    pub messages_per_connection: Option<usize>,
    pub max_message_rate: Option<RateSetting>,
    pub max_recipients_per_transaction: Option<usize>,
    #[serde(default)]
    pub on_reply: Vec<OnReplyEntry>,
}

impl ShapingEntry {
    /// The engine's rule; an error names the entry (1-based) and what is wrong.
    pub fn rule(&self, index: usize) -> anyhow::Result<ShapingRule> {
        let entry = index + 1;
        let matches = match (&self.domain, &self.mx_suffix) {
            (Some(domain), None) if !domain.trim().is_empty() => {
                ShapingMatch::Domain(domain.trim().to_ascii_lowercase())
            }
            (None, Some(suffix)) if !suffix.trim().trim_matches('.').is_empty() => {
                ShapingMatch::MxSuffix(suffix.trim().to_ascii_lowercase())
            }
            (Some(_), Some(_)) => bail!(
                "configuration: shaping entry {entry} has both domain and mx_suffix; give one"
            ),
            _ => bail!("configuration: shaping entry {entry} needs a domain or an mx_suffix"),
        };
        for (key, value) in [
            ("max_connections", self.max_connections),
            ("messages_per_connection", self.messages_per_connection),
            (
                "max_recipients_per_transaction",
                self.max_recipients_per_transaction,
            ),
        ] {
            if value == Some(0) {
                bail!("configuration: shaping entry {entry}: {key} must be at least 1");
            }
        }
        if let Some(reply) = self.on_reply.iter().find(|reply| reply.suspend.0.is_zero()) {
            bail!(
                "configuration: shaping entry {entry}: on_reply {:?} needs a suspend longer than 0s",
                reply.pattern.0.as_str()
            );
        }
        Ok(ShapingRule {
            matches,
            max_connections: self.max_connections,
            messages_per_connection: self.messages_per_connection,
            max_message_rate: self.max_message_rate.map(|rate| rate.0),
            max_recipients_per_transaction: self.max_recipients_per_transaction,
            on_reply: self
                .on_reply
                .iter()
                .map(|reply| OnReply {
                    pattern: reply.pattern.0.clone(),
                    suspend: reply.suspend.0,
                })
                .collect(),
        })
    }
}

/// Every entry as an engine rule, in order.
pub fn rules(entries: &[ShapingEntry]) -> anyhow::Result<Vec<ShapingRule>> {
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| entry.rule(index))
        .collect()
}
