//! The MTA-STS policy file (RFC 8461 §3.2) and the MX host match of §4.1. Sans-I/O.

use std::fmt;
use std::time::Duration;

use thiserror::Error;

/// The largest `max_age` a policy may give: one year (RFC 8461 §3.2).
pub const MAX_AGE_LIMIT: u64 = 31_557_600;

/// What a sender does with a policy (RFC 8461 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Deliver only to MX hosts that match the policy, over TLS with a certificate valid
    /// for the MX host name; otherwise do not deliver (defer).
    Enforce,
    /// Deliver as without a policy, but log where the policy would have refused.
    Testing,
    /// The domain has withdrawn its policy: deliver as without one.
    None,
}

impl Mode {
    /// The policy file's spelling: `enforce`, `testing`, `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A domain's MTA-STS policy, as fetched from `https://mta-sts.DOMAIN/.well-known/mta-sts.txt`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Policy {
    /// The policy id, from the domain's `_mta-sts` TXT record (RFC 8461 §3.1).
    pub id: String,
    /// What to do with it.
    pub mode: Mode,
    /// The MX host patterns, lower-case, without trailing dots: `mx.example.com` or
    /// `*.example.net` (the `*` stands for exactly one left-most label).
    pub mx: Vec<String>,
    /// How long the policy may be cached after it was fetched.
    #[serde(serialize_with = "seconds")]
    pub max_age: Duration,
}

fn seconds<S: serde::Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(value.as_secs())
}

/// Why a policy file was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// One line is malformed.
    #[error("policy line {line}: {reason}")]
    Line {
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A required field is absent.
    #[error("policy has no {field:?} field")]
    Missing {
        /// The field's name.
        field: &'static str,
    },
}

impl Policy {
    /// Parses a policy file (RFC 8461 §3.2) whose TXT record gave `id`.
    ///
    /// Lines end in CRLF or LF; each is `key: value`. `version: STSv1`, `mode` and
    /// `max_age` are required, and at least one `mx` unless the mode is `none`. For fields
    /// other than `mx` the first occurrence counts (§3.2); unknown fields are ignored.
    /// Blank lines are tolerated. Field names and the values `STSv1`, `enforce`, `testing`,
    /// `none` are case-sensitive, as the RFC's ABNF writes them.
    pub fn parse(id: &str, text: &str) -> Result<Policy, PolicyError> {
        let mut version = None;
        let mut mode = None;
        let mut max_age = None;
        let mut mx = Vec::new();
        for (index, raw) in text.split('\n').enumerate() {
            let line = index + 1;
            let bad = |reason: String| PolicyError::Line { line, reason };
            let content = raw.strip_suffix('\r').unwrap_or(raw);
            if content.trim_matches([' ', '\t']).is_empty() {
                continue;
            }
            let Some((key, value)) = content.split_once(':') else {
                return Err(bad(format!(
                    "expected `key: value`, got {}",
                    quoted(content)
                )));
            };
            if !is_field_name(key) {
                return Err(bad(format!("invalid field name {}", quoted(key))));
            }
            let value = value.trim_matches([' ', '\t']);
            match key {
                "version" => {
                    if value != "STSv1" {
                        return Err(bad(format!("version must be STSv1, got {}", quoted(value))));
                    }
                    version.get_or_insert(());
                }
                "mode" => {
                    let parsed = match value {
                        "enforce" => Mode::Enforce,
                        "testing" => Mode::Testing,
                        "none" => Mode::None,
                        other => {
                            return Err(bad(format!(
                                "mode must be enforce, testing or none, got {}",
                                quoted(other)
                            )));
                        }
                    };
                    mode.get_or_insert(parsed);
                }
                "max_age" => {
                    let seconds = parse_max_age(value).map_err(bad)?;
                    max_age.get_or_insert(seconds);
                }
                "mx" => mx.push(parse_mx_pattern(value).map_err(bad)?),
                _ => {}
            }
        }
        version.ok_or(PolicyError::Missing { field: "version" })?;
        let mode = mode.ok_or(PolicyError::Missing { field: "mode" })?;
        let max_age = max_age.ok_or(PolicyError::Missing { field: "max_age" })?;
        if mx.is_empty() && mode != Mode::None {
            return Err(PolicyError::Missing { field: "mx" });
        }
        Ok(Policy {
            id: id.to_string(),
            mode,
            mx,
            max_age: Duration::from_secs(max_age),
        })
    }

