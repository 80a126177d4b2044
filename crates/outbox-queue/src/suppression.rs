//! The suppression list (migration 5): addresses that must not be mailed, for one list or
//! for every list, with why and since when. Checked at enqueue (a suppressed recipient
//! is stored `suppressed` at once) and again by every claim (an address suppressed after
//! its message was queued is marked `suppressed` instead of being leased).
//!
//! Addresses and list names are compared normalised: trimmed, ASCII letters lowercased
//! (the SQL side lowercases ASCII only too, on both backends, so Rust and SQL agree).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use time::OffsetDateTime;

use crate::StoreError;

/// Why an address is suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SuppressionReason {
    /// The recipient unsubscribed (one-click unsubscribe, or an operator acting on a request).
    Unsubscribed,
    /// Mail to the address bounced permanently.
    Bounced,
    /// The recipient complained (a feedback loop report).
    Complained,
    /// An operator added it.
    #[default]
    Manual,
}

impl SuppressionReason {
    /// Every reason, in the order documented.
    pub const ALL: [SuppressionReason; 4] = [
        SuppressionReason::Unsubscribed,
        SuppressionReason::Bounced,
        SuppressionReason::Complained,
        SuppressionReason::Manual,
    ];

    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionReason::Unsubscribed => "unsubscribed",
            SuppressionReason::Bounced => "bounced",
            SuppressionReason::Complained => "complained",
            SuppressionReason::Manual => "manual",
        }
    }
}

impl fmt::Display for SuppressionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SuppressionReason {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, StoreError> {
        SuppressionReason::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| StoreError::InvalidSuppression {
                field: "reason",
                reason: format!(
                    "unknown reason {:?}: expected unsubscribed, bounced, complained or manual",
                    crate::rows::shown(s)
                ),
            })
    }
}

/// The reply an `unsubscribed` event carries: `unsubscribed from list L`, or
/// `unsubscribed from every list` (list empty).
pub(crate) fn unsubscribed_reply(list: &str) -> String {
    if list.is_empty() {
        "unsubscribed from every list".to_string()
    } else {
        format!("unsubscribed from list {list}")
    }
}

/// A suppression to store ([`Store::suppress`](crate::Store::suppress)).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct NewSuppression {
    /// The address (`local@domain`); stored trimmed and lowercased.
    pub address: String,
    /// The list it applies to; `None` or empty: every list.
    pub list: Option<String>,
    /// Why.
    pub reason: SuppressionReason,
    /// The message that caused it (a bounce, an unsubscribe link), if any.
    pub message_id: Option<String>,
}

/// A stored suppression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suppression {
    /// The address, normalised (trimmed, lowercase).
    pub address: String,
    /// The list it applies to; `None` for every list (stored as the empty list name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub list: Option<String>,
    /// Why.
    pub reason: SuppressionReason,
    /// When it was first stored (RFC 3339); a repeated add keeps it.
    #[serde(serialize_with = "crate::timefmt::serialize")]
    pub created_at: OffsetDateTime,
    /// The message that caused it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

impl Suppression {
    /// What a recipient stopped by it shows as its reply, the same text the store writes
    /// at enqueue and claim: `suppressed: REASON (list LIST) since YYYY-MM-DD` or
    /// `suppressed: REASON (every list) since YYYY-MM-DD`.
    pub fn reply(&self) -> String {
        let scope = match &self.list {
            Some(list) => format!("list {list}"),
            None => "every list".to_string(),
        };
        let date = self.created_at.date();
        format!(
            "suppressed: {} ({scope}) since {:04}-{:02}-{:02}",
            self.reason,
            date.year(),
            u8::from(date.month()),
            date.day()
        )
    }

    pub(crate) fn from_row(
        address: String,
        list: String,
        reason: &str,
        created_at: i64,
        message_id: Option<String>,
    ) -> Result<Self, StoreError> {
        let reason = SuppressionReason::ALL
            .into_iter()
            .find(|r| r.as_str() == reason)
            .ok_or_else(|| StoreError::Corrupt {
                what: "suppression reason",
                detail: reason.to_string(),
            })?;
        Ok(Suppression {
            address,
            list: (!list.is_empty()).then_some(list),
            reason,
            created_at: crate::timefmt::from_ms(created_at),
            message_id,
        })
    }
}

