//! The `_mta-sts` TXT record (RFC 8461 §3.1). Sans-I/O.

use thiserror::Error;

use super::policy::quoted;

/// A domain's MTA-STS TXT record: `v=STSv1; id=20260101T000000;`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StsRecord {
    /// The policy id: 1 to 32 letters and digits. A new id means a new policy to fetch.
    pub id: String,
}

/// Why a domain's TXT records give no MTA-STS record. Each means "no policy is
/// available" (RFC 8461 §3.1), which a still valid cached policy outlives (§5.1).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RecordError {
    /// No TXT record starts with `v=STSv1`.
    #[error("no _mta-sts TXT record")]
    Absent,
    /// More than one TXT record starts with `v=STSv1`.
    #[error("{count} _mta-sts TXT records (exactly one is allowed)")]
    Several {
        /// How many there are.
        count: usize,
    },
    /// The one record is malformed.
    #[error("invalid _mta-sts TXT record: {reason}")]
    Invalid {
        /// What is wrong with it.
        reason: String,
    },
}

/// Picks the MTA-STS record among a name's TXT records and parses it (RFC 8461 §3.1):
/// records that do not begin with `v=STSv1` are discarded, and exactly one must remain.
pub fn parse_sts_records<S: AsRef<str>>(records: &[S]) -> Result<StsRecord, RecordError> {
    let mut candidates = records.iter().map(AsRef::as_ref).filter(|text| {
        text.strip_prefix("v=STSv1")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([';', ' ', '\t']))
    });
    let Some(record) = candidates.next() else {
        return Err(RecordError::Absent);
    };
    let others = candidates.count();
    if others > 0 {
        return Err(RecordError::Several { count: others + 1 });
    }
    parse_sts_record(record)
}

/// Parses one record: `v=STSv1` then `;`-separated `name=value` fields (whitespace allowed
/// around the `;`, one trailing `;` allowed). `id` is required; for a repeated field the
/// first counts; other fields are extensions and ignored once checked for syntax.
pub fn parse_sts_record(text: &str) -> Result<StsRecord, RecordError> {
    let invalid = |reason: String| RecordError::Invalid { reason };
    let mut fields: Vec<&str> = text
        .split(';')
        .map(|f| f.trim_matches([' ', '\t']))
        .collect();
    if fields.last() == Some(&"") && fields.len() > 1 {
        fields.pop();
    }
    if fields.first() != Some(&"v=STSv1") {
        return Err(invalid(format!(
            "must start with v=STSv1, got {}",
            quoted(text)
        )));
    }
    let mut id = None;
    for field in &fields[1..] {
        let Some((name, value)) = field.split_once('=') else {
            return Err(invalid(format!(
                "expected name=value, got {}",
                quoted(field)
            )));
        };
        let name_ok = (1..=32).contains(&name.len())
            && name.as_bytes()[0].is_ascii_alphanumeric()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !name_ok {
            return Err(invalid(format!("invalid field name {}", quoted(name))));
        }
        if name == "id" {
            if !(1..=32).contains(&value.len()) || !value.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return Err(invalid(format!(
                    "id must be 1 to 32 letters and digits, got {}",
                    quoted(value)
                )));
            }
            id.get_or_insert(value);
        } else if value.is_empty()
            || !value
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b'=' && b != b';')
        {
            return Err(invalid(format!(
                "invalid value for {}: {}",
                quoted(name),
                quoted(value)
            )));
        }
    }
    match id {
        Some(id) => Ok(StsRecord { id: id.to_string() }),
        None => Err(invalid("no id field".to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> Result<String, RecordError> {
        parse_sts_records(&[text]).map(|record| record.id)
    }

    #[test]
    fn valid_records() {
        for (text, want) in [
            ("v=STSv1; id=20260101", "20260101"),
            ("v=STSv1;id=abc123;", "abc123"),
            ("v=STSv1 ;\tid=X ; ", "X"),
            ("v=STSv1; id=first; id=second", "first"),
            ("v=STSv1; ext.field=some-value; id=1", "1"),
            (&format!("v=STSv1; id={}", "a".repeat(32)), &"a".repeat(32)),
        ] {
            assert_eq!(id(text).as_deref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn invalid_records() {
        let invalid = |reason: &str| {
            Err(RecordError::Invalid {
                reason: reason.to_string(),
            })
        };
        assert_eq!(id("v=STSv1"), invalid("no id field"));
        assert_eq!(id("v=STSv1;"), invalid("no id field"));
        assert_eq!(
            id("v=STSv1; id=2026-01-01"),
            invalid("id must be 1 to 32 letters and digits, got \"2026-01-01\"")
        );
        assert_eq!(
            id(&format!("v=STSv1; id={}", "a".repeat(33))),
            invalid(&format!(
                "id must be 1 to 32 letters and digits, got \"{}\"",
                "a".repeat(33)
            ))
        );
        assert_eq!(
            id("v=STSv1; id="),
            invalid("id must be 1 to 32 letters and digits, got \"\"")
        );
        assert_eq!(
            id("v=STSv1; id"),
            invalid("expected name=value, got \"id\"")
        );
        assert_eq!(
            id("v=STSv1;; id=1"),
            invalid("expected name=value, got \"\"")
        );
        assert_eq!(
            id("v=STSv1; x=a=b; id=1"),
            invalid("invalid value for \"x\": \"a=b\"")
        );
    }

    #[test]
    fn exactly_one_sts_record() {
        assert_eq!(
            parse_sts_records::<&str>(&[]).unwrap_err(),
            RecordError::Absent
        );
        // Other TXT records at the name are discarded, as are look-alikes.
        assert_eq!(
            parse_sts_records(&[
                "google-site-verification=x",
                "v=STSv10; id=1",
                "V=STSv1; id=1"
            ])
            .unwrap_err(),
            RecordError::Absent
        );
        assert_eq!(
            parse_sts_records(&["spf", "v=STSv1; id=1"]).unwrap().id,
            "1"
        );
        assert_eq!(
            parse_sts_records(&["v=STSv1; id=1", "v=STSv1; id=2"]).unwrap_err(),
            RecordError::Several { count: 2 }
        );
        assert_eq!(
            RecordError::Several { count: 2 }.to_string(),
            "2 _mta-sts TXT records (exactly one is allowed)"
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(records in proptest::collection::vec("(v=STSv1)?\\PC{0,60}", 0..4)) {
            let _ = parse_sts_records(&records);
        }
    }
}
