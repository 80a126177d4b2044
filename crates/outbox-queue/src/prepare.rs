//! Checks and row values shared by both backends, computed before any statement runs so
//! that bad input is refused before anything is stored.

use std::sync::Mutex;

use time::OffsetDateTime;

use crate::model::{MergeValues, NewMessage, NewRecipient, RouteKey};
use crate::timefmt::to_ms;
use crate::{StoreError, StoreOptions};

/// A message checked and turned into column values.
pub(crate) struct PreparedMessage {
    pub id: String,
    pub created_at: i64,
    pub send_at: i64,
    pub priority: i64,
    pub envelope_from: String,
    pub subject: String,
    pub data: Vec<u8>,
    pub tokens: Option<String>,
    pub relay: Option<String>,
    pub idempotency_key: Option<String>,
    /// The message's list, normalised (see [`NewMessage::list`]).
    pub list: String,
    /// 1 when the message asked for one-click unsubscribe headers, else 0.
    pub list_unsubscribe: i64,
    /// The `Message-ID` of its header, without angle brackets (migration 7).
    pub header_message_id: Option<String>,
    pub recipients: Vec<PreparedRecipient>,
}

/// A recipient turned into column values.
pub(crate) struct PreparedRecipient {
    pub address: String,
    pub domain: String,
    pub route: String,
    pub merge: Option<String>,
}

/// Generates message ids: ULIDs, monotonic within this process so that messages queued
/// in the same millisecond still list in queueing order.
pub(crate) struct IdGenerator(Mutex<ulid::Generator>);

impl IdGenerator {
    pub fn new() -> Self {
        IdGenerator(Mutex::new(ulid::Generator::new()))
    }

    pub fn next(&self, now: OffsetDateTime) -> String {
        let mut generator = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let at = std::time::SystemTime::from(now);
        generator
            .generate_from_datetime(at)
            .unwrap_or_else(|_| ulid::Ulid::from_datetime(at))
            .to_string()
    }
}

/// Checks a message against the options and computes its rows.
pub(crate) fn prepare_message(
    message: NewMessage,
    options: &StoreOptions,
    ids: &IdGenerator,
    now: OffsetDateTime,
) -> Result<PreparedMessage, StoreError> {
    check_size(message.data.len(), options)?;
    let list = crate::suppression::message_list(&message)?;
    // Every way in ends here (compose, sendmail, the SMTP listener, HTTP), so this is where a
    // line over 998 octets is fixed: a strict server would refuse it at delivery, after the
    // client was told it was queued. A message without one is not copied.
    let data = match outbox_mime::fit_line_length(&message.data)? {
        std::borrow::Cow::Borrowed(_) => message.data,
        std::borrow::Cow::Owned(fitted) => {
            check_size(fitted.len(), options)?;
            fitted
        }
    };
    if message.recipients.is_empty() {
        return Err(StoreError::NoRecipients);
    }
    if message.envelope_from.contains(['\r', '\n', '<', '>', ' ']) {
        return Err(StoreError::InvalidSender {
            address: message.envelope_from,
        });
    }
    let recipients = prepare_recipients(message.relay.as_deref(), message.recipients)?;
    let created_at = to_ms(now);
    let header_message_id = crate::feedback::header_message_id(&data);
    Ok(PreparedMessage {
        id: ids.next(now),
        created_at,
        send_at: message.send_at.map_or(created_at, to_ms),
        priority: crate::model::priority_rank(message.priority),
        envelope_from: message.envelope_from,
        subject: message.subject,
        data,
        tokens: message.tokens.as_ref().map(merge_json),
        relay: message.relay,
        idempotency_key: message.idempotency_key,
        list,
        list_unsubscribe: i64::from(message.list_unsubscribe),
        header_message_id,
        recipients,
    })
}

/// Refuses data over `max_message_size`.
fn check_size(len: usize, options: &StoreOptions) -> Result<(), StoreError> {
    let size = len as u64;
    if size > options.max_message_size {
        return Err(StoreError::TooLarge {
            size,
            limit: options.max_message_size,
        });
    }
    Ok(())
}

/// Checks recipients and computes their domain and route.
pub(crate) fn prepare_recipients(
    relay: Option<&str>,
    recipients: Vec<NewRecipient>,
) -> Result<Vec<PreparedRecipient>, StoreError> {
    recipients
        .into_iter()
        .map(|recipient| {
            let domain = domain_of(&recipient.address)?;
            let route = RouteKey::for_recipient(relay, &domain).to_key();
            Ok(PreparedRecipient {
                merge: recipient.merge.as_ref().map(merge_json),
                address: recipient.address,
                domain,
                route,
            })
        })
        .collect()
}

/// The lowercase domain of `local@domain` (the part after the last `@`, RFC 5321 §4.1.2).
pub(crate) fn domain_of(address: &str) -> Result<String, StoreError> {
    let invalid = || StoreError::InvalidRecipient {
        address: address.to_string(),
    };
    if address.contains(['\r', '\n', '<', '>', ' ', '\t']) {
        return Err(invalid());
    }
    match address.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
            Ok(domain.trim_end_matches('.').to_ascii_lowercase())
        }
        _ => Err(invalid()),
    }
}

/// Checks that a message id looks like a ULID before it reaches a query.
pub(crate) fn check_id(id: &str) -> Result<(), StoreError> {
    match ulid::Ulid::from_string(id) {
        Ok(_) => Ok(()),
        Err(_) => Err(StoreError::InvalidId { id: id.to_string() }),
    }
}

fn merge_json(values: &MergeValues) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| "{}".to_string())
}

/// Reads stored merge values back.
pub(crate) fn parse_merge(text: Option<String>) -> Result<Option<MergeValues>, StoreError> {
    text.map(|text| {
        serde_json::from_str(&text).map_err(|err| StoreError::Corrupt {
            what: "merge values",
            detail: err.to_string(),
        })
    })
    .transpose()
}

/// The reply code at the start of an SMTP reply (`250 ok` -> 250), if there is one.
pub(crate) fn reply_code(reply: &str) -> Option<u16> {
    let digits = reply.get(..3)?;
    if digits.bytes().all(|b| b.is_ascii_digit())
        && matches!(reply.as_bytes().get(3), None | Some(b' ' | b'-'))
    {
        digits.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_lowercased_and_checked() {
        assert_eq!(domain_of("Bob@Example.COM").unwrap(), "example.com");
        assert_eq!(domain_of("\"a@b\"@c.test").unwrap(), "c.test");
        for bad in ["bob", "@x.test", "bob@", "a b@x.test", "a@x.test\r\n"] {
            assert!(
                matches!(domain_of(bad), Err(StoreError::InvalidRecipient { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn reply_codes() {
        assert_eq!(reply_code("250 2.0.0 ok"), Some(250));
        assert_eq!(reply_code("451-wait"), Some(451));
        assert_eq!(reply_code("550"), Some(550));
        assert_eq!(reply_code("connection refused"), None);
        assert_eq!(reply_code("12"), None);
    }

    #[test]
    fn ids_are_ulids_in_order() {
        let ids = IdGenerator::new();
        let now = OffsetDateTime::now_utc();
        let a = ids.next(now);
        let b = ids.next(now);
        assert!(a < b);
        check_id(&a).unwrap();
        assert!(matches!(
            check_id("nope"),
            Err(StoreError::InvalidId { .. })
        ));
    }
}
