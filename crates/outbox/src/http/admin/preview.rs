//! What the message page shows of the stored MIME data: the raw text, cut to a size a
//! browser renders comfortably, and the decoded first `text/html` part for the sandboxed
//! preview.

use mail_parser::MessageParser;

/// The raw MIME shown on the message page is cut here (256 KiB).
pub const RAW_LIMIT: usize = 256 * 1024;

/// The raw MIME as text for a `<pre>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawView {
    /// The first [`RAW_LIMIT`] bytes (fewer when that would split a UTF-8 character);
    /// invalid UTF-8 shows as U+FFFD.
    pub text: String,
    /// The full size in bytes.
    pub total: usize,
    /// True when `text` is only the beginning.
    pub truncated: bool,
}

/// The first `limit` bytes of `data` as text.
pub fn raw_view(data: &[u8], limit: usize) -> RawView {
    let truncated = data.len() > limit;
    let mut end = data.len().min(limit);
    // Back up to a character boundary so the cut does not show a stray U+FFFD: a UTF-8
    // continuation byte is 0b10xx_xxxx, and a character is at most 4 bytes.
    if truncated {
        let mut back = 0;
        while back < 3 && end > 0 && data[end] & 0xC0 == 0x80 {
            end -= 1;
            back += 1;
        }
    }
    RawView {
        text: String::from_utf8_lossy(&data[..end]).into_owned(),
        total: data.len(),
        truncated,
    }
}

/// The first `text/html` part of a message, transfer-decoded and converted to text from
/// its charset (RFC 2045 §6, RFC 2046 §4.1.2); `None` when the message has none. A
/// plain-text message has no preview: mail-parser's `body_html` would make HTML out of
/// the text part, which is not what was sent.
pub fn first_html_part(data: &[u8]) -> Option<String> {
    let message = MessageParser::default().parse(data)?;
    message
        .parts
        .iter()
        .find(|part| part.is_text_html())
        .and_then(|part| part.text_contents())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_view_cuts_at_a_character_boundary() {
        let view = raw_view(b"hello", 10);
        assert_eq!(view.text, "hello");
        assert!(!view.truncated);
        assert_eq!(view.total, 5);

        let data = "abé".as_bytes(); // 'é' is 2 bytes: cutting at 3 would split it
        let view = raw_view(data, 3);
        assert_eq!(view.text, "ab");
        assert!(view.truncated);
        assert_eq!(view.total, 4);
    }

    #[test]
    fn finds_and_decodes_the_html_part() {
        let mime = concat!(
            "From: a@example.com\r\nTo: b@example.com\r\nSubject: x\r\nMIME-Version: 1.0\r\n",
            "Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n",
            "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain\r\n",
            "--b1\r\nContent-Type: text/html; charset=utf-8\r\n",
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n",
            "<p class=3D\"x\">caf=C3=A9</p>\r\n",
            "--b1--\r\n",
        );
        let html = first_html_part(mime.as_bytes()).unwrap();
        assert!(html.contains("<p class=\"x\">café</p>"), "{html}");
    }

    #[test]
    fn plain_text_has_no_preview() {
        let mime = "From: a@example.com\r\nSubject: x\r\n\r\njust text\r\n";
        assert_eq!(first_html_part(mime.as_bytes()), None);
    }
}