    /// Whether `mx_host` is one of the policy's MX hosts (RFC 8461 §4.1): case-insensitive,
    /// trailing dots ignored, and a `*.` pattern matches exactly one more left-most label
    /// (`*.example.com` matches `mx.example.com`, not `example.com` nor `a.b.example.com`).
    pub fn matches(&self, mx_host: &str) -> bool {
        let host = mx_host.trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() {
            return false;
        }
        self.mx
            .iter()
            .any(|pattern| match pattern.strip_prefix('*') {
                Some(suffix) => host
                    .strip_suffix(suffix)
                    .is_some_and(|label| !label.is_empty() && !label.contains('.')),
                None => host == *pattern,
            })
    }

    /// Whether delivery must be refused where the policy is not met (mode `enforce`).
    pub fn is_enforced(&self) -> bool {
        self.mode == Mode::Enforce
    }
}

/// `sts-policy-ext-name`: 1 to 32 letters, digits, `_`, `-`, `.`, starting with a letter
/// or digit.
fn is_field_name(key: &str) -> bool {
    let bytes = key.as_bytes();
    (1..=32).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn parse_max_age(value: &str) -> Result<u64, String> {
    if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "max_age must be 1 to 10 digits, got {}",
            quoted(value)
        ));
    }
    let seconds: u64 = value
        .parse()
        .map_err(|_| format!("max_age {} is not a number", quoted(value)))?;
    if seconds > MAX_AGE_LIMIT {
        return Err(format!(
            "max_age {seconds} is over the limit of {MAX_AGE_LIMIT} seconds"
        ));
    }
    Ok(seconds)
}

/// An `mx` value: a domain in A-labels, optionally with a leading `*.`; returned lower-case
/// without a trailing dot.
fn parse_mx_pattern(value: &str) -> Result<String, String> {
    let pattern = value.trim_end_matches('.').to_ascii_lowercase();
    let domain = pattern.strip_prefix("*.").unwrap_or(&pattern);
    let valid = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if valid {
        Ok(pattern)
    } else {
        Err(format!(
            "mx must be a host name or *.domain, got {}",
            quoted(value)
        ))
    }
}