/// Which suppressions [`Store::suppressions_list`](crate::Store::suppressions_list) returns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SuppressionFilter {
    /// Only this address (normalised before comparing).
    pub address: Option<String>,
    /// Only this list; `Some("")` selects the suppressions for every list.
    pub list: Option<String>,
    /// At most this many (1..=1000).
    pub limit: u32,
    /// Continue after this cursor (`SuppressionPage::next_cursor` of the previous page).
    pub cursor: Option<String>,
}

impl Default for SuppressionFilter {
    fn default() -> Self {
        SuppressionFilter {
            address: None,
            list: None,
            limit: 50,
            cursor: None,
        }
    }
}

/// A [`SuppressionFilter`] checked and normalised, as both backends bind it: fetch at most
/// `limit + 1` rows after (`after_address`, `after_list`), then [`SuppressionQuery::page`].
pub(crate) struct SuppressionQuery {
    pub address: Option<String>,
    pub list: Option<String>,
    pub after_address: Option<String>,
    pub after_list: Option<String>,
    pub limit: i64,
}

impl SuppressionFilter {
    /// The filter's values normalised; a bad address, list or cursor is an error naming it.
    pub(crate) fn query(&self) -> Result<SuppressionQuery, StoreError> {
        let (after_address, after_list) = match self.cursor.as_deref() {
            Some(cursor) => {
                let (a, l) = parse_cursor(cursor)?;
                (Some(a), Some(l))
            }
            None => (None, None),
        };
        Ok(SuppressionQuery {
            address: self.address.as_deref().map(normalise_address).transpose()?,
            list: self.list.as_deref().map(normalise_list).transpose()?,
            after_address,
            after_list,
            limit: i64::from(self.limit.clamp(1, 1000)),
        })
    }
}

impl SuppressionQuery {
    /// The page of `items` (up to `limit + 1` rows, in order): one row more than the
    /// limit means there is a next page, whose cursor is the last row kept.
    pub(crate) fn page(&self, mut items: Vec<Suppression>) -> SuppressionPage {
        let next_cursor = if items.len() as i64 > self.limit {
            items.truncate(self.limit as usize);
            items
                .last()
                .map(|s| cursor_of(&s.address, s.list.as_deref().unwrap_or("")))
        } else {
            None
        };
        SuppressionPage { items, next_cursor }
    }
}

/// One page of suppressions, ordered by address, then list (every list first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SuppressionPage {
    /// The suppressions.
    pub items: Vec<Suppression>,
    /// Pass as `SuppressionFilter::cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// The longest address or list name stored (RFC 5321's path limit).
pub const MAX_SUPPRESSION_TEXT: usize = 256;

/// An address as stored and compared: trimmed, ASCII letters lowercased, checked
/// (`local@domain`, no whitespace or angle brackets, at most 256 octets).
pub fn normalise_address(address: &str) -> Result<String, StoreError> {
    let invalid = |reason: &str| StoreError::InvalidSuppression {
        field: "address",
        reason: format!("{:?}: {reason}", crate::rows::shown(address)),
    };
    let address = address.trim();
    if address.len() > MAX_SUPPRESSION_TEXT {
        return Err(invalid("longer than 256 octets"));
    }
    if address
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>'))
    {
        return Err(invalid("contains whitespace, a control character or <>"));
    }
    match address.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
            Ok(address.trim_end_matches('.').to_ascii_lowercase())
        }
        _ => Err(invalid("expected local@domain")),
    }
}

/// A list name as stored and compared: trimmed, ASCII letters lowercased, at most 256
/// octets, no control characters; empty means every list.
pub fn normalise_list(list: &str) -> Result<String, StoreError> {
    let list = list.trim();
    if list.len() > MAX_SUPPRESSION_TEXT || list.chars().any(char::is_control) {
        return Err(StoreError::InvalidSuppression {
            field: "list",
            reason: format!(
                "{:?}: longer than 256 octets or contains a control character",
                crate::rows::shown(list)
            ),
        });
    }
    Ok(list.to_ascii_lowercase())
}

/// The cursor after `(address, list)`: the address has no space, so the first space ends it.
pub(crate) fn cursor_of(address: &str, list: &str) -> String {
    format!("{address} {list}")
}

/// Reads a cursor back.
pub(crate) fn parse_cursor(cursor: &str) -> Result<(String, String), StoreError> {
    cursor
        .split_once(' ')
        .map(|(a, l)| (a.to_string(), l.to_string()))
        .ok_or_else(|| StoreError::InvalidSuppression {
            field: "cursor",
            reason: "not a cursor this server returned".into(),
        })
}

