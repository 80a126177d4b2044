//! Every header compose writes is folded (RFC 5322 §2.2.3): long display names, subjects,
//! extra headers, content types and parameters, Content-IDs. No line over 78 where a break
//! is possible, none over 998 ever; the values survive mail-parser and Python's `email`.

use outbox_mime::{ComposeError, ComposeOptions, EmailSpec, PartSource, compose_with};
use outbox_testkit::parsed::{assert_wire_clean, with_mail_parser, with_python};

fn options() -> ComposeOptions {
    let mut options = ComposeOptions::default();
    options.date = Some(time::macros::datetime!(2026-11-22 10:00:00 UTC));
    options.message_id = Some("01TEST@example.com".to_string());
    options.boundary_seed = Some(1);
    options
}

fn composed(spec: &EmailSpec) -> Vec<u8> {
    compose_with(spec, &options()).unwrap().into_data()
}

/// The header block of a message, as text.
fn head(data: &[u8]) -> String {
    let text = String::from_utf8(data.to_vec()).unwrap();
    text.split("\r\n\r\n").next().unwrap().to_string()
}

fn all_header_lines_fit(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for block in text.split("\r\n\r\n").step_by(1) {
        for line in block.split("\r\n") {
            if line.contains(": ") || line.starts_with(' ') {
                assert!(line.len() <= 78, "header line of {}: {line}", line.len());
            }
        }
    }
}

#[test]
fn a_long_display_name_is_several_encoded_words_folded_between_them() {
    let name = "Ünïcödé Ñame ".repeat(20);
    let name = name.trim();
    let spec = EmailSpec::builder()
        .from(format!("\"{name}\" <ann@example.com>"))
        .to(format!("\"{name}\" <bob@example.com>, carl@example.com"))
        .subject("Hi")
        .text("x")
        .into_spec();
    let data = composed(&spec);
    assert_wire_clean(&data);
    let head = head(&data);
    let from: Vec<&str> = head
        .split("\r\n")
        .skip_while(|l| !l.starts_with("From: "))
        .take_while(|l| l.starts_with("From: ") || l.starts_with(' '))
        .collect();
    assert_eq!(
        from[0],
        "From: =?utf-8?B?w5xuw69jw7Zkw6kgw5FhbWUgw5xuw69jw7Zkw6kgw5FhbWUgw5xuw69j?="
    );
    assert!(from.len() > 5);
    assert!(from.iter().all(|l| l.len() <= 78));
    assert!(from.last().unwrap().ends_with("?= <ann@example.com>"));
    let parsed = with_mail_parser(&data);
    assert_eq!(parsed.from[0].0.as_deref(), Some(name));
    assert_eq!(parsed.to[0].0.as_deref(), Some(name));
    assert_eq!(parsed.to[1].1, "carl@example.com");
    // Python's `email` keeps the white space between adjacent encoded-words of a phrase
    // (RFC 2047 §6.2 says to drop it), so it cannot read back even what it writes itself
    // for such a name: the words are right, spaces are added where the words were split.
    let python = with_python(&data);
    let squeeze = |s: &str| s.replace(' ', "");
    assert_eq!(squeeze(python.from[0].0.as_deref().unwrap()), squeeze(name));
    assert_eq!(python.to[1].1, "carl@example.com");
}

#[test]
fn a_long_ascii_name_with_specials_is_a_quoted_string_folded_at_its_spaces() {
    let name = "Lee, Ann (Accounts) ".repeat(8);
    let name = name.trim();
    let spec = EmailSpec::builder()
        .from(format!("\"{name}\" <ann@example.com>"))
        .to("bob@example.com")
        .subject("Hi")
        .text("x")
        .into_spec();
    let data = composed(&spec);
    all_header_lines_fit(&data);
    assert!(head(&data).contains(
        "From: \"Lee, Ann (Accounts) Lee, Ann (Accounts) Lee, Ann (Accounts) Lee, Ann\r\n \
         (Accounts) Lee, Ann (Accounts) Lee, Ann (Accounts) Lee, Ann (Accounts) Lee,\r\n \
         Ann (Accounts)\" <ann@example.com>\r\n"
    ));
    for parsed in [with_mail_parser(&data), with_python(&data)] {
        assert_eq!(parsed.from[0].0.as_deref(), Some(name));
    }
}