/// Untrusted text for an error message: quoted, control characters escaped, at most 64
/// characters.
pub(crate) fn quoted(text: &str) -> String {
    const MAX: usize = 64;
    let mut shown: String = text.chars().take(MAX).collect();
    if shown.len() < text.len() {
        shown.push_str("...");
    }
    format!("{shown:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        "version: STSv1\r\nmode: enforce\r\nmx: mx1.a.test\r\nmx: *.b.test\r\nmax_age: 86400\r\n";

    #[test]
    fn parses_a_policy() {
        let policy = Policy::parse("20260101", GOOD).unwrap();
        assert_eq!(
            policy,
            Policy {
                id: "20260101".into(),
                mode: Mode::Enforce,
                mx: vec!["mx1.a.test".into(), "*.b.test".into()],
                max_age: Duration::from_secs(86400),
            }
        );
        assert!(policy.is_enforced());
        // LF line ends, no final newline, surrounding spaces, unknown fields, blank lines.
        let lf = "version:STSv1\nmode:\ttesting \nfuture_field: anything at all\n\nmx: MX.A.Test.\nmax_age: 0";
        let policy = Policy::parse("1", lf).unwrap();
        assert_eq!(policy.mode, Mode::Testing);
        assert_eq!(policy.mx, vec!["mx.a.test".to_string()]);
        assert_eq!(policy.max_age, Duration::ZERO);
    }

    #[test]
    fn first_occurrence_wins_but_every_mx_counts() {
        let text = "version: STSv1\nmode: testing\nmode: enforce\nmax_age: 5\nmax_age: 9\nmx: a.test\nmx: b.test\n";
        let policy = Policy::parse("1", text).unwrap();
        assert_eq!(policy.mode, Mode::Testing);
        assert_eq!(policy.max_age, Duration::from_secs(5));
        assert_eq!(policy.mx.len(), 2);
    }

    #[test]
    fn mode_none_needs_no_mx() {
        let policy = Policy::parse("1", "version: STSv1\nmode: none\nmax_age: 60\n").unwrap();
        assert_eq!(policy.mode, Mode::None);
        assert!(policy.mx.is_empty());
        assert!(!policy.is_enforced());
    }

    #[test]
    fn malformed_policies_name_the_line() {
        let cases: &[(&str, PolicyError)] = &[
            (
                "version: STSv1\nmode enforce\n",
                line(2, "expected `key: value`, got \"mode enforce\""),
            ),
            (
                "version: STSv2\n",
                line(1, "version must be STSv1, got \"STSv2\""),
            ),
            (
                "version: STSv1\nmode: Enforce\n",
                line(2, "mode must be enforce, testing or none, got \"Enforce\""),
            ),
            (
                "version: STSv1\r\nmode: enforce\r\nmax_age: 31557601\r\n",
                line(3, "max_age 31557601 is over the limit of 31557600 seconds"),
            ),
            (
                "max_age: -1\n",
                line(1, "max_age must be 1 to 10 digits, got \"-1\""),
            ),
            (
                "max_age: 12345678901\n",
                line(1, "max_age must be 1 to 10 digits, got \"12345678901\""),
            ),
            (
                "mx: *.*.a.test\n",
                line(1, "mx must be a host name or *.domain, got \"*.*.a.test\""),
            ),
            (
                "mx: a..test\n",
                line(1, "mx must be a host name or *.domain, got \"a..test\""),
            ),
            (
                "mx: -a.test\n",
                line(1, "mx must be a host name or *.domain, got \"-a.test\""),
            ),
            (
                "mx:\n",
                line(1, "mx must be a host name or *.domain, got \"\""),
            ),
            (": value\n", line(1, "invalid field name \"\"")),
            (
                "bad key: value\n",
                line(1, "invalid field name \"bad key\""),
            ),
            (
                "mode: enforce\nmx: a.test\nmax_age: 1\n",
                PolicyError::Missing { field: "version" },
            ),
            (
                "version: STSv1\nmx: a.test\nmax_age: 1\n",
                PolicyError::Missing { field: "mode" },
            ),
            (
                "version: STSv1\nmode: enforce\nmx: a.test\n",
                PolicyError::Missing { field: "max_age" },
            ),
            (
                "version: STSv1\nmode: testing\nmax_age: 1\n",
                PolicyError::Missing { field: "mx" },
            ),
            ("", PolicyError::Missing { field: "version" }),
            (
                "<html><body>Not found</body></html>",
                line(
                    1,
                    "expected `key: value`, got \"<html><body>Not found</body></html>\"",
                ),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(Policy::parse("1", text).unwrap_err(), *want, "{text:?}");
        }
        let error = Policy::parse("1", "version: STSv1\nmode enforce\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "policy line 2: expected `key: value`, got \"mode enforce\""
        );
    }

    fn line(line: usize, reason: &str) -> PolicyError {
        PolicyError::Line {
            line,
            reason: reason.to_string(),
        }
    }

    #[test]
    fn long_hostile_values_are_cut_in_errors() {
        let text = format!("mode: {}\u{7}\n", "x".repeat(1000));
        let error = Policy::parse("1", &text).unwrap_err().to_string();
        assert!(error.len() < 200, "{error}");
        assert!(!error.contains('\u{7}'));
    }

    #[test]
    fn mx_matching() {
        let policy = Policy::parse("1", GOOD).unwrap();
        let table = [
            ("mx1.a.test", true),
            ("MX1.A.TEST", true),
            ("mx1.a.test.", true),
            ("mx2.a.test", false),
            ("a.test", false),
            ("x.b.test", true),
            ("X.B.Test.", true),
            ("b.test", false),
            (".b.test", false),
            ("a.x.b.test", false),
            ("xb.test", false),
            ("", false),
            (".", false),
        ];
        for (host, want) in table {
            assert_eq!(policy.matches(host), want, "{host}");
        }
    }

    #[test]
    fn modes_display_as_written() {
        assert_eq!(Mode::Enforce.to_string(), "enforce");
        assert_eq!(Mode::Testing.to_string(), "testing");
        assert_eq!(Mode::None.to_string(), "none");
    }

    proptest::proptest! {
        #[test]
        fn parsing_and_matching_never_panic(text in "\\PC*", host in "\\PC{0,80}") {
            if let Ok(policy) = Policy::parse("1", &text) {
                let _ = policy.matches(&host);
            }
        }

        #[test]
        fn policy_like_lines_never_panic(
            lines in proptest::collection::vec(
                "(version|mode|mx|max_age|x)[:]?[ \\t]*(STSv1|enforce|testing|none|[*]?[.]?[a-z0-9.-]{0,20}|[0-9]{0,12})\r?",
                0..8,
            ),
            host in "[a-z0-9.*-]{0,30}",
        ) {
            if let Ok(policy) = Policy::parse("1", &lines.join("\n")) {
                let _ = policy.matches(&host);
            }
        }
    }
}
