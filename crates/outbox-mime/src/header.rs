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
    // A value that fits one word stays one word (CPython reads a space into the gap between
    // two); a longer one starts with a word that fits after `Reply-To: `, the longest
    // address field name: 42 octets are 68 characters.
    let first = if value.len() <= WORD_OCTETS {
        WORD_OCTETS
    } else {
        42
    };
    encoded_words_from(value, sep, first)
}

/// Octets of an encoded-word that fits in `room` characters: `=?utf-8?B?` + `?=` are 12, and
/// base64 writes 4 characters per 3 octets (at least one character's worth).
fn octets_for(room: usize) -> usize {
    (room.saturating_sub(12) / 4 * 3).clamp(4, WORD_OCTETS)
}

/// [`encoded_words`] whose first word holds at most `first` octets, the others 45.
fn encoded_words_from(value: &str, sep: &str, first: usize) -> String {
    let mut out = String::with_capacity(value.len() * 2);
    let mut rest = value;
    while !rest.is_empty() {
        let room = if out.is_empty() { first } else { WORD_OCTETS };
        let mut end = rest.len().min(room);
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
        // The first word shares its line with `Name: `.
        let first = octets_for(FOLD_AT.saturating_sub(name.len() + 2));
        return encoded_words_from(value, "\r\n ", first);
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

/// A folded address list for a field named `name`: folded between mailboxes, and inside a
/// display name between its words or encoded-words, or at a space of its quoted string
/// (RFC 5322 §3.2.4 allows folding white space there; unfolding gives the name back).
pub fn mailbox_list(name: &str, addresses: &[Address]) -> String {
    let list: Vec<String> = addresses.iter().map(mailbox).collect();
    let folded = fold_bytes(name.len() + 2, list.join(", ").as_bytes(), b"\r\n", true);
    String::from_utf8(folded).expect("line breaks inserted before ASCII spaces keep UTF-8 valid")
}

/// Folds `value` (the part of a header line after `Name: `, which takes `start` columns)
/// so that no line exceeds 78 characters where a break is possible (RFC 5322 §2.2.3). A
/// line break is inserted only before a space that is outside a quoted string, an angle
/// address and a comment, so unfolding (removing the CRLF) gives `value` back exactly. Line
/// breaks already in `value` are kept.
pub fn fold(start: usize, value: &str) -> String {
    String::from_utf8(fold_bytes(start, value.as_bytes(), b"\r\n", false))
        .expect("line breaks inserted between ASCII spaces keep UTF-8 valid")
}

/// [`fold`] on bytes (a raw header of unknown charset), breaking lines with `eol`; also
/// inside quoted strings when `in_quotes`.
pub(crate) fn fold_bytes(start: usize, value: &[u8], eol: &[u8], in_quotes: bool) -> Vec<u8> {
    // Where a break may go: before these spaces.
    let mut breaks = Vec::new();
    let (mut quoted, mut escaped, mut angle, mut comment) = (false, false, false, 0usize);
    for (i, &b) in value.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if quoted || comment > 0 => escaped = true,
            b'"' if comment == 0 => quoted = !quoted,
            b'(' if !quoted => comment += 1,
            b')' if !quoted && comment > 0 => comment -= 1,
            b'<' if !quoted && comment == 0 => angle = true,
            b'>' if !quoted && comment == 0 => angle = false,
            b' ' if (!quoted || in_quotes)
                && !angle
                && comment == 0
                && i > 0
                && value[i - 1] != b'\n'
                && value[i - 1] != b'"' =>
            {
                breaks.push(i);
            }
            _ => {}
        }
    }
    let mut out = Vec::with_capacity(value.len() + value.len() / 32);
    let mut line = start;
    let mut copied = 0;
    for (k, &at) in breaks.iter().enumerate() {
        // The text from here to the next break, or to a line break already there.
        let next = breaks.get(k + 1).copied().unwrap_or(value.len());
        let word_end = value[at + 1..next]
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .map_or(next, |end| at + 1 + end);
        let piece = &value[copied..at];
        match piece.iter().rposition(|&b| b == b'\n') {
            Some(lf) => line = piece.len() - lf - 1,
            None => line += piece.len(),
        }
        out.extend_from_slice(piece);
        copied = at;
        if line > 1 && line + (word_end - at) > FOLD_AT {
            out.extend_from_slice(eol);
            line = 0;
        }
    }
    out.extend_from_slice(&value[copied..]);
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

/// A content type given by a user, made foldable when it is long: each parameter of a long
/// value is written again with [`parameter`] (quoted, or as RFC 2231 continuations when too
/// long for a line). Short values, and RFC 2231 parameters already encoded, are kept as given.
pub fn content_type_value(given: &str) -> String {
    if given.len() <= 60 {
        return given.to_string();
    }
    let mut pieces = split_parameters(given).into_iter();
    let mut out = pieces.next().unwrap_or_default().trim().to_string();
    for piece in pieces {
        let piece = piece.trim();
        match piece.split_once('=') {
            Some((name, value)) if !name.trim().ends_with('*') => {
                let value = value.trim();
                let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                    Some(inner) => unescape_quoted(inner),
                    None => value.to_string(),
                };
                out.push_str(&parameter(name.trim(), &value));
            }
            _ if piece.is_empty() => {}
            _ => {
                out.push_str("; ");
                out.push_str(piece);
            }
        }
    }
    out
}

