//! [`EmailSpec`]: the message as a user describes it (DESIGN §2). One shape everywhere: the
//! builder produces it, the CLI flags fill it, `--spec` and the HTTP API read it as JSON.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize};

use crate::address::split_address_list;
use crate::encoding::TransferEncoding;

/// A message description. JSON field names (snake_case) are the public contract; unknown
/// fields are refused so that a typo is never silently ignored, and only a JSON object is
/// a spec (see the `Deserialize` impl below).
// `remote = "Self"` makes the derives inherent functions, so that the trait impls below can
// wrap them: serde's derived struct deserialiser also takes a sequence of the fields in
// declaration order, which would make `["a@x.test", ...]` a spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields, default)]
pub struct EmailSpec {
    /// Author: `addr` or `Name <addr>` (required). Also the envelope sender.
    pub from: String,
    /// To recipients: a JSON list, or one comma-separated string.
    #[serde(deserialize_with = "address_items")]
    pub to: Vec<String>,
    /// Cc recipients (same forms as `to`).
    #[serde(deserialize_with = "address_items")]
    pub cc: Vec<String>,
    /// Bcc recipients: in the envelope, never in the headers.
    #[serde(deserialize_with = "address_items")]
    pub bcc: Vec<String>,
    /// Subject (required); non-ASCII is written as RFC 2047 encoded-words.
    pub subject: String,
    /// The text/plain body.
    pub text: Option<String>,
    /// The text/html body; with `text`, the two form a multipart/alternative.
    pub html: Option<String>,
    /// Inline images for the html part (multipart/related).
    pub html_images: Vec<PartSource>,
    /// Attachments (multipart/mixed around the body).
    pub attachments: Vec<PartSource>,
    /// Default merge values: token name -> value.
    pub tokens: BTreeMap<String, String>,
    /// Per-recipient merge values: address -> token name -> value; overrides `tokens`.
    pub merge: BTreeMap<String, BTreeMap<String, String>>,
    /// Delivery priority (the queue's concern; composition ignores it).
    pub priority: Priority,
    /// The Reply-To header.
    pub reply_to: Option<String>,
    /// The Sender header.
    pub sender: Option<String>,
    /// Extra headers, in order, as `[name, value]` pairs.
    pub headers: Vec<(String, String)>,
    /// Charset of the text parts: `utf-8` (default), `us-ascii` or `iso-8859-1`.
    pub charset: Option<String>,
    /// Transfer encoding of the text parts; chosen per part when absent.
    pub transfer_encoding: Option<TransferEncoding>,
    /// Overrides the Content-Type of a single-part message.
    pub content_type: Option<String>,
    /// Not delivered before this time (RFC 3339 in JSON).
    #[serde(
        serialize_with = "time::serde::rfc3339::option::serialize",
        deserialize_with = "send_at_rfc3339"
    )]
    pub send_at: Option<time::OffsetDateTime>,
    /// A server spec for this message instead of the configured route (parsed by outbox-smtp).
    pub relay: Option<String>,
    /// The mailing list the message belongs to, for the suppression list: a recipient
    /// suppressed for this list (or for every list) is not sent. Default: the `from`
    /// address.
    pub list: Option<String>,
    /// One-click unsubscribe (RFC 8058): each recipient gets `List-Unsubscribe` (a signed
    /// link naming it and `list`) and `List-Unsubscribe-Post` headers, written at delivery
    /// from the `[unsubscribe]` configuration.
    pub list_unsubscribe: bool,
    /// Headers only, no body.
    pub simple_form: bool,
    /// Deliver now, bypassing the queue.
    pub immediate: bool,
}

impl Serialize for EmailSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        EmailSpec::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for EmailSpec {
    /// A JSON object only: a sequence is refused with an error saying so.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectOnly;
        impl<'de> serde::de::Visitor<'de> for ObjectOnly {
            type Value = EmailSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a message spec as a JSON object (field names, not a list of values)")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<EmailSpec, A::Error> {
                EmailSpec::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer.deserialize_map(ObjectOnly)
    }
}

/// Delivery priority: due messages are taken high first, then medium, then low.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Sent before medium and low.
    High,
    /// The default.
    #[default]
    Medium,
    /// Sent after high and medium.
    Low,
}

