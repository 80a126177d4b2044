//! The DATA payload: line-end normalisation and dot-stuffing (RFC 5321 §4.5.2), and the
//! LF-only form a local program such as `sendmail -t` expects.
//!
//! Every line end in a message — CRLF, a bare LF, a bare CR — becomes CRLF on the wire, as
//! Allegro's send-letter does. So no bare CR or LF ever reaches the server, and a message
//! cannot end the DATA phase early with `\n.\n`, `\r.\r` or `\r\n.\n` (SMTP smuggling,
//! CVE-2023-51766 and friends): the only `CRLF.CRLF` on the wire is the one the encoder adds.

/// The end-of-data marker that follows the message (RFC 5321 §4.1.1.4).
pub const END_OF_DATA: &[u8] = b".\r\n";

/// Appends `message` to `out` ready for the DATA phase: line ends normalised to CRLF, a `.`
/// doubled at the start of every line (RFC 5321 §4.5.2), a final CRLF added when the message
/// does not end with a line end, and the terminating `.` line.
pub fn encode_data(message: &[u8], out: &mut Vec<u8>) {
    out.reserve(message.len() + message.len() / 64 + 5);
    let mut at_line_start = true;
    let mut i = 0;
    while i < message.len() {
        let b = message[i];
        match b {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                // CRLF is one line end, not two.
                if message.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                at_line_start = true;
            }
            b'\n' => {
                out.extend_from_slice(b"\r\n");
                at_line_start = true;
            }
            _ => {
                if at_line_start && b == b'.' {
                    out.push(b'.');
                }
                // Copy the rest of the line in one go: most bytes are plain text, and
                // memchr finds the line end with SIMD (this loop is the hot spot of
                // sending large messages).
                let rest = &message[i..];
                let len = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
                out.extend_from_slice(&rest[..len]);
                i += len;
                at_line_start = false;
                continue;
            }
        }
        i += 1;
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(END_OF_DATA);
}

/// `message` with every line end (CRLF, bare CR, bare LF) turned into a single LF, the form
/// local mail programs read. No dot-stuffing: a program gets the message as it is.
pub fn to_lf_line_ends(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    let mut i = 0;
    while i < message.len() {
        match message[i] {
            b'\r' => {
                out.push(b'\n');
                if message.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Whether `message` has a byte outside 7-bit ASCII, so it needs `BODY=8BITMIME`
/// (RFC 6152 §3) when the server offers it.
pub fn is_8bit(message: &[u8]) -> bool {
    !message.is_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_data(message, &mut out);
        out
    }

    #[test]
    fn plain_message_gets_terminator() {
        assert_eq!(encode(b"a\r\nb\r\n"), b"a\r\nb\r\n.\r\n");
        assert_eq!(encode(b"a\r\nb"), b"a\r\nb\r\n.\r\n");
        assert_eq!(encode(b""), b".\r\n");
    }

    #[test]
    fn leading_dots_are_doubled() {
        assert_eq!(
            encode(b".\r\n..x\r\n a.b\r\n"),
            b"..\r\n...x\r\n a.b\r\n.\r\n"
        );
        assert_eq!(encode(b".start"), b"..start\r\n.\r\n");
    }

    #[test]
    fn bare_line_ends_become_crlf() {
        assert_eq!(encode(b"a\nb\rc\r\n"), b"a\r\nb\r\nc\r\n.\r\n");
        assert_eq!(encode(b"a\n\nb"), b"a\r\n\r\nb\r\n.\r\n");
        assert_eq!(encode(b"a\r\rb"), b"a\r\n\r\nb\r\n.\r\n");
        assert_eq!(encode(b"a\n\r"), b"a\r\n\r\n.\r\n");
    }

    /// The SMTP smuggling sequences: none of them may end the data early.
    #[test]
    fn smuggling_sequences_are_neutralised() {
        for (input, expected) in [
            (
                &b"x\n.\nMAIL FROM:<e@vil>\n"[..],
                &b"x\r\n..\r\nMAIL FROM:<e@vil>\r\n.\r\n"[..],
            ),
            (b"x\r.\rMAIL", b"x\r\n..\r\nMAIL\r\n.\r\n"),
            (b"x\r\n.\nMAIL", b"x\r\n..\r\nMAIL\r\n.\r\n"),
            (b"x\n.\r\nMAIL", b"x\r\n..\r\nMAIL\r\n.\r\n"),
            (b"x\r\n.\r\nMAIL", b"x\r\n..\r\nMAIL\r\n.\r\n"),
        ] {
            let wire = encode(input);
            assert_eq!(wire, expected, "{input:?}");
            assert_eq!(count(&wire, b"\r\n.\r\n"), 1, "{input:?}");
            assert!(!has_bare_cr_or_lf(&wire), "{input:?}");
        }
    }

    #[test]
    fn lf_form_for_programs() {
        assert_eq!(to_lf_line_ends(b"a\r\nb\rc\nd"), b"a\nb\nc\nd");
        assert_eq!(to_lf_line_ends(b".x\r\n"), b".x\n");
    }

    #[test]
    fn eight_bit_detection() {
        assert!(!is_8bit(b"plain"));
        assert!(is_8bit("é".as_bytes()));
    }

    fn count(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len()).filter(|w| *w == needle).count()
    }

    pub(crate) fn has_bare_cr_or_lf(wire: &[u8]) -> bool {
        wire.iter().enumerate().any(|(i, &b)| {
            (b == b'\r' && wire.get(i + 1) != Some(&b'\n'))
                || (b == b'\n' && (i == 0 || wire[i - 1] != b'\r'))
        })
    }
}
