//! The queue view's filter as it travels in query strings and bulk-action forms, and its
//! translation into a store [`ListFilter`].

use outbox_queue::{ListFilter, MessageStatus, Priority};
use serde::Deserialize;

/// The filter fields of `GET /` (and of the bulk-action form, which repeats them).
/// Empty fields mean "any"; every field is text so a bad value gets a clear page
/// instead of a bare extractor error.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct QueueParams {
    /// `queued`, `sent` or `error`.
    pub status: String,
    /// `high`, `medium` or `low`.
    pub priority: String,
    /// Text the subject contains.
    pub subject: String,
    /// A recipient domain.
    pub domain: String,
    /// The paging cursor (`ListPage::next_cursor`).
    pub cursor: String,
}

/// A filter field that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadParam {
    /// The field name.
    pub field: &'static str,
    /// What was wrong with it.
    pub reason: String,
}

impl QueueParams {
    /// The store filter for one page of `limit` messages.
    pub fn to_filter(&self, limit: u32) -> Result<ListFilter, BadParam> {
        let status = non_empty(&self.status)
            .map(|text| text.parse::<MessageStatus>())
            .transpose()
            .map_err(|reason| BadParam {
                field: "status",
                reason,
            })?;
        let priority = non_empty(&self.priority)
            .map(|text| text.parse::<Priority>().map_err(|err| err.to_string()))
            .transpose()
            .map_err(|reason| BadParam {
                field: "priority",
                reason,
            })?;
        let domain = non_empty(&self.domain).map(|domain| {
            domain
                .trim_start_matches('@')
                .trim_end_matches('.')
                .to_ascii_lowercase()
        });
        let mut list_filter = ListFilter::default();
        list_filter.status = status;
        list_filter.priority = priority;
        list_filter.domain = domain;
        list_filter.subject = non_empty(&self.subject).map(str::to_string);
        list_filter.limit = limit;
        list_filter.cursor = non_empty(&self.cursor).map(str::to_string);
        Ok(list_filter)
    }

    /// True when any filter (not counting the cursor) is set.
    pub fn is_filtered(&self) -> bool {
        [&self.status, &self.priority, &self.subject, &self.domain]
            .iter()
            .any(|field| non_empty(field).is_some())
    }

    /// The same filter without the cursor: the first page.
    pub fn first_page(&self) -> QueueParams {
        QueueParams {
            cursor: String::new(),
            ..self.clone()
        }
    }

    /// The same filter on the page after `cursor`.
    pub fn with_cursor(&self, cursor: &str) -> QueueParams {
        QueueParams {
            cursor: cursor.to_string(),
            ..self.clone()
        }
    }

    /// The filter as a link to the queue view: `/?status=queued&...` (empty fields left out).
    pub fn href(&self) -> String {
        let pairs = [
            ("status", &self.status),
            ("priority", &self.priority),
            ("subject", &self.subject),
            ("domain", &self.domain),
            ("cursor", &self.cursor),
        ];
        let query: Vec<String> = pairs
            .iter()
            .filter(|(_, value)| !value.trim().is_empty())
            .map(|(name, value)| format!("{name}={}", percent_encode(value.trim())))
            .collect();
        if query.is_empty() {
            "/".to_string()
        } else {
            format!("/?{}", query.join("&"))
        }
    }
}

fn non_empty(text: &str) -> Option<&str> {
    Some(text.trim()).filter(|text| !text.is_empty())
}

/// Percent-encodes a query component (RFC 3986 §2.3: everything but unreserved characters).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_params_list_everything() {
        let filter = QueueParams::default().to_filter(50).unwrap();
        assert_eq!(filter, ListFilter::default());
        assert!(!QueueParams::default().is_filtered());
        assert_eq!(QueueParams::default().href(), "/");
    }

    #[test]
    fn fields_become_a_filter() {
        let params = QueueParams {
            status: "queued".into(),
            priority: "High".into(),
            subject: " Invoice ".into(),
            domain: "@Example.COM".into(),
            cursor: "c1".into(),
        };
        let filter = params.to_filter(10).unwrap();
        assert_eq!(filter.status, Some(MessageStatus::Queued));
        assert_eq!(filter.priority, Some(Priority::High));
        assert_eq!(filter.subject.as_deref(), Some("Invoice"));
        assert_eq!(filter.domain.as_deref(), Some("example.com"));
        assert_eq!(filter.cursor.as_deref(), Some("c1"));
        assert_eq!(filter.limit, 10);
        assert!(params.is_filtered());
        assert_eq!(
            params.first_page().href(),
            "/?status=queued&priority=High&subject=Invoice&domain=%40Example.COM"
        );
    }

    #[test]
    fn bad_values_name_the_field() {
        let params = QueueParams {
            status: "lost".into(),
            ..QueueParams::default()
        };
        assert_eq!(params.to_filter(1).unwrap_err().field, "status");
        let params = QueueParams {
            priority: "urgent".into(),
            ..QueueParams::default()
        };
        assert_eq!(params.to_filter(1).unwrap_err().field, "priority");
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(percent_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(percent_encode("A-z_0.9~"), "A-z_0.9~");
    }
}