impl Priority {
    /// `high`, `medium` or `low`.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Medium => "medium",
            Priority::Low => "low",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A priority name other than high, medium or low.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown priority {0:?} (expected high, medium or low)")]
pub struct UnknownPriority(pub String);

impl FromStr for Priority {
    type Err = UnknownPriority;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "high" => Ok(Priority::High),
            "medium" | "normal" => Ok(Priority::Medium),
            "low" => Ok(Priority::Low),
            _ => Err(UnknownPriority(s.to_string())),
        }
    }
}

/// Where an inline image or attachment comes from.
///
/// JSON: `{"path": P}` (optionally with `name` and `content_type`), or
/// `{"name": N, "content_base64": B, "content_type"?: T}`, or `{"mime": TEXT}` for an
/// already-formatted MIME part inserted unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PartSourceJson", into = "PartSourceJson")]
#[non_exhaustive]
pub enum PartSource {
    /// A file read at composition time. `name` replaces the file name (`NAME=PATH`).
    Path {
        /// The file to read.
        path: PathBuf,
        /// The name to use instead of the file name.
        name: Option<String>,
        /// The content type instead of the one guessed from the extension.
        content_type: Option<String>,
    },
    /// Bytes given directly, with the name they go by.
    Data {
        /// File name (and, for an inline image, its Content-ID).
        name: String,
        /// The content.
        data: Vec<u8>,
        /// The content type instead of the one guessed from the name's extension.
        content_type: Option<String>,
    },
    /// A complete MIME part (headers, blank line, body), inserted as it is
    /// (`email_compose->addPart`); see [`crate::compose_part`].
    Mime(Vec<u8>),
}

impl PartSource {
    /// A file, named by its file name.
    pub fn path(path: impl Into<PathBuf>) -> Self {
        PartSource::Path {
            path: path.into(),
            name: None,
            content_type: None,
        }
    }

    /// Bytes with a name.
    pub fn data(name: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        PartSource::Data {
            name: name.into(),
            data: data.into(),
            content_type: None,
        }
    }

    /// The CLI form: `PATH`, or `NAME=PATH`.
    pub fn from_cli(arg: &str) -> Self {
        match arg.split_once('=') {
            Some((name, path)) if !name.is_empty() && !path.is_empty() => PartSource::Path {
                path: path.into(),
                name: Some(name.to_string()),
                content_type: None,
            },
            _ => PartSource::path(arg),
        }
    }

    /// The same source with an explicit content type (not for [`PartSource::Mime`]).
    pub fn with_content_type(mut self, value: impl Into<String>) -> Self {
        match &mut self {
            PartSource::Path { content_type, .. } | PartSource::Data { content_type, .. } => {
                *content_type = Some(value.into());
            }
            PartSource::Mime(_) => {}
        }
        self
    }
}

/// The JSON shape of a [`PartSource`].
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartSourceJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mime: Option<String>,
}

impl TryFrom<PartSourceJson> for PartSource {
    type Error = String;
    fn try_from(json: PartSourceJson) -> Result<Self, Self::Error> {
        match json {
            PartSourceJson {
                path: Some(path),
                name,
                content_base64: None,
                content_type,
                mime: None,
            } => Ok(PartSource::Path {
                path,
                name,
                content_type,
            }),
            PartSourceJson {
                path: None,
                name: Some(name),
                content_base64: Some(encoded),
                content_type,
                mime: None,
            } => {
                let compact: String = encoded.split_whitespace().collect();
                let data = STANDARD
                    .decode(compact)
                    .map_err(|err| format!("content_base64 of {name:?} is not base64: {err}"))?;
                Ok(PartSource::Data {
                    name,
                    data,
                    content_type,
                })
            }
            PartSourceJson {
                path: None,
                name: None,
                content_base64: None,
                content_type: None,
                mime: Some(mime),
            } => Ok(PartSource::Mime(mime.into_bytes())),
            _ => Err(
                "a part is {\"path\": P}, {\"name\": N, \"content_base64\": B} or {\"mime\": TEXT}"
                    .to_string(),
            ),
        }
    }
}

