//! Exact bytes of small messages: Date, Message-ID and boundaries are fixed through
//! `ComposeOptions`, so every byte is known.

use outbox_mime::{ComposeOptions, EmailSpec, TransferEncoding, compose_part_with, compose_with};

fn options() -> ComposeOptions {
    let mut options = ComposeOptions::default();
    options.date = Some(time::macros::datetime!(2026-11-22 10:00:00 UTC));
    options.message_id = Some("01TEST@example.com".to_string());
    options.boundary_seed = Some(1);
    options
}

fn composed(spec: EmailSpec) -> String {
    String::from_utf8(compose_with(&spec, &options()).unwrap().into_data()).unwrap()
}

/// Lines joined with CRLF, ending with CRLF.
fn crlf(lines: &[&str]) -> String {
    let mut out = lines.join("\r\n");
    out.push_str("\r\n");
    out
}

fn base() -> outbox_mime::EmailBuilder {
    EmailSpec::builder()
        .from("Ann <ann@example.com>")
        .to("bob@example.com")
        .subject("Hi")
}

const HEAD: &[&str] = &[
    "Date: Sun, 22 Nov 2026 10:00:00 +0000",
    "From: Ann <ann@example.com>",
    "To: bob@example.com",
    "Subject: Hi",
    "Message-ID: <01TEST@example.com>",
    "MIME-Version: 1.0",
];

fn with_head(rest: &[&str]) -> String {
    crlf(&[HEAD, rest].concat())
}

#[test]
fn text_only() {
    let out = composed(base().text("Hello\nworld").into_spec());
    assert_eq!(
        out,
        with_head(&[
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 7bit",
            "",
            "Hello",
            "world",
        ])
    );
}

#[test]
fn html_only_non_ascii_is_quoted_printable() {
    let out = composed(base().html("<p>Café</p>\n").into_spec());
    assert_eq!(
        out,
        with_head(&[
            "Content-Type: text/html; charset=utf-8",
            "Content-Transfer-Encoding: quoted-printable",
            "",
            "<p>Caf=C3=A9</p>",
        ])
    );
}

#[test]
fn text_and_html_are_alternative_inside_mixed() {
    let out = composed(
        base()
            .text("Hello\n")
            .html("<p>Hello</p>")
            .attach_data("a.txt", b"abc".to_vec())
            .into_spec(),
    );
    assert_eq!(
        out,
        with_head(&[
            "Content-Type: multipart/mixed;",
            " boundary=\"=_outbox_0000000000000001_1\"",
            "",
            "--=_outbox_0000000000000001_1",
            "Content-Type: multipart/alternative;",
            " boundary=\"=_outbox_0000000000000001_0\"",
            "",
            "--=_outbox_0000000000000001_0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 7bit",
            "",
            "Hello",
            "",
            "--=_outbox_0000000000000001_0",
            "Content-Type: text/html; charset=utf-8",
            "Content-Transfer-Encoding: 7bit",
            "",
            "<p>Hello</p>",
            "--=_outbox_0000000000000001_0--",
            "",
            "--=_outbox_0000000000000001_1",
            "Content-Type: text/plain; charset=us-ascii; name=\"a.txt\"",
            "Content-Disposition: attachment; filename=\"a.txt\"",
            "Content-Transfer-Encoding: base64",
            "",
            "YWJj",
            "",
            "--=_outbox_0000000000000001_1--",
        ])
    );
}

