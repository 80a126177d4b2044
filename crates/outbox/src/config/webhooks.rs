//! `[[webhooks]]` entries (DESIGN §10) and `[events]`: where events go, how they are
//! signed, how long the event log keeps them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use outbox_queue::EventType;
use outbox_queue::webhooks::client::WebhookUrl;
use outbox_queue::webhooks::{Webhook, WebhookSecret, WebhookSettings};
use serde::Deserialize;

use super::units::{self, HumanDuration};

/// One `[[webhooks]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEntry {
    /// `https://...` or `http://...` (a local receiver).
    pub url: String,
    /// `whsec_BASE64` (Standard Webhooks: the key is the decoded base64) or any other
    /// text (the key is its bytes).
    pub secret: String,
    /// The event types to send; absent: all of them.
    pub events: Option<Vec<String>>,
}

/// `[events]`: the event log and the webhook sender.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Events older than this are deleted once every webhook has them; `"0s"` keeps
    /// them forever.
    pub retention: HumanDuration,
    /// A webhook request (connection included) must answer within this.
    pub webhook_timeout: HumanDuration,
    /// Waits after each failed webhook request; the last repeats.
    pub webhook_retry_backoff: Vec<HumanDuration>,
    /// Events per webhook request at most.
    pub webhook_batch_size: usize,
    /// How often new events are looked for (and fanned out to the webhooks).
    pub poll_interval: HumanDuration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        let duration =
            |text: &str| HumanDuration(units::parse_duration(text).expect("valid default"));
        EventsConfig {
            retention: duration("30days"),
            webhook_timeout: duration("10s"),
            webhook_retry_backoff: ["5s", "30s", "2m", "10m", "30m", "1h"]
                .into_iter()
                .map(duration)
                .collect(),
            webhook_batch_size: 100,
            poll_interval: HumanDuration(Duration::from_millis(200)),
        }
    }
}

impl EventsConfig {
    /// Checks ranges; an error names the key.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.webhook_timeout.0.is_zero() {
            bail!("configuration: events.webhook_timeout must be more than 0s");
        }
        if self.webhook_retry_backoff.is_empty() {
            bail!("configuration: events.webhook_retry_backoff needs at least one duration");
        }
        if self.poll_interval.0 < Duration::from_millis(10) {
            bail!("configuration: events.poll_interval must be at least 10ms");
        }
        if self.webhook_batch_size == 0 || self.webhook_batch_size > 1000 {
            bail!("configuration: events.webhook_batch_size must be between 1 and 1000");
        }
        Ok(())
    }
}

/// Checks every entry; an error names the entry (1-based) and the key, never the secret.
pub fn webhooks(entries: &[WebhookEntry]) -> anyhow::Result<Vec<Webhook>> {
    let mut webhooks: Vec<Webhook> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let n = index + 1;
        let url = WebhookUrl::parse(&entry.url)
            .map_err(|err| anyhow::anyhow!("configuration: webhooks entry {n}: url: {err}"))?;
        if webhooks.iter().any(|w| w.url == url) {
            bail!(
                "configuration: webhooks entry {n}: url {:?} is already used by another entry",
                entry.url
            );
        }
        let secret = WebhookSecret::parse(&entry.secret).map_err(|err| {
            anyhow::anyhow!("configuration: webhooks entry {n}: secret: {err} (value not shown)")
        })?;
        let events = match &entry.events {
            None => EventType::ALL.to_vec(),
            Some(names) if names.is_empty() => {
                bail!(
                    "configuration: webhooks entry {n}: events is empty (leave it out for all events)"
                )
            }
            Some(names) => {
                let mut events = Vec::new();
                for name in names {
                    let kind: EventType = name.trim().parse().map_err(|err| {
                        anyhow::anyhow!("configuration: webhooks entry {n}: events: {err}")
                    })?;
                    if !events.contains(&kind) {
                        events.push(kind);
                    }
                }
                events
            }
        };
        webhooks.push(Webhook {
            url,
            secret,
            events,
        });
    }
    Ok(webhooks)
}

/// The sender's settings: the webhooks, `[events]`, and `tls` for `https` endpoints.
pub fn settings(
    entries: &[WebhookEntry],
    events: &EventsConfig,
    tls: Arc<rustls::ClientConfig>,
) -> anyhow::Result<WebhookSettings> {
    events.check()?;
    let mut settings = WebhookSettings::new(tls);
    settings.webhooks = webhooks(entries)?;
    settings.timeout = events.webhook_timeout.0;
    settings.retry_backoff = events.webhook_retry_backoff.iter().map(|d| d.0).collect();
    settings.batch_size = events.webhook_batch_size;
    settings.retention = (!events.retention.0.is_zero()).then_some(events.retention.0);
    settings.poll_interval = events.poll_interval.0;
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(url: &str, secret: &str, events: Option<&[&str]>) -> WebhookEntry {
        WebhookEntry {
            url: url.into(),
            secret: secret.into(),
            events: events.map(|e| e.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn entries_are_checked_naming_the_entry() {
        let ok = webhooks(&[
            entry("https://app.example.com/hook", "whsec_c2VjcmV0", None),
            entry(
                "http://127.0.0.1:9000/",
                "raw",
                Some(&["sent", "failed", "sent"]),
            ),
        ])
        .unwrap();
        assert_eq!(ok[0].events.len(), EventType::ALL.len());
        assert_eq!(ok[1].events, [EventType::Sent, EventType::Failed]);
        for (bad, want) in [
            (entry("ftp://x/", "s", None), "webhooks entry 1: url"),
            (entry("http://x/", "", None), "webhooks entry 1: secret"),
            (entry("http://x/", "whsec_%%%", None), "not base64"),
            (
                entry("http://x/", "s", Some(&["delivered"])),
                "unknown event type",
            ),
            (entry("http://x/", "s", Some(&[])), "events is empty"),
        ] {
            let err = webhooks(&[bad]).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
        let err = webhooks(&[entry("http://x/", "a", None), entry("http://x/", "b", None)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("entry 2") && err.contains("already used"),
            "{err}"
        );
        let err = webhooks(&[entry("http://x/", "whsec_not-secret%%", None)])
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("not-secret"),
            "the secret is never shown: {err}"
        );
    }
}