impl From<PartSource> for PartSourceJson {
    fn from(source: PartSource) -> Self {
        match source {
            PartSource::Path {
                path,
                name,
                content_type,
            } => PartSourceJson {
                path: Some(path),
                name,
                content_type,
                ..Default::default()
            },
            PartSource::Data {
                name,
                data,
                content_type,
            } => PartSourceJson {
                name: Some(name),
                content_base64: Some(STANDARD.encode(data)),
                content_type,
                ..Default::default()
            },
            PartSource::Mime(mime) => PartSourceJson {
                mime: Some(String::from_utf8_lossy(&mime).into_owned()),
                ..Default::default()
            },
        }
    }
}

/// `send_at`: an RFC 3339 date-time (or null), with an error that names the field.
fn send_at_rfc3339<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<time::OffsetDateTime>, D::Error> {
    use time::format_description::well_known::Rfc3339;
    let Some(text) = Option::<String>::deserialize(deserializer)? else {
        return Ok(None);
    };
    time::OffsetDateTime::parse(&text, &Rfc3339)
        .map(Some)
        .map_err(|err| {
            serde::de::Error::custom(format!(
                "send_at: {text:?} is not an RFC 3339 date-time ({err})"
            ))
        })
}

/// `to`/`cc`/`bcc`: a JSON list of items, or one string; every item may itself be a
/// comma-separated list (quoted display names with commas stay whole).
fn address_items<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Items {
        One(String),
        Many(Vec<String>),
    }
    let items = match Items::deserialize(deserializer)? {
        Items::One(one) => vec![one],
        Items::Many(many) => many,
    };
    Ok(split_items(&items))
}

/// Splits every item on unquoted commas, dropping empty pieces.
pub(crate) fn split_items(items: &[String]) -> Vec<String> {
    items
        .iter()
        .flat_map(|item| split_address_list(item))
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_from_a_string_or_a_list() {
        let spec: EmailSpec = serde_json::from_str(
            r#"{"from":"a@x.test","to":"\"Lee, Ann\" <ann@x.test>, bob@x.test","cc":["c@x.test, d@x.test"],"subject":"s","text":"t"}"#,
        )
        .unwrap();
        assert_eq!(spec.to, ["\"Lee, Ann\" <ann@x.test>", "bob@x.test"]);
        assert_eq!(spec.cc, ["c@x.test", "d@x.test"]);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<EmailSpec>(r#"{"from":"a@x.test","subjet":"s"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("subjet"), "{err}");
        let err = serde_json::from_str::<EmailSpec>(r#"{"attachments":[{"path":"a","size":1}]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("size"), "{err}");
    }

    #[test]
    fn a_json_array_is_not_a_spec() {
        // Without the object-only impl serde takes the values positionally: from, to, ...
        let err = serde_json::from_str::<EmailSpec>(r#"["a@x.test", ["b@x.test"], [], [], "s"]"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid type: sequence"), "{err}");
        assert!(err.contains("JSON object"), "{err}");
        let err = serde_json::from_str::<Vec<EmailSpec>>(r#"[["a@x.test"]]"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid type: sequence"), "{err}");
        let spec: Vec<EmailSpec> =
            serde_json::from_str(r#"[{"from":"a@x.test","subject":"s"}]"#).unwrap();
        assert_eq!(spec[0].subject, "s");
    }

    #[test]
    fn part_sources_round_trip_through_json() {
        let spec = EmailSpec {
            attachments: vec![
                PartSource::path("/tmp/a.pdf"),
                PartSource::data("b.bin", vec![0, 1, 2]).with_content_type("application/x-b"),
                PartSource::Mime(b"Content-Type: text/plain\r\n\r\nhi\r\n".to_vec()),
            ],
            send_at: Some(time::macros::datetime!(2026-11-22 10:00 UTC)),
            priority: Priority::High,
            ..Default::default()
        };
        let json = serde_json::to_string(&spec).unwrap();
        assert!(json.contains(r#""content_base64":"AAEC""#), "{json}");
        assert!(
            json.contains(r#""send_at":"2026-11-22T10:00:00Z""#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<EmailSpec>(&json).unwrap(), spec);
    }

    #[test]
    fn priorities_parse_case_insensitively() {
        assert_eq!("HIGH".parse(), Ok(Priority::High));
        assert!("urgent".parse::<Priority>().is_err());
        assert_eq!(serde_json::to_string(&Priority::Low).unwrap(), "\"low\"");
    }
}