/// Splits a header value on the `;` that are outside quoted strings.
fn split_parameters(value: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let (mut quoted, mut escaped, mut start) = (false, false, 0);
    for (i, b) in value.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == b';' && !quoted {
            pieces.push(&value[start..i]);
            start = i + 1;
        }
    }
    pieces.push(&value[start..]);
    pieces
}

/// The content of a quoted string, its quoted-pairs resolved.
fn unescape_quoted(inner: &str) -> String {
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out
}

/// True when [`parameter`] writes `value` as an RFC 2231 extended value.
fn needs_extended(value: &str) -> bool {
    !(value.bytes().all(|b| (b' '..=b'~').contains(&b)) && value.len() <= 60)
}

/// A file name parameter (`name`, `filename`): [`parameter`], and when that is an RFC 2231
/// extended value, also a plain quoted `name="..."` after it with the name folded to ASCII
/// (accents dropped, other characters `_`, at most 60 characters, extension kept). Readers
/// that know RFC 2231 (Thunderbird, Python's `email`, Gmail) take the exact `name*`; old
/// ones (munpack, Outlook 2003) still find a usable name.
pub fn file_name_parameter(name: &str, value: &str) -> String {
    let mut out = parameter(name, value);
    if needs_extended(value) {
        let fallback = ascii_file_name(value);
        out.push_str(&format!(";\r\n {name}=\"{fallback}\""));
    }
    out
}

/// `value` folded to printable ASCII without `"` or `\\`, at most 60 characters, keeping
/// a short extension.
pub fn ascii_file_name(value: &str) -> String {
    use unicode_normalization::UnicodeNormalization as _;
    use unicode_normalization::char::is_combining_mark;
    let mut ascii = String::with_capacity(value.len());
    for c in value.nfkd().filter(|c| !is_combining_mark(*c)) {
        match c {
            ' '..='~' if c != '"' && c != '\\' => ascii.push(c),
            'ß' => ascii.push_str("ss"),
            'æ' => ascii.push_str("ae"),
            'Æ' => ascii.push_str("AE"),
            'œ' => ascii.push_str("oe"),
            'Œ' => ascii.push_str("OE"),
            'ø' => ascii.push('o'),
            'Ø' => ascii.push('O'),
            'đ' => ascii.push('d'),
            'Đ' => ascii.push('D'),
            'ł' => ascii.push('l'),
            'Ł' => ascii.push('L'),
            'þ' => ascii.push_str("th"),
            'Þ' => ascii.push_str("Th"),
            _ => ascii.push('_'),
        }
    }
    const MAX: usize = 60;
    if ascii.len() <= MAX {
        return ascii;
    }
    let extension = match ascii.rfind('.') {
        Some(dot) if ascii.len() - dot <= 10 => ascii[dot..].to_string(),
        _ => String::new(),
    };
    let mut stem = ascii[..MAX - extension.len()].to_string();
    stem.push_str(&extension);
    stem
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
    fn non_ascii_file_names_get_an_ascii_fallback_after_the_exact_name() {
        assert_eq!(
            file_name_parameter("filename", "a.txt"),
            "; filename=\"a.txt\""
        );
        assert_eq!(
            file_name_parameter("filename", "Grüße, «façade».txt"),
            ";\r\n filename*=utf-8''Gr%C3%BC%C3%9Fe%2C%20%C2%ABfa%C3%A7ade%C2%BB.txt;\r\n \
             filename=\"Grusse, _facade_.txt\""
        );
        let long = format!("{}.pdf", "é".repeat(100));
        let fallback = ascii_file_name(&long);
        assert_eq!(fallback, format!("{}.pdf", "e".repeat(56)));
    }

    #[test]
    fn long_content_types_are_rewritten_with_continuations() {
        assert_eq!(content_type_value("text/plain; a=b"), "text/plain; a=b");
        let long = format!(
            "application/x-thing; report-type=\"{}\"; v=1",
            "r".repeat(150)
        );
        let value = content_type_value(&long);
        assert!(value.starts_with("application/x-thing;\r\n report-type*0*=utf-8''rrr"));
        assert!(value.ends_with("; v=\"1\""), "{value}");
        assert!(value.split("\r\n").all(|l| l.len() <= 78), "{value}");
    }

    #[test]
    fn folding_breaks_only_outside_quotes_and_angle_brackets() {
        let value =
            "\"a b c\" <x y@z>, one two three four five six seven eight nine ten eleven twelve";
        let folded = fold(4, value);
        assert_eq!(folded.replace("\r\n", ""), value);
        assert!(folded.split("\r\n").all(|l| l.len() + 4 <= 78), "{folded}");
        assert!(folded.starts_with("\"a b c\" <x y@z>,"));
        // Existing line breaks reset the count and are kept.
        let folded = fold(10, "a;\r\n boundary=\"x\"");
        assert_eq!(folded, "a;\r\n boundary=\"x\"");
        // One word longer than a line stays whole.
        let word = "w".repeat(100);
        assert_eq!(fold(9, &format!("a {word}")), format!("a\r\n {word}"));
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
