//! Times: milliseconds since the Unix epoch in the database, RFC 3339 in JSON.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Milliseconds since the epoch, the form stored in both backends.
pub(crate) fn to_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The inverse of [`to_ms`]; out-of-range values clamp to the epoch.
pub(crate) fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Milliseconds in a duration, saturating.
pub(crate) fn duration_ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// RFC 3339 text for a time (UTC, as stored).
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// serde `serialize_with` helper: a time as RFC 3339 text.
pub(crate) fn serialize<S: serde::Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_round_trip() {
        let t = time::macros::datetime!(2026-11-22 10:00:00.123 UTC);
        assert_eq!(from_ms(to_ms(t)), t);
        assert_eq!(rfc3339(t), "2026-11-22T10:00:00.123Z");
    }
}
