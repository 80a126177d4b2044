//! Addresses as local programs write them: `root`, `root (Cron Daemon)`, `"Cron" <root>`.
//! Like Postfix's `append_at_myorigin`, an address without a domain is completed with
//! `[sendmail] domain`, in the envelope and in the address headers, so cron's mail to
//! `root` is queued instead of refused; RFC 5322 comments (§3.2.2) are read, not refused,
//! and kept in the header text.

use outbox_mime::{Address, AddressError, parse_address};

/// One address of a list, completed with the domain when it had none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qualified {
    /// The parsed address (its domain filled in).
    pub address: Address,
    /// Where `@domain` was inserted in the item's text, if it was.
    insert_at: Option<usize>,
}

/// What one pass over an item found: the text without comments, and where the addr-spec is.
struct Scan {
    /// The item with its comments removed (a comment between words becomes a space).
    stripped: String,
    /// The addr-spec as written: between `<` and `>`, else the whole stripped text.
    spec: String,
    /// Byte offset in the item just after the addr-spec (before `>`, or after its last
    /// character outside a comment): where a missing `@domain` goes.
    spec_end: usize,
    /// The same place in `stripped`.
    cut: usize,
}

/// Reads one mailbox with its comments. Unbalanced comments or quotes are a syntax error.
fn scan(item: &str) -> Result<Scan, AddressError> {
    let syntax = || AddressError::Syntax {
        input: item.trim().to_string(),
    };
    let mut stripped = String::with_capacity(item.len());
    let mut depth = 0usize;
    let mut quoted = false;
    let mut escaped = false;
    // Stripped offsets just after `<` and of `>`, and the item offset of `>`.
    let mut angle_open: Option<usize> = None;
    let mut angle: Option<(usize, usize, usize)> = None;
    let mut last_end = 0;
    for (i, c) in item.char_indices() {
        let next = i + c.len_utf8();
        if depth > 0 {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    // Between words a comment separates them; inside <...> it is nothing.
                    if depth == 0 && angle_open.is_none() {
                        stripped.push(' ');
                    }
                }
                _ => {}
            }
            continue;
        }
        if quoted {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => quoted = false,
                _ => {}
            }
            stripped.push(c);
            last_end = next;
            continue;
        }
        match c {
            '(' => depth = 1,
            '"' => {
                quoted = true;
                stripped.push(c);
                last_end = next;
            }
            '<' if angle_open.is_none() && angle.is_none() => {
                stripped.push(c);
                angle_open = Some(stripped.len());
                last_end = next;
            }
            '>' if angle_open.is_some() => {
                angle = Some((angle_open.unwrap_or(0), stripped.len(), i));
                stripped.push(c);
                angle_open = None;
                last_end = next;
            }
            c => {
                stripped.push(c);
                if !c.is_whitespace() {
                    last_end = next;
                }
            }
        }
    }
    if depth > 0 || quoted || escaped {
        return Err(syntax());
    }
    if angle_open.is_some() {
        return Err(syntax());
    }
    let (spec, spec_end, cut) = match angle {
        Some((open, close, at)) => (stripped[open..close].trim().to_string(), at, close),
        None => (
            stripped.trim().to_string(),
            last_end,
            stripped.trim_end().len(),
        ),
    };
    Ok(Scan {
        stripped,
        spec,
        spec_end,
        cut,
    })
}

/// True when the addr-spec has an `@` outside a quoted local part.
fn has_domain(spec: &str) -> bool {
    let mut quoted = false;
    let mut escaped = false;
    for c in spec.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '@' if !quoted => return true,
            _ => {}
        }
    }
    false
}

