//! Header field encoding: RFC 2047 encoded-words for non-ASCII text, quoted display names
//! (RFC 5322 §3.2.4), RFC 2231 parameters for non-ASCII file names, and folding (RFC 5322
//! §2.2.3) so that no line exceeds 78 characters where a break is possible.
//!
//! Encoded-words are written by hand because the merge step needs to decode them again and
//! because the rules that keep a round trip exact (when whitespace must be inside a word) are
//! ours; the base64 inside them comes from the `base64` crate.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::address::Address;

/// Preferred maximum line length (RFC 5322 §2.1.1).
const FOLD_AT: usize = 78;
/// Raw octets per encoded-word: 45 octets are 60 base64 characters, and
/// `=?utf-8?B?` + 60 + `?=` is 72, under the 75 of RFC 2047 §2.
const WORD_OCTETS: usize = 45;

/// True when a header value must be written as encoded-words to survive exactly: non-ASCII,
/// control characters, something that looks like an encoded-word, whitespace that unfolding
/// or trimming would change, or a word too long to fold.
fn needs_encoded_words(value: &str) -> bool {
    !value.is_ascii()
        || value.chars().any(|c| c.is_ascii_control())
        || value.contains("=?")
        || value.starts_with(' ')
        || value.ends_with(' ')
        || value.contains("  ")
        || value.split(' ').any(|word| word.len() > 900)
}

/// `value` as a sequence of `=?utf-8?B?...?=` words (RFC 2047 §4.1), split on character
/// boundaries, joined by `sep`.
pub fn encoded_words(value: &str, sep: &str) -> String {
    let mut out = String::with_capacity(value.len() * 2);
    let mut rest = value;
    while !rest.is_empty() {
        let mut end = rest.len().min(WORD_OCTETS);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        if !out.is_empty() {
            out.push_str(sep);
        }
        out.push_str("=?utf-8?B?");
        STANDARD.encode_string(&rest.as_bytes()[..end], &mut out);
        out.push_str("?=");
        rest = &rest[end..];
    }
    out
}

/// An unstructured header value (Subject, Comments, extension fields), folded, for a field
/// named `name`. Plain ASCII stays readable; anything else becomes encoded-words.
pub fn unstructured(name: &str, value: &str) -> String {
    if needs_encoded_words(value) {
        return encoded_words(value, "\r\n ");
    }
    let mut out = String::with_capacity(value.len() + 8);
    let mut line = name.len() + 2;
    for (i, word) in value.split(' ').enumerate() {
        if i > 0 {
            if line + 1 + word.len() > FOLD_AT {
                out.push_str("\r\n");
                line = 0;
            }
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += word.len();
    }
    out
}

/// RFC 5322 §3.2.3 atext.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

/// A display name as an RFC 5322 phrase: atoms when possible, else a quoted string, else
/// encoded-words (RFC 2047 §5(3)).
pub fn phrase(name: &str) -> String {
    if needs_encoded_words(name) {
        return encoded_words(name, " ");
    }
    if !name.is_empty()
        && name
            .split(' ')
            .all(|w| !w.is_empty() && w.chars().all(is_atext))
    {
        return name.to_string();
    }
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// One mailbox as it appears in a header: `Name <local@domain>` or `local@domain`.
pub fn mailbox(address: &Address) -> String {
    match address.name() {
        Some(name) if !name.is_empty() => format!("{} <{}>", phrase(name), address.addr_spec()),
        _ => address.addr_spec(),
    }
}

/// A folded address list for a field named `name`.
pub fn mailbox_list(name: &str, addresses: &[Address]) -> String {
    let mut out = String::new();
    let mut line = name.len() + 2;
    for (i, address) in addresses.iter().enumerate() {
        let text = mailbox(address);
        if i > 0 {
            out.push(',');
            line += 1;
            if line + 1 + text.len() > FOLD_AT {
                out.push_str("\r\n");
                line = 0;
            }
            out.push(' ');
            line += 1;
        }
        line += text.rsplit("\r\n").next().map_or(0, str::len);
        out.push_str(&text);
    }
    out
}

/// RFC 2231 §7 attribute-char: what may appear unescaped in an extended parameter value.
fn is_attr_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b)
}

/// A Content-Type / Content-Disposition parameter, including its leading `;` and folding.
/// Short printable ASCII values are quoted strings; others use RFC 2231 extended values
/// (`name*=utf-8''...`), split into numbered continuations (§3) when long.
pub fn parameter(name: &str, value: &str) -> String {
    let plain = value.bytes().all(|b| (b' '..=b'~').contains(&b));
    if plain && value.len() <= 60 {
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
        let fold = if value.len() > 30 { "\r\n" } else { "" };
        return format!(";{fold} {name}=\"{escaped}\"");
    }
    let mut encoded = Vec::new();
    let mut current = String::from("utf-8''");
    for &b in value.as_bytes() {
        let piece = if is_attr_char(b) {
            char::from(b).to_string()
        } else {
            format!("%{b:02X}")
        };
        // Never split a %XX triplet, nor a UTF-8 sequence across sections (§4.1 is lenient,
        // parsers are not).
        let continuation = b & 0xC0 == 0x80;
        if current.len() + piece.len() > 60 && !continuation {
            encoded.push(std::mem::take(&mut current));
        }
        current.push_str(&piece);
    }
    encoded.push(current);
    if encoded.len() == 1 {
        return format!(";\r\n {name}*={}", encoded[0]);
    }
    encoded
        .iter()
        .enumerate()
        .map(|(i, section)| format!(";\r\n {name}*{i}*={section}"))
        .collect()
}

