//! Email addresses: `addr`, `Name <addr>`, `"Last, First" <addr>` and comma-separated lists
//! of them (RFC 5322 §3.4), with internationalised domains converted to punycode (RFC 5891)
//! and non-ASCII local parts accepted but flagged as needing SMTPUTF8 (RFC 6531).

use std::fmt;

/// Why an address could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// The text is empty (or only whitespace).
    #[error("empty address")]
    Empty,
    /// There is no `@` between a local part and a domain.
    #[error("invalid address {input:?}: missing @")]
    MissingAt {
        /// The text that was given.
        input: String,
    },
    /// The local part (before the `@`) is not a dot-atom or quoted string (RFC 5322 §3.4.1).
    #[error("invalid address {input:?}: bad local part")]
    BadLocalPart {
        /// The text that was given.
        input: String,
    },
    /// The domain is neither a host name (IDNA allowed) nor an address literal.
    #[error("invalid address {input:?}: bad domain")]
    BadDomain {
        /// The text that was given.
        input: String,
    },
    /// Quotes or angle brackets do not match, or there is text after `>`.
    #[error("invalid address {input:?}: unbalanced quotes or angle brackets")]
    Syntax {
        /// The text that was given.
        input: String,
    },
    /// A control character (such as CR or LF) is inside the address.
    #[error("invalid address {input:?}: control character")]
    ControlCharacter {
        /// The text that was given.
        input: String,
    },
}

/// One mailbox: an optional display name and an address.
///
/// The domain is kept in its ASCII form (punycode for an internationalised domain, RFC 5891),
/// which is what the SMTP envelope and the headers use.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    name: Option<String>,
    local: String,
    domain: String,
}

impl Address {
    /// The display name, if one was given (unquoted, unescaped).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The local part, as written (a quoted local part keeps its quotes).
    pub fn local_part(&self) -> &str {
        &self.local
    }

    /// The domain in ASCII form (punycode for an internationalised domain).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// `local@domain`: the form used in the SMTP envelope and inside `<...>` in headers.
    pub fn addr_spec(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }

    /// True when the local part has non-ASCII characters, so the message can only be
    /// delivered to servers that offer SMTPUTF8 (RFC 6531).
    pub fn needs_smtputf8(&self) -> bool {
        !self.local.is_ascii()
    }
}

impl fmt::Display for Address {
    /// `Name <local@domain>` or `local@domain`, unencoded (for messages and logs).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{name} <{}@{}>", self.local, self.domain),
            None => write!(f, "{}@{}", self.local, self.domain),
        }
    }
}

impl std::str::FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_address(s)
    }
}

/// Parses one mailbox: `addr`, `Name <addr>` or `"Quoted, Name" <addr>`.
pub fn parse_address(input: &str) -> Result<Address, AddressError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(AddressError::Empty);
    }
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return Err(AddressError::ControlCharacter {
            input: input.to_string(),
        });
    }
    let syntax = || AddressError::Syntax {
        input: input.to_string(),
    };
    if let Some(before) = text.strip_suffix('>') {
        let open = last_unquoted(before, '<').ok_or_else(syntax)?;
        let phrase = before[..open].trim();
        let spec = before[open + 1..].trim();
        if spec.contains(['<', '>']) {
            return Err(syntax());
        }
        let name = parse_phrase(phrase).ok_or_else(syntax)?;
        let (local, domain) = parse_addr_spec(spec, input)?;
        Ok(Address {
            name,
            local,
            domain,
        })
    } else {
        if text.contains(['<', '>']) {
            return Err(syntax());
        }
        let (local, domain) = parse_addr_spec(text, input)?;
        Ok(Address {
            name: None,
            local,
            domain,
        })
    }
}

/// Parses a comma-separated list of mailboxes. Commas inside quoted display names or angle
/// brackets do not split; empty items (a trailing comma) are skipped.
pub fn parse_address_list(input: &str) -> Result<Vec<Address>, AddressError> {
    split_address_list(input)
        .into_iter()
        .filter(|item| !item.trim().is_empty())
        .map(parse_address)
        .collect()
}

/// Splits a comma-separated address list into items without parsing them, honouring quoted
/// strings (with `\` escapes) and angle brackets.
pub fn split_address_list(input: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    let mut angle = false;
    for (i, c) in input.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                items.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&input[start..]);
    items
}

/// The byte index of the last `c` that is not inside a quoted string.
fn last_unquoted(s: &str, target: char) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    let mut found = None;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == target && !quoted => found = Some(i),
            _ => {}
        }
    }
    if quoted { None } else { found }
}

/// A display name: empty (none), a quoted string (unescaped), or a bare phrase.
fn parse_phrase(phrase: &str) -> Option<Option<String>> {
    if phrase.is_empty() {
        return Some(None);
    }
    if let Some(inner) = phrase.strip_prefix('"') {
        let inner = inner.strip_suffix('"')?;
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.push(chars.next()?),
                '"' => return None,
                c => out.push(c),
            }
        }
        return Some(Some(out));
    }
    if phrase.contains('"') {
        return None;
    }
    Some(Some(phrase.to_string()))
}

