//! `fit_line_length`: raw messages with lines over 998 octets made deliverable, their
//! decoded content exact (checked with Python's `email` and mail-parser), and messages
//! without long lines returned unchanged.

use std::borrow::Cow;

use outbox_mime::{LineLengthError, fit_line_length, has_long_line, merge_message};
use outbox_testkit::parsed::{assert_wire_clean, lf, with_mail_parser, with_python};

fn fitted(data: &[u8]) -> Vec<u8> {
    let out = fit_line_length(data).unwrap().into_owned();
    assert!(!has_long_line(&out), "still a long line");
    out
}

#[test]
fn messages_without_long_lines_come_back_borrowed() {
    let data = b"From: a@x.test\r\nSubject: s\r\n\r\nshort\r\n".to_vec();
    assert!(matches!(fit_line_length(&data), Ok(Cow::Borrowed(b)) if b == data.as_slice()));
    let exactly = format!("Subject: s\n\n{}\n", "x".repeat(998));
    assert!(matches!(
        fit_line_length(exactly.as_bytes()),
        Ok(Cow::Borrowed(_))
    ));
    assert!(has_long_line(
        format!("a\r\n{}\r\n", "y".repeat(999)).as_bytes()
    ));
    assert!(!has_long_line(
        format!("a\r\n{}\r\n", "y".repeat(998)).as_bytes()
    ));
}

#[test]
fn a_plain_rfc822_message_gets_mime_headers_and_quoted_printable() {
    // What PHP's mail() hands to sendmail: LF line ends, no MIME headers.
    let line = "é".repeat(1000);
    let data = format!("From: a@x.test\nTo: b@x.test\nSubject: long\n\nfirst\n{line}\nlast\n");
    let out = fitted(data.as_bytes());
    let text = String::from_utf8(out.clone()).unwrap();
    assert_eq!(
        text.split("\n\n").next().unwrap(),
        "From: a@x.test\nTo: b@x.test\nSubject: long\nMIME-Version: 1.0\n\
         Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable"
    );
    let crlf = String::from_utf8(outbox_mime_normalize(&out)).unwrap();
    let parsed = with_python(crlf.as_bytes());
    assert_eq!(
        parsed.leaves[0].text.as_deref().map(lf),
        Some(format!("first\n{line}\nlast\n"))
    );
}

/// Line ends made CRLF, as the SMTP writer sends them.
fn outbox_mime_normalize(data: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(data).replace("\r\n", "\n");
    text.replace('\n', "\r\n").into_bytes()
}

#[test]
fn exact_bytes_of_a_re_encoded_part() {
    let data = format!(
        "Subject: s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\
         Content-Transfer-Encoding: 7bit\r\n\r\n{}=\r\n",
        "a".repeat(1000)
    );
    let out = String::from_utf8(fitted(data.as_bytes())).unwrap();
    let expected = format!(
        "Subject: s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n{}{}=3D\r\n",
        format!("{}=\r\n", "a".repeat(75)).repeat(13),
        "a".repeat(25)
    );
    assert_eq!(out, expected);
}

#[test]
fn nested_parts_are_walked_and_only_long_ones_change() {
    let long_text = format!("{} end", "word".repeat(600));
    let long_base64 = "QUJD".repeat(400);
    let data = format!(
        "From: a@x.test\r\nTo: b@x.test\r\nSubject: nested\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
         preamble\r\n--outer\r\n\
         Content-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n\
         --inner\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\nshort ✓\r\n\
         --inner\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n<p>{long_text}</p>\r\n--inner--\r\n\
         --outer\r\nContent-Type: application/octet-stream; name=\"abc.bin\"\r\n\
         Content-Disposition: attachment; filename=\"abc.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{long_base64}\r\n--outer--\r\n"
    );
    let out = fitted(data.as_bytes());
    assert_wire_clean(&out);
    let text = String::from_utf8(out.clone()).unwrap();
    // The short part is untouched.
    assert!(text.contains("Content-Transfer-Encoding: 8bit\r\n\r\nshort ✓\r\n--inner"));
    for parsed in [with_python(&out), with_mail_parser(&out)] {
        assert_eq!(
            parsed.structure,
            "multipart/mixed(multipart/alternative(text/plain,text/html),application/octet-stream)"
        );
        assert_eq!(parsed.leaves[0].text.as_deref(), Some("short ✓"));
        assert_eq!(
            parsed.leaves[1].text.as_deref(),
            Some(format!("<p>{long_text}</p>").as_str())
        );
        assert_eq!(parsed.leaves[2].bytes, b"ABC".repeat(400));
    }
}