/// Decodes RFC 2047 encoded-words in an unstructured value (whitespace between adjacent
/// encoded-words is dropped, §6.2). Words in charsets other than UTF-8, US-ASCII and
/// ISO-8859-1 are left as they are.
pub fn decode_unstructured(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut pending_space = String::new();
    let mut last_was_word = false;
    let mut rest = value;
    while !rest.is_empty() {
        let ws_len = rest.len() - rest.trim_start_matches([' ', '\t', '\r', '\n']).len();
        if ws_len > 0 {
            pending_space.push_str(&rest[..ws_len]);
            rest = &rest[ws_len..];
            continue;
        }
        let token_len = rest.find([' ', '\t', '\r', '\n']).unwrap_or(rest.len());
        let token = &rest[..token_len];
        match decode_word(token) {
            Some(decoded) => {
                if !last_was_word {
                    out.push_str(&pending_space);
                }
                out.push_str(&decoded);
                last_was_word = true;
            }
            None => {
                out.push_str(&pending_space);
                out.push_str(token);
                last_was_word = false;
            }
        }
        pending_space.clear();
        rest = &rest[token_len..];
    }
    out.push_str(&pending_space);
    out
}

/// One `=?charset?B|Q?text?=` word, decoded.
fn decode_word(token: &str) -> Option<String> {
    let inner = token.strip_prefix("=?")?.strip_suffix("?=")?;
    let mut fields = inner.splitn(3, '?');
    let charset = fields.next()?;
    let encoding = fields.next()?;
    let text = fields.next()?;
    let charset = charset
        .split('*')
        .next()?
        .parse::<crate::encoding::Charset>()
        .ok()?;
    let bytes = match encoding {
        "B" | "b" => STANDARD.decode(text).ok()?,
        "Q" | "q" => {
            let underscored = text.replace('_', " ");
            quoted_printable::decode(underscored, quoted_printable::ParseMode::Robust).ok()?
        }
        _ => return None,
    };
    Some(charset.decode(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::parse_address;

    #[test]
    fn ascii_subjects_stay_readable_and_fold() {
        assert_eq!(unstructured("Subject", "Hello #NAME#"), "Hello #NAME#");
        let long = "word ".repeat(30);
        let folded = unstructured("Subject", long.trim_end());
        assert!(folded.contains("\r\n "));
        assert_eq!(folded.replace("\r\n", ""), long.trim_end());
        assert!(folded.split("\r\n").all(|line| line.len() <= 78));
    }

    #[test]
    fn non_ascii_becomes_encoded_words() {
        let value = unstructured("Subject", "Grüße");
        assert_eq!(value, "=?utf-8?B?R3LDvMOfZQ==?=");
        assert_eq!(decode_unstructured(&value), "Grüße");
        let long = "é".repeat(100);
        let words = unstructured("Subject", &long);
        assert!(words.split("\r\n ").all(|w| w.len() <= 75));
        assert_eq!(decode_unstructured(&words), long);
    }

    #[test]
    fn display_names() {
        assert_eq!(phrase("Ann Lee"), "Ann Lee");
        assert_eq!(phrase("Lee, Ann"), "\"Lee, Ann\"");
        assert_eq!(phrase("a \"b\""), "\"a \\\"b\\\"\"");
        assert_eq!(phrase("Jörg"), "=?utf-8?B?SsO2cmc=?=");
        let a = parse_address("\"Lee, Ann\" <ann@x.test>").unwrap();
        assert_eq!(mailbox(&a), "\"Lee, Ann\" <ann@x.test>");
    }

    #[test]
    fn parameters_use_rfc2231_for_non_ascii() {
        assert_eq!(parameter("filename", "a b.txt"), "; filename=\"a b.txt\"");
        assert_eq!(
            parameter("filename", "ü.txt"),
            ";\r\n filename*=utf-8''%C3%BC.txt"
        );
        let long = parameter("filename", &"ü".repeat(40));
        assert!(long.contains("filename*0*=utf-8''") && long.contains("filename*1*="));
    }

    #[test]
    fn decoding_keeps_plain_text_and_q_words() {
        assert_eq!(
            decode_unstructured("a  =?utf-8?Q?caf=C3=A9_x?= b"),
            "a  café x b"
        );
        assert_eq!(
            decode_unstructured("=?utf-8?B?YQ==?= =?utf-8?B?Yg==?="),
            "ab"
        );
        assert_eq!(
            decode_unstructured("=?koi8-r?B?YQ==?="),
            "=?koi8-r?B?YQ==?="
        );
    }
}