#[test]
fn long_subjects_and_extra_headers_fold() {
    let subject = "Ärger mit der Rechnung ".repeat(30);
    let extra = "value ".repeat(200);
    let spec = EmailSpec::builder()
        .from("ann@example.com")
        .to("bob@example.com")
        .subject(subject.trim())
        .header("X-Long", extra.trim())
        .header(format!("X-{}", "N".repeat(73)), "v")
        .text("x")
        .into_spec();
    let data = composed(&spec);
    all_header_lines_fit(&data);
    let parsed = with_python(&data);
    assert_eq!(parsed.subject, subject.trim());
    let x_long = parsed.headers.iter().find(|(n, _)| n == "x-long").unwrap();
    assert_eq!(x_long.1, extra.trim());
    // A field name cannot be folded: one that leaves no room on its line is refused.
    let spec = EmailSpec::builder()
        .from("ann@example.com")
        .to("bob@example.com")
        .subject("s")
        .header(format!("X-{}", "N".repeat(75)), "v")
        .text("x")
        .into_spec();
    assert!(matches!(
        compose_with(&spec, &options()),
        Err(ComposeError::InvalidHeaderName { .. })
    ));
}

#[test]
fn long_content_types_file_names_and_content_ids_fold() {
    let name = format!("{}.png", "très long nom d'image ".repeat(12).trim());
    let content_type = format!("image/png; comment=\"{}\"", "c".repeat(200));
    let mut spec = EmailSpec::builder()
        .from("ann@example.com")
        .to("bob@example.com")
        .subject("s")
        .html(format!("<img src=\"{name}\">"))
        .into_spec();
    spec.html_images.push(
        PartSource::data(name.clone(), vec![0x89, b'P', b'N', b'G'])
            .with_content_type(content_type),
    );
    let data = composed(&spec);
    assert_wire_clean(&data);
    all_header_lines_fit(&data);
    let text = String::from_utf8(data.clone()).unwrap();
    // The long parameter is continued (RFC 2231 §3), the long name too.
    let continued = format!(
        "Content-Type: image/png;\r\n comment*0*=utf-8''{};\r\n comment*1*={};\r\n",
        "c".repeat(53),
        "c".repeat(60)
    );
    assert!(text.contains(&continued), "{text}");
    assert!(text.contains(";\r\n name*7*=%C3%A8s%20long%20nom%20d%27image.png;\r\n"));
    // The Content-ID: the first 40 characters of the long one and a hash.
    assert!(text.contains("Content-ID: <tr%C3%A8s%20long%20nom%20d'image%20tr%C3."));
    for parsed in [with_mail_parser(&data), with_python(&data)] {
        let image = &parsed.leaves[1];
        assert_eq!(image.filename.as_deref(), Some(name.as_str()));
        let id = image.content_id.clone().unwrap();
        assert!(id.len() <= 60, "{id}");
        assert!(text.contains(&format!("src=\"cid:{id}\"")));
    }
}

#[test]
fn a_message_id_too_long_for_a_line_is_refused() {
    let spec = EmailSpec::builder()
        .from("ann@example.com")
        .to("bob@example.com")
        .subject("s")
        .header("Message-ID", format!("<{}@example.com>", "i".repeat(1000)))
        .text("x")
        .into_spec();
    let err = outbox_mime::compose(&spec).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Message-ID: header line longer than 998 octets cannot be folded"
    );
    assert_eq!(err.field(), "headers");
}

#[test]
fn text_attachments_say_their_charset_and_non_ascii_names_have_a_plain_fallback() {
    let spec = EmailSpec::builder()
        .from("ann@example.com")
        .to("bob@example.com")
        .subject("s")
        .text("x")
        .attach_data("Grüße.txt", "Grüße\n".as_bytes().to_vec())
        .attach_data("plain.txt", b"plain\n".to_vec())
        .attach_data("latin1.txt", vec![b'G', 0xfc, b'\n'])
        .into_spec();
    let data = composed(&spec);
    let text = String::from_utf8(data.clone()).unwrap();
    assert!(
        text.contains(
            "Content-Type: text/plain; charset=utf-8;\r\n name*=utf-8''Gr%C3%BC%C3%9Fe.txt;\r\n \
         name=\"Grusse.txt\"\r\n\
         Content-Disposition: attachment;\r\n filename*=utf-8''Gr%C3%BC%C3%9Fe.txt;\r\n \
         filename=\"Grusse.txt\"\r\n"
        ),
        "{text}"
    );
    assert!(text.contains("Content-Type: text/plain; charset=us-ascii; name=\"plain.txt\"\r\n"));
    // Not UTF-8: its charset is unknown, so none is claimed.
    assert!(text.contains("Content-Type: text/plain; name=\"latin1.txt\"\r\n"));
    for parsed in [with_mail_parser(&data), with_python(&data)] {
        assert_eq!(parsed.leaves[1].filename.as_deref(), Some("Grüße.txt"));
        assert_eq!(parsed.leaves[1].bytes, "Grüße\n".as_bytes());
    }
}