/// Parses one mailbox, comments allowed; an address without `@domain` gets `@domain`.
/// Errors name the item as written.
pub fn qualify(item: &str, domain: &str) -> Result<Qualified, AddressError> {
    let scan = scan(item)?;
    let mut text = scan.stripped.clone();
    let mut insert_at = None;
    if !scan.spec.is_empty() && !has_domain(&scan.spec) {
        text.insert_str(scan.cut, &format!("@{domain}"));
        insert_at = Some(scan.spec_end);
    }
    let address = parse_address(&text).map_err(|err| rename(err, item))?;
    Ok(Qualified { address, insert_at })
}

/// The same error, naming the text the user wrote rather than the completed one.
fn rename(err: AddressError, item: &str) -> AddressError {
    let input = item.trim().to_string();
    match err {
        AddressError::Empty => AddressError::Empty,
        AddressError::MissingAt { .. } => AddressError::MissingAt { input },
        AddressError::BadLocalPart { .. } => AddressError::BadLocalPart { input },
        AddressError::BadDomain { .. } => AddressError::BadDomain { input },
        AddressError::Syntax { .. } => AddressError::Syntax { input },
        AddressError::ControlCharacter { .. } => AddressError::ControlCharacter { input },
        other => other,
    }
}

/// The items of an address-list header value (RFC 5322 §3.4): byte ranges of the mailboxes,
/// split at `,` outside quotes, comments, `<...>` and `[...]`; a group's `name:` and its
/// closing `;` are separators, so `undisclosed-recipients:;` has no items.
fn items(value: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let (mut depth, mut quoted, mut escaped, mut angle, mut literal) =
        (0, false, false, false, false);
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted || depth > 0 => escaped = true,
            _ if depth > 0 => match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            },
            '"' => quoted = !quoted,
            _ if quoted => {}
            '(' => depth = 1,
            '<' => angle = true,
            '>' => angle = false,
            '[' => literal = true,
            ']' => literal = false,
            ',' | ';' if !angle && !literal => {
                out.push((start, i));
                start = i + 1;
            }
            // `display-name:` opens a group: what came before is its name, not a mailbox.
            ':' if !angle && !literal => start = i + 1,
            _ => {}
        }
    }
    out.push((start, value.len()));
    out
}

/// True when an item holds nothing but whitespace and comments.
fn is_blank(item: &str) -> bool {
    scan(item).is_ok_and(|s| s.stripped.trim().is_empty())
}

/// Every mailbox of an address-list value, each completed with `domain` when it had none,
/// and the value rewritten with those `@domain`s inserted (`None` when nothing changed):
/// `root (Cron Daemon)` becomes `root@DOMAIN (Cron Daemon)`, comments and folding kept.
pub fn qualify_list(
    value: &str,
    domain: &str,
) -> Result<(Vec<Address>, Option<String>), AddressError> {
    let mut addresses = Vec::new();
    let mut inserts = Vec::new();
    for (start, end) in items(value) {
        let item = &value[start..end];
        if is_blank(item) {
            continue;
        }
        let qualified = qualify(item, domain)?;
        if let Some(at) = qualified.insert_at {
            inserts.push(start + at);
        }
        addresses.push(qualified.address);
    }
    if inserts.is_empty() {
        return Ok((addresses, None));
    }
    let mut rewritten = String::with_capacity(value.len() + inserts.len() * (domain.len() + 1));
    let mut from = 0;
    for at in inserts {
        rewritten.push_str(&value[from..at]);
        rewritten.push('@');
        rewritten.push_str(domain);
        from = at;
    }
    rewritten.push_str(&value[from..]);
    Ok((addresses, Some(rewritten)))
}