/// The `last_reply` of a recipient suppressed at `at` (milliseconds), as SQL on each
/// backend: `suppressed: REASON (list LIST) since DATE` or `... (every list) ...`.
/// `s` is the alias of the `suppressions` row.
pub(crate) fn reply_sql(sqlite: bool, s: &str) -> String {
    let date = if sqlite {
        format!("strftime('%Y-%m-%d', {s}.created_at / 1000, 'unixepoch')")
    } else {
        format!("to_char(to_timestamp({s}.created_at / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')")
    };
    format!(
        "'suppressed: ' || {s}.reason || CASE WHEN {s}.list = '' THEN ' (every list)' \
         ELSE ' (list ' || {s}.list || ')' END || ' since ' || {date}"
    )
}

/// The list `message` is stored under (see [`NewMessage::list`](crate::NewMessage::list)):
/// the one given, normalised, else the header From's address. For `send --now`, which
/// checks the suppression list without queueing.
pub fn message_list(message: &crate::NewMessage) -> Result<String, StoreError> {
    match message.list.as_deref() {
        Some(list) if !list.trim().is_empty() => normalise_list(list),
        _ => Ok(default_list(&message.data, &message.envelope_from)),
    }
}

/// The list a message belongs to when none was given: the address of its header `From`
/// (the author, whom the recipient subscribed to and whose domain DKIM aligns with), or
/// the envelope sender when the header has none that parses (the envelope sender of a
/// bulk run is often a bounce address that changes per run, so it is only the fallback).
pub(crate) fn default_list(data: &[u8], envelope_from: &str) -> String {
    header_from(data)
        .unwrap_or_else(|| envelope_from.to_string())
        .trim()
        .to_ascii_lowercase()
}

/// The value of the first header field `name` of a message (unfolded), reading at most the
/// first 64 KiB of its header section.
pub(crate) fn header_field(data: &[u8], name: &str) -> Option<String> {
    let head = &data[..data.len().min(64 * 1024)];
    let text = String::from_utf8_lossy(head);
    let mut value: Option<String> = None;
    for line in text.split("\r\n").flat_map(|l| l.split('\n')) {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(v) = value.as_mut() {
                v.push_str(line);
            }
            continue;
        }
        if value.is_some() {
            break;
        }
        if let Some((field, rest)) = line.split_once(':')
            && field.trim().eq_ignore_ascii_case(name)
        {
            value = Some(rest.to_string());
        }
    }
    value
}

/// The first address of the header `From`.
fn header_from(data: &[u8]) -> Option<String> {
    let value = header_field(data, "from")?;
    let first = outbox_mime::parse_address_list(value.trim()).ok()?;
    let address = first.first()?.addr_spec();
    (address.len() <= MAX_SUPPRESSION_TEXT).then_some(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalised_and_checked() {
        assert_eq!(
            normalise_address("  Bob@Example.COM ").unwrap(),
            "bob@example.com"
        );
        for bad in ["bob", "@x.test", "a b@x.test", "<a@x.test>", ""] {
            assert!(
                matches!(
                    normalise_address(bad),
                    Err(StoreError::InvalidSuppression {
                        field: "address",
                        ..
                    })
                ),
                "{bad}"
            );
        }
        assert!(normalise_address(&format!("{}@x.test", "a".repeat(300))).is_err());
        assert_eq!(normalise_list(" News ").unwrap(), "news");
        assert!(normalise_list("a\nb").is_err());
    }

    #[test]
    fn reasons_parse() {
        assert_eq!(
            "Bounced".parse::<SuppressionReason>().unwrap(),
            SuppressionReason::Bounced
        );
        assert!("spam".parse::<SuppressionReason>().is_err());
    }

    #[test]
    fn the_default_list_is_the_header_from() {
        let data = b"Subject: x\r\nFrom: \"News, Weekly\"\r\n <News@Example.com>\r\nTo: a@b.test\r\n\r\nFrom: not@this.test\r\n";
        assert_eq!(default_list(data, "bounce@x.test"), "news@example.com");
        assert_eq!(
            default_list(b"Subject: x\r\n\r\nbody", "Bounce@X.test"),
            "bounce@x.test"
        );
    }

    #[test]
    fn cursors_round_trip() {
        let c = cursor_of("a@b.test", "weekly news");
        assert_eq!(
            parse_cursor(&c).unwrap(),
            ("a@b.test".to_string(), "weekly news".to_string())
        );
        assert!(parse_cursor("nospace").is_err());
    }
}