#[test]
fn inline_image_by_name_is_related_and_src_rewritten() {
    let out = composed(
        base()
            .html(r#"<img src="logo.png"><img src="cid:logo.png">"#)
            .html_image_data("logo.png", vec![0x89, b'P', b'N', b'G'])
            .into_spec(),
    );
    assert_eq!(
        out,
        with_head(&[
            "Content-Type: multipart/related;",
            " boundary=\"=_outbox_0000000000000001_0\"",
            "",
            "--=_outbox_0000000000000001_0",
            "Content-Type: text/html; charset=utf-8",
            "Content-Transfer-Encoding: 7bit",
            "",
            r#"<img src="cid:logo.png"><img src="cid:logo.png">"#,
            "--=_outbox_0000000000000001_0",
            "Content-Type: image/png; name=\"logo.png\"",
            "Content-Disposition: inline; filename=\"logo.png\"",
            "Content-Transfer-Encoding: base64",
            "Content-ID: <logo.png>",
            "",
            "iVBORw==",
            "",
            "--=_outbox_0000000000000001_0--",
        ])
    );
}

#[test]
fn headers_names_bcc_and_non_ascii() {
    let out = composed(
        EmailSpec::builder()
            .from("Jörg Müller <jorg@bücher.example>")
            .to("\"Lee, Ann\" <ann@example.com>, bob@example.com")
            .cc("carol@example.com")
            .bcc("secret@example.com")
            .reply_to("replies@example.com")
            .sender("robot@example.com")
            .header("X-Campaign", "Nov")
            .header("X-Note", "Grüße")
            .subject("Grüße aus Köln")
            .text("x")
            .into_spec(),
    );
    assert_eq!(
        out,
        crlf(&[
            "Date: Sun, 22 Nov 2026 10:00:00 +0000",
            "From: =?utf-8?B?SsO2cmcgTcO8bGxlcg==?= <jorg@xn--bcher-kva.example>",
            "Sender: robot@example.com",
            "Reply-To: replies@example.com",
            "To: \"Lee, Ann\" <ann@example.com>, bob@example.com",
            "Cc: carol@example.com",
            "Subject: =?utf-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=",
            "Message-ID: <01TEST@example.com>",
            "MIME-Version: 1.0",
            "X-Campaign: Nov",
            "X-Note: =?utf-8?B?R3LDvMOfZQ==?=",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 7bit",
            "",
            "x",
        ])
    );
    assert!(!out.contains("secret"));
}

#[test]
fn envelope_is_from_and_deduplicated_recipients() {
    let message = compose_with(
        &base()
            .to("Bob Again <BOB@example.com>")
            .cc("carol@example.com")
            .bcc("bob@example.com, dave@example.com")
            .text("x")
            .into_spec(),
        &options(),
    )
    .unwrap();
    assert_eq!(message.from(), "ann@example.com");
    assert_eq!(
        message.recipients(),
        ["bob@example.com", "carol@example.com", "dave@example.com"]
    );
    assert_eq!(message.message_id(), "<01TEST@example.com>");
}

#[test]
fn simple_form_is_headers_only() {
    let out = composed(base().simple_form(true).into_spec());
    assert_eq!(out, with_head(&[""]));
}

#[test]
fn forced_encodings_and_charset() {
    let out = composed(
        base()
            .text("Caf\u{e9}")
            .charset("iso-8859-1")
            .transfer_encoding(TransferEncoding::Base64)
            .into_spec(),
    );
    assert!(out.ends_with(
        "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: base64\r\n\r\nQ2Fm6Q==\r\n"
    ));
    // Markers are never hidden in base64.
    let out = composed(
        base()
            .text("Dear #Name#")
            .transfer_encoding(TransferEncoding::Base64)
            .into_spec(),
    );
    assert!(out.ends_with("Content-Transfer-Encoding: quoted-printable\r\n\r\nDear #Name#=\r\n"));
    let out = composed(base().text("x").content_type("text/enriched").into_spec());
    assert!(out.contains("Content-Type: text/enriched; charset=utf-8\r\n"));
}

#[test]
fn a_bare_part_nests_unchanged() {
    let part = compose_part_with(
        &EmailSpec::builder()
            .text("inner")
            .header("Content-Description", "nested")
            .into_spec(),
        &options(),
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(part.data().to_vec()).unwrap(),
        "Content-Description: nested\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 7bit\r\n\r\ninner"
    );
    let out = composed(
        base()
            .text("outer")
            .part(part)
            .raw_part(b"Content-Type: text/x-raw\r\n\r\nraw as is\r\n".to_vec())
            .into_spec(),
    );
    assert!(out.contains(
        "--=_outbox_0000000000000001_0\r\nContent-Description: nested\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n\
         inner\r\n--=_outbox_0000000000000001_0\r\nContent-Type: text/x-raw\r\n\r\n\
         raw as is\r\n\r\n--=_outbox_0000000000000001_0--\r\n"
    ));
}

#[test]
fn long_subjects_fold_and_no_line_exceeds_998() {
    let subject = "word ".repeat(300);
    let long_line = "x".repeat(5000);
    let out = composed(
        base()
            .subject(subject.trim())
            .text(long_line.clone())
            .into_spec(),
    );
    assert!(out.split("\r\n").all(|line| line.len() <= 998));
    assert!(out.contains("Content-Transfer-Encoding: quoted-printable"));
    assert!(!out.replace("\r\n", "").contains('\n'));
}