#[test]
fn quoted_printable_with_long_lines_is_wrapped_again_exactly() {
    let body = format!("{}\r\nnext=3Dline\r\n", "=C3=A9".repeat(300));
    let data = format!(
        "Subject: s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n{body}"
    );
    let out = fitted(data.as_bytes());
    assert_eq!(
        with_python(&out).leaves[0].text.as_deref().map(lf),
        Some(format!("{}\nnext=line\n", "é".repeat(300)))
    );
}

#[test]
fn binary_parts_keep_every_octet() {
    let mut content: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    content.retain(|&b| b != b'\n');
    let mut data = b"Subject: s\r\nMIME-Version: 1.0\r\n\
        Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        .to_vec();
    data.extend_from_slice(&content);
    data.extend_from_slice(b"\r\n");
    let out = fitted(&data);
    let mut expected = content.clone();
    expected.extend_from_slice(b"\r\n");
    assert_eq!(with_python(&out).leaves[0].bytes, expected);
}

#[test]
fn long_headers_are_folded_or_refused() {
    let words = "word ".repeat(300);
    let data = format!("Subject: {}\r\nX-Other: kept\r\n\r\nbody\r\n", words.trim());
    let out = String::from_utf8(fitted(data.as_bytes())).unwrap();
    assert!(out.lines().all(|l| l.len() <= 78), "{out}");
    assert!(out.ends_with("\r\nX-Other: kept\r\n\r\nbody\r\n"));
    assert_eq!(with_python(out.as_bytes()).subject, words.trim());

    let data = format!("Message-ID: <{}@x.test>\r\n\r\nbody\r\n", "i".repeat(1000));
    assert_eq!(
        fit_line_length(data.as_bytes()).unwrap_err(),
        LineLengthError::Header {
            field: "Message-ID".to_string()
        }
    );
    let err = fit_line_length(data.as_bytes()).unwrap_err().to_string();
    assert_eq!(
        err,
        "header Message-ID: a line longer than 998 octets that cannot be folded"
    );
    // A body that starts without a blank line: its long line is no header field.
    for line in ["x".repeat(1200), format!("see http://{}", "u".repeat(1200))] {
        let data = format!("Subject: s\r\n{line}\r\n");
        assert_eq!(
            fit_line_length(data.as_bytes()).unwrap_err().to_string(),
            "header (a line without a field name): a line longer than 998 octets that cannot be folded"
        );
    }
}

#[test]
fn parts_that_cannot_be_re_encoded_are_refused() {
    let data = format!(
        "MIME-Version: 1.0\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n{}\r\n",
        "u".repeat(1200)
    );
    assert!(matches!(
        fit_line_length(data.as_bytes()),
        Err(LineLengthError::Body { encoding }) if encoding == "x-uuencode"
    ));
    let data = format!(
        "MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\n{}!\r\n",
        "QUJD".repeat(300)
    );
    assert!(fit_line_length(data.as_bytes()).is_err());
}

#[test]
fn merge_markers_survive_in_a_re_encoded_part() {
    let line = format!("Dear #First#, {}", "x".repeat(1200));
    let data = format!(
        "From: a@x.test\r\nTo: b@x.test\r\nSubject: Hi #First#\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{line}\r\n"
    );
    let out = fitted(data.as_bytes());
    let values = std::collections::BTreeMap::from([("First".to_string(), "Zoë".to_string())]);
    let merged = merge_message(&out, &values);
    assert_wire_clean(&merged);
    let parsed = with_python(&merged);
    assert_eq!(parsed.subject, "Hi Zoë");
    assert_eq!(
        parsed.leaves[0].text.as_deref().map(lf),
        Some(format!("Dear Zoë, {}\n", "x".repeat(1200)))
    );
}

#[test]
fn signed_messages_and_parts_are_refused_not_re_encoded() {
    // Re-encoding would change the bytes a signature covers: the signer must fix its lines.
    let long = "z".repeat(1200);
    let dkim = format!(
        "DKIM-Signature: v=1; a=rsa-sha256; d=x.test; s=s; h=from; bh=AA==; b=AA==\r\n\
         From: a@x.test\r\nSubject: s\r\n\r\n{long}\r\n"
    );
    assert_eq!(
        fit_line_length(dkim.as_bytes()),
        Err(LineLengthError::Signed {
            signature: "DKIM-Signature".to_string()
        })
    );
    let signed = format!(
        "From: a@x.test\r\nSubject: s\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/signed; protocol=\"application/pgp-signature\"; boundary=b\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\n{long}\r\n--b\r\n\
         Content-Type: application/pgp-signature\r\n\r\nsig\r\n--b--\r\n"
    );
    assert_eq!(
        fit_line_length(signed.as_bytes()),
        Err(LineLengthError::Signed {
            signature: "multipart/signed".to_string()
        })
    );
    // Without a long line a signed message is stored as it is.
    let short = dkim.replace(&long, "short");
    assert!(matches!(
        fit_line_length(short.as_bytes()),
        Ok(Cow::Borrowed(_))
    ));
}