/// RFC 5322 §3.2.3 atext, plus any non-ASCII character (RFC 6532 §3.2).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

fn parse_addr_spec(spec: &str, input: &str) -> Result<(String, String), AddressError> {
    let at = spec.rfind('@').ok_or_else(|| AddressError::MissingAt {
        input: input.to_string(),
    })?;
    let (local, domain) = (&spec[..at], &spec[at + 1..]);
    let bad_local = || AddressError::BadLocalPart {
        input: input.to_string(),
    };
    if local.is_empty() || local.len() > 64 {
        return Err(bad_local());
    }
    if let Some(inner) = local.strip_prefix('"') {
        // RFC 5321 §4.1.2 Quoted-string: printable characters, `\` escapes.
        let inner = inner.strip_suffix('"').ok_or_else(bad_local)?;
        let mut escaped = false;
        for c in inner.chars() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => return Err(bad_local()),
                c if c.is_control() => return Err(bad_local()),
                _ => {}
            }
        }
        if escaped {
            return Err(bad_local());
        }
    } else if local
        .split('.')
        .any(|atom| atom.is_empty() || !atom.chars().all(is_atext))
    {
        return Err(bad_local());
    }
    let domain = parse_domain(domain).ok_or_else(|| AddressError::BadDomain {
        input: input.to_string(),
    })?;
    Ok((local.to_string(), domain))
}

/// A host name (converted to its ASCII form by IDNA, RFC 5891) or an address literal
/// (`[192.0.2.1]`, `[IPv6:::1]`, RFC 5321 §4.1.3).
fn parse_domain(domain: &str) -> Option<String> {
    if let Some(literal) = domain.strip_prefix('[') {
        let literal = literal.strip_suffix(']')?;
        let ok = match literal.strip_prefix("IPv6:") {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => literal.parse::<std::net::Ipv4Addr>().is_ok(),
        };
        return ok.then(|| domain.to_string());
    }
    if domain.is_empty() || domain.contains(|c: char| c.is_whitespace()) {
        return None;
    }
    let ascii = idna::domain_to_ascii(domain).ok()?;
    let ascii = ascii.strip_suffix('.').unwrap_or(&ascii).to_string();
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    (ascii.len() <= 253 && ascii.split('.').all(valid_label)).then_some(ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_named_addresses() {
        let a = parse_address("a@example.com").unwrap();
        assert_eq!((a.name(), a.addr_spec().as_str()), (None, "a@example.com"));
        let b = parse_address(" Ann Lee <ann@example.com> ").unwrap();
        assert_eq!(b.name(), Some("Ann Lee"));
        assert_eq!(b.addr_spec(), "ann@example.com");
        let c = parse_address(r#""Lee, Ann \"A\"" <ann@example.com>"#).unwrap();
        assert_eq!(c.name(), Some(r#"Lee, Ann "A""#));
        let d = parse_address("<bare@example.com>").unwrap();
        assert_eq!(d.name(), None);
    }

    #[test]
    fn lists_split_outside_quotes_and_brackets() {
        let list = parse_address_list(r#""Lee, Ann" <ann@x.test>, bob@y.test,, "a,b" <c@z.test>,"#)
            .unwrap();
        let specs: Vec<_> = list.iter().map(Address::addr_spec).collect();
        assert_eq!(specs, ["ann@x.test", "bob@y.test", "c@z.test"]);
        assert_eq!(list[2].name(), Some("a,b"));
    }

    #[test]
    fn international_domains_become_punycode() {
        let a = parse_address("Jörg <jörg@bücher.example>").unwrap();
        assert_eq!(a.domain(), "xn--bcher-kva.example");
        assert!(a.needs_smtputf8());
        assert!(!parse_address("x@bücher.example").unwrap().needs_smtputf8());
    }

    #[test]
    fn literals_and_quoted_local_parts() {
        assert_eq!(
            parse_address("a@[127.0.0.1]").unwrap().domain(),
            "[127.0.0.1]"
        );
        assert!(parse_address("a@[IPv6:::1]").is_ok());
        assert!(parse_address(r#""john doe"@example.com"#).is_ok());
    }

    #[test]
    fn bad_addresses_are_refused() {
        for bad in [
            "",
            "no-at-sign",
            "@example.com",
            "a@",
            "a..b@example.com",
            "a b@example.com",
            "a@exa mple.com",
            "a@-bad-.com",
            "Name <a@example.com",
            "a@example.com>",
            "a@example.com\r\nBcc: x@y.z",
            "a@[999.1.1.1]",
            "\"unterminated <a@b.c>",
        ] {
            assert!(parse_address(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