/// A display name as an RFC 5322 phrase for the From header sendmail adds from `-F`:
/// atoms as they are, other ASCII as a quoted string, non-ASCII as RFC 2047 encoded-words.
pub fn phrase(name: &str) -> String {
    use base64::Engine as _;
    let is_atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    if !name.is_empty()
        && name
            .split(' ')
            .all(|w| !w.is_empty() && w.chars().all(is_atext))
    {
        return name.to_string();
    }
    if name.chars().all(|c| (' '..='~').contains(&c)) {
        let mut out = String::from("\"");
        for c in name.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
        return out;
    }
    // RFC 2047 §2: an encoded-word is at most 75 characters; 45 bytes of UTF-8 (whole
    // characters) make 60 of base64, inside `=?utf-8?b?...?=`.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in name.chars().filter(|c| !c.is_control()) {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    words.push(chunk);
    words
        .iter()
        .map(|w| {
            format!(
                "=?utf-8?b?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w)
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(item: &str) -> String {
        qualify(item, "host.test").unwrap().address.addr_spec()
    }

    #[test]
    fn unqualified_addresses_get_the_domain() {
        assert_eq!(spec("root"), "root@host.test");
        assert_eq!(spec("root (Cron Daemon)"), "root@host.test");
        assert_eq!(spec("(Cron Daemon) root"), "root@host.test");
        assert_eq!(spec("\"Cron Daemon\" <root>"), "root@host.test");
        assert_eq!(spec("Cron <root> (daemon)"), "root@host.test");
        assert_eq!(spec("ann@x.test (Ann)"), "ann@x.test");
        assert_eq!(spec("\"a@b\" <ann@x.test>"), "ann@x.test");
        assert_eq!(spec("\"john doe\""), "\"john doe\"@host.test");
        let named = qualify("Cron Daemon <root>", "host.test").unwrap();
        assert_eq!(named.address.name(), Some("Cron Daemon"));
    }

    #[test]
    fn bad_items_are_refused_naming_what_was_written() {
        for bad in [
            " root (unclosed\r\n",
            "a b c",
            "<root",
            "root>",
            "\"open",
            "bad@@x",
            "<>",
        ] {
            let err = qualify(bad, "host.test").unwrap_err().to_string();
            assert!(
                err.contains(&format!("{:?}", bad.trim())) || bad == "<>",
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn lists_are_rewritten_in_place() {
        let (addresses, text) = qualify_list(" root (Cron Daemon)", "host.test").unwrap();
        assert_eq!(addresses[0].addr_spec(), "root@host.test");
        assert_eq!(text.as_deref(), Some(" root@host.test (Cron Daemon)"));

        let value = " \"Lee, Ann\" <ann>, bob@y.test,\r\n Team: carl (x, y), dan@z.test;, root";
        let (addresses, text) = qualify_list(value, "h.test").unwrap();
        let specs: Vec<_> = addresses.iter().map(Address::addr_spec).collect();
        assert_eq!(
            specs,
            [
                "ann@h.test",
                "bob@y.test",
                "carl@h.test",
                "dan@z.test",
                "root@h.test"
            ]
        );
        assert_eq!(
            text.as_deref(),
            Some(
                " \"Lee, Ann\" <ann@h.test>, bob@y.test,\r\n Team: carl@h.test (x, y), dan@z.test;, root@h.test"
            )
        );

        let (addresses, text) = qualify_list(" undisclosed-recipients:;", "h.test").unwrap();
        assert!(addresses.is_empty() && text.is_none());
        let (_, text) = qualify_list(" a@[IPv6:::1], b@x.test", "h.test").unwrap();
        assert!(text.is_none());
        assert!(qualify_list(" a@x.test, not an address", "h.test").is_err());
    }

    #[test]
    fn phrases() {
        assert_eq!(phrase("CronDaemon"), "CronDaemon");
        assert_eq!(phrase("Cron Daemon"), "Cron Daemon");
        assert_eq!(phrase("Lee, Ann"), "\"Lee, Ann\"");
        assert_eq!(phrase("Jörg"), "=?utf-8?b?SsO2cmc=?=");
        // -F from a command line cannot add a header line.
        let injected = phrase("Root\r\nBcc: x@y.test");
        assert!(!injected.contains(['\r', '\n']), "{injected}");
        let long = phrase(&"é".repeat(100));
        assert!(long.split(' ').all(|word| word.len() <= 75), "{long}");
    }
}
